"""The clock a job runs on: real time, or an accelerated one shared by supervisor and workers.

A demo or a test may run a day of grid time in a minute: :class:`AcceleratedClock` maps wall time
to virtual POSIX time, ``speed`` times faster while the job trains or waits out a pause, and at
the wall clock's pace (1×) while it is held: while a process starts or stops and while a
checkpoint is written or moves. Those take their real wall duration on the job's timeline, so a
move is seconds, not hours, however busy the machine is.

Who holds it and who runs it:

=================================  ==========================================================
moment                             the clock
=================================  ==========================================================
the supervisor creates the job     held (the first worker is still to start)
a worker's training step           runs (:class:`~caftm.integrations._core.ControllerSession`)
a checkpoint is written            held until the next step (the worker)
the worker stops or ends           held; the supervisor takes the worker's anchor from its
                                   last status and keeps it held through the transfer
the supervisor waits out a pause   runs; held again when the next worker starts
=================================  ==========================================================

The supervisor puts its clock in each worker's environment as ``CAFTM_CLOCK``
(``origin_s@wall_origin_s*speed``, ``,held`` appended where it is held); :func:`job_clock`
returns it where set, else ``time.time``. A worker reports its clock back in its status.

:class:`FakeClock` is virtual time for tests: nothing waits, and a sleep advances it at once
(give it to :class:`~caftm.jobs.supervisor.Supervisor` as ``clock=``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping

from caftm.errors import ConfigError

__all__ = [
    "CLOCK_ENV",
    "HELD_SUFFIX",
    "AcceleratedClock",
    "FakeClock",
    "clock_speed",
    "job_clock",
    "sleep_virtual",
]

#: Environment variable carrying an accelerated clock: ``origin_s@wall_origin_s*speed[,held]``.
CLOCK_ENV = "CAFTM_CLOCK"
#: Ends a ``CAFTM_CLOCK`` value whose clock is held (runs at 1× until the job trains).
HELD_SUFFIX = ",held"


class AcceleratedClock:
    """Virtual POSIX seconds that run ``speed`` times faster than the wall clock while the job
    trains or waits out a pause, and at the wall clock's pace while it is held.

    The job holds it while a process starts or stops and while a checkpoint is written or moves
    (:meth:`hold`), and runs it again at the next training step (:meth:`run`): those take their
    real wall duration on the job's timeline, so a slow start on a busy machine does not become
    grid hours. One anchor ``(origin_s, wall_origin_s)`` and a pace describe it at any moment;
    :meth:`run` and :meth:`hold` move the anchor to now (one assignment: a reader on another
    thread never sees half of it).

    Args:
        origin_s: virtual POSIX time (s) at ``wall_origin_s``.
        wall_origin_s: wall POSIX time (s) of the anchor.
        speed: virtual seconds per wall second while it runs (3600: one grid hour per second).
        running: runs at ``speed`` from the anchor (True) or is held at 1× (False).

    Raises:
        ConfigError: a value is not finite, or ``speed`` is not positive.
    """

    __slots__ = ("_anchor", "speed")

    def __init__(
        self, origin_s: float, wall_origin_s: float, speed: float, *, running: bool = True
    ) -> None:
        for name, value in (("origin_s", origin_s), ("wall_origin_s", wall_origin_s),
                            ("speed", speed)):  # fmt: skip
            if not math.isfinite(value):
                raise ConfigError(f"accelerated clock: {name} must be finite")
        if speed <= 0:
            raise ConfigError(f"accelerated clock: speed must be > 0, got {speed}")
        self.speed = float(speed)
        self._anchor = (float(origin_s), float(wall_origin_s), bool(running))

    @classmethod
    def starting_at(
        cls, origin_s: float, speed: float, *, running: bool = True
    ) -> AcceleratedClock:
        """A clock that reads ``origin_s`` now and runs ``speed`` times faster (or is held)."""
        return cls(origin_s, time.time(), speed, running=running)

    @property
    def origin_s(self) -> float:
        """Virtual POSIX time (s) at the anchor."""
        return self._anchor[0]

    @property
    def wall_origin_s(self) -> float:
        """Wall POSIX time (s) of the anchor."""
        return self._anchor[1]

    @property
    def running(self) -> bool:
        """Whether it runs at ``speed`` (True) or is held at the wall clock's pace (False)."""
        return self._anchor[2]

    def __call__(self) -> float:
        origin_s, wall_s, running = self._anchor
        return origin_s + (time.time() - wall_s) * (self.speed if running else 1.0)

    def run(self) -> None:
        """Run at ``speed`` from now on (training steps run, or the job waits out a pause)."""
        if not self._anchor[2]:
            self._move_anchor(running=True)

    def hold(self) -> None:
        """Run at the wall clock's pace from now on (a process starts or stops, a checkpoint is
        written or moves)."""
        if self._anchor[2]:
            self._move_anchor(running=False)

    def _move_anchor(self, *, running: bool) -> None:
        wall_s = time.time()
        origin_s, anchor_wall_s, was_running = self._anchor
        now_s = origin_s + (wall_s - anchor_wall_s) * (self.speed if was_running else 1.0)
        self._anchor = (now_s, wall_s, running)

    def follow(self, text: str) -> None:
        """Take the anchor of another process's clock of the same job (its ``CAFTM_CLOCK``
        form, e.g. a worker's last status): it knows when the job trained.

        Raises:
            ConfigError: the text is malformed.
        """
        other = AcceleratedClock.from_env(text)
        self.speed = other.speed
        self._anchor = other._anchor

    def to_env(self) -> str:
        """The ``CAFTM_CLOCK`` value of this clock (``origin_s@wall_origin_s*speed``, with
        ``,held`` where it is held)."""
        origin_s, wall_s, running = self._anchor
        return f"{origin_s!r}@{wall_s!r}*{self.speed!r}" + ("" if running else HELD_SUFFIX)

    @classmethod
    def from_env(cls, text: str) -> AcceleratedClock:
        """Parse a ``CAFTM_CLOCK`` value.

        Raises:
            ConfigError: the text is not ``origin_s@wall_origin_s*speed[,held]``.
        """
        body = text.removesuffix(HELD_SUFFIX)
        try:
            origin, rest = body.split("@", 1)
            wall, speed = rest.split("*", 1)
            return cls(float(origin), float(wall), float(speed), running=body == text)
        except ValueError as e:
            raise ConfigError(
                f"{CLOCK_ENV}={text!r} is not 'origin_s@wall_origin_s*speed[{HELD_SUFFIX}]'"
            ) from e

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AcceleratedClock):
            return NotImplemented
        return (self._anchor, self.speed) == (other._anchor, other.speed)

    __hash__ = None  # type: ignore[assignment]  # mutable: run() and hold() move the anchor

    def __repr__(self) -> str:
        return f"AcceleratedClock({self.to_env()!r})"


