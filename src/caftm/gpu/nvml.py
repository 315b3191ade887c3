"""The ``nvml`` backend: real NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package).

``pynvml`` is imported only here. NVML speaks mW and mJ; this module converts to W and J at the
edge, and translates every NVML error once into :class:`DeviceError` or
:class:`PermissionDeniedError` naming the GPU index.

Indices are those the process sees: when ``CUDA_VISIBLE_DEVICES`` lists numbers (``"2,0"``) or
GPU UUIDs, index 0 is the first listed device, as in torch. NVML has no getter for a locked SM
clock, so :meth:`NvmlBackend.get` reports the lock this process set (None otherwise); a lock left
by a killed run is undone from the knob's state file (:func:`caftm.gpu.knob.recover_stale`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from caftm.errors import DeviceError, PermissionDeniedError
from caftm.gpu.base import DeviceInfo, GpuBackend, KnobKind

__all__ = ["PERMISSION_MESSAGE", "NvmlBackend", "has_set_permission"]

log = logging.getLogger(__name__)

PERMISSION_MESSAGE = (
    "changing GPU clocks/power limits needs root or CAP_SYS_ADMIN "
    "(run with sudo or `setcap`, or set `gpu.control: off` in the config to only observe)"
)
_CAP_SYS_ADMIN_BIT = 21
_T = TypeVar("_T")


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError as e:  # pragma: no cover - nvidia-ml-py is a base dependency
        raise DeviceError(
            "the nvml backend needs nvidia-ml-py: pip install nvidia-ml-py (part of caftm's base "
            "install)"
        ) from e
    return pynvml


def has_set_permission(
    status_path: Path = Path("/proc/self/status"), *, euid: int | None = None
) -> bool:
    """True when this process may change GPU clocks and power limits (root or CAP_SYS_ADMIN).

    Detected without attempting a change: effective uid 0, or bit 21 of ``CapEff`` in
    ``status_path``. ``euid`` defaults to this process's.
    """
    if euid is None:
        euid = os.geteuid() if hasattr(os, "geteuid") else -1
    if euid == 0:
        return True
    try:
        for line in status_path.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool((int(line.split()[1], 16) >> _CAP_SYS_ADMIN_BIT) & 1)
    except (OSError, ValueError, IndexError):
        return False
    return False


def _visible_selectors(env: str | None) -> list[str] | None:
    """Parse CUDA_VISIBLE_DEVICES into selectors (numbers or UUIDs); None means all devices."""
    if env is None:
        return None
    selectors: list[str] = []
    for raw in env.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.isdigit() or item.startswith("GPU-"):
            selectors.append(item)
        elif item.startswith("MIG-"):
            log.warning("CUDA_VISIBLE_DEVICES names MIG instances; nvml backend shows all GPUs")
            return None
        else:  # CUDA stops at the first invalid entry
            break
    return selectors


class NvmlBackend(GpuBackend):
    """Real NVIDIA GPUs through NVML.

    Args:
        visible_devices: overrides ``CUDA_VISIBLE_DEVICES`` (same syntax); None reads the env.

    Raises:
        DeviceError: NVML cannot be initialised (no driver, no library) or a listed GPU is absent.
    """

    name = "nvml"
    simulated = False

    def __init__(self, *, visible_devices: str | None = None) -> None:
        self._nvml = _import_pynvml()
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as e:
            raise DeviceError(
                f"NVML could not be initialised ({e}); is an NVIDIA driver installed?"
            ) from e
        self._closed = False
        self._lock = threading.Lock()
        self._locked_clock_mhz: dict[int, float] = {}
        self._info_cache: dict[int, DeviceInfo] = {}
        env = (
            visible_devices
            if visible_devices is not None
            else os.environ.get("CUDA_VISIBLE_DEVICES")
        )
        try:
            self._handles = self._resolve_handles(_visible_selectors(env))
        except BaseException:
            self.close()
            raise
        self._permitted = has_set_permission()

    # -- lifecycle -------------------------------------------------------------------------
    def _resolve_handles(self, selectors: list[str] | None) -> list[Any]:
        nv = self._nvml
        try:
            count = int(nv.nvmlDeviceGetCount())
            if selectors is None:
                return [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            handles = []
            for sel in selectors:
                if sel.isdigit():
                    if int(sel) >= count:
                        break  # CUDA ignores devices from the first invalid index on
                    handles.append(nv.nvmlDeviceGetHandleByIndex(int(sel)))
                else:
                    handles.append(nv.nvmlDeviceGetHandleByUUID(sel))
            return handles
        except nv.NVMLError as e:
            raise DeviceError(f"NVML could not list GPUs ({e}); check CUDA_VISIBLE_DEVICES") from e

    def close(self) -> None:
        """Shut NVML down (idempotent)."""
        if not getattr(self, "_closed", True):
            self._closed = True
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as e:  # pragma: no cover
                log.debug("nvmlShutdown failed: %s", e)

    def __enter__(self) -> NvmlBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------
    def _handle(self, index: int) -> Any:
        if not 0 <= index < len(self._handles):
            raise DeviceError(
                f"unknown GPU index {index}: this process sees {len(self._handles)} GPU(s) "
                f"(0..{len(self._handles) - 1}); check CUDA_VISIBLE_DEVICES"
            )
        return self._handles[index]

    def _call(self, index: int, what: str, fn: Callable[..., _T], *args: Any) -> _T:
        """Call an NVML function on GPU ``index``, translating its errors once."""
        handle = self._handle(index)
        nv = self._nvml
        try:
            return fn(handle, *args)
        except nv.NVMLError as e:
            code = getattr(e, "value", None)
            if code == nv.NVML_ERROR_NO_PERMISSION:
                raise PermissionDeniedError(f"GPU {index}: {what}: {PERMISSION_MESSAGE}") from e
            raise DeviceError(f"GPU {index}: {what} failed: {e}") from e

    def _is_not_supported(self, index: int, what: str, fn: Callable[..., Any]) -> bool:
        nv = self._nvml
        try:
            fn(self._handle(index))
        except nv.NVMLError as e:
            if getattr(e, "value", None) in (
                nv.NVML_ERROR_NOT_SUPPORTED,
                nv.NVML_ERROR_FUNCTION_NOT_FOUND,
            ):
                return True
            raise DeviceError(f"GPU {index}: {what} failed: {e}") from e
        return False

    def uuid(self, index: int) -> str:
        """The GPU's UUID (stable across CUDA_VISIBLE_DEVICES renumbering)."""
        return str(self._call(index, "reading the UUID", self._nvml.nvmlDeviceGetUUID))

    def mig_enabled(self, index: int) -> bool:
        """True when MIG mode is currently on (False on GPUs without MIG)."""
        nv = self._nvml
        try:
            current, _pending = nv.nvmlDeviceGetMigMode(self._handle(index))
        except nv.NVMLError:
            return False
        return int(current) == int(nv.NVML_DEVICE_MIG_ENABLE)

    # -- contract --------------------------------------------------------------------------
    def device_count(self) -> int:
        return len(self._handles)

    def info(self, index: int) -> DeviceInfo:
        with self._lock:
            cached = self._info_cache.get(index)
        if cached is not None:
            return cached
        nv = self._nvml
        name = self._call(index, "reading the name", nv.nvmlDeviceGetName)
        mem_clocks = self._call(
            index, "reading memory clocks", nv.nvmlDeviceGetSupportedMemoryClocks
        )
        clocks: set[int] = set()
        if mem_clocks:
            top_mem = max(int(m) for m in mem_clocks)
            graphics = self._call(
                index, "reading SM clocks", nv.nvmlDeviceGetSupportedGraphicsClocks, top_mem
            )
            clocks = {int(c) for c in graphics}
        lo_mw, hi_mw = self._call(
            index, "reading power limits", nv.nvmlDeviceGetPowerManagementLimitConstraints
        )
        default_mw = self._call(
            index, "reading the default power limit", nv.nvmlDeviceGetPowerManagementDefaultLimit
        )
        has_counter = not self._is_not_supported(
            index, "reading the energy counter", nv.nvmlDeviceGetTotalEnergyConsumption
        )
        mig = self.mig_enabled(index)
        notes: list[str] = []
        if mig:
            notes.append("MIG mode is on: clocks and power limits cannot be changed")
        if not self._permitted:
            notes.append("no permission to change settings (needs root or CAP_SYS_ADMIN)")
        if not has_counter:
            notes.append("no total-energy counter: energy from power sampling")
        info = DeviceInfo(
            index=index,
            name=name.decode() if isinstance(name, bytes) else str(name),
            clocks_mhz=tuple(sorted(clocks, reverse=True)),
            power_limits_w=(float(lo_mw) / 1000.0, float(hi_mw) / 1000.0),
            default_power_limit_w=float(default_mw) / 1000.0,
            has_energy_counter=has_counter,
            can_set=self._permitted and not mig,
            mig_enabled=mig,
            backend=self.name,
            simulated=False,
            notes=tuple(notes),
        )
        with self._lock:
            self._info_cache[index] = info
        return info

    def get(self, index: int, knob: KnobKind) -> float | None:
        if knob is KnobKind.CLOCK:
            self._handle(index)
            with self._lock:
                return self._locked_clock_mhz.get(index)
        limit_mw = self._call(
            index, "reading the power limit", self._nvml.nvmlDeviceGetPowerManagementLimit
        )
        return float(limit_mw) / 1000.0

    def _check_settable(self, index: int, knob: KnobKind) -> None:
        if self.mig_enabled(index):
            raise DeviceError(
                f"GPU {index} is in MIG mode: its {knob.value} cannot be changed; disable MIG "
                f"(nvidia-smi -i {index} -mig 0) or set `gpu.control: off`"
            )

    def set(self, index: int, knob: KnobKind, value: float) -> None:
        self._check_settable(index, knob)
        nv = self._nvml
        if knob is KnobKind.CLOCK:
            clock = round(value)
            self._call(
                index,
                f"locking the SM clock at {clock} MHz",
                nv.nvmlDeviceSetGpuLockedClocks,
                clock,
                clock,
            )
            with self._lock:
                self._locked_clock_mhz[index] = float(clock)
        else:
            limit_mw = round(value * 1000.0)
            self._call(
                index,
                f"setting the power limit to {value:g} W",
                nv.nvmlDeviceSetPowerManagementLimit,
                limit_mw,
            )
        log.info("GPU %d: %s set to %g", index, knob.value, value)

    def reset(self, index: int, knob: KnobKind) -> None:
        self._check_settable(index, knob)
        nv = self._nvml
        if knob is KnobKind.CLOCK:
            self._call(index, "unlocking the SM clock", nv.nvmlDeviceResetGpuLockedClocks)
            with self._lock:
                self._locked_clock_mhz.pop(index, None)
        else:
            default_mw = self._call(
                index,
                "reading the default power limit",
                nv.nvmlDeviceGetPowerManagementDefaultLimit,
            )
            self._call(
                index, "resetting the power limit", nv.nvmlDeviceSetPowerManagementLimit, default_mw
            )
        log.info("GPU %d: %s reset to the default", index, knob.value)

    def energy_j(self, index: int) -> float:
        """Total-energy counter in J (about 4 ms per read on an H100: keep it off hot paths)."""
        mj = self._call(
            index, "reading the energy counter", self._nvml.nvmlDeviceGetTotalEnergyConsumption
        )
        return float(mj) / 1000.0

    def power_w(self, index: int) -> float:
        mw = self._call(index, "reading power", self._nvml.nvmlDeviceGetPowerUsage)
        return float(mw) / 1000.0

    def sm_clock_mhz(self, index: int) -> float:
        """Current SM clock in MHz."""
        mhz = self._call(
            index,
            "reading the SM clock",
            self._nvml.nvmlDeviceGetClockInfo,
            self._nvml.NVML_CLOCK_SM,
        )
        return float(mhz)
