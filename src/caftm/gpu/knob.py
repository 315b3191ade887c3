"""The GPU knob: lock the SM clock or set the power limit, and always put the original back.

The original setting of every GPU is recorded before the first change and restored on normal
exit, on an exception, on SIGINT and SIGTERM (handlers that restore, then chain to the previous
handler or die by the signal as the default would), and at interpreter exit. A run killed with
SIGKILL cannot clean up, so the originals are first written to a state file (JSON, atomically);
the next knob on the same host restores them (:func:`recover_stale`) and removes the file.

Dry-run mode logs what it would set and never calls a setter.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from caftm._files import atomic_write_json
from caftm.errors import ConfigError, DeviceError, PermissionDeniedError
from caftm.gpu.base import GpuBackend, KnobKind
from caftm.gpu.nvml import PERMISSION_MESSAGE

__all__ = ["GpuKnob", "default_state_dir", "knob_session", "recover_stale"]

log = logging.getLogger(__name__)

_STATE_VERSION = 1
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def default_state_dir() -> Path:
    """Where knob state files live: ``$CAFTM_KNOB_STATE_DIR`` or ``$XDG_STATE_HOME/caftm/knob``."""
    env = os.environ.get("CAFTM_KNOB_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "caftm" / "knob"


def _process_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot) or None; tells a reused pid apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, start_ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start_ticks is None or _process_start_ticks(pid) in (None, start_ticks)


def _device_key(backend: GpuBackend, index: int) -> str | None:
    uuid_of: Callable[[int], str] | None = getattr(backend, "uuid", None)
    return uuid_of(index) if callable(uuid_of) else None


def _describe(kind: KnobKind, value: float | None) -> str:
    return "unlocked" if value is None else f"{value:g} {kind.unit}"


def _apply(
    backend: GpuBackend, index: int, kind: KnobKind, value: float | None, *, force: bool = False
) -> None:
    """Put ``value`` on GPU ``index`` (None: unlock/default); skip writes that change nothing.

    ``force`` writes anyway: a fresh process cannot read a clock lock set by another (NVML has
    no getter for it), so restoring a stale setting must not trust ``get``.
    """
    if not force and backend.get(index, kind) == value:
        return
    if value is None:
        backend.reset(index, kind)
    else:
        backend.set(index, kind, value)


def recover_stale(
    backend: GpuBackend, state_dir: Path | None = None, *, dry_run: bool = False
) -> int:
    """Restore settings left by knobs of dead processes on this host; returns how many files.

    Files of live processes, other hosts or other backends are left alone. In dry-run mode the
    restore is only logged and the files stay.
    """
    directory = state_dir or default_state_dir()
    if not directory.is_dir():
        return 0
    host = socket.gethostname()
    restored = 0
    for path in sorted(directory.glob("knob-*.json")):
        try:
            state = json.loads(path.read_text())
            if not isinstance(state, dict):
                raise TypeError(f"expected a JSON object, got {type(state).__name__}")
            if state.get("host") != host or state.get("backend") != backend.name:
                continue
            if _alive(int(state["pid"]), state.get("pid_start")):
                continue
            kind = KnobKind(state["kind"])
            originals = [
                (
                    int(o["index"]),
                    o.get("device_key"),
                    None if o["value"] is None else float(o["value"]),
                )
                for o in state["originals"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable knob state file %s: %s", path, e)
            continue
        keys = {_device_key(backend, i): i for i in range(backend.device_count())}
        failed = False
        for index, key, value in originals:
            if key is not None and key not in keys:  # that GPU is not visible to this process
                log.warning("stale setting in %s is for GPU %s, not visible here; kept", path, key)
                failed = True
                continue
            target = keys[key] if key is not None else index
            if dry_run:
                log.info(
                    "dry run: would restore GPU %d %s to %s (stale, from %s)",
                    target,
                    kind.value,
                    _describe(kind, value),
                    path.name,
                )
                continue
            log.warning(
                "restoring GPU %d %s to %s, left by a killed run (%s)",
                target,
                kind.value,
                _describe(kind, value),
                path.name,
            )
            try:
                _apply(backend, target, kind, value, force=True)
            except DeviceError as e:
                failed = True
                log.warning(
                    "could not restore GPU %d from %s (kept for the next start): %s",
                    target,
                    path,
                    e,
                )
        if not dry_run and not failed:
            path.unlink(missing_ok=True)
            restored += 1
    return restored


class GpuKnob:
    """Sets one kind of GPU setting on a set of GPUs and restores the originals.

    Args:
        backend: the GPUs' backend.
        indices: GPU indices (default: all).
        kind: ``KnobKind.CLOCK`` (locked SM clock, MHz) or ``KnobKind.POWER`` (power limit, W).
        dry_run: log what would be set; never call a setter.
        state_dir: where the crash-recovery state file goes (default :func:`default_state_dir`).
        handle_signals: install SIGINT/SIGTERM handlers that restore (main thread only).

    Raises (from :meth:`start`):
        DeviceError: unknown index, or MIG mode on.
        PermissionDeniedError: the process may not change settings (not in dry-run mode).
    """

    def __init__(
        self,
        backend: GpuBackend,
        indices: Iterable[int] | None = None,
        kind: KnobKind | str = KnobKind.CLOCK,
        *,
        dry_run: bool = False,
        state_dir: Path | None = None,
        handle_signals: bool = True,
    ) -> None:
        try:
            self.kind = KnobKind(kind)
        except ValueError as e:
            raise ConfigError(f"unknown knob {kind!r}: use 'clock' or 'power'") from e
        self.backend = backend
        self.indices: tuple[int, ...] = tuple(
            sorted(set(indices)) if indices is not None else range(backend.device_count())
        )
        if not self.indices:
            raise ConfigError("GpuKnob needs at least one GPU index")
        self.dry_run = dry_run
        self.state_dir = state_dir or default_state_dir()
        self.handle_signals = handle_signals
        self._lock = threading.RLock()
        self._originals: dict[int, float | None] | None = None
        self._applied: dict[int, float | None] = {}
        self._state_path: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> GpuKnob:
        """Check capability, restore stale settings, record the originals; returns self."""
        with self._lock:
            if self._originals is not None:
                return self
            for index in self.indices:
                info = self.backend.info(index)  # DeviceError for an unknown index
                if info.mig_enabled:
                    raise DeviceError(
                        f"GPU {index} is in MIG mode: its {self.kind.value} cannot be changed; "
                        f"disable MIG (nvidia-smi -i {index} -mig 0) or set `gpu.control: off`"
                    )
                if not info.can_set and not self.dry_run:
                    raise PermissionDeniedError(f"GPU {index}: {PERMISSION_MESSAGE}")
            recover_stale(self.backend, self.state_dir, dry_run=self.dry_run)
            self._originals = {i: self.backend.get(i, self.kind) for i in self.indices}
            self._applied = dict(self._originals)
            _register(self)
        return self

    def __enter__(self) -> GpuKnob:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Restore the originals and stop watching signals for this knob (idempotent)."""
        try:
            self.restore()
        finally:
            _unregister(self)

    # -- values ----------------------------------------------------------------------------
    def supported(self) -> list[float]:
        """Values every selected GPU supports, ascending (MHz or W)."""
        common: set[float] | None = None
        for index in self.indices:
            values = set(self.backend.supported(index, self.kind))
            common = values if common is None else common & values
        return sorted(common or ())

    def check(self, value: float, *, snap: bool = False) -> float:
        """The supported value to apply for ``value``; DeviceError unless supported or ``snap``."""
        if not math.isfinite(value):
            raise DeviceError(
                f"{value} is not a valid {self.kind.value} setting: give a finite number in "
                f"{self.kind.unit}"
            )
        values = self.supported()
        if not values:
            raise DeviceError(
                f"GPUs {list(self.indices)} share no supported {self.kind.value} value"
            )
        nearest = min(values, key=lambda v: (abs(v - value), -v))
        if abs(nearest - value) <= 1e-6 * max(1.0, abs(value)):
            return nearest
        if snap:
            log.info("%s %g %s snapped to %g", self.kind.value, value, self.kind.unit, nearest)
            return nearest
        unit = self.kind.unit
        raise DeviceError(
            f"{value:g} {unit} is not a supported {self.kind.value} setting on GPU(s) "
            f"{list(self.indices)}: supported {values[0]:g}-{values[-1]:g} {unit} ({len(values)} "
            f"values); the nearest is {nearest:g} {unit} (pass snap=True to use it)"
        )

    def current(self) -> dict[int, float | None]:
        """The setting per GPU as the knob last left it (None: clock unlocked)."""
        with self._lock:
            return dict(self._applied)

    def set(self, value: float, *, snap: bool = False) -> float:
        """Apply ``value`` to every GPU; returns the value applied (after snapping)."""
        target = self.check(value, snap=snap)
        with self._lock:
            if self._originals is None:
                self.start()
            for index in self.indices:
                if self.dry_run:
                    if self._applied.get(index) != target:
                        log.info(
                            "dry run: would set GPU %d %s to %s",
                            index,
                            self.kind.value,
                            _describe(self.kind, target),
                        )
                    self._applied[index] = target
                    continue
                if self.backend.get(index, self.kind) != target:
                    self._write_state_file()
                    self.backend.set(index, self.kind, target)
                self._applied[index] = target
        return target

    def restore(self) -> None:
        """Put the original settings back; DeviceError after trying every GPU if one failed."""
        with self._lock:
            if self._originals is None:
                return
            errors: list[str] = []
            for index, original in self._originals.items():
                if self.dry_run:
                    if self._applied.get(index) != original:
                        log.info(
                            "dry run: would restore GPU %d %s to %s",
                            index,
                            self.kind.value,
                            _describe(self.kind, original),
                        )
                    self._applied[index] = original
                    continue
                try:
                    _apply(self.backend, index, self.kind, original)
                    self._applied[index] = original
                except DeviceError as e:
                    errors.append(str(e))
            if errors:  # keep the state file: the next start retries
                raise DeviceError("restoring GPU settings failed: " + "; ".join(errors))
            if self._state_path is not None:
                self._state_path.unlink(missing_ok=True)
                self._state_path = None
            self._originals = None

    # -- crash recovery --------------------------------------------------------------------
    def _write_state_file(self) -> None:
        """Record the originals atomically, once, before the first change."""
        if self._state_path is not None or self._originals is None:
            return
        pid = os.getpid()
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "host": socket.gethostname(),
            "pid": pid,
            "pid_start": _process_start_ticks(pid),
            "backend": self.backend.name,
            "kind": self.kind.value,
            "created_unix_s": time.time(),
            "originals": [
                {"index": i, "device_key": _device_key(self.backend, i), "value": v}
                for i, v in self._originals.items()
            ],
        }
        path = (
            self.state_dir
            / f"knob-{self.backend.name}-{self.kind.value}-{pid}-{uuid.uuid4().hex[:8]}.json"
        )
        try:
            atomic_write_json(path, state, indent=1)  # creates the directory
        except OSError as e:
            raise DeviceError(
                f"cannot write the knob state file in {self.state_dir} ({e.strerror or e}); "
                "set CAFTM_KNOB_STATE_DIR to a writable directory"
            ) from e
        self._state_path = path


