"""The job supervisor: runs a job's legs until it completes, acting on how each leg ends.

=============  ========================================================================
a leg ends     the supervisor
=============  ========================================================================
completed      marks the job SUCCEEDED (running it again trains nothing)
moved          transfers the newest complete checkpoint to the destination's store
               (verified there), then starts the next leg at the destination; when the
               destination cannot take it, stays at the source (that site excluded) and says why
paused         waits until the worker's ``until_s``, re-checking the site's intensity
               while no worker runs, and starts the next leg here
preempted      (SIGTERM/SIGINT, checkpoint written) starts the next leg here at once
crashed        restarts from the last checkpoint after a backoff; fails after
               ``max_restarts`` consecutive crashes without progress
=============  ========================================================================

Everything the supervisor knows lives in the ledger (:class:`~caftm.ledger.jobs.JobBook`), so a
supervisor killed with ``kill -9`` and started again picks the job up where it was: a worker
still running is adopted, a dead one's leg is marked interrupted (its outcome file, if it wrote
one, still counts).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from caftm._notice import notice
from caftm.clock import CLOCK_ENV, AcceleratedClock, clock_speed
from caftm.control.states import utc_from_s
from caftm.errors import CaftmError, ExecutorError
from caftm.jobs import protocol
from caftm.jobs.executors import EXIT_UNKNOWN, Executor, LegLaunch, WorkerHandle, get_executor
from caftm.jobs.protocol import Outcome, StopRequest
from caftm.jobs.spec import JobSpec
from caftm.ledger.jobs import JobBook, JobRecord, JobStatus, LegStatus, TransferRecord
from caftm.ledger.store import Ledger, pid_alive

__all__ = ["JobView", "Supervisor", "cancel_job", "format_time"]

log = logging.getLogger(__name__)

_POLL_S = 0.05
_CANCEL_POLL_S = 0.25
_MAX_BACKOFF_S = 300.0


def format_time(time_s: float) -> str:
    """A POSIX time as readable UTC text (never a raw epoch number in output)."""
    return utc_from_s(time_s).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class JobView:
    """What a display shows: the job as stored and its worker's live status."""

    job: JobRecord
    status: dict[str, Any] = field(default_factory=dict)
    now_s: float = 0.0


@dataclass
class _LegEnd:
    request: StopRequest | None
    exit_code: int


