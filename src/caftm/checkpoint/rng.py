"""Capture and restore every global random-number generator training draws from.

Covers Python's ``random``, numpy's legacy global generator (``np.random.*``), torch's CPU
generator and, when CUDA is available, every CUDA device's generator. Generators you own
(``torch.Generator``, ``np.random.Generator``) belong in your own ``state_dict``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

from caftm.errors import CheckpointError

__all__ = ["capture_rng_state", "restore_rng_state"]

logger = logging.getLogger(__name__)


def capture_rng_state() -> dict[str, Any]:
    """The state of all global generators, as a tree :func:`encode_tree` can store.

    Returns:
        ``{"python": ..., "numpy": ..., "torch_cpu": uint8 tensor, "torch_cuda": [tensors]}``;
        ``torch_cuda`` is an empty list without CUDA.
    """
    cuda_states: list[torch.Tensor] = []
    if torch.cuda.is_available():
        cuda_states = list(torch.cuda.get_rng_state_all())
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=True),
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": cuda_states,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every global generator back to a state from :func:`capture_rng_state`.

    CUDA states are restored when CUDA is available with the same device count; otherwise a
    warning is logged (training resumed on other hardware cannot be bit-exact anyway).

    Raises:
        CheckpointError: ``state`` lacks a generator or holds a malformed one.
    """
    try:
        random.setstate(_as_python_state(state["python"]))
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch_cpu"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint holds an invalid RNG state: {e}") from e
    cuda_states = state.get("torch_cuda") or []
    if not cuda_states:
        return
    if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda_states):
        torch.cuda.set_rng_state_all(cuda_states)
    else:
        logger.warning(
            "checkpoint holds RNG states for %d CUDA device(s) but %d are available; "
            "CUDA generators not restored",
            len(cuda_states),
            torch.cuda.device_count() if torch.cuda.is_available() else 0,
        )


def _as_python_state(value: Any) -> tuple[Any, ...]:
    version, internal, gauss_next = value
    return (version, tuple(internal), gauss_next)