@contextlib.contextmanager
def knob_session(
    backend: GpuBackend,
    indices: Iterable[int] | None = None,
    kind: KnobKind | str = KnobKind.CLOCK,
    *,
    dry_run: bool = False,
    state_dir: Path | None = None,
) -> Iterator[GpuKnob]:
    """``with knob_session(backend, [0], "clock") as knob: knob.set(1410)`` — restored after."""
    knob = GpuKnob(backend, indices, kind, dry_run=dry_run, state_dir=state_dir)
    with knob:
        yield knob


# -- process-wide restore on signals and exit ------------------------------------------------
_ACTIVE: list[GpuKnob] = []
_PREVIOUS: dict[int, Any] = {}
_REGISTRY_LOCK = threading.RLock()
_ATEXIT_REGISTERED = False


def _restore_all(reason: str) -> None:
    for knob in reversed(list(_ACTIVE)):
        try:
            knob.restore()
        except Exception as e:  # last-chance cleanup must try every knob
            log.error("could not restore GPU settings on %s: %s", reason, e)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _restore_all(signal.Signals(signum).name)
    previous = _PREVIOUS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)  # die by the signal, as the default handler would
    os.kill(os.getpid(), signum)


def _register(knob: GpuKnob) -> None:
    global _ATEXIT_REGISTERED
    with _REGISTRY_LOCK:
        if knob not in _ACTIVE:
            _ACTIVE.append(knob)
        if not _ATEXIT_REGISTERED:
            atexit.register(_restore_all, "exit")
            _ATEXIT_REGISTERED = True
        if not knob.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            if sig in _PREVIOUS:
                continue
            previous = signal.getsignal(sig)
            if previous == signal.SIG_IGN:
                continue  # the process chose to ignore it; so do we
            _PREVIOUS[sig] = previous
            signal.signal(sig, _on_signal)


def _unregister(knob: GpuKnob) -> None:
    with _REGISTRY_LOCK:
        if knob in _ACTIVE:
            _ACTIVE.remove(knob)
        if _ACTIVE or threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in list(_PREVIOUS.items()):
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            del _PREVIOUS[sig]
