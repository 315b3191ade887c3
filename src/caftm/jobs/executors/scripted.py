"""A scripted executor for tests: legs that end as a script says, with no worker process.

Give :class:`ScriptedExecutor` one :class:`LegScript` per leg the supervisor will start, in order,
and a :class:`~caftm.clock.FakeClock` to the supervisor: a whole job then runs in milliseconds.
Each leg runs for ``polls`` polls and ends as its script says; SIGTERM/SIGINT make it checkpoint
and end preempted, SIGKILL ends it with no outcome. The executor records what it was asked
(:attr:`ScriptedExecutor.starts`, :attr:`~ScriptedExecutor.signals`,
:attr:`~ScriptedExecutor.adoptions`), and one instance outlives a supervisor, as workers do::

    executor = ScriptedExecutor([LegScript.moved("FR", step=100), LegScript.completed(600)])
    clock = FakeClock(start.timestamp(), speed=3600)
    Supervisor(spec, executor=executor, clock=clock).run()
    assert [launch.site for launch in executor.starts] == ["KR", "FR"]

A leg that writes a checkpoint saves a tiny one (no tensors) at its step into the store the
supervisor gave it (``CAFTM_CHECKPOINT_URL``), so moves have bytes to transfer and crashes can
show progress.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from caftm.errors import ExecutorError
from caftm.jobs import protocol
from caftm.jobs.executors.base import Executor, LegLaunch, LegRef, WorkerHandle
from caftm.jobs.protocol import Outcome, StopRequest

if TYPE_CHECKING:
    from caftm.ledger.jobs import LegRecord

__all__ = ["LegScript", "ScriptedExecutor", "ScriptedLeg", "SupervisorKilled"]


class SupervisorKilled(BaseException):
    """Raised from a poll to stand for ``kill -9`` of the supervisor watching the leg.

    A :class:`BaseException`, as no handler of the supervisor catches a real kill.
    """


@dataclass(frozen=True)
class LegScript:
    """What one leg does: it runs for ``polls`` polls, then ends as ``outcome`` says.

    Attributes:
        outcome: how the worker says it ended; None: it crashes (says nothing).
        step: the step it stops at (its checkpoint's).
        dest: the site it moves to (``MOVED``).
        until_s: virtual POSIX time (s) it pauses until (``PAUSED``).
        exit_code: its exit code.
        polls: polls it still runs for before it ends.
        checkpoint: it saves a checkpoint of ``step`` before it ends.
        kills_supervisor: its first poll raises :class:`SupervisorKilled`.
        outlives_supervisor: with ``kills_supervisor``, it goes on running (a later supervisor
            adopts it); otherwise it ends at once, as scripted, while no one watches.
        stops_on_sigterm: SIGTERM/SIGINT make it checkpoint and end preempted (else it runs on
            until SIGKILL or its end).
        dies_on_sigterm: SIGTERM/SIGINT kill it before it says anything (a worker still
            starting up, before its handlers are installed).
        reached: the step its live status reports (default: ``step``).
        restored: the step it reports it restored (default: the newest complete checkpoint
            in its store when it started, as a worker that finds them all intact).
        notices: fate lines it reports in its live status (a skipped checkpoint, ...).
    """

    outcome: Outcome | None
    step: int = 0
    dest: str | None = None
    until_s: float | None = None
    exit_code: int = 0
    polls: int = 0
    checkpoint: bool = True
    kills_supervisor: bool = False
    outlives_supervisor: bool = False
    stops_on_sigterm: bool = True
    dies_on_sigterm: bool = False
    reached: int | None = None
    restored: int | None = None
    notices: tuple[str, ...] = ()

    @classmethod
    def completed(cls, step: int, *, polls: int = 0) -> LegScript:
        """Training ends at ``step``."""
        return cls(Outcome.COMPLETED, step, polls=polls)

    @classmethod
    def moved(cls, dest: str, step: int, *, polls: int = 0) -> LegScript:
        """It checkpoints at ``step`` and asks to move to ``dest``."""
        return cls(Outcome.MOVED, step, dest=dest, polls=polls)

    @classmethod
    def paused(cls, until_s: float, step: int, *, polls: int = 0) -> LegScript:
        """It checkpoints at ``step`` and asks to pause until ``until_s``."""
        return cls(Outcome.PAUSED, step, until_s=until_s, polls=polls)

    @classmethod
    def preempted(cls, step: int, *, polls: int = 0) -> LegScript:
        """It checkpoints at ``step`` and stops, as after SIGTERM."""
        return cls(Outcome.PREEMPTED, step, polls=polls)

    @classmethod
    def crashed(cls, exit_code: int = 1, *, step: int | None = None, polls: int = 0) -> LegScript:
        """It dies with ``exit_code``; ``step``: the checkpoint it saved first (progress)."""
        return cls(None, step or 0, exit_code=exit_code, polls=polls, checkpoint=step is not None)

    @classmethod
    def running(cls, then: LegScript) -> LegScript:
        """Its supervisor is killed while it runs; it goes on, and ends as ``then`` once adopted."""
        return dataclasses.replace(then, kills_supervisor=True, outlives_supervisor=True)

    @classmethod
    def orphaned(cls, then: LegScript) -> LegScript:
        """Its supervisor is killed while it runs, and it ends as ``then`` unwatched."""
        return dataclasses.replace(then, kills_supervisor=True, outlives_supervisor=False)


@dataclass
class ScriptedLeg:
    """A started leg as the executor keeps it.

    Attributes:
        launch: what the supervisor started.
        script: what it does.
        handle: its handle.
        polls: polls answered so far.
        exit_code: set once it ended.
        request: what it said when it ended (None: nothing).
        signals: signals it received.
    """

    launch: LegLaunch
    script: LegScript
    handle: WorkerHandle
    polls: int = 0
    exit_code: int | None = None
    request: StopRequest | None = None
    signals: list[int] = field(default_factory=list)
    restored: int = 0


class ScriptedExecutor(Executor):
    """Legs that follow scripts (see the module docstring).

    Args:
        scripts: one per leg started, in order; a start with none left raises ExecutorError.
        down_sites: sites :meth:`check_site` refuses (change :attr:`down_sites` at will).
    """

    name: ClassVar[str] = "scripted"

    def __init__(self, scripts: Iterable[LegScript], *, down_sites: Iterable[str] = ()) -> None:
        self.scripts = list(scripts)
        self.down_sites = set(down_sites)
        #: every leg started, in order
        self.starts: list[LegLaunch] = []
        #: (leg, signal) of every signal sent, in order
        self.signals: list[tuple[int, int]] = []
        #: legs adopted by a later supervisor, in order
        self.adoptions: list[int] = []
        self.legs: dict[str, ScriptedLeg] = {}

    def check_site(self, site: str) -> None:
        if site in self.down_sites:
            raise ExecutorError(f"site {site} is down (scripted)")

    def start(self, launch: LegLaunch) -> WorkerHandle:
        if len(self.starts) >= len(self.scripts):
            raise ExecutorError(f"no script left for leg {launch.leg} of job {launch.job}")
        script = self.scripts[len(self.starts)]
        self.starts.append(launch)
        handle = WorkerHandle(
            self.name, f"scripted-{launch.job}-{launch.leg}-{len(self.starts)}",
            host=socket.gethostname(),
        )  # fmt: skip
        restored = script.restored
        if restored is None:
            restored = _latest_step(launch.env)
        self.legs[handle.external_id] = ScriptedLeg(launch, script, handle, restored=restored)
        return handle

    def poll(self, handle: WorkerHandle) -> int | None:
        leg = self.legs[handle.external_id]
        if leg.exit_code is not None:
            return leg.exit_code
        script = leg.script
        if script.kills_supervisor and leg.polls == 0:
            leg.polls = 1
            if not script.outlives_supervisor:
                self._end(leg)
            raise SupervisorKilled(f"the supervisor of leg {leg.launch.leg} was killed")
        if signal.SIGKILL in leg.signals:
            leg.exit_code = -signal.SIGKILL
            return leg.exit_code
        if leg.signals and script.dies_on_sigterm:
            leg.exit_code = -leg.signals[0]
            return leg.exit_code
        if leg.signals and script.stops_on_sigterm:  # SIGTERM/SIGINT: it checkpoints and stops
            self._end(leg, dataclasses.replace(script, outcome=Outcome.PREEMPTED))
            return leg.exit_code
        if leg.polls < script.polls + script.kills_supervisor:
            leg.polls += 1
            return None
        self._end(leg)
        return leg.exit_code

    def signal(self, handle: WorkerHandle, signum: int) -> None:
        leg = self.legs[handle.external_id]
        self.signals.append((leg.launch.leg, signum))
        if leg.exit_code is None:
            leg.signals.append(signum)

    def adopt(self, leg: LegRecord) -> WorkerHandle | None:
        found = self.legs.get(leg.external_id or "")
        if found is None or found.exit_code is not None:
            return None
        self.adoptions.append(leg.leg)
        return found.handle

    def outcome(self, leg: LegRef) -> StopRequest | None:
        found = self._find(leg)
        return None if found is None else found.request

    def status(self, leg: LegRef) -> dict[str, Any]:
        found = self._find(leg)
        if found is None:
            return {}
        script = found.script
        return {
            "step": script.step if script.reached is None else script.reached,
            "state": "running" if found.exit_code is None else "ended",
            "start_step": found.restored,
            "notices": list(script.notices),
        }

    def _find(self, leg: LegRef) -> ScriptedLeg | None:
        """The newest start of this leg of this job."""
        for scripted in reversed(self.legs.values()):
            if scripted.launch.job == leg.job and scripted.launch.leg == leg.leg:
                return scripted
        return None

    @staticmethod
    def _end(leg: ScriptedLeg, script: LegScript | None = None) -> None:
        script = script or leg.script
        if script.checkpoint:
            _save_checkpoint(leg.launch.env, script.step)
        if script.outcome is not None:
            leg.request = StopRequest(script.outcome, script.step, script.dest, script.until_s)
        leg.exit_code = script.exit_code


def _latest_step(env: Mapping[str, str]) -> int:
    """The newest complete checkpoint's step in the leg's store (0: none)."""
    from caftm.checkpoint import latest_complete_step
    from caftm.errors import CaftmError

    try:
        return latest_complete_step(env[protocol.ENV_CHECKPOINT_URL]) or 0
    except CaftmError:
        return 0


def _save_checkpoint(env: Mapping[str, str], step: int) -> None:
    """A tiny checkpoint of ``step``, owned by the leg's job, in the leg's store (none when it
    has that step)."""
    from caftm.checkpoint import CheckpointStore, TrainingState
    from caftm.checkpoint.owner import JobIdentity

    url = env[protocol.ENV_CHECKPOINT_URL]
    with CheckpointStore(url, keep_last=None, owner=JobIdentity.from_env(env)) as store:
        if any(info.step == step for info in store.checkpoints()):
            return
        store.save(TrainingState(extra={"scripted_step": step}, rng=False), step=step)
