"""Data-parallel training: rank 0 decides, every rank acts at the same step.

After every mini-batch all ranks meet in one small broadcast (a float64 tensor of 68 values,
tens of microseconds on gloo over loopback). Rank 0 runs the controller; when one of its hooks
fires, rank 0 broadcasts a command and the other ranks, waiting in the same broadcast, act on it:

========  =====================================================================
command   every rank
========  =====================================================================
GO        carries on with the next mini-batch
SAVE      saves its part of the checkpoint; all ranks then agree it succeeded
SET       applies the GPU setting to its own GPU (NaN: restore the default); settings
          decided outside a step (when the controller starts) go out at the next step
STOP      stops; outcome MOVED (with the destination), PAUSED (with the time) or PREEMPTED
========  =====================================================================

Checkpoints: rank 0 writes the shared state (model, optimiser, scheduler, scaler) together with
its own sampler position, RNGs and the controller's state into ``<url>/rank-00000``; every other
rank writes only its own sampler position, RNGs and extras into ``<url>/rank-<r>``. On resume the
ranks agree on the newest step that every rank completed (an all-reduce MIN), so a crash between
two ranks' writes falls back to the previous step; ranks other than 0 read the shared state from
rank 0's checkpoint of that step. After the restore the other ranks hand rank 0 their fate
lines (a checkpoint of theirs skipped as damaged, ...), which rank 0 reports to a supervisor.
Pauses in place keep the other ranks waiting in the broadcast:
set the process group's ``timeout`` above the longest pause.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.distributed as dist

from caftm._notice import NoticeRecorder
from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.control.config import MAX_SITE_NAME_BYTES
from caftm.control.hooks import Hooks
from caftm.errors import CheckpointError, ConfigError
from caftm.integrations._core import (
    ControllerSession,
    Outcome,
    StopRequest,
    apply_knob_setting,
)
from caftm.integrations._gpu import GpuSetup

__all__ = ["DistributedSteps", "world"]

log = logging.getLogger(__name__)

_GO, _SAVE, _SET, _STOP = 0.0, 1.0, 2.0, 3.0
_OUTCOMES = (Outcome.MOVED, Outcome.PAUSED, Outcome.PREEMPTED)
_DEST_LEN = MAX_SITE_NAME_BYTES  # a site name fits the stop message
_WIDTH = 4 + _DEST_LEN


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _encode(
    command: float, outcome: int = 0, value: float = math.nan, dest: str = ""
) -> torch.Tensor:
    raw = dest.encode()
    if len(raw) > _DEST_LEN:
        raise ConfigError(f"site name {dest!r} is longer than {_DEST_LEN} bytes")
    message = torch.zeros(_WIDTH, dtype=torch.float64)
    message[0], message[1], message[2], message[3] = command, float(outcome), value, float(len(raw))
    if raw:
        message[4 : 4 + len(raw)] = torch.tensor(list(raw), dtype=torch.float64)
    return message


def _decode_dest(message: torch.Tensor) -> str:
    length = int(message[3].item())
    return bytes(int(v) for v in message[4 : 4 + length].tolist()).decode()


class DistributedSteps:
    """The per-step protocol between ranks (a pass-through with one process).

    Args:
        session: rank 0's controller session (None on the other ranks).
        rank, world_size: this process and the group size.
        gpu: this rank's GPU pieces (for SET), or None.
    """

    def __init__(
        self, session: ControllerSession | None, rank: int, world_size: int, gpu: GpuSetup | None
    ) -> None:
        if (session is None) != (rank != 0):
            raise ConfigError("exactly rank 0 runs the controller")
        self.session = session
        self.rank = rank
        self.world_size = world_size
        self.gpu = gpu
        self._save: Callable[[], None] | None = None
        self._in_step = False
        self._queued_setting: tuple[float | None] | None = None
        if session is not None and world_size > 1:
            hooks = session.controller.hooks
            session.controller.hooks = Hooks(
                apply_setting=self._lead_apply(hooks.apply_setting),
                checkpoint=self._lead_checkpoint(hooks.checkpoint),
                migrate=hooks.migrate,
                pause=hooks.pause,
                resume=hooks.resume,
                on_event=hooks.on_event,
            )

    # -- one step ------------------------------------------------------------------------------
    def after_step(self, step: int, save: Callable[[], None]) -> StopRequest | None:
        """Run one step's decision on every rank; all ranks return the same answer."""
        if self.world_size == 1:
            assert self.session is not None
            return self.session.after_step(step, save)
        self._save = save
        self._in_step = True
        try:
            if self.session is not None:
                if self._queued_setting is not None:  # decided outside a step (at start)
                    (setting,) = self._queued_setting
                    self._queued_setting = None
                    dist.broadcast(_encode(_SET, value=math.nan if setting is None else setting), 0)
                stop = self.session.after_step(step, save)
                if stop is None:
                    dist.broadcast(_encode(_GO), src=0)
                else:
                    self._broadcast_stop(stop)
                return stop
            return self._follow(step)
        finally:
            self._save = None
            self._in_step = False

    def _broadcast_stop(self, stop: StopRequest) -> None:
        value = math.nan if stop.until_s is None else float(stop.until_s)
        code = _OUTCOMES.index(stop.outcome)
        dist.broadcast(_encode(_STOP, code, value, stop.dest or ""), src=0)

    def _follow(self, step: int) -> StopRequest | None:
        message = torch.zeros(_WIDTH, dtype=torch.float64)
        while True:
            dist.broadcast(message, src=0)
            command = float(message[0].item())
            if command == _GO:
                return None
            if command == _SAVE:
                self._agree(self._try_save(step))
            elif command == _SET:
                value = float(message[2].item())
                self._apply_local(None if math.isnan(value) else value)
            elif command == _STOP:
                outcome = _OUTCOMES[int(message[1].item())]
                value = float(message[2].item())
                return StopRequest(
                    outcome,
                    step,
                    dest=_decode_dest(message) or None,
                    until_s=None if math.isnan(value) else value,
                )
            else:
                raise ConfigError(f"rank {self.rank}: unknown command {command} from rank 0")

    # -- rank 0's hooks, wrapped to involve every rank -----------------------------------------
    def _lead_checkpoint(self, inner: Callable[[], object] | None) -> Callable[[], object]:
        def checkpoint() -> None:
            dist.broadcast(_encode(_SAVE), src=0)
            ok = True
            try:
                if inner is not None:
                    inner()
            except Exception:
                ok = False
                log.exception("rank 0: checkpoint failed")
            if not self._agree(ok):
                raise CheckpointError("a rank failed to save its part of the checkpoint")

        return checkpoint

    def _lead_apply(
        self, inner: Callable[[float | None], None] | None
    ) -> Callable[[float | None], None]:
        def apply_setting(setting: float | None) -> None:
            if self._in_step:
                dist.broadcast(_encode(_SET, value=math.nan if setting is None else setting), 0)
            else:  # the other ranks are not listening: forward it at the next step
                self._queued_setting = (setting,)
            if inner is not None:
                inner(setting)

        return apply_setting

    def _try_save(self, step: int) -> bool:
        try:
            if self._save is None:
                raise CheckpointError("save requested outside a training step")
            self._save()
        except Exception:
            log.exception("rank %d: saving step %d failed", self.rank, step)
            return False
        return True

    def _agree(self, ok: bool) -> bool:
        flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _apply_local(self, setting: float | None) -> None:
        apply_knob_setting(None if self.gpu is None else self.gpu.knob, setting)

    # -- fate lines ----------------------------------------------------------------------------
    def gather_notices(self, recorder: NoticeRecorder | None) -> None:
        """Give rank 0's recorder the fate lines every other rank recorded so far (a checkpoint
        of its own skipped as damaged, a GPU-control fallback), each prefixed with its rank.

        Every rank calls it at the same point (after the restore); one process: nothing.
        """
        if self.world_size == 1:
            return
        lines = list(recorder.lines) if recorder is not None else []
        gathered: list[object] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(lines, gathered, dst=0)
        if gathered is None or recorder is None:
            return
        for rank, theirs in enumerate(gathered[1:], start=1):
            for line in theirs if isinstance(theirs, list) else []:
                recorder.add(f"rank {rank}: {line}")

    # -- resume --------------------------------------------------------------------------------
    def restore(
        self,
        store: CheckpointStore,
        state: TrainingState,
        shared_store: CheckpointStore | None = None,
        shared_state: TrainingState | None = None,
    ) -> int:
        """Restore the newest checkpoint every rank completed; returns its step (0: none).

        Args:
            store: this rank's store; state: what this rank saves.
            shared_store, shared_state: ranks other than 0: rank 0's store and the shared
                objects (model, optimiser, ...) to load from it.
        """
        if self.world_size == 1:
            info = store.restore_latest(state)
            return 0 if info is None else info.step
        latest = store.load_latest()  # newest verified checkpoint of this rank, read once
        agreed = torch.tensor([-1 if latest is None else latest[0].step], dtype=torch.int64)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        step = int(agreed.item())
        if step < 0:
            return 0
        if latest is not None and latest[0].step != step:
            latest = None  # another rank lacks it: fall back to the agreed, older step
        if shared_store is not None and shared_state is not None:
            shared_store.restore(shared_state, step)
        if latest is None:
            return store.restore(state, step)
        info, tree = latest
        return state.restore(tree, where=info.path)
