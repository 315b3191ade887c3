"""What a training checkpoint holds, captured from and restored into live objects.

:class:`TrainingState` names the objects of a training loop once; :meth:`TrainingState.capture`
turns them into a state tree (plain data plus tensors) and :meth:`TrainingState.restore` puts
a tree back, in place. The tree's top level is::

    {"step": int, "model": ..., "optimizer": ..., "scheduler": ..., "scaler": ...,
     "sampler": ..., "stateful": {name: ...}, "rng": ..., "extra": {...}}

with only the parts that were given. Integrations (Lightning, Hugging Face, DDP) add their own
objects through ``stateful``: anything with ``state_dict()`` and ``load_state_dict()``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from caftm.checkpoint.rng import capture_rng_state, restore_rng_state
from caftm.errors import CheckpointError, ConfigError

__all__ = ["Stateful", "TrainingState"]

logger = logging.getLogger(__name__)

_COMPONENTS = ("model", "optimizer", "scheduler", "scaler", "sampler")


@runtime_checkable
class Stateful(Protocol):
    """Anything with ``state_dict()``/``load_state_dict()``: optimisers, schedulers, samplers."""

    def state_dict(self) -> Any:
        """Return the object's state."""

    def load_state_dict(self, state_dict: Any, /) -> Any:
        """Load a state returned by :meth:`state_dict`."""


@dataclass
class TrainingState:
    """The objects whose state makes a training run resumable, bit-exactly.

    Attributes:
        model: The module (its ``state_dict``: parameters and buffers).
        optimizer: Any ``torch.optim.Optimizer`` (or other :class:`Stateful`).
        scheduler: An LR scheduler. Its ``state_dict`` must hold only data: ``LambdaLR`` with
            plain functions stores ``None`` for them and works; lambdas stored as objects are
            refused with :class:`~caftm.errors.CheckpointError`.
        scaler: A ``torch.amp.GradScaler`` (a disabled one stores nothing).
        sampler: The data sampler, usually :class:`~caftm.checkpoint.ResumableSampler`.
        stateful: More named :class:`Stateful` objects (a second optimiser, an EMA, ...).
        extra: Your own state (the controller's, counters, ...): numbers, strings, lists,
            tuples, dicts, ``None``. Restored in place: the same dict object is updated.
        rng: Capture and restore the global RNGs (python, numpy, torch CPU and CUDA).
        strict: Load the model with ``strict=True``.

    Raises:
        ConfigError: A component lacks ``state_dict``/``load_state_dict``, or ``stateful`` or
            ``extra`` is not a dict.
    """

    model: torch.nn.Module | None = None
    optimizer: Stateful | None = None
    scheduler: Stateful | None = None
    scaler: Stateful | None = None
    sampler: Stateful | None = None
    stateful: dict[str, Stateful] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    rng: bool = True
    strict: bool = True

    def __post_init__(self) -> None:
        for name in _COMPONENTS:
            _check_stateful(name, getattr(self, name), optional=True)
        if not isinstance(self.stateful, dict):
            raise ConfigError(f"stateful must be a dict, got {type(self.stateful).__qualname__}")
        for name, obj in self.stateful.items():
            _check_stateful(f"stateful[{name!r}]", obj, optional=False)
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a dict, got {type(self.extra).__qualname__}")

    def capture(self, *, step: int) -> dict[str, Any]:
        """The current state as a tree; tensors are *references* to the live ones.

        Args:
            step: The training step counter to record.
        """
        tree: dict[str, Any] = {"step": int(step)}
        for name in _COMPONENTS:
            component = getattr(self, name)
            if component is not None:
                tree[name] = component.state_dict()
        if self.stateful:
            tree["stateful"] = {name: obj.state_dict() for name, obj in self.stateful.items()}
        if self.rng:
            tree["rng"] = capture_rng_state()
        tree["extra"] = dict(self.extra)
        return tree

    def restore(self, tree: Mapping[str, Any], *, where: str = "checkpoint") -> int:
        """Load ``tree`` (from :meth:`capture`, possibly via storage) into the live objects.

        Order: model, optimiser, scheduler, scaler, sampler, ``stateful``, ``extra``, and the
        RNGs last, so nothing loaded afterwards can disturb them.

        Args:
            tree: The state tree.
            where: Where the tree came from, for messages.

        Returns:
            The step counter stored in the tree.

        Raises:
            CheckpointError: A part this state has is missing from the tree, or fails to load
                (an optimiser's state saved from another optimiser type included).
        """
        if not isinstance(tree.get("step"), int):
            raise CheckpointError(f"{where} holds no step counter")
        for name in _COMPONENTS:
            component = getattr(self, name)
            if component is None:
                if name in tree:
                    logger.info(
                        "%s holds %s state that this TrainingState does not use", where, name
                    )
                continue
            self._load(name, component, self._part(tree, name, where), where)
        saved_stateful = tree.get("stateful", {})
        if not isinstance(saved_stateful, Mapping):
            raise CheckpointError(f"{where} holds a malformed 'stateful' (not a dict)")
        for name, obj in self.stateful.items():
            if name not in saved_stateful:
                raise CheckpointError(f"{where} holds no state for stateful[{name!r}]")
            self._load(f"stateful[{name!r}]", obj, saved_stateful[name], where)
        extra = tree.get("extra", {})
        if not isinstance(extra, dict):
            raise CheckpointError(f"{where} holds a malformed 'extra' (not a dict)")
        self.extra.clear()
        self.extra.update(extra)
        if self.rng:
            restore_rng_state(self._part(tree, "rng", where))
        return int(tree["step"])

    @staticmethod
    def _part(tree: Mapping[str, Any], name: str, where: str) -> Any:
        if name not in tree:
            off = "False" if name == "rng" else "None"
            raise CheckpointError(
                f"{where} holds no {name} state, but this TrainingState has a {name}; "
                f"restore with {name}={off} or from a checkpoint that includes it"
            )
        return tree[name]

    def _load(self, name: str, component: Any, state: Any, where: str) -> None:
        try:
            if name == "model":
                component.load_state_dict(state, strict=self.strict)
            else:
                component.load_state_dict(state)
        except CheckpointError:
            raise
        except KeyError as e:
            raise CheckpointError(
                f"cannot restore {name} from {where}: its saved state lacks {e} (saved from "
                "another type or configuration?)"
            ) from e
        except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as e:
            raise CheckpointError(f"cannot restore {name} from {where}: {e}") from e
        if isinstance(component, torch.optim.Optimizer):
            _check_optimizer_groups(name, component, where)


def _check_stateful(name: str, obj: Any, *, optional: bool) -> None:
    if obj is None and optional:
        return
    if not callable(getattr(obj, "state_dict", None)) or not callable(
        getattr(obj, "load_state_dict", None)
    ):
        raise ConfigError(
            f"TrainingState {name} must have state_dict() and load_state_dict(), "
            f"got {type(obj).__qualname__}"
        )


def _check_optimizer_groups(name: str, optimizer: torch.optim.Optimizer, where: str) -> None:
    """Refuse a loaded state that lacks hyperparameters: it came from another optimiser type
    (torch's ``load_state_dict`` accepts it, and the next ``step()`` raises a KeyError)."""
    missing = sorted(
        {key for group in optimizer.param_groups for key in optimizer.defaults if key not in group}
    )
    if missing:
        raise CheckpointError(
            f"cannot restore {name} from {where}: its saved parameter groups lack {missing}, "
            f"which {type(optimizer).__name__} needs; the checkpoint was saved with another "
            "optimizer type"
        )