class FakeClock:
    """Virtual time for tests: reading it costs nothing and sleeping it waits for nothing.

    It keeps two times: wall seconds slept (:meth:`monotonic`) and virtual POSIX seconds
    (calling the clock), which run ``speed`` times faster, as an :class:`AcceleratedClock`'s do.
    :meth:`sleep` advances both at once and records the wait in :attr:`slept_s`.

    Args:
        start_s: the virtual POSIX time (s) it reads first.
        speed: virtual seconds per slept second.

    Raises:
        ConfigError: ``speed`` is not a positive finite number.
    """

    def __init__(self, start_s: float = 0.0, *, speed: float = 1.0) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ConfigError(f"fake clock: speed must be > 0, got {speed}")
        self.start_s = start_s
        self.speed = speed
        self.wall_s = 0.0
        #: every wait asked of :meth:`sleep` (wall seconds), in order
        self.slept_s: list[float] = []

    def __call__(self) -> float:
        return self.start_s + self.wall_s * self.speed

    def monotonic(self) -> float:
        """Wall seconds slept so far (the fake ``time.monotonic``)."""
        return self.wall_s

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` of wall time (``seconds * speed`` of virtual time), at once."""
        self.slept_s.append(seconds)
        self.wall_s += max(0.0, seconds)

    def advance(self, virtual_s: float) -> None:
        """Move virtual time on by ``virtual_s`` seconds without recording a sleep."""
        self.wall_s += max(0.0, virtual_s) / self.speed


def job_clock(env: Mapping[str, str] | None = None) -> Callable[[], float]:
    """The job's clock: the accelerated one in ``CAFTM_CLOCK`` where set, else ``time.time``.

    Raises:
        ConfigError: ``CAFTM_CLOCK`` is malformed.
    """
    text = (os.environ if env is None else env).get(CLOCK_ENV)
    return AcceleratedClock.from_env(text) if text else time.time


def clock_speed(clock: Callable[[], float]) -> float:
    """Virtual seconds per wall second of ``clock`` (1 for any clock that is not accelerated)."""
    return clock.speed if isinstance(clock, AcceleratedClock | FakeClock) else 1.0


def sleep_virtual(clock: Callable[[], float], seconds: float) -> None:
    """Sleep ``seconds`` of ``clock``'s time (wall time divided by its speed)."""
    if seconds > 0:
        wait = clock.sleep if isinstance(clock, FakeClock) else time.sleep
        wait(seconds / clock_speed(clock))
