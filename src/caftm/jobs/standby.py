"""A destination worker started before its checkpoint arrives (a *standby*), and its go.

A worker that is about to move says so in its live status (``moving_to``) before it writes its
last checkpoint. The supervisor then starts the next leg's worker at the destination at once, with
``CAFTM_STANDBY_FILE`` and ``CAFTM_STANDBY_TOKEN`` set: the new worker's interpreter, imports and
model construction overlap the checkpoint's write and transfer. Before it restores anything, the
worker calls :func:`wait_for_go`:

=================================================  ==========================================
the standby file                                   :func:`wait_for_go`
=================================================  ==========================================
says ``go`` (the supervisor verified the move)     returns the go: take its clock, restore
is removed (the move was abandoned)                exits with :data:`EXIT_STANDBY_LEFT`
holds another token (another leg took over)        exits with :data:`EXIT_STANDBY_LEFT`
was not touched for ``stale_s`` (supervisor gone)  exits with :data:`EXIT_STANDBY_LEFT`
the worker's parent process changed                exits with :data:`EXIT_STANDBY_LEFT`
=================================================  ==========================================

The go carries the job's clock as it stands at that moment (``clock``, a ``CAFTM_CLOCK`` value,
or None for real time): the clock the standby was started with was read before the source worker's
last steps, and the job's clock must not run backwards from one leg to the next.

While it waits, a standby may read and verify the newest checkpoint in its store ahead of its
restore (``while_waiting``; :meth:`~caftm.checkpoint.CheckpointStore.prefetch_latest`): the
restore after the go applies it without reading it again when it is still the newest,
unchanged. A standby leaves before it trains, restores or records anything. The supervisor
touches the file every :data:`HEARTBEAT_S` while the move is in flight (:class:`StandbyLeg`),
records the leg in the ledger only when it says go, and stops an abandoned standby (SIGTERM,
then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from caftm._files import atomic_write_json
from caftm._notice import notice
from caftm._protocol_env import ENV_STANDBY_FILE, ENV_STANDBY_TOKEN
from caftm.errors import ExecutorError

if TYPE_CHECKING:
    from caftm.jobs.executors import Executor, LegLaunch, WorkerHandle
    from caftm.jobs.supervisor import Supervisor

__all__ = [
    "EXIT_STANDBY_LEFT",
    "HEARTBEAT_S",
    "STALE_S",
    "STANDBY_FILE",
    "StandbyLeg",
    "Standbys",
    "go_clock",
    "wait_for_go",
]

log = logging.getLogger(__name__)

#: the standby file's name in the leg's folder
STANDBY_FILE = "standby.json"
#: the supervisor touches the standby file this often while the move is in flight (s)
HEARTBEAT_S = 1.0
#: a standby whose file was not touched for this long leaves: its supervisor is gone (s)
STALE_S = 20.0
#: a standby's exit code when it leaves without training (EX_TEMPFAIL: nothing was done)
EXIT_STANDBY_LEFT = 75
#: how often a standby's ``while_waiting`` runs (s)
PREPARE_S = 0.05
#: how long an abandoned standby has to leave before it is killed (s)
STOP_GRACE_S = 5.0


def wait_for_go(
    env: Mapping[str, str] | None = None,
    *,
    poll_s: float = 0.01,
    stale_s: float = STALE_S,
    while_waiting: Callable[[], object] | None = None,
) -> dict[str, Any] | None:
    """In a worker: wait until the supervisor lets this standby restore and train.

    Returns the supervisor's go (the standby file; :func:`go_clock` reads the job's clock from
    it), or None at once when this worker is no standby (run alone, or an ordinary leg).
    ``while_waiting`` is called every :data:`PREPARE_S` until the go (e.g. to read and verify
    the newest checkpoint ahead of its restore; it must apply nothing).

    Raises:
        SystemExit: (:data:`EXIT_STANDBY_LEFT`) the move was abandoned, another leg took over,
            or the supervisor is gone; nothing was restored, trained or recorded.
    """
    environment = os.environ if env is None else env
    path_text = environment.get(ENV_STANDBY_FILE)
    if not path_text:
        return None
    path, token, parent = Path(path_text), environment.get(ENV_STANDBY_TOKEN, ""), os.getppid()
    log.info("standing by at %s for the supervisor's go", path)
    next_prepare = 0.0
    while True:
        if while_waiting is not None and time.monotonic() >= next_prepare:
            while_waiting()
            next_prepare = time.monotonic() + PREPARE_S
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            touched_s = path.stat().st_mtime
        except FileNotFoundError:
            _leave("the move was abandoned")
        except (OSError, ValueError):  # replaced as we read it: read again
            time.sleep(poll_s)
            continue
        if not isinstance(data, dict) or data.get("token") != token:
            _leave("another worker took this leg")
        if data.get("go") is True:
            return data
        if time.time() - touched_s > stale_s:
            _leave(f"its supervisor has not answered for {stale_s:.0f} s")
        if os.getppid() != parent:
            _leave("the process that started it is gone")
        time.sleep(poll_s)


def go_clock(go: Mapping[str, Any]) -> str | None:
    """The job's clock (its ``CAFTM_CLOCK`` value) as it stood at the supervisor's go; None
    where the job runs on real time."""
    text = go.get("clock")
    return text if isinstance(text, str) and text else None


def _leave(why: str) -> NoReturn:
    notice("standby worker leaves without training: %s", why)
    raise SystemExit(EXIT_STANDBY_LEFT)


class StandbyLeg:
    """The supervisor's side of one standby: its file, heartbeat, start, go and stop.

    Args:
        folder: the standby leg's folder (its standby file goes there).
        leg, site: which leg it would be, and where.
    """

    def __init__(self, folder: Path, leg: int, site: str) -> None:
        self.leg = leg
        self.site = site
        self.path = folder / STANDBY_FILE
        self.token = uuid.uuid4().hex
        self.handle: WorkerHandle | None = None
        self.error: ExecutorError | None = None
        self.since_s = time.time()
        self._starting: threading.Thread | None = None
        self._stop = threading.Event()
        self._write(go=False)
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"caftm-standby-{leg}", daemon=True
        )
        self._heartbeat.start()

    @property
    def env(self) -> dict[str, str]:
        """What the standby worker's environment adds to a leg's."""
        return {ENV_STANDBY_FILE: str(self.path), ENV_STANDBY_TOKEN: self.token}

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def start(self, executor: Executor, launch: LegLaunch) -> None:
        """Start the worker on a thread (an engine may take seconds to run it)."""

        def run() -> None:
            try:
                self.handle = executor.start(launch)
            except ExecutorError as e:
                self.error = e
                log.info("standby worker of leg %d at %s did not start: %s", self.leg,
                         self.site, e)  # fmt: skip

        self._starting = threading.Thread(target=run, name=f"caftm-standby-start-{self.leg}")
        self._starting.start()

    def started(self) -> WorkerHandle | None:
        """The running worker once its start returned (None: it failed to start)."""
        if self._starting is not None:
            self._starting.join()
        return self.handle

    def running(self, executor: Executor) -> WorkerHandle | None:
        """The standby's handle while it still waits; None when it failed to start or ended
        (it is then stopped: start an ordinary worker instead)."""
        handle = self.started()
        if handle is None or executor.poll(handle) is not None:
            self.abandon(executor, "it is not running")
            return None
        return handle

    def go(self, clock: str | None) -> None:
        """Let the worker restore and train (the move is done and verified), on the job's clock
        as it stands now (``clock``: its ``CAFTM_CLOCK`` value; None: real time)."""
        self._stop.set()
        self._write(go=True, clock=clock)

    def _write(self, *, go: bool, clock: str | None = None) -> None:
        atomic_write_json(self.path, {"token": self.token, "leg": self.leg, "site": self.site,
                                      "since_unix_s": self.since_s, "go": go,
                                      "clock": clock})  # fmt: skip

    def abandon(self, executor: Executor, why: str) -> None:
        """Stop the standby (its file removed, then SIGTERM, SIGKILL after a grace)."""
        self._stop.set()
        self.path.unlink(missing_ok=True)
        handle = self.started()
        if handle is None:
            return
        log.info("stopping the standby worker of leg %d at %s: %s", self.leg, self.site, why)
        try:
            executor.stop(handle, STOP_GRACE_S)
        except ExecutorError as e:
            log.warning("could not stop the standby worker of leg %d: %s", self.leg, e)


class Standbys:
    """A supervisor's standby (one at a time): started when its running worker says it moves,
    taken by the next leg's start (let go there) or abandoned.

    Args:
        supervisor: whose job it is.
        launch: what starts a leg's worker (``launch(job, leg, site, extra_env)``).
    """

    def __init__(
        self,
        supervisor: Supervisor,
        launch: Callable[[str, int, str, dict[str, str]], LegLaunch],
    ) -> None:
        self.sup = supervisor
        self._launch = launch
        self._standby: StandbyLeg | None = None

    @property
    def waiting(self) -> bool:
        """Whether a standby was started and not yet taken or abandoned."""
        return self._standby is not None

    def take(self) -> StandbyLeg | None:
        """The standby for the next leg to let go or abandon (None: none waits)."""
        standby, self._standby = self._standby, None
        return standby

    def start_if_moving(self, job: str, leg: int, site: str) -> bool:
        """When the running worker of ``leg`` at ``site`` says it moves, start the next leg at
        its destination, standing by; returns whether it said so (whether a standby could
        start there or not)."""
        dest = self._moving_to(leg, site)
        if dest is None:
            return False
        sup = self.sup
        if dest == site or dest in sup.excluded or dest not in sup.spec.controller.site_zones():
            return True
        try:
            sup.executor.check_site(dest)
        except ExecutorError as e:
            log.info("job %s: no standby worker at %s: %s", job, dest, e)
            return True
        standby = StandbyLeg(sup.leg_dir(leg + 1), leg + 1, dest)
        standby.start(sup.executor, self._launch(job, leg + 1, dest, standby.env))
        self._standby = standby
        log.info("job %s: leg %d moves to %s; its next worker starts there now", job, leg, dest)
        return True

    def abandon(self, why: str) -> None:
        """Stop a standby worker, if one waits (the move it waited for will not happen)."""
        standby = self.take()
        if standby is not None:
            standby.abandon(self.sup.executor, why)

    def _moving_to(self, leg: int, site: str) -> str | None:
        """The site the running worker of ``leg`` said it moves to (None: it did not)."""
        try:
            status = self.sup.executor.status(self.sup.leg_ref(leg, site))
        except (ExecutorError, OSError, ValueError):
            return None
        dest = status.get("moving_to")
        return dest if isinstance(dest, str) and dest else None
