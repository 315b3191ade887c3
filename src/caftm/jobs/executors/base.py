"""The executor contract: start a worker at a site, watch it, signal it, collect its exit,
and say how its leg ended (the worker's :class:`~caftm.jobs.protocol.StopRequest`) and how it
is doing (its live status).

One small interface for every engine: ``local`` (subprocesses), and engines that run each leg
elsewhere (a Ray job pinned to a site's nodes, a SkyPilot managed job in a cloud region). The
supervisor owns the policy (what to start where, when to give up); an executor only does I/O.
Engines whose workers write their outcome and status files into the leg's folder (a shared
filesystem, or copies fetched back) read them through :class:`LegFolderExecutor`.
"""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from caftm.errors import ExecutorError
from caftm.jobs import protocol

if TYPE_CHECKING:
    from typing import Self

    from caftm.jobs.protocol import StopRequest
    from caftm.jobs.spec import JobSection
    from caftm.ledger.jobs import LegRecord

__all__ = [
    "EXIT_UNKNOWN",
    "LOG_FILE",
    "OUTCOME_FILE",
    "STATUS_FILE",
    "Executor",
    "LegFolderExecutor",
    "LegLaunch",
    "LegRef",
    "WorkerHandle",
    "leg_folder",
]

#: The exit code reported for a worker this process did not start and cannot read the exit of.
EXIT_UNKNOWN = -1000
#: Names of a leg's files in its folder: the worker's outcome, its live status, its output.
OUTCOME_FILE = "outcome.json"
STATUS_FILE = "status.json"
LOG_FILE = "worker.log"


def leg_folder(job_workdir: Path, leg: int) -> Path:
    """The folder of leg ``leg`` under its job's workdir (its log, outcome and status)."""
    return job_workdir / f"leg-{leg:04d}"


@dataclass(frozen=True)
class LegRef:
    """One leg of a job, whether or not its worker still runs.

    Attributes:
        job, leg, site: which leg of which job, and where it ran.
        folder: the leg's folder as the supervisor sees it (its log, outcome and status files).
    """

    job: str
    leg: int
    site: str
    folder: Path


@dataclass(frozen=True)
class LegLaunch:
    """What to start for one leg.

    Attributes:
        job, leg, site: which leg of which job, and where.
        argv: the worker command.
        env: the worker's whole environment.
        cwd: its working directory.
        log_path: where its stdout and stderr go.
        grace_s: seconds it has to checkpoint after SIGTERM before it is killed.
    """

    job: str
    leg: int
    site: str
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    grace_s: float


