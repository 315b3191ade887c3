"""GPU backends by name: ``nvml`` | ``simulated`` | ``replay`` (and ``auto``).

Each name maps to ``"module:Class"``, imported on first use, with an install hint when the import
fails. ``get_backend("auto")`` picks NVML when it initialises and sees a GPU, else the simulated
H100 (and says so in a warning; the simulated backend flags every output as SIMULATED).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from caftm._registry import LazyRegistry
from caftm.errors import ConfigError, DeviceError
from caftm.gpu.base import GpuBackend

__all__ = ["available_backends", "get_backend", "register_backend"]

log = logging.getLogger(__name__)

_REGISTRY: LazyRegistry[GpuBackend] = LazyRegistry(
    "GPU backend",
    GpuBackend,
    {
        "nvml": (
            "caftm.gpu.nvml:NvmlBackend",
            "pip install nvidia-ml-py (in caftm's base install) on a machine with an NVIDIA driver",
        ),
        "simulated": ("caftm.gpu.simulated:SimulatedBackend", "part of caftm; reinstall caftm"),
        "replay": ("caftm.gpu.replay:ReplayBackend", "part of caftm; reinstall caftm"),
    },
    also_accepted=("auto",),
)


def available_backends() -> list[str]:
    """Registered backend names, sorted (``auto`` is accepted too)."""
    return _REGISTRY.names()


def register_backend(name: str, target: str, install_hint: str = "") -> None:
    """Register ``name`` → ``"module:Class"`` (a :class:`GpuBackend` subclass)."""
    _REGISTRY.register(name, target, install_hint)


def get_backend(name: str = "auto", **options: Any) -> GpuBackend:
    """The backend called ``name``, built with ``options``.

    ``auto``: NVML when it initialises and sees at least one GPU (given the ``options`` its
    constructor accepts), else the simulated backend (given all ``options``).

    Raises:
        ConfigError: unknown name, or a backend that cannot be imported.
        DeviceError: the named backend cannot start (e.g. ``nvml`` without a driver).
    """
    if name != "auto":
        return _REGISTRY.load(name)(**options)
    try:
        nvml_cls = _REGISTRY.load("nvml")
        accepted = inspect.signature(nvml_cls).parameters
        backend = nvml_cls(**{k: v for k, v in options.items() if k in accepted})
        if backend.device_count() > 0:
            return backend
        reason = "NVML sees no GPU"
        close = getattr(backend, "close", None)
        if callable(close):
            close()
    except (DeviceError, ConfigError) as e:
        reason = str(e)
    log.warning("no usable NVIDIA GPU (%s): using the SIMULATED backend", reason)
    return _REGISTRY.load("simulated")(**options)
