"""How the supervisor acts on how a leg ended: the outcome table.

=============  ========================================================================
a leg ends     the supervisor
=============  ========================================================================
completed      marks the job SUCCEEDED (running it again trains nothing); a worker that
               says nothing and exits with 0 counts as completed
moved          transfers the newest complete checkpoint to the destination's store
               (verified there; nothing to copy when the worker wrote it there itself),
               then starts the next leg at the destination (letting its standby worker go);
               when the destination cannot take it, stays at the source (that site
               excluded, the standby stopped) and says why
paused         waits until the worker's ``until_s``, re-checking the site's intensity
               while no worker runs (absolute θ: resumes early once it is clean), and
               starts the next leg here
preempted      (SIGTERM/SIGINT, checkpoint written) starts the next leg here at once
crashed        (said nothing, exit code not 0) restarts from the last checkpoint after a
               backoff that doubles with each crash in a row (at most 5 min); fails after
               ``max_restarts`` consecutive crashes without progress
=============  ========================================================================

A site that cannot run a worker when a leg should start there is excluded and the job moves to
the next-best site (the cleanest now that can run one), as a move does.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from caftm._notice import notice
from caftm.clock import clock_speed
from caftm.control.states import utc_from_s
from caftm.errors import CaftmError, ExecutorError
from caftm.jobs.cancel import close_cancelled
from caftm.jobs.executors import EXIT_UNKNOWN
from caftm.jobs.executors.base import LOG_FILE
from caftm.jobs.legs import CANCEL_POLL_S, POLL_S, LegEnd
from caftm.jobs.protocol import Outcome, StopRequest
from caftm.jobs.view import JobView, format_time
from caftm.ledger.jobs import JobRecord, JobStatus, LegStatus, TransferRecord, TransferStatus

if TYPE_CHECKING:
    from caftm.jobs.supervisor import Supervisor

__all__ = ["OutcomeTable"]

#: the longest wait before restarting a crashed worker (s)
MAX_BACKOFF_S = 300.0
#: the job counter each kind of leg end adds one to
_COUNTED = {
    LegStatus.PAUSED: "pauses",
    LegStatus.PREEMPTED: "preemptions",
    LegStatus.CRASHED: "crashes",
}


class OutcomeTable:
    """Acts on each leg's end for one supervisor (see the module docstring)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    def act(self, job: JobRecord, leg: int, site: str, end: LegEnd) -> JobRecord:
        """Record how ``leg`` at ``site`` ended and do what the table says; returns the job."""
        sup = self.sup
        request = end.request
        if request is None and end.exit_code == 0:  # a script that does not speak the protocol
            step = end.reached if end.reached is not None else sup.latest_step(job.store_url)
            request = StopRequest(Outcome.COMPLETED, step or 0)
        if request is None:
            return self.crashed(job, leg, site, end)
        fields: dict[str, object] = {"exit_code": end.exit_code, "end_step": request.step}
        outcome = request.outcome
        if outcome is Outcome.COMPLETED:
            self.end_leg(job.name, leg, LegStatus.COMPLETED, **fields)
            message = f"completed {request.step} steps at {site}"
            notice("job %s %s", job.name, message)
            return sup.book.update(
                job.name, status=JobStatus.SUCCEEDED, step=request.step, message=message,
                ended_at=datetime.now(UTC),
            )  # fmt: skip
        if outcome is Outcome.MOVED and request.dest is not None:
            self.end_leg(job.name, leg, LegStatus.MOVED, **fields)
            job = sup.book.update(job.name, status=JobStatus.MOVING, step=request.step)
            return self.move(job, leg, site, request.dest)
        if outcome is Outcome.PAUSED:
            self.end_leg(job.name, leg, LegStatus.PAUSED, **fields)
            until_s = request.until_s if request.until_s is not None else sup.clock()
            notice("job %s paused at %s after step %d until %s at the latest", job.name, site,
                   request.step, format_time(until_s))  # fmt: skip
            return sup.book.update(
                job.name, status=JobStatus.PAUSED, step=request.step,
                pause_until=utc_from_s(until_s), message=f"paused at {site}",
            )  # fmt: skip
        # preempted (or a stop this supervisor did not ask for): restart here
        self.end_leg(job.name, leg, LegStatus.PREEMPTED, **fields)
        notice("job %s was preempted at %s after step %d (checkpoint written); restarting",
               job.name, site, request.step)  # fmt: skip
        return sup.book.update(job.name, status=JobStatus.RESTARTING, step=request.step)

    def end_leg(self, job: str, leg: int, status: LegStatus, **fields: object) -> None:
        """Close the leg and count it in the job's counter of its kind (pauses, preemptions,
        crashes), so the counters and the legs never disagree. (Moves are counted when the
        checkpoint arrived: a move can fail.)"""
        self.sup.book.end_leg(job, leg, status, **fields)
        counter = _COUNTED.get(status)
        if counter is not None:
            self.sup.book.count(job, counter)

    # -- crashed -----------------------------------------------------------------------------------
    def crashed(self, job: JobRecord, leg: int, site: str, end: LegEnd) -> JobRecord:
        """Restart after a backoff, or fail after too many crashes without progress (a newer
        checkpoint to restart from than the one the leg restored)."""
        sup = self.sup
        exit_code = end.exit_code
        saved = sup.latest_step(sup.spec.store_url(site))
        cause = _describe_exit(exit_code)
        log_path = sup.leg_dir(leg) / LOG_FILE
        last = _last_line(log_path)
        message = f"{cause}: {last}" if last else cause
        self.end_leg(job.name, leg, LegStatus.CRASHED, exit_code=exit_code,
                     end_step=end.reached, message=message)  # fmt: skip
        job = sup.book.get(job.name)
        streak = self.crash_streak(job.name, saved)
        if streak > sup.spec.job.max_restarts:
            detail = f"; last output: {last}" if last else ""
            return self.fail(
                job,
                f"the worker {cause} {streak} times in a row without progress{detail} "
                f"(log: {log_path})",
            )
        wait_s = min(sup.spec.job.backoff_s * 2 ** (streak - 1), MAX_BACKOFF_S)
        notice("job %s: the worker %s at %s; restarting from the last checkpoint in %.0f s",
               job.name, cause, site, wait_s)  # fmt: skip
        job = sup.book.update(job.name, status=JobStatus.RESTARTING)
        sup.sleep(wait_s)
        return job

    def crash_streak(self, name: str, saved: int | None) -> int:
        """Crashes at the end of the job's legs, counting back to the last leg that progressed:
        one after which there was a newer checkpoint to restart from than the one it restored
        (``saved``: the newest one now)."""
        streak = 0
        after = saved  # what the start after each leg restores
        for leg in reversed(self.sup.book.legs(name)):
            if leg.leg <= self.sup.leg_floor or leg.status is not LegStatus.CRASHED:
                break
            streak += 1
            if after is not None and after > (leg.start_step or 0):
                break
            after = leg.start_step
        return max(streak, 1)

    # -- moved -------------------------------------------------------------------------------------
    def move(self, job: JobRecord, leg: int, src: str, dest: str) -> JobRecord:
        """Transfer the newest checkpoint from ``src`` to ``dest`` and set the job there; when
        ``dest`` cannot take it, stay at ``src`` with ``dest`` excluded."""
        from caftm.checkpoint.transfer import transfer_latest, written_at_destination

        sup = self.sup
        spec = sup.spec
        src_url, dst_url = spec.store_url(src), spec.store_url(dest)
        started = time.perf_counter()
        record = TransferRecord(job.name, leg, datetime.now(UTC), src, dest, src_url, dst_url,
                                job.step, None, None, TransferStatus.STARTED, "")  # fmt: skip
        transfer_id = sup.book.record_transfer(record)
        bandwidth = spec.job.bandwidth_mb_per_s
        try:
            sup.executor.check_site(dest)
            # the worker may have written this step straight into the destination's store
            result = written_at_destination(dst_url, job.step) or transfer_latest(
                src_url,
                dst_url,
                bandwidth_bytes_per_s=None if bandwidth is None else bandwidth * 1e6,
                prune_source=spec.job.prune_after_move,
            )
        except CaftmError as e:
            seconds = time.perf_counter() - started
            sup.book.finish_transfer(transfer_id, status=TransferStatus.FAILED, message=str(e),
                                     seconds=seconds)  # fmt: skip
            sup.legs.abandon_standby(f"the move to {dest} failed")
            sup.excluded.add(dest)
            notice("job %s cannot move to %s (%s); staying at %s, %s excluded", job.name, dest,
                   e, src, dest, warning=True)  # fmt: skip
            return sup.book.update(job.name, status=JobStatus.RESTARTING,
                                   message=f"move to {dest} failed: {e}")  # fmt: skip
        seconds = time.perf_counter() - started
        size = 0 if result is None else result.bytes
        step = None if result is None else result.step
        direct = result is not None and result.written_by_worker
        sup.book.finish_transfer(transfer_id, status=TransferStatus.DONE, size_bytes=size,
                                 seconds=seconds, step=step,
                                 message="written by the worker" if direct else "")  # fmt: skip
        sup.book.count(job.name, "moves")
        how = "written there by the worker" if direct else f"{size / 1e6:.1f} MB in {seconds:.1f} s"
        notice("job %s moved %s → %s with the checkpoint of step %s (%s)",
               job.name, src, dest, "—" if step is None else step, how)  # fmt: skip
        return sup.book.update(job.name, status=JobStatus.RESTARTING, site=dest,
                               store_url=dst_url, message=f"moved {src} → {dest}")  # fmt: skip

    def fail_over(self, job: JobRecord, site: str, error: ExecutorError) -> JobRecord:
        """The job's site cannot run a worker: exclude it and move to the next-best site."""
        self.sup.excluded.add(site)
        dest = self.next_best_site()
        if dest is None:
            return self.fail(job, f"cannot start at {site}: {error}; no other site can run it")
        notice("job %s: skipping %s (%s); moving to %s, the next-best site", job.name, site,
               error, dest, warning=True)  # fmt: skip
        return self.move(job, job.leg, site, dest)

    def next_best_site(self) -> str | None:
        """The cleanest site now (in the config's order on ties or without readings) that is
        not excluded and can run a worker; sites that cannot are excluded on the way."""
        sup = self.sup
        sites = [s for s in sup.spec.controller.site_zones() if s not in sup.excluded]
        for site in sorted(sites, key=lambda s: (sup._intensity_now(s), sites.index(s))):
            try:
                sup.executor.check_site(site)
            except ExecutorError as e:
                sup.excluded.add(site)
                notice("job %s: skipping %s too (%s)", sup.spec.name, site, e, warning=True)
                continue
            return site
        return None

    # -- paused ------------------------------------------------------------------------------------
    def wait_pause(self, job: JobRecord) -> JobRecord:
        """Wait until the pause ends, the grid is clean again, or the job is cancelled."""
        sup = self.sup
        sup.run_clock()  # waiting is grid time; held again when a worker starts
        try:
            return self._wait_pause(job)
        finally:
            sup.hold_clock()

    def _wait_pause(self, job: JobRecord) -> JobRecord:
        sup = self.sup
        until = job.pause_until.timestamp() if job.pause_until is not None else sup.clock()
        recheck_s = sup.spec.controller.migration.pause_recheck_s
        next_check = sup.clock() + recheck_s
        while sup.clock() < until:
            sup.lease.check()
            if sup.stopped_by is not None:
                return job
            if sup.book.get(job.name).cancel_requested:
                return close_cancelled(sup.book, job, None)
            if sup.clock() >= next_check:
                next_check = sup.clock() + recheck_s
                if self.clean_now(job.site):
                    notice("job %s: %s is clean again; resuming early", job.name, job.site)
                    break
            if sup.on_update is not None:
                sup.on_update(JobView(sup.book.get(job.name), {}, sup.clock()))
            sup.sleep(
                min(CANCEL_POLL_S, max(0.0, until - sup.clock()) / clock_speed(sup.clock)) or POLL_S
            )
        return sup.book.update(job.name, status=JobStatus.RESTARTING, pause_until=None)

    def clean_now(self, site: str) -> bool:
        """Whether ``site``'s intensity is below θ's resume level now (absolute θ only)."""
        config = self.sup.spec.controller
        if config.threshold.mode.value != "absolute":
            return False
        intensity = self.sup._intensity_now(site, doing="re-check %s during a pause")
        resume_below = config.threshold.value_g_per_kwh * (1 - config.threshold.hysteresis_fraction)
        return bool(intensity <= resume_below)

    # -- the end -----------------------------------------------------------------------------------
    def fail(self, job: JobRecord, message: str) -> JobRecord:
        """Record the job failed, with one line saying why."""
        notice("job %s failed: %s", job.name, message, warning=True)
        return self.sup.book.update(job.name, status=JobStatus.FAILED, message=message,
                                    ended_at=datetime.now(UTC))  # fmt: skip


def _describe_exit(code: int) -> str:
    if code == EXIT_UNKNOWN:
        return "died while no supervisor watched it"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def _last_line(path: Path) -> str:
    """The last non-empty line of a log (for one-line error messages)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.strip():
            return line.strip()[:300]
    return ""
