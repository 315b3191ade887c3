"""A leg's life under the supervisor: start its worker at the job's site, watch it to its end
(forwarding a stop or a cancel, showing progress), and ask the executor how it ended.

When the worker says it is moving (its status names ``moving_to``), the next leg's worker is
started at the destination at once, as a standby (:mod:`caftm.jobs.standby`): the next
:meth:`LegRunner.start` there lets it go instead of starting a fresh one; anything else
abandons it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from caftm._notice import notice
from caftm.clock import CLOCK_ENV, AcceleratedClock
from caftm.errors import ExecutorError, LedgerError
from caftm.jobs import protocol
from caftm.jobs.cancel import close_cancelled
from caftm.jobs.executors import LegLaunch, WorkerHandle
from caftm.jobs.executors.base import LOG_FILE, OUTCOME_FILE, STATUS_FILE
from caftm.jobs.protocol import Outcome, StopRequest
from caftm.jobs.standby import Standbys
from caftm.jobs.view import JobView
from caftm.ledger.jobs import JobRecord, JobStatus, LegStatus
from caftm.ledger.spool import SPOOL_FILE, import_spool

if TYPE_CHECKING:
    from pathlib import Path

    from caftm.jobs.supervisor import Supervisor

__all__ = ["LegEnd", "LegRunner"]

log = logging.getLogger(__name__)

#: seconds between two polls of a running worker
POLL_S = 0.05
#: seconds between two reads of the ledger (cancel requested?) while a worker runs or a job waits
CANCEL_POLL_S = 0.25
#: seconds between two imports of a running leg's spool (a worker that cannot reach the ledger)
SPOOL_IMPORT_S = 5.0
#: the least time between two writes of a running job's step to the ledger (s)
STEP_WRITE_S = 2.0
#: seconds between two reads of a running worker's status (is it moving?)
MOVE_POLL_S = 0.1


@dataclass
class LegEnd:
    """How a leg ended: what its worker said (None: nothing), its exit code, and its last
    live status (empty: none)."""

    request: StopRequest | None
    exit_code: int
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def reached(self) -> int | None:
        """The last step the worker reported (its outcome's, else its status's); None: none."""
        if self.request is not None:
            return self.request.step
        return _step(self.status.get("step"))


class LegRunner:
    """Starts and watches the legs of one supervisor's job.

    What the worker reports in its live status is recorded as it comes (:meth:`report`): the
    step it restored (the leg's ``start_step``), the step it reached (the job's ``step``), and
    its fate lines, printed on the supervisor's terminal whatever the executor.
    """

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        #: fate lines of each leg printed so far
        self._shown: dict[int, int] = {}
        #: the step each leg's worker said it restored, as recorded
        self._restored: dict[int, int] = {}
        self._step_written_at = -math.inf
        #: the next leg's worker, started at a move's destination before the move is done
        self.standbys = Standbys(supervisor, self.launch)

    def start(self, job: JobRecord) -> JobRecord:
        """Start the next leg at the job's site and follow it to its end (see the outcomes);
        a standby waiting there for this leg is let go instead."""
        sup = self.sup
        spec = sup.spec
        leg = job.leg + 1
        site = job.site
        standby = self.standbys.take()
        if standby is not None and (standby.leg, standby.site) != (leg, site):
            standby.abandon(sup.executor, f"leg {leg} starts at {site}")
            standby = None
        try:
            sup.executor.check_site(site)
        except ExecutorError as e:
            if standby is not None:
                standby.abandon(sup.executor, str(e))
            return sup.outcomes.fail_over(job, site, e)
        store_url = spec.store_url(site)
        sup.hold_clock()  # a worker starting up takes its wall time on the job's clock
        start_step = sup.latest_step(store_url)
        handle = standby.running(sup.executor) if standby is not None else None
        launch = self.launch(job.name, leg, site) if handle is None else None
        sup.book.start_leg(job.name, leg, site=site, executor=sup.executor.name,
                           start_step=start_step)  # fmt: skip
        job = sup.book.update(
            job.name, leg=leg, status=JobStatus.RUNNING, store_url=store_url, pause_until=None
        )
        if standby is not None and handle is not None:
            # recorded first: the worker finds its leg in the ledger; it takes the job's clock
            # as it stands now (the one it started with was read before the source's last steps)
            standby.go(self._clock_env())
        else:
            assert launch is not None
            try:
                handle = sup.executor.start(launch)
            except ExecutorError as e:
                sup.outcomes.end_leg(job.name, leg, LegStatus.CRASHED, message=str(e))
                return sup.outcomes.fail(job, str(e))
        sup.book.update_leg(
            job.name, leg, pid=handle.pid, host=handle.host, external_id=handle.external_id,
            node=handle.node,
        )  # fmt: skip
        log.info("job %s: leg %d started at %s (%s)", job.name, leg, site, handle.external_id)
        return self.finish(job, leg, site, handle)

    def launch(self, name: str, leg: int, site: str, extra_env: dict[str, str] | None = None
               ) -> LegLaunch:  # fmt: skip
        """What starts leg ``leg`` at ``site`` (its folder made, old outcome and status gone)."""
        spec = self.sup.spec
        files = self.sup.leg_dir(leg)
        files.mkdir(parents=True, exist_ok=True)
        self.sup.executor.prepare(self.sup.leg_ref(leg, site))
        env = self.worker_env(leg, site, spec.store_url(site), files)
        env.update(extra_env or {})
        return LegLaunch(name, leg, site, spec.job.command, env, spec.cwd, files / LOG_FILE,
                         spec.job.grace_s)  # fmt: skip

    def abandon_standby(self, why: str) -> None:
        """Stop a standby worker, if one waits (the move it waited for will not happen)."""
        self.standbys.abandon(why)

    def finish(self, job: JobRecord, leg: int, site: str, handle: WorkerHandle) -> JobRecord:
        """Watch a started (or adopted) leg to its end and act on how it ended."""
        sup = self.sup
        code = self.watch(job, leg, site, handle)
        self.import_spool(leg)  # before the leg's runs are closed
        end = self.end(job.name, leg, site, code)
        if end.request is None or end.request.outcome is not Outcome.MOVED or sup.cancelled:
            self.abandon_standby(f"leg {leg} did not move")
        if sup.cancelled:
            return close_cancelled(sup.book, job, (leg, end))
        request = end.request
        if sup.stopped_by is not None and (request is None or request.outcome is Outcome.PREEMPTED):
            return self.stopped(job, leg, end)
        return sup.outcomes.act(sup.book.get(job.name), leg, site, end)

    def stopped(self, job: JobRecord, leg: int, end: LegEnd) -> JobRecord:
        """The leg this supervisor stopped when it was asked to stop (Ctrl-C, SIGTERM): a
        preemption once the worker checkpointed; an interruption when it had not said anything
        yet (stopped while it started), never a crash."""
        sup = self.sup
        why = f"stopped with the supervisor ({sup.stopped_by})"
        if end.request is None:
            sup.outcomes.end_leg(job.name, leg, LegStatus.INTERRUPTED, exit_code=end.exit_code,
                                 end_step=end.reached,
                                 message=f"{why} before it said anything")  # fmt: skip
            return sup.book.update(job.name, status=JobStatus.RESTARTING)
        sup.outcomes.end_leg(job.name, leg, LegStatus.PREEMPTED, exit_code=end.exit_code,
                             end_step=end.request.step, message=why)  # fmt: skip
        return sup.book.update(job.name, status=JobStatus.RESTARTING, step=end.request.step)

    def watch(self, job: JobRecord, leg: int, site: str, handle: WorkerHandle) -> int:
        """Wait for the worker to end; forward a stop or a cancel; report progress."""
        sup = self.sup
        ref = sup.leg_ref(leg, site)
        next_cancel_check = next_move_check = 0.0
        next_import = sup.monotonic() + SPOOL_IMPORT_S
        stop_sent_at: float | None = None
        standby_wanted = sup.executor.takes_standby and sup.spec.job.standby_workers
        while True:
            code = sup.executor.poll(handle)
            if code is not None:
                return code
            now = sup.monotonic()
            if standby_wanted and not self.standbys.waiting and now >= next_move_check:
                next_move_check = now + MOVE_POLL_S
                standby_wanted = not self.standbys.start_if_moving(job.name, leg, site)
            if sup.stopped_by is not None and stop_sent_at is None:
                notice("job %s: %s received; the worker checkpoints and stops", job.name,
                       sup.stopped_by)  # fmt: skip
                sup.executor.signal(handle, signal.SIGTERM)
                stop_sent_at = now
            if now >= next_cancel_check:  # one ledger read serves the cancel check and the view
                next_cancel_check = now + CANCEL_POLL_S
                sup.lease.check()  # another supervisor took the job: leave its worker alone
                stored = sup.book.get(job.name)
                status = sup.executor.status(ref)
                sup.follow_worker_clock(status)  # the worker knows when it trains
                self.report(stored, leg, status)
                if sup.on_update is not None:
                    sup.on_update(JobView(stored, status, sup.clock()))
                if not sup.cancelled and stored.cancel_requested:
                    sup.cancelled = True
                    notice("job %s: cancelling; the worker checkpoints first", job.name)
                    sup.executor.signal(handle, signal.SIGTERM)
                    stop_sent_at = now
            if now >= next_import:
                next_import = now + SPOOL_IMPORT_S
                self.import_spool(leg)
            if stop_sent_at is not None and now - stop_sent_at > sup.spec.job.grace_s:
                sup.executor.signal(handle, signal.SIGKILL)
                stop_sent_at = math.inf
            sup.sleep(POLL_S)

    def import_spool(self, leg: int) -> int:
        """Bring what the leg's worker spooled (it could not reach the ledger) into the ledger,
        each record once however often this runs; returns how many were new (a failing
        import is logged and tried again later)."""
        path = self.sup.leg_dir(leg) / SPOOL_FILE
        if not path.exists():
            return 0
        try:
            new = import_spool(self.sup.ledger, path)
        except LedgerError as e:
            log.warning("job %s: leg %d's spool not imported yet: %s", self.sup.spec.name, leg, e)
            return 0
        if new:
            log.info("job %s: %d records of leg %d imported from its spool", self.sup.spec.name,
                     new, leg)  # fmt: skip
        return new

    def end(self, job: str, leg: int, site: str, exit_code: int) -> LegEnd:
        """How the leg ended, as its executor tells (an unreadable outcome counts as none);
        the worker's last report is recorded (:meth:`report`)."""
        ref = self.sup.leg_ref(leg, site)
        try:
            request = self.sup.executor.outcome(ref)
        except ExecutorError as e:
            notice("%s; counting the leg as crashed", e, warning=True)
            request = None
        status = self.sup.executor.status(ref)
        self.report(self.sup.book.get(job), leg, status, final=True)
        # the job's clock as the worker left it (held since its last checkpoint), then held
        # through whatever comes next (a transfer, a restart), until a worker trains again
        self.sup.follow_worker_clock(status)
        self.sup.hold_clock()
        return LegEnd(request, exit_code, status)

    def report(
        self, job: JobRecord, leg: int, status: dict[str, Any], *, final: bool = False
    ) -> None:
        """Record what the worker of ``leg`` reports: print its new fate lines, correct the
        leg's ``start_step`` to the step it restored, and keep the job's ``step`` (at most
        every :data:`STEP_WRITE_S` while it runs)."""
        sup = self.sup
        lines = status.get("notices")
        if isinstance(lines, list):
            for line in lines[self._shown.get(leg, 0) :]:
                notice("job %s, leg %d at %s: %s", job.name, leg, status.get("site", job.site),
                       line, warning=True)  # fmt: skip
            self._shown[leg] = max(len(lines), self._shown.get(leg, 0))
        restored = _step(status.get("start_step"))
        if restored is not None and self._restored.get(leg) != restored:
            sup.book.update_leg(job.name, leg, start_step=restored)
            self._restored[leg] = restored
        reached = _step(status.get("step"))
        now = sup.monotonic()
        due = final or now - self._step_written_at >= STEP_WRITE_S
        if reached is not None and reached != job.step and due and not job.status.finished:
            self._step_written_at = now
            sup.book.update(job.name, step=reached)

    def worker_env(self, leg: int, site: str, store_url: str, files: Path) -> dict[str, str]:
        """The worker's whole environment (the worker protocol's variables set)."""
        sup = self.sup
        env = dict(os.environ)
        env.update(sup.spec.job.env)
        for name in (protocol.ENV_JOB_DIGEST, protocol.ENV_ADOPT_CHECKPOINTS_OF,
                     protocol.ENV_STANDBY_FILE, protocol.ENV_STANDBY_TOKEN,
                     protocol.ENV_SITE_STORES):  # fmt: skip
            env.pop(name, None)  # a parent supervisor's job is not this one
        env.update(sup.spec.identity.to_env())
        env.update(
            {
                protocol.ENV_LEG: str(leg),
                protocol.ENV_SITE: site,
                protocol.ENV_CHECKPOINT_URL: store_url,
                protocol.ENV_LEDGER: str(sup.spec.ledger_path),
                protocol.ENV_OUTCOME_FILE: str(files / OUTCOME_FILE),
                protocol.ENV_STATUS_FILE: str(files / STATUS_FILE),
                protocol.ENV_GRACE_S: repr(sup.spec.job.grace_s),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if sup.spec.job.direct_moves and sup.spec.job.bandwidth_mb_per_s is None:
            # a moving worker writes its last checkpoint straight into the destination's store
            # (not with an emulated link: the supervisor's transfer paces that)
            sites = sup.spec.controller.site_zones()
            env[protocol.ENV_SITE_STORES] = json.dumps({s: sup.spec.store_url(s) for s in sites})
        env.pop(protocol.ENV_EXCLUDE_SITES, None)
        excluded = sorted(sup.excluded - {site})
        if excluded:
            env[protocol.ENV_EXCLUDE_SITES] = ",".join(excluded)
        clock = self._clock_env()
        if clock is not None:
            env[CLOCK_ENV] = clock
        else:
            env.pop(CLOCK_ENV, None)
        return env

    def _clock_env(self) -> str | None:
        """The job's accelerated clock as it stands now (``CAFTM_CLOCK``); None: real time."""
        clock = self.sup.clock
        return clock.to_env() if isinstance(clock, AcceleratedClock) else None


def _step(value: object) -> int | None:
    """A step number a worker reported (None: none, or not a step)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
