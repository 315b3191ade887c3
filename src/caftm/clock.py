"""The clock a job runs on: real time, or an accelerated one shared by supervisor and workers.

A demo or a test may run a day of grid time in a minute: :class:`AcceleratedClock` maps wall time
to virtual POSIX time (``virtual = origin_s + (wall - wall_origin_s) * speed``). The supervisor
puts it in its workers' environment as ``CAFTM_CLOCK`` so that every process of one job reads the
same virtual time; :func:`job_clock` returns it where set, else ``time.time``.

:class:`FakeClock` is virtual time for tests: nothing waits, and a sleep advances it at once
(give it to :class:`~caftm.jobs.supervisor.Supervisor` as ``clock=``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from caftm.errors import ConfigError

__all__ = [
    "CLOCK_ENV",
    "AcceleratedClock",
    "FakeClock",
    "clock_speed",
    "job_clock",
    "sleep_virtual",
]

#: Environment variable carrying an accelerated clock: ``origin_s@wall_origin_s*speed``.
CLOCK_ENV = "CAFTM_CLOCK"


@dataclass(frozen=True, slots=True)
class AcceleratedClock:
    """Virtual POSIX seconds running ``speed`` times faster than the wall clock.

    Attributes:
        origin_s: virtual POSIX time (s) at ``wall_origin_s``.
        wall_origin_s: wall POSIX time (s) when the clock started.
        speed: virtual seconds per wall second (3600: one grid hour per wall second).
    """

    origin_s: float
    wall_origin_s: float
    speed: float

    def __post_init__(self) -> None:
        for name in ("origin_s", "wall_origin_s", "speed"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"accelerated clock: {name} must be finite")
        if self.speed <= 0:
            raise ConfigError(f"accelerated clock: speed must be > 0, got {self.speed}")

    @classmethod
    def starting_at(cls, origin_s: float, speed: float) -> AcceleratedClock:
        """A clock that reads ``origin_s`` now and runs ``speed`` times faster."""
        return cls(origin_s, time.time(), speed)

    def __call__(self) -> float:
        return self.origin_s + (time.time() - self.wall_origin_s) * self.speed

    def to_env(self) -> str:
        """The ``CAFTM_CLOCK`` value of this clock."""
        return f"{self.origin_s!r}@{self.wall_origin_s!r}*{self.speed!r}"

    @classmethod
    def from_env(cls, text: str) -> AcceleratedClock:
        """Parse a ``CAFTM_CLOCK`` value.

        Raises:
            ConfigError: the text is not ``origin_s@wall_origin_s*speed``.
        """
        try:
            origin, rest = text.split("@", 1)
            wall, speed = rest.split("*", 1)
            return cls(float(origin), float(wall), float(speed))
        except ValueError as e:
            raise ConfigError(f"{CLOCK_ENV}={text!r} is not 'origin_s@wall_origin_s*speed'") from e


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
