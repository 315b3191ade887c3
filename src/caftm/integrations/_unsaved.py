"""Refuse to start training whose checkpoints would silently leave part of its state behind.

A resumed run is bit-identical to an uninterrupted one only when every object that changes
during training is checkpointed. What can be seen from the arguments is checked here; what
cannot is left to the documentation:

* an LR scheduler attached to the optimiser but not given: every ``torch.optim.lr_scheduler``
  scheduler writes ``initial_lr`` into the optimiser's param groups when it is created;
* a ``torch.amp.GradScaler``: it keeps no link to the optimiser (only the scaler knows which
  optimisers it stepped), so one that is not passed cannot be found from what is;
* the data loader: ``CarbonAwareTraining`` is not given it, so its sampler cannot be checked
  (the Lightning callback sees its loaders and checks them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from caftm.errors import ConfigError

__all__ = ["OPT_OUT", "refuse_unsaved_scheduler"]

#: the keyword that accepts state lost at every resume
OPT_OUT = "allow_unsaved_state=True"


def refuse_unsaved_scheduler(optimizer: Any, scheduler: Any, stateful: Mapping[str, Any]) -> None:
    """Refuse an optimiser whose LR scheduler would not be checkpointed.

    Raises:
        ConfigError: the optimiser's param groups carry ``initial_lr`` (a scheduler is bound
            to it) and neither ``scheduler`` nor any ``stateful`` object is a scheduler.
    """
    if optimizer is None or scheduler is not None:
        return
    if any(_is_scheduler(obj) for obj in stateful.values()):
        return
    groups = getattr(optimizer, "param_groups", None) or []
    if any(isinstance(group, Mapping) and "initial_lr" in group for group in groups):
        raise ConfigError(
            "the optimizer has an LR scheduler bound to it (its param groups carry "
            "'initial_lr') but no scheduler= was given: pass scheduler=your_scheduler so that "
            f"a resume continues the schedule, or {OPT_OUT} to let it restart at every resume"
        )


def _is_scheduler(obj: Any) -> bool:
    return isinstance(obj, torch.optim.lr_scheduler.LRScheduler)