class Supervisor:
    """Runs one job to its end (see the module docstring).

    Args:
        spec: the job.
        executor: where legs run (default: the one ``spec.job.executor`` names).
        ledger: the ledger (default: ``spec.ledger_path``).
        on_update: called with a :class:`JobView` while a leg runs (a progress display).
        sleep: wall-clock sleep (s), injectable for tests.
    """

    def __init__(
        self,
        spec: JobSpec,
        *,
        executor: Executor | None = None,
        ledger: Ledger | None = None,
        on_update: Callable[[JobView], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        self.executor = executor or get_executor(spec.job.executor, spec.job)
        self._own_ledger = ledger is None
        self.ledger = ledger or Ledger(spec.ledger_path)
        self.book = JobBook(self.ledger)
        self.on_update = on_update
        self._sleep = sleep
        self._excluded: set[str] = set()
        self._leg_floor = 0
        self._clock: Callable[[], float] = time.time
        self._cancelled = False
        #: the signal that asked this supervisor to stop (the job resumes at the next run)
        self.stopped_by: str | None = None
        self._source: Any = None
        # imported now (it imports torch, seconds): a move should not wait for it
        import caftm.jobs.transfer  # noqa: F401

    # -- the whole job -----------------------------------------------------------------------------
    def run(self) -> JobRecord:
        """Run the job until it succeeds, fails or is cancelled; returns it as stored.

        Raises:
            ExecutorError: another live supervisor runs this job.
        """
        job = self._claim()
        previous = self._take_signals()
        try:
            if job.status is JobStatus.SUCCEEDED:
                notice("job %s completed already (%s); nothing to train", job.name, job.message)
                return job
            job = self._recover(job)
            while not job.status.finished and self.stopped_by is None:
                job = self._next(job)
            if self.stopped_by is not None and not job.status.finished:
                paused = job.status is JobStatus.PAUSED  # a rerun waits out the same pause
                notice("job %s stopped by %s; `caftm run` again resumes it", job.name,
                       self.stopped_by)  # fmt: skip
                job = self.book.update(
                    job.name, status=JobStatus.PAUSED if paused else JobStatus.RESTARTING,
                    message=f"supervisor stopped by {self.stopped_by}",
                )  # fmt: skip
            return job
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._release()

    def _take_signals(self) -> dict[int, Any]:
        """SIGINT/SIGTERM stop the supervisor after its worker checkpointed (main thread only)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, _frame: object) -> None:
            if self.stopped_by is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stopped_by = signal.Signals(signum).name

        return {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def close(self) -> None:
        """Close the ledger when this supervisor opened it."""
        self.executor.close()
        if self._own_ledger:
            self.ledger.close()

    # -- claiming and recovering -------------------------------------------------------------------
    def _claim(self) -> JobRecord:
        spec = self.spec
        job = self.book.find(spec.name)
        if job is None:
            clock = self._make_clock()
            site = spec.controller.start_site
            description = spec.to_dict()
            description["clock"] = clock.to_env() if isinstance(clock, AcceleratedClock) else None
            job = self.book.create(
                spec.name,
                site=site,
                store_url=spec.store_url(site),
                executor=self.executor.name,
                spec=description,
            )
        else:
            clock_text = job.spec.get("clock")
            self._clock = AcceleratedClock.from_env(clock_text) if clock_text else time.time
            owner = job.supervisor_pid
            if (
                owner is not None
                and owner != os.getpid()
                and job.supervisor_host == socket.gethostname()
                and pid_alive(owner)
                and not job.status.finished
            ):
                raise ExecutorError(
                    f"job {job.name} is supervised by process {owner} already; "
                    f"stop it with `caftm cancel {job.name}`"
                )
        self._leg_floor = job.leg  # crashes before this run do not count against it
        if job.status is not JobStatus.SUCCEEDED:
            if job.status.finished:
                notice("resuming job %s (it had %s: %s)", job.name, job.status.value, job.message)
            job = self.book.update(
                job.name,
                supervisor_pid=os.getpid(),
                supervisor_host=socket.gethostname(),
                cancel_requested=False,
                status=JobStatus.RESTARTING if job.status.finished else job.status,
                ended_at=None,
            )
        return job

    def _make_clock(self) -> Callable[[], float]:
        speed = self.spec.job.clock_speed
        if speed is None:
            self._clock = time.time
        else:
            start = self.spec.job.clock_start
            origin_s = start.timestamp() if start is not None else time.time()
            self._clock = AcceleratedClock.starting_at(origin_s, speed)
        return self._clock

    def _release(self) -> None:
        try:
            job = self.book.find(self.spec.name)
            if job is not None and job.supervisor_pid == os.getpid():
                self.book.update(job.name, supervisor_pid=None)
        except CaftmError:
            log.exception("could not release job %s", self.spec.name)

    def _recover(self, job: JobRecord) -> JobRecord:
        """Settle the legs an earlier supervisor left running (adopt, or mark interrupted)."""
        for leg in self.book.legs(job.name):
            if leg.status is not LegStatus.RUNNING:
                continue
            handle = self.executor.adopt(leg)
            if handle is not None:
                notice("job %s: leg %d at %s still runs; watching it", job.name, leg.leg, leg.site)
                return self._finish_leg(job, leg.leg, leg.site, handle)
            end = self._leg_end(leg.leg, EXIT_UNKNOWN)
            if end.request is None:
                self.book.end_leg(
                    job.name, leg.leg, LegStatus.INTERRUPTED, message="its process died unwatched"
                )
                notice(
                    "job %s: leg %d at %s was interrupted; restarting from its last checkpoint",
                    job.name,
                    leg.leg,
                    leg.site,
                )
                job = self.book.update(job.name, status=JobStatus.RESTARTING)
            else:
                job = self._act(job, leg.leg, leg.site, end)
        if job.status is JobStatus.MOVING:  # the supervisor died during a move: finish it
            transfers = self.book.transfers(job.name)
            last = transfers[-1] if transfers else None
            if last is not None and last.status == "done" and last.dst_site != job.site:
                job = self.book.update(job.name, status=JobStatus.RESTARTING, site=last.dst_site,
                                       store_url=last.dst_url)  # fmt: skip
            elif last is not None and last.status == "started":
                notice("job %s: resuming the interrupted move %s → %s", job.name, last.src_site,
                       last.dst_site)  # fmt: skip
                job = self._move(job, last.leg, last.src_site, last.dst_site)
            else:
                job = self.book.update(job.name, status=JobStatus.RESTARTING)
        return job

    # -- one step of the job's life ----------------------------------------------------------------
    def _next(self, job: JobRecord) -> JobRecord:
        if job.cancel_requested:
            return self._cancel(job, None)
        if job.status is JobStatus.PAUSED:
            job = self._wait_pause(job)
            if job.status.finished:
                return job
        return self._start_leg(job)

    def _start_leg(self, job: JobRecord) -> JobRecord:
        spec = self.spec
        leg = job.leg + 1
        site = job.site
        try:
            self.executor.check_site(site)
        except ExecutorError as e:
            return self._fail_over(job, site, e)
        files = self._leg_dir(leg)
        files.mkdir(parents=True, exist_ok=True)
        for name in ("outcome.json", "status.json"):
            (files / name).unlink(missing_ok=True)
        store_url = spec.store_url(site)
        launch = LegLaunch(
            job.name,
            leg,
            site,
            spec.job.command,
            self._worker_env(leg, site, store_url, files),
            spec.cwd,
            files / "worker.log",
            spec.job.grace_s,
        )
        start_step = self._latest_step(store_url)
        self.book.start_leg(job.name, leg, site=site, executor=self.executor.name,
                            start_step=start_step)  # fmt: skip
        job = self.book.update(
            job.name, leg=leg, status=JobStatus.RUNNING, store_url=store_url, pause_until=None
        )
        try:
            handle = self.executor.start(launch)
        except ExecutorError as e:
            self.book.end_leg(job.name, leg, LegStatus.CRASHED, message=str(e))
            return self._fail(job, str(e))
        self.book.update_leg(
            job.name, leg, pid=handle.pid, host=handle.host, external_id=handle.external_id,
            node=handle.node,
        )  # fmt: skip
        log.info("job %s: leg %d started at %s (%s)", job.name, leg, site, handle.external_id)
        return self._finish_leg(job, leg, site, handle)

    def _finish_leg(self, job: JobRecord, leg: int, site: str, handle: WorkerHandle) -> JobRecord:
        code = self._watch(job, leg, handle)
        end = self._leg_end(leg, code)
        if self._cancelled:
            return self._cancel(job, (leg, end))
        request = end.request
        if self.stopped_by is not None and request is not None and (
            request.outcome is Outcome.PREEMPTED
        ):
            why = f"stopped with the supervisor ({self.stopped_by})"
            self.book.end_leg(job.name, leg, LegStatus.PREEMPTED, exit_code=end.exit_code,
                              end_step=request.step, message=why)  # fmt: skip
            return self.book.update(job.name, status=JobStatus.RESTARTING, step=request.step)
        return self._act(self.book.get(job.name), leg, site, end)

    def _watch(self, job: JobRecord, leg: int, handle: WorkerHandle) -> int:
        """Wait for the worker to end; forward a cancel; report progress."""
        status_path = self._leg_dir(leg) / "status.json"
        next_cancel_check = 0.0
        stop_sent_at: float | None = None
        while True:
            code = self.executor.poll(handle)
            if code is not None:
                return code
            now = time.monotonic()
            if self.stopped_by is not None and stop_sent_at is None:
                notice("job %s: %s received; the worker checkpoints and stops", job.name,
                       self.stopped_by)  # fmt: skip
                self.executor.signal(handle, signal.SIGTERM)
                stop_sent_at = now
            if now >= next_cancel_check:  # one ledger read serves the cancel check and the view
                next_cancel_check = now + _CANCEL_POLL_S
                stored = self.book.get(job.name)
                if self.on_update is not None:
                    status = protocol.read_status(status_path) or {}
                    self.on_update(JobView(stored, status, self._clock()))
                if not self._cancelled and stored.cancel_requested:
                    self._cancelled = True
                    notice("job %s: cancelling; the worker checkpoints first", job.name)
                    self.executor.signal(handle, signal.SIGTERM)
                    stop_sent_at = now
            if stop_sent_at is not None and now - stop_sent_at > self.spec.job.grace_s:
                self.executor.signal(handle, signal.SIGKILL)
                stop_sent_at = math.inf
            self._sleep(_POLL_S)

    def _leg_end(self, leg: int, exit_code: int) -> _LegEnd:
        try:
            request = protocol.read_outcome(self._leg_dir(leg) / "outcome.json")
        except ExecutorError as e:
            notice("%s; counting the leg as crashed", e, warning=True)
            request = None
        return _LegEnd(request, exit_code)

    # -- acting on how a leg ended -----------------------------------------------------------------
    def _act(self, job: JobRecord, leg: int, site: str, end: _LegEnd) -> JobRecord:
        request = end.request
        if request is None and end.exit_code == 0:  # a script that does not speak the protocol
            request = StopRequest(Outcome.COMPLETED, self._latest_step(job.store_url) or 0)
        if request is None:
            return self._crashed(job, leg, site, end.exit_code)
        fields: dict[str, object] = {"exit_code": end.exit_code, "end_step": request.step}
        outcome = request.outcome
        if outcome is Outcome.COMPLETED:
            self.book.end_leg(job.name, leg, LegStatus.COMPLETED, **fields)
            message = f"completed {request.step} steps at {site}"
            notice("job %s %s", job.name, message)
            return self.book.update(
                job.name, status=JobStatus.SUCCEEDED, step=request.step, message=message,
                ended_at=datetime.now(UTC),
            )  # fmt: skip
        if outcome is Outcome.MOVED and request.dest is not None:
            self.book.end_leg(job.name, leg, LegStatus.MOVED, **fields)
            job = self.book.update(job.name, status=JobStatus.MOVING, step=request.step)
            return self._move(job, leg, site, request.dest)
        if outcome is Outcome.PAUSED:
            self.book.end_leg(job.name, leg, LegStatus.PAUSED, **fields)
            until_s = request.until_s if request.until_s is not None else self._clock()
            self.book.count(job.name, "pauses")
            notice("job %s paused at %s until %s at the latest (step %d)", job.name, site,
                   format_time(until_s), request.step)  # fmt: skip
            return self.book.update(
                job.name, status=JobStatus.PAUSED, step=request.step,
                pause_until=utc_from_s(until_s), message=f"paused at {site}",
            )  # fmt: skip
        # preempted (or a stop this supervisor did not ask for): restart here
        self.book.end_leg(job.name, leg, LegStatus.PREEMPTED, **fields)
        self.book.count(job.name, "preemptions")
        notice("job %s was preempted at %s after step %d (checkpoint written); restarting",
               job.name, site, request.step)  # fmt: skip
        return self.book.update(job.name, status=JobStatus.RESTARTING, step=request.step)

    def _crashed(self, job: JobRecord, leg: int, site: str, exit_code: int) -> JobRecord:
        record = self.book.get_leg(job.name, leg)
        end_step = self._latest_step(self.spec.store_url(site))
        progressed = end_step is not None and end_step > (record.start_step or 0)
        cause = _describe_exit(exit_code)
        last = _last_line(self._leg_dir(leg) / "worker.log")
        message = f"{cause}: {last}" if last else cause
        self.book.end_leg(job.name, leg, LegStatus.CRASHED, exit_code=exit_code,
                          end_step=end_step, message=message)  # fmt: skip
        job = self.book.count(job.name, "crashes")
        streak = 1 if progressed else self._crash_streak(job.name)
        if streak > self.spec.job.max_restarts:
            detail = f"; last output: {last}" if last else ""
            return self._fail(
                job,
                f"the worker {cause} {streak} times in a row without progress{detail} "
                f"(log: {self._leg_dir(leg) / 'worker.log'})",
            )
        wait_s = min(self.spec.job.backoff_s * 2 ** (streak - 1), _MAX_BACKOFF_S)
        notice("job %s: the worker %s at %s; restarting from the last checkpoint in %.0f s",
               job.name, cause, site, wait_s)  # fmt: skip
        job = self.book.update(job.name, status=JobStatus.RESTARTING)
        self._sleep(wait_s)
        return job

    def _crash_streak(self, name: str) -> int:
        """Crashes at the end of the job's legs, counting back to the last leg that progressed."""
        streak = 0
        for leg in reversed(self.book.legs(name)):
            if leg.leg <= self._leg_floor or leg.status is not LegStatus.CRASHED:
                break
            streak += 1
            if leg.end_step is not None and leg.end_step > (leg.start_step or 0):
                break
        return max(streak, 1)

    def _move(self, job: JobRecord, leg: int, src: str, dest: str) -> JobRecord:
        from caftm.jobs.transfer import transfer_latest

        spec = self.spec
        src_url, dst_url = spec.store_url(src), spec.store_url(dest)
        started = time.perf_counter()
        record = TransferRecord(job.name, leg, datetime.now(UTC), src, dest, src_url, dst_url,
                                job.step, None, None, "started", "")  # fmt: skip
        transfer_id = self.book.record_transfer(record)
        bandwidth = spec.job.bandwidth_mb_per_s
        try:
            self.executor.check_site(dest)
            result = transfer_latest(
                src_url,
                dst_url,
                bandwidth_bytes_per_s=None if bandwidth is None else bandwidth * 1e6,
                prune_source=spec.job.prune_after_move,
            )
        except CaftmError as e:
            seconds = time.perf_counter() - started
            self.book.finish_transfer(transfer_id, status="failed", message=str(e),
                                      seconds=seconds)  # fmt: skip
            self._excluded.add(dest)
            notice("job %s cannot move to %s (%s); staying at %s, %s excluded", job.name, dest,
                   e, src, dest, warning=True)  # fmt: skip
            return self.book.update(job.name, status=JobStatus.RESTARTING,
                                    message=f"move to {dest} failed: {e}")  # fmt: skip
        seconds = time.perf_counter() - started
        size = 0 if result is None else result.bytes
        step = None if result is None else result.step
        self.book.finish_transfer(transfer_id, status="done", size_bytes=size, seconds=seconds,
                                  step=step)  # fmt: skip
        self.book.count(job.name, "moves")
        notice("job %s moved %s → %s at step %s (%.1f MB in %.1f s)", job.name, src, dest,
               job.step, size / 1e6, seconds)  # fmt: skip
        return self.book.update(job.name, status=JobStatus.RESTARTING, site=dest,
                                store_url=dst_url, message=f"moved {src} → {dest}")  # fmt: skip

    def _wait_pause(self, job: JobRecord) -> JobRecord:
        """Wait until the pause ends, the grid is clean again, or the job is cancelled."""
        until = job.pause_until.timestamp() if job.pause_until is not None else self._clock()
        recheck_s = self.spec.controller.migration.pause_recheck_s
        next_check = self._clock() + recheck_s
        while self._clock() < until:
            if self.stopped_by is not None:
                return job
            if self.book.get(job.name).cancel_requested:
                return self._cancel(job, None)
            if self._clock() >= next_check:
                next_check = self._clock() + recheck_s
                if self._clean_now(job.site):
                    notice("job %s: %s is clean again; resuming early", job.name, job.site)
                    break
            if self.on_update is not None:
                self.on_update(JobView(self.book.get(job.name), {}, self._clock()))
            self._sleep(
                min(_CANCEL_POLL_S, max(0.0, until - self._clock()) / clock_speed(self._clock))
                or _POLL_S
            )
        return self.book.update(job.name, status=JobStatus.RESTARTING, pause_until=None)

    def _clean_now(self, site: str) -> bool:
        """Whether ``site``'s intensity is below θ's resume level now (absolute θ only)."""
        config = self.spec.controller
        if config.threshold.mode.value != "absolute":
            return False
        intensity = self._intensity_now(site, doing="re-check %s during a pause")
        resume_below = config.threshold.value_g_per_kwh * (1 - config.threshold.hysteresis_fraction)
        return bool(intensity <= resume_below)

    def _intensity_now(self, site: str, *, doing: str = "read the intensity of %s") -> float:
        """``site``'s intensity now (g/kWh); +inf where it cannot be read (logged)."""
        config = self.spec.controller
        try:
            if self._source is None:
                from caftm.signals.registry import configured_source

                signals = config.signals
                self._source = configured_source(signals.source, signals.trace_path)
            zone = config.site_zones()[site]
            reading = self._source.intensity(zone, utc_from_s(self._clock()))
        except CaftmError as e:
            log.warning("cannot " + doing + ": %s", site, e)
            return math.inf
        return float(reading.intensity_g_per_kwh)

    # -- a site that cannot run a worker now (e.g. no live Ray node) ------------------------------
    def _fail_over(self, job: JobRecord, site: str, error: ExecutorError) -> JobRecord:
        """The job's site cannot run a worker: exclude it and move to the next-best site."""
        self._excluded.add(site)
        dest = self._next_best_site()
        if dest is None:
            return self._fail(job, f"cannot start at {site}: {error}; no other site can run it")
        notice("job %s: skipping %s (%s); moving to %s, the next-best site", job.name, site,
               error, dest, warning=True)  # fmt: skip
        return self._move(job, job.leg, site, dest)

    def _next_best_site(self) -> str | None:
        """The cleanest site now (in the config's order on ties or without readings) that is
        not excluded and can run a worker; sites that cannot are excluded on the way."""
        sites = [s for s in self.spec.controller.site_zones() if s not in self._excluded]
        for site in sorted(sites, key=lambda s: (self._intensity_now(s), sites.index(s))):
            try:
                self.executor.check_site(site)
            except ExecutorError as e:
                self._excluded.add(site)
                notice("job %s: skipping %s too (%s)", self.spec.name, site, e, warning=True)
                continue
            return site
        return None

    # -- endings -----------------------------------------------------------------------------------
    def _fail(self, job: JobRecord, message: str) -> JobRecord:
        notice("job %s failed: %s", job.name, message, warning=True)
        return self.book.update(job.name, status=JobStatus.FAILED, message=message,
                                ended_at=datetime.now(UTC))  # fmt: skip

    def _cancel(self, job: JobRecord, ended: tuple[int, _LegEnd] | None) -> JobRecord:
        if ended is not None:
            leg, end = ended
            step = end.request.step if end.request is not None else None
            self.book.end_leg(job.name, leg, LegStatus.CANCELLED, exit_code=end.exit_code,
                              end_step=step)  # fmt: skip
        notice("job %s cancelled", job.name)
        return self.book.update(job.name, status=JobStatus.CANCELLED, message="cancelled",
                                ended_at=datetime.now(UTC), cancel_requested=False)  # fmt: skip

    # -- helpers -----------------------------------------------------------------------------------
    def _leg_dir(self, leg: int) -> Path:
        return self.spec.workdir / f"leg-{leg:04d}"

    def _worker_env(self, leg: int, site: str, store_url: str, files: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.spec.job.env)
        env.update(
            {
                protocol.ENV_JOB: self.spec.name,
                protocol.ENV_LEG: str(leg),
                protocol.ENV_SITE: site,
                protocol.ENV_CHECKPOINT_URL: store_url,
                protocol.ENV_LEDGER: str(self.spec.ledger_path),
                protocol.ENV_OUTCOME_FILE: str(files / "outcome.json"),
                protocol.ENV_STATUS_FILE: str(files / "status.json"),
                protocol.ENV_GRACE_S: repr(self.spec.job.grace_s),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop(protocol.ENV_EXCLUDE_SITES, None)
        excluded = sorted(self._excluded - {site})
        if excluded:
            env[protocol.ENV_EXCLUDE_SITES] = ",".join(excluded)
        if isinstance(self._clock, AcceleratedClock):
            env[CLOCK_ENV] = self._clock.to_env()
        else:
            env.pop(CLOCK_ENV, None)
        return env

    @staticmethod
    def _latest_step(store_url: str) -> int | None:
        """The newest step with a manifest in a store (rank 0's under DDP); None: none.

        A cheap progress marker (no checksums are read): workers verify before they restore.
        """
        import fsspec

        try:
            fs, root = fsspec.core.url_to_fs(store_url)
            if fs.exists(f"{root.rstrip('/')}/rank-00000"):
                root = f"{root.rstrip('/')}/rank-00000"
            steps = [
                int(name.rsplit("-", 1)[1])
                for name in (p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
                if name.startswith("step-")
                and name[5:].isdigit()
                and fs.exists(f"{root.rstrip('/')}/{name}/MANIFEST.json")
            ]
        except (OSError, ValueError, ImportError):
            return None
        return max(steps, default=None)


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


def cancel_job(book: JobBook, name: str, *, poll_s: float = 0.1) -> str:
    """Cancel a job; returns what happened, in one line.

    With a live supervisor, it is asked (through the ledger) and stops the worker after its
    checkpoint. Without one, a worker left running is sent SIGTERM here (it checkpoints and
    exits; SIGKILL after the job's grace period) and its leg is closed as cancelled.

    Raises:
        ConfigError: no such job.
    """
    record = book.get(name)
    if record.status.finished:
        return f"job {name} is {record.status.value} already"
    book.update(name, cancel_requested=True)
    owner = record.supervisor_pid
    if owner is not None and record.supervisor_host == socket.gethostname() and pid_alive(owner):
        return f"cancel requested; the supervisor (process {owner}) stops job {name}"
    grace_s = float(record.spec.get("job", {}).get("grace_s", 30.0))
    for leg in book.legs(name):
        if leg.status is not LegStatus.RUNNING:
            continue
        if leg.pid is not None and leg.host == socket.gethostname() and pid_alive(leg.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leg.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while pid_alive(leg.pid) and time.monotonic() < deadline:
                time.sleep(poll_s)
            if pid_alive(leg.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(leg.pid, signal.SIGKILL)
        book.end_leg(name, leg.leg, LegStatus.CANCELLED, message="cancelled without a supervisor")
    book.update(name, status=JobStatus.CANCELLED, message="cancelled", cancel_requested=False,
                ended_at=datetime.now(UTC))  # fmt: skip
    return f"job {name} cancelled"
