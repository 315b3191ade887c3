"""Where a move's checkpoint goes: into the planned destination's store, and here too when the
policy then decides otherwise (a scripted controller drives the session's hooks)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from caftm.control.hooks import Hooks
from caftm.integrations._core import ControllerSession, Outcome


class ScriptedController:
    """Plans a move to ``planned``, then runs ``then`` (its hooks) as its step."""

    def __init__(self, planned: str | None, then: Callable[[Hooks], None]) -> None:
        self.hooks = Hooks()
        self.planned = planned
        self.then = then
        self.control_state = SimpleNamespace(pause_until_s=math.nan)
        self._clock = time.time  # real time: no job clock to hold

    def planned_move(self) -> str | None:
        return self.planned

    def step(self) -> None:
        assert self.hooks.checkpoint is not None
        self.hooks.checkpoint()
        self.then(self.hooks)


def _session(controller: ScriptedController) -> tuple[ControllerSession, list[str]]:
    session = ControllerSession(controller, refresher_thread=False)  # type: ignore[arg-type]
    announced: list[str] = []
    session.on_move_planned = announced.append
    return session, announced


def _saver(session: ControllerSession, writes: list[str]) -> Callable[[], None]:
    def save() -> None:  # as CarbonAwareTraining.save: into the planned site's store if any
        if session.moving_to is not None:
            session.written_to = session.moving_to
            writes.append(session.moving_to)
        else:
            writes.append("here")

    return save


def _migrate(dest: str) -> Callable[[Hooks], None]:
    def then(hooks: Hooks) -> None:
        assert hooks.migrate is not None
        hooks.migrate(dest)

    return then


@pytest.mark.parametrize(
    ("planned", "then", "expected_writes", "outcome"),
    [
        ("FR", _migrate("FR"), ["FR"], Outcome.MOVED),  # one write, at the destination
        ("FR", _migrate("DE"), ["FR", "here"], Outcome.MOVED),  # the plan changed: here too
        (None, _migrate("DE"), ["here"], Outcome.MOVED),
        ("FR", lambda hooks: hooks.pause(0.0) if hooks.pause else None, ["FR", "here"],
         Outcome.PAUSED),
    ],
)  # fmt: skip
def test_a_moves_checkpoint_lands_where_training_resumes(
    planned: str | None,
    then: Callable[[Hooks], None],
    expected_writes: list[str],
    outcome: Outcome,
) -> None:
    controller = ScriptedController(planned, then)
    session, announced = _session(controller)
    writes: list[str] = []
    request = session.after_step(7, _saver(session, writes))
    assert request is not None and request.outcome is outcome and request.step == 7
    assert writes == expected_writes
    assert announced == ([planned] if planned else [])
    assert session.moving_to is None