@dataclass
class WorkerHandle:
    """A started worker as its executor knows it.

    Attributes:
        executor: the executor's name.
        external_id: the engine's id (local: ``pid:start-ticks``; Ray: the job id).
        pid: the process id where there is one on this host.
        host: the host it runs on (or the engine's node).
        node: the engine's node id, where it has one.
        exit_code: set once the worker has ended (negative: killed by that signal).
    """

    executor: str
    external_id: str
    pid: int | None = None
    host: str | None = None
    node: str | None = None
    exit_code: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Executor(ABC):
    """Starts and watches workers; see the module docstring."""

    name: ClassVar[str]
    #: whether a leg's worker may be started before its move is done (a standby; the worker
    #: must see the standby file the supervisor writes in the leg's folder)
    takes_standby: ClassVar[bool] = False

    @classmethod
    def from_job(cls, job: JobSection) -> Self:
        """An executor set up from a job's ``job:`` section (its engine's own subsection)."""
        return cls()

    def check_config(self, sites: list[str]) -> None:  # noqa: B027 - most accept any site
        """Raise :class:`~caftm.errors.ConfigError` where the job's sites can never be served
        as configured (checked before anything is launched)."""

    def check_site(self, site: str) -> None:  # noqa: B027 - most engines accept any site
        """Raise :class:`~caftm.errors.ExecutorError` when ``site`` cannot run a worker now."""

    def prepare(self, leg: LegRef) -> None:  # noqa: B027 - engines with nothing left over
        """Clear what an earlier start of this leg left (called before :meth:`start`), so
        that :meth:`outcome` and :meth:`status` answer for the new worker only."""

    @abstractmethod
    def start(self, launch: LegLaunch) -> WorkerHandle:
        """Start the worker.

        Raises:
            ExecutorError: it could not be started (one line naming the command and why).
        """

    @abstractmethod
    def poll(self, handle: WorkerHandle) -> int | None:
        """The worker's exit code once it has ended (negative: killed by that signal;
        :data:`EXIT_UNKNOWN` where it cannot be known), else None."""

    @abstractmethod
    def signal(self, handle: WorkerHandle, signum: int) -> None:
        """Send ``signum`` to the worker (all its processes); nothing when it has ended."""

    @abstractmethod
    def adopt(self, leg: LegRecord) -> WorkerHandle | None:
        """The worker of a leg started by an earlier supervisor, if it still runs."""

    @abstractmethod
    def outcome(self, leg: LegRef) -> StopRequest | None:
        """How the leg's worker said it ended; None when it said nothing (yet).

        Raises:
            ExecutorError: what it said cannot be read (the leg counts as crashed).
        """

    @abstractmethod
    def status(self, leg: LegRef) -> dict[str, Any]:
        """The worker's live status (step, state, carbon so far); empty when there is none."""

    def stop(self, handle: WorkerHandle, grace_s: float, *, poll_s: float = 0.05) -> int:
        """SIGTERM, then SIGKILL after ``grace_s``; returns the exit code."""
        import time

        code = self.poll(handle)
        if code is not None:
            return code
        self.signal(handle, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            code = self.poll(handle)
            if code is not None:
                return code
            time.sleep(poll_s)
        self.signal(handle, signal.SIGKILL)
        while (code := self.poll(handle)) is None:
            time.sleep(poll_s)
        return code

    def stop_leg(self, leg: LegRecord, grace_s: float, *, poll_s: float = 0.1) -> int | None:
        """Stop the worker of a leg no supervisor watches (a cancel without one): SIGTERM, then
        SIGKILL after ``grace_s``. Returns its exit code; None when it was not running.

        Raises:
            ExecutorError: it could not be stopped, or whether it runs cannot be known (the
                engine cannot be asked): it may still run.
        """
        import time

        handle = self.adopt(leg)
        if handle is None:
            return None
        code = self.poll(handle)
        if code is not None:
            return code
        self.signal(handle, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        killed = False
        while (code := self.poll(handle)) is None:
            if time.monotonic() > deadline:
                if killed:
                    raise ExecutorError(
                        f"leg {leg.leg} of job {leg.job} ({self.name} {leg.external_id}) did "
                        f"not end {grace_s:.0f} s after SIGKILL"
                    )
                self.signal(handle, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + max(grace_s, 30.0)
            time.sleep(poll_s)
        return code

    def close(self) -> None:  # noqa: B027 - engines with a client close it here
        """Release the executor's resources."""


class LegFolderExecutor(Executor):
    """An executor whose workers write their outcome and status into the leg's folder
    (:data:`OUTCOME_FILE`, :data:`STATUS_FILE`), on a filesystem the supervisor reads or in
    copies the engine fetched there."""

    def prepare(self, leg: LegRef) -> None:
        leg.folder.mkdir(parents=True, exist_ok=True)
        for name in (OUTCOME_FILE, STATUS_FILE):
            (leg.folder / name).unlink(missing_ok=True)

    def outcome(self, leg: LegRef) -> StopRequest | None:
        return protocol.read_outcome(leg.folder / OUTCOME_FILE)

    def status(self, leg: LegRef) -> dict[str, Any]:
        return protocol.read_status(leg.folder / STATUS_FILE) or {}
