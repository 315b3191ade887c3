"""The job supervisor: runs a job's legs until it completes, acting on how each leg ends.

=========================  ==================================================================
part                       where
=========================  ==================================================================
claim, run, stop, release  :class:`Supervisor` (this module)
one supervisor per job     :mod:`caftm.jobs.lease` (a lease in the ledger, a heartbeat)
a leg's life               :mod:`caftm.jobs.legs` (start its worker, watch it, its outcome)
how a leg ended            :mod:`caftm.jobs.outcomes` (the outcome table: completed, moved,
                           paused, preempted, crashed)
a restarted supervisor     :mod:`caftm.jobs.recovery` (adopt, mark interrupted, finish a move)
cancel                     :mod:`caftm.jobs.cancel`
=========================  ==================================================================

Everything the supervisor knows lives in the ledger (:class:`~caftm.ledger.jobs.JobBook`), so a
supervisor killed with ``kill -9`` and started again picks the job up where it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caftm._files import atomic_write_json
from caftm._notice import notice
from caftm.clock import AcceleratedClock, FakeClock
from caftm.control.states import utc_from_s
from caftm.errors import CaftmError, ExecutorError
from caftm.jobs.cancel import close_cancelled
from caftm.jobs.executors import Executor, LegRef, get_executor
from caftm.jobs.executors.base import leg_folder
from caftm.jobs.lease import Lease, LeaseLost, lease_s_from_env
from caftm.jobs.legs import LegRunner
from caftm.jobs.outcomes import OutcomeTable
from caftm.jobs.recovery import Recovery
from caftm.jobs.spec import JobSpec
from caftm.jobs.view import JobView
from caftm.ledger.jobs import JobBook, JobRecord, JobStatus
from caftm.ledger.store import Ledger, pid_alive

__all__ = ["CLOCK_FILE", "Supervisor"]

log = logging.getLogger(__name__)

#: The job's accelerated clock as the supervisor last left it (in the job's workdir).
CLOCK_FILE = "clock.json"


class Supervisor:
    """Runs one job to its end (see the module docstring).

    Args:
        spec: the job.
        executor: where legs run (default: the one ``spec.job.executor`` names).
        ledger: the ledger (default: ``spec.ledger_path``).
        on_update: called with a :class:`~caftm.jobs.view.JobView` while a leg runs or the job
            waits (a progress display).
        clock: virtual time for tests (:class:`~caftm.clock.FakeClock`): the job's clock, the
            wall clock and every wait; default: real time (the job's accelerated clock where
            it has one).
        recovery: what to do first with a job an earlier supervisor left (default:
            :class:`~caftm.jobs.recovery.Recovery`).
        standby: when another live supervisor holds the job's lease, wait and take the job
            over once the lease expires (default: refuse).
        lease_s: the lease's length (s; default ``$CAFTM_SUPERVISOR_LEASE_S`` or 30).

    Attributes:
        excluded: sites the job does not go to again in this run (they failed it).
        leg_floor: the job's last leg before this run (crashes before it do not count).
        cancelled: a cancel was asked while a leg ran.
        stopped_by: the signal that asked this supervisor to stop (the job resumes at the
            next run).
    """

    def __init__(
        self,
        spec: JobSpec,
        *,
        executor: Executor | None = None,
        ledger: Ledger | None = None,
        on_update: Callable[[JobView], None] | None = None,
        clock: FakeClock | None = None,
        recovery: Recovery | None = None,
        standby: bool = False,
        lease_s: float | None = None,
    ) -> None:
        self.spec = spec
        self.executor = executor or get_executor(spec.job.executor, spec.job)
        self._own_ledger = ledger is None
        self.ledger = ledger or Ledger(spec.ledger_path)
        self.book = JobBook(self.ledger)
        self.on_update = on_update
        self._fake_clock = clock
        self._clock: Callable[[], float] = clock or time.time
        self.sleep: Callable[[float], None] = clock.sleep if clock else time.sleep
        self.monotonic: Callable[[], float] = clock.monotonic if clock else time.monotonic
        self.recovery = recovery or Recovery()
        self.legs = LegRunner(self)
        self.outcomes = OutcomeTable(self)
        self.excluded: set[str] = set()
        self.leg_floor = 0
        self.cancelled = False
        self.stopped_by: str | None = None
        self.standby = standby
        self.lease = Lease(self.book, spec.name, lease_s=lease_s or lease_s_from_env())
        self._source: Any = None
        # imported now (it imports torch, seconds): a move should not wait for it
        import caftm.checkpoint.transfer  # noqa: F401

    @property
    def clock(self) -> Callable[[], float]:
        """The job's clock (POSIX seconds): real, accelerated, or a test's fake one."""
        return self._clock

    # -- the whole job -----------------------------------------------------------------------------
    def run(self) -> JobRecord:
        """Run the job until it succeeds, fails or is cancelled; returns it as stored.

        Raises:
            ExecutorError: another live supervisor runs this job (and ``standby`` is False).
            ConfigError: a store holds another job's checkpoints (nothing is started).
        """
        from caftm.jobs.validate import check_stores_owned

        check_stores_owned(self.spec)
        job = self._claim()
        previous = self._take_signals()
        try:
            return self._run(job)
        except LeaseLost as e:
            notice("%s", e, warning=True)
            return self.book.get(job.name)
        finally:
            self.legs.abandon_standby("the supervisor stops")
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._release()

    def _run(self, job: JobRecord) -> JobRecord:
        """The job's life after its claim (the lease held)."""
        if job.status is JobStatus.SUCCEEDED:
            notice("job %s completed already (%s); nothing to train", job.name, job.message)
            return job
        job = self.recovery.recover(self, job)
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

    def _next(self, job: JobRecord) -> JobRecord:
        """One step of the job's life: a cancel, a pause waited out, or the next leg."""
        if job.cancel_requested:
            return close_cancelled(self.book, job, None)
        if job.status is JobStatus.PAUSED:
            job = self.outcomes.wait_pause(job)
            if job.status.finished:
                return job
        return self.legs.start(job)

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

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- claiming ----------------------------------------------------------------------------------
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
            if self._fake_clock is None:
                self._clock = self._stored_clock(job)
            owner = job.supervisor_pid
            if (
                job.lease_owner is None  # a job of a ledger from before leases
                and owner is not None
                and owner != os.getpid()
                and job.supervisor_host == socket.gethostname()
                and pid_alive(owner)
                and not job.status.finished
            ):
                raise ExecutorError(
                    f"job {job.name} is supervised by process {owner} already; "
                    f"stop it with `caftm cancel {job.name}`"
                )
        job = self.lease.take(standby=self.standby, sleep=self.sleep)
        self.lease.keep()
        self.leg_floor = job.leg  # crashes before this run do not count against it
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
        if self._fake_clock is not None:
            self._clock = self._fake_clock
        elif speed is None:
            self._clock = time.time
        else:
            start = self.spec.job.clock_start
            origin_s = start.timestamp() if start is not None else time.time()
            # held: the first worker is still to start (see caftm.clock)
            self._clock = AcceleratedClock.starting_at(origin_s, speed, running=False)
            self._save_clock()
        return self._clock

    def _stored_clock(self, job: JobRecord) -> Callable[[], float]:
        """The job's clock as the last supervisor left it (its clock file), else as created."""
        text = job.spec.get("clock")
        with contextlib.suppress(OSError, ValueError, AttributeError):
            saved = json.loads((self.spec.workdir / CLOCK_FILE).read_text(encoding="utf-8"))
            text = saved.get("clock") or text
        try:
            return AcceleratedClock.from_env(text) if text else time.time
        except CaftmError as e:
            notice("job %s: %s; the job's clock starts again from its creation", job.name, e,
                   warning=True)  # fmt: skip
            created = job.spec.get("clock")
            return AcceleratedClock.from_env(created) if created else time.time

    # -- the job's accelerated clock (see caftm.clock) ----------------------------------------
    def run_clock(self) -> None:
        """Run the job's accelerated clock at its speed (the job waits out a pause)."""
        if isinstance(self._clock, AcceleratedClock) and not self._clock.running:
            self._clock.run()
            self._save_clock()

    def hold_clock(self) -> None:
        """Hold the job's accelerated clock at 1× (no worker trains: starts, stops, moves) and
        keep it for a restarted supervisor."""
        if isinstance(self._clock, AcceleratedClock):
            self._clock.hold()
            self._save_clock()

    def follow_worker_clock(self, status: dict[str, Any]) -> None:
        """Take the job's clock from a worker's live status: the worker knows when it trained."""
        text = status.get("clock")
        if isinstance(self._clock, AcceleratedClock) and isinstance(text, str):
            try:
                self._clock.follow(text)
            except CaftmError as e:
                log.warning("job %s: ignoring the worker's clock: %s", self.spec.name, e)

    def _save_clock(self) -> None:
        """Keep the clock's anchor where a restarted supervisor finds it (best effort)."""
        if isinstance(self._clock, AcceleratedClock):
            try:
                atomic_write_json(self.spec.workdir / CLOCK_FILE, {"clock": self._clock.to_env()})
            except OSError as e:
                log.warning("cannot keep job %s's clock: %s", self.spec.name, e)

    def _release(self) -> None:
        self.lease.release()

    # -- what the parts share ----------------------------------------------------------------------
    def leg_dir(self, leg: int) -> Path:
        """The leg's folder (its log; its outcome and status where the executor uses files)."""
        return leg_folder(self.spec.workdir, leg)

    def leg_ref(self, leg: int, site: str) -> LegRef:
        """The executor's name for leg ``leg`` of this job, at ``site``."""
        return LegRef(self.spec.name, leg, site, self.leg_dir(leg))

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

    @staticmethod
    def latest_step(store_url: str) -> int | None:
        """The newest step complete in a store (on every rank under DDP); None: none.

        A cheap progress marker (no checksums are read): workers verify before they restore.
        """
        from caftm.checkpoint import latest_complete_step

        with contextlib.suppress(CaftmError):
            return latest_complete_step(store_url)
        return None
