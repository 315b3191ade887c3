"""One dispatcher of :attr:`Step.actions <caftm.control.states.Step.actions>`.

The pure transition returns actions as plain data; whoever runs them — the live
:class:`~caftm.control.controller.Controller` (GPU knob, checkpoint store, migration hooks) or the
simulator (virtual clock, GPU model, carbon ledger) — implements :class:`ActionHandler`, and
:func:`dispatch` calls it in the order the transition gave. Times are POSIX s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from caftm.control.states import (
    Action,
    ApplySetting,
    Checkpoint,
    Finish,
    Migrate,
    Pause,
    Preempt,
    Resume,
    StartProfiling,
)


class ActionHandler(Protocol):
    """Runs each kind of action."""

    def apply_setting(self, setting: float | None) -> None:
        """Set the GPU knob (MHz or W; None: device default)."""
        ...

    def start_profiling(self, intensity_g_per_kwh: float, now_s: float) -> None:
        """(Re)start the GPU optimiser at this intensity."""
        ...

    def checkpoint(self) -> None:
        """Take a complete checkpoint and remember whether it worked."""
        ...

    def preempt(self) -> None:
        """Take a complete checkpoint before the process stops; a failure propagates."""
        ...

    def migrate(self, dest: str) -> None:
        """Move training to ``dest``."""
        ...

    def pause(self, until_s: float) -> None:
        """Wait in place until ``until_s`` at most."""
        ...

    def resume(self) -> None:
        """Training carries on at the current site."""
        ...

    def finish(self) -> None:
        """Training ended."""
        ...


def dispatch(actions: Iterable[Action | object], handler: ActionHandler, now_s: float) -> None:
    """Run ``actions`` in order through ``handler`` (unknown objects are ignored)."""
    for action in actions:
        if isinstance(action, ApplySetting):
            handler.apply_setting(action.setting)
        elif isinstance(action, StartProfiling):
            handler.start_profiling(action.intensity_g_per_kwh, now_s)
        elif isinstance(action, Checkpoint):
            handler.checkpoint()
        elif isinstance(action, Preempt):
            handler.preempt()
        elif isinstance(action, Migrate):
            handler.migrate(action.dest)
        elif isinstance(action, Pause):
            handler.pause(action.until_s)
        elif isinstance(action, Resume):
            handler.resume()
        elif isinstance(action, Finish):
            handler.finish()
