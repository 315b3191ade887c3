"""What a supervisor does first with a job an earlier supervisor left unfinished.

Everything the supervisor knows lives in the ledger, so one killed with ``kill -9`` and started
again picks the job up where it was:

=======================================  ================================================
left in the ledger                       :class:`Recovery` does
=======================================  ================================================
a running leg whose worker still runs    adopts it (no second worker) and watches it
a running leg whose worker died          acts on its outcome if it said one, else marks
                                         the leg interrupted and restarts from the last
                                         checkpoint
a move whose transfer was recorded done  sets the job at the destination (no new transfer)
a move whose transfer had started        transfers again (a verified copy resumes)
a move with no transfer recorded         restarts at the source
=======================================  ================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caftm._notice import notice
from caftm.errors import LedgerError
from caftm.jobs.executors import EXIT_UNKNOWN
from caftm.ledger.jobs import JobRecord, JobStatus, LegRecord, LegStatus, TransferStatus

if TYPE_CHECKING:
    from caftm.jobs.supervisor import Supervisor

__all__ = ["Recovery"]


class Recovery:
    """The default recovery strategy (see the module docstring); a supervisor takes another
    through its ``recovery`` argument."""

    def recover(self, sup: Supervisor, job: JobRecord) -> JobRecord:
        """Settle the legs an earlier supervisor left running, then an interrupted move."""
        for leg in sup.book.legs(job.name):
            if leg.status is not LegStatus.RUNNING:
                continue
            adopted = self.adopt(sup, job, leg)
            if adopted is not None:
                return adopted
            job = self.settle_dead(sup, job, leg)
        if job.status is JobStatus.MOVING:  # the supervisor died during a move: finish it
            job = self.finish_move(sup, job)
        return job

    def adopt(self, sup: Supervisor, job: JobRecord, leg: LegRecord) -> JobRecord | None:
        """Watch the leg's worker to its end if it still runs (the job after it); else None."""
        handle = sup.executor.adopt(leg)
        if handle is None:
            return None
        notice("job %s: leg %d at %s still runs; watching it", job.name, leg.leg, leg.site)
        return sup.legs.finish(job, leg.leg, leg.site, handle)

    def settle_dead(self, sup: Supervisor, job: JobRecord, leg: LegRecord) -> JobRecord:
        """A leg whose worker died unwatched: act on what it said, else mark it interrupted.

        Another process may close the leg meanwhile (``caftm jobs`` marks dead legs
        interrupted): the leg is read again and the job goes on from its last checkpoint.
        """
        sup.legs.import_spool(leg.leg)
        end = sup.legs.end(job.name, leg.leg, leg.site, EXIT_UNKNOWN)
        try:
            if end.request is not None:
                return sup.outcomes.act(job, leg.leg, leg.site, end)
            sup.book.end_leg(job.name, leg.leg, LegStatus.INTERRUPTED, end_step=end.reached,
                             message="its process died unwatched")  # fmt: skip
        except LedgerError:
            again = sup.book.get_leg(job.name, leg.leg)
            if again.status is LegStatus.RUNNING:
                raise
            notice("job %s: leg %d at %s was closed meanwhile (%s: %s); restarting from its "
                   "last checkpoint", job.name, leg.leg, leg.site, again.status.value,
                   again.message)  # fmt: skip
            return sup.book.update(job.name, status=JobStatus.RESTARTING)
        notice(
            "job %s: leg %d at %s was interrupted; restarting from its last checkpoint",
            job.name,
            leg.leg,
            leg.site,
        )
        return sup.book.update(job.name, status=JobStatus.RESTARTING)

    def finish_move(self, sup: Supervisor, job: JobRecord) -> JobRecord:
        """Finish a move the earlier supervisor left (by its last transfer's record)."""
        transfers = sup.book.transfers(job.name)
        last = transfers[-1] if transfers else None
        if last is not None and last.status is TransferStatus.DONE and last.dst_site != job.site:
            return sup.book.update(job.name, status=JobStatus.RESTARTING, site=last.dst_site,
                                   store_url=last.dst_url)  # fmt: skip
        if last is not None and last.status is TransferStatus.STARTED:
            notice("job %s: resuming the interrupted move %s → %s", job.name, last.src_site,
                   last.dst_site)  # fmt: skip
            return sup.outcomes.move(job, last.leg, last.src_site, last.dst_site)
        return sup.book.update(job.name, status=JobStatus.RESTARTING)
