"""caftm.integrations: carbon-aware, resumable training in plain PyTorch, Lightning and HF.

- :class:`caftm.integrations.torch.CarbonAwareTraining`: a context manager and one ``step()``
  per mini-batch (DDP-aware: rank 0 decides, every rank stops at the same step).
- :mod:`caftm.integrations.lightning`: ``CarbonAwareCallback`` (imports ``lightning``).
- :mod:`caftm.integrations.huggingface`: ``CarbonAwareTrainerCallback`` (imports
  ``transformers``).

Framework modules are imported on demand, so ``import caftm.integrations`` needs only torch.
"""

from __future__ import annotations

from caftm.integrations._core import ControllerSession, Outcome, StopRequest

__all__ = ["ControllerSession", "Outcome", "StopRequest"]
