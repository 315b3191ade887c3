"""Energy meter: named windows of time and energy per GPU, read off the training step's path.

A background thread samples every GPU every ``interval_s``: the total-energy counter where the GPU
has one (one read costs about 4 ms on an H100), else power, integrated by the trapezoid rule. Each
sample is stamped with the midpoint of its read, so every GPU has a cumulative-energy series
``E(t)``. ``begin``/``end`` only take a timestamp and hand the window to the thread, which resolves
it once a sample at or after its end exists:
``energy = E(end) - E(begin)``, each linearly interpolated between the two samples bracketing the
edge. A result's time is known at once; its energy a little later (reading it waits).

With CUDA in use, a window edge must mark where the GPU's queued work reaches it. By default
(``cuda_edges="sync"``) the edge calls ``torch.cuda.synchronize()``. With ``cuda_edges="event"``
it records a timing CUDA event on the current stream (a few µs, no
synchronisation, so the CPU keeps queueing work ahead). The background thread later converts each
completed event to host time through the GPU's own timer: ``anchor_s + elapsed(anchor, event)``,
where the anchor is an event whose completion the thread observed by waiting for it; it re-anchors
every ``ANCHOR_EVERY_S`` so the two clocks never drift apart. bench/results/device/ holds the
per-step cost of both, measured on an H100.
"""

from __future__ import annotations

import bisect
import logging
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal

from caftm.errors import ConfigError, DeviceError
from caftm.gpu.base import GpuBackend

__all__ = ["EnergyMeter", "Sampling", "Source", "WindowResult"]

log = logging.getLogger(__name__)

Source = Literal["auto", "counter", "power"]
Sampling = Literal["auto", "thread", "edges"]
CudaEdges = Literal["event", "sync"]

#: How often (s) the meter re-anchors the GPU's event timer to the host clock.
ANCHOR_EVERY_S = 30.0


class WindowResult:
    """One measured window. ``time_s`` is known when it ends; the energies resolve shortly after.

    Reading ``energy_j`` or ``energy_j_per_gpu`` waits (at most about one sampling interval).
    """

    __slots__ = ("_ended", "_energy", "_error", "_meter", "_opened_s", "end_s", "name", "start_s")

    def __init__(
        self, meter: EnergyMeter, name: str, start_s: float | None, opened_s: float
    ) -> None:
        self._meter = meter
        self.name = name
        #: Edge times in the backend's clock; None while a CUDA event edge is not yet stamped.
        self.start_s = start_s
        self.end_s: float | None = None
        self._opened_s = opened_s  # host time at begin(): a lower bound of start_s
        self._ended = False
        self._energy: dict[int, float] | None = None
        self._error: BaseException | None = None

    @property
    def time_s(self) -> float:
        """Window length in s (ConfigError while it is still open)."""
        if not self._ended:
            raise ConfigError(f"energy window {self.name!r} is still open: call end() first")
        if self.end_s is None or self.start_s is None:
            self._meter._wait_stamped(self)
        assert self.start_s is not None and self.end_s is not None
        return self.end_s - self.start_s

    @property
    def ready(self) -> bool:
        """True when the energies are known."""
        return self._energy is not None or self._error is not None

    def wait(self, timeout_s: float | None = None) -> WindowResult:
        """Block until the energies are known; returns self. Raises DeviceError on timeout."""
        self.time_s  # noqa: B018 - raises when still open
        if not self.ready:
            self._meter._wait_for(self, timeout_s)
        if self._error is not None:
            raise DeviceError(f"energy window {self.name!r} failed: {self._error}") from self._error
        return self

    @property
    def energy_j_per_gpu(self) -> dict[int, float]:
        """Energy in J per GPU index (waits for the result)."""
        self.wait()
        assert self._energy is not None
        return dict(self._energy)

    @property
    def energy_j(self) -> float:
        """Energy in J summed over the GPUs (waits for the result)."""
        return sum(self.energy_j_per_gpu.values())

    @property
    def avg_power_w(self) -> float:
        """Mean power in W over the window, summed over the GPUs."""
        return self.energy_j / self.time_s if self.time_s > 0 else 0.0

    @property
    def simulated(self) -> bool:
        """True when the numbers come from a simulated backend."""
        return self._meter.backend.simulated

    def __repr__(self) -> str:
        energy = f"{sum(self._energy.values()):.3f} J" if self._energy is not None else "pending"
        start_s, end_s = self.start_s, self.end_s
        span = f"{end_s - start_s:.6f} s" if start_s is not None and end_s is not None else "open"
        sim = ", SIMULATED" if self.simulated else ""
        return f"WindowResult({self.name!r}, {span}, {energy}{sim})"


class _Series:
    """Cumulative energy of one GPU: sample times (s) and energies (J), appended by the thread."""

    __slots__ = ("energies_j", "last_power_w", "times_s", "use_counter")

    def __init__(self, use_counter: bool) -> None:
        self.use_counter = use_counter
        self.times_s: list[float] = []
        self.energies_j: list[float] = []
        self.last_power_w = 0.0

    def add(self, t_s: float, value: float) -> None:
        if self.use_counter:
            energy = value
        elif not self.times_s:
            energy = 0.0
        else:  # trapezoid rule on power samples
            energy = self.energies_j[-1] + 0.5 * (value + self.last_power_w) * (
                t_s - self.times_s[-1]
            )
        if not self.use_counter:
            self.last_power_w = value
        if self.times_s and t_s < self.times_s[-1]:
            t_s = self.times_s[-1]  # keep the series monotonic whatever the backend's clock does
        self.times_s.append(t_s)
        self.energies_j.append(energy)

    def at(self, t_s: float) -> float:
        """Cumulative energy at ``t_s`` by linear interpolation (clamped at the ends)."""
        times = self.times_s
        i = bisect.bisect_right(times, t_s)
        if i == 0:
            return self.energies_j[0]
        if i >= len(times):
            return self.energies_j[-1]
        t0, t1 = times[i - 1], times[i]
        e0, e1 = self.energies_j[i - 1], self.energies_j[i]
        return e0 if t1 <= t0 else e0 + (e1 - e0) * (t_s - t0) / (t1 - t0)

    def prune_before(self, t_s: float) -> None:
        """Drop samples no longer needed to interpolate at times >= ``t_s``."""
        i = bisect.bisect_right(self.times_s, t_s) - 1
        if i > 256:  # amortise the list shift
            del self.times_s[:i]
            del self.energies_j[:i]


class EnergyMeter:
    """Measures named windows of time and energy on a set of GPUs.

    Args:
        backend: where readings come from.
        indices: GPU indices to meter (default: all the backend's GPUs).
        interval_s: sampling period of the background thread, s (counter and power alike;
            10-50 ms suits power sampling).
        source: ``"counter"`` (total-energy counter), ``"power"`` (trapezoid integration of power
            samples) or ``"auto"`` (the counter on GPUs that have one, power on the others).
        sync_cuda: align window edges with the GPU's queued work when torch is imported and CUDA
            is available, so queued GPU work is counted in the right window.
        cuda_edges: how edges are aligned: ``"sync"`` (``torch.cuda.synchronize()`` at each
            edge, the default) or ``"event"`` (record a timing CUDA event, converted to host time
            by the background thread; nothing waits on the step path, at a few µs more CPU per
            edge — better when the CPU runs far ahead of the GPU). Edge sampling has no thread
            to convert events, so it always synchronises.
        sampling: ``"thread"`` (a background thread samples every ``interval_s``; the step path
            only takes timestamps), ``"edges"`` (sample synchronously at each window edge: exact
            and deterministic for simulated backends in virtual time, whose clock only moves with
            the caller) or ``"auto"`` (edges for simulated backends, the thread otherwise).

    Use as a context manager (or ``start()``/``stop()``); windows via ``begin``/``end`` or
    ``with meter.window(name) as w``. Windows may nest and overlap; names must be unique while open.

    Raises:
        ConfigError: bad interval, source or indices.
        DeviceError: unknown GPU index, or ``source="counter"`` on a GPU without the counter.
    """

    def __init__(
        self,
        backend: GpuBackend,
        indices: Iterable[int] | None = None,
        *,
        interval_s: float = 0.05,
        source: Source = "auto",
        sync_cuda: bool = True,
        cuda_edges: CudaEdges = "sync",
        sampling: Sampling = "auto",
    ) -> None:
        if not 0.0 < interval_s <= 60.0:
            raise ConfigError(f"meter interval_s must be in (0, 60] s, got {interval_s}")
        if source not in ("auto", "counter", "power"):
            raise ConfigError(f"meter source must be auto, counter or power, got {source!r}")
        if cuda_edges not in ("event", "sync"):
            raise ConfigError(f"meter cuda_edges must be event or sync, got {cuda_edges!r}")
        if sampling not in ("auto", "thread", "edges"):
            raise ConfigError(f"meter sampling must be auto, thread or edges, got {sampling!r}")
        self.backend = backend
        self.indices: tuple[int, ...] = tuple(
            sorted(set(indices)) if indices is not None else range(backend.device_count())
        )
        if not self.indices:
            raise ConfigError("EnergyMeter needs at least one GPU index")
        self.interval_s = interval_s
        if sampling == "auto":
            sampling = "edges" if backend.simulated else "thread"
        self.sampling: Sampling = sampling
        self._series: dict[int, _Series] = {}
        for index in self.indices:
            has_counter = backend.info(index).has_energy_counter  # DeviceError for unknown index
            if source == "counter" and not has_counter:
                raise DeviceError(f"GPU {index} has no total-energy counter: use source='power'")
            self._series[index] = _Series(use_counter=has_counter and source != "power")
        self._sync_cuda_wanted = sync_cuda
        self._cuda_edges = cuda_edges
        self._cuda_sync: Any = None
        self._cuda_event: Any = None  # makes a timing torch.cuda.Event when edges are events
        # Recorded edges not yet converted to host time, in stream order: (event, window, is_end,
        # re-anchor here). Appended by the step path, consumed by the background thread.
        self._edges: deque[tuple[Any, WindowResult, bool, bool]] = deque()
        self._anchor: tuple[Any, float] | None = None  # (completed event, host time of it)
        self._free_events: list[Any] = []  # stamped events, reused (creating one costs µs)
        self._next_anchor_s = 0.0
        self._open: dict[str, WindowResult] = {}
        self._pending: deque[WindowResult] = deque()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._started = False
        self._keep_s = max(0.25, 10 * interval_s)

    @property
    def sources(self) -> dict[int, str]:
        """How each GPU is metered: ``"counter"`` or ``"power"``."""
        return {i: ("counter" if s.use_counter else "power") for i, s in self._series.items()}

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._started

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> EnergyMeter:
        """Take a first sample and start the background thread (if any); returns self."""
        if self._started:
            return self
        torch = sys.modules.get("torch")
        if self._sync_cuda_wanted and torch is not None and torch.cuda.is_available():
            if self._cuda_edges == "event" and self.sampling == "thread":
                event_type = torch.cuda.Event
                self._cuda_event = lambda: event_type(enable_timing=True)
                anchor = self._cuda_event()
                anchor.record()
                anchor.synchronize()
                self._anchor = (anchor, self.backend.now_s())
                self._next_anchor_s = self._anchor[1] + ANCHOR_EVERY_S
            else:
                self._cuda_sync = torch.cuda.synchronize
        self._stop.clear()
        self._closed = False
        self._sample()  # a left bracket for windows begun right away
        self._started = True
        if self.sampling == "thread":
            self._thread = threading.Thread(
                target=self._run, name="caftm-energy-meter", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample, resolve every ended window and stop the thread (idempotent)."""
        if not self._started:
            return
        self._started = False
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join()
        if self._error is None:
            try:
                self._stamp_edges(wait=True)
                self._sample()
                self._resolve()
            except Exception as e:  # recorded and raised by the waiters
                self._fail(e)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> EnergyMeter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the step path (keep it tiny) --------------------------------------------------------
    def begin(self, name: str) -> WindowResult:
        """Open window ``name`` now; returns its (open) result. ConfigError if ``name`` is open."""
        if not self._started:
            raise ConfigError("EnergyMeter is not started: use `with EnergyMeter(...)` or start()")
        if name in self._open:
            raise ConfigError(f"energy window {name!r} is already open")
        if self._cuda_event is not None:
            now_s = self.backend.now_s()
            result = WindowResult(self, name, None, now_s)
            self._record_edge(result, False, now_s)
            self._open[name] = result
            return result
        if self._cuda_sync is not None:
            self._cuda_sync()
        if self._thread is None:
            self._sample()
        now_s = self.backend.now_s()
        result = WindowResult(self, name, now_s, now_s)
        self._open[name] = result
        return result

    def end(self, name: str) -> WindowResult:
        """Close window ``name`` now and hand it to the thread; its energies resolve shortly."""
        result = self._open.pop(name, None)
        if result is None:
            raise ConfigError(f"energy window {name!r} is not open (open: {sorted(self._open)})")
        result._ended = True
        if self._cuda_event is not None:
            self._record_edge(result, True, self.backend.now_s())
            return result
        if self._cuda_sync is not None:
            self._cuda_sync()
        result.end_s = self.backend.now_s()
        self._pending.append(result)
        if self._thread is None and self._started:  # edge sampling: resolve right here
            self._sample()
            self._resolve()
            self._prune()
        return result

    @contextmanager
    def window(self, name: str) -> Iterator[WindowResult]:
        """``with meter.window("epoch") as w: ...``; ``w.energy_j`` after the block."""
        result = self.begin(name)
        try:
            yield result
        finally:
            if self._open.get(name) is result:
                self.end(name)

    # -- background thread -----------------------------------------------------------------
    def _sample(self) -> None:
        backend = self.backend
        for index, series in self._series.items():
            t0 = backend.now_s()
            value = backend.energy_j(index) if series.use_counter else backend.power_w(index)
            t1 = backend.now_s()
            series.add(0.5 * (t0 + t1), value)

    def _record_edge(self, result: WindowResult, is_end: bool, now_s: float) -> None:
        free = self._free_events
        event = free.pop() if free else self._cuda_event()
        event.record()
        reanchor = now_s >= self._next_anchor_s
        if reanchor:
            self._next_anchor_s = now_s + ANCHOR_EVERY_S
        self._edges.append((event, result, is_end, reanchor))

    def _stamp_edges(self, *, wait: bool = False) -> None:
        """Convert completed edge events to host time, in stream order (background thread).

        An edge marked for re-anchoring is waited for, and its observed completion time becomes
        the new anchor. With ``wait`` every recorded edge is waited for (at stop).
        """
        stamped = False
        edges = self._edges
        while edges:
            event, result, is_end, reanchor = edges[0]
            if reanchor or wait:
                event.synchronize()  # releases the GIL while the GPU catches up
            elif not event.query():
                break
            assert self._anchor is not None
            anchor_event, anchor_s = self._anchor
            if reanchor:
                self._anchor = (event, self.backend.now_s())
                self._free_events.append(anchor_event)
                t_s = self._anchor[1]
            else:
                t_s = anchor_s + anchor_event.elapsed_time(event) / 1000.0
                self._free_events.append(event)
            edges.popleft()
            if is_end:
                result.end_s = t_s
                self._pending.append(result)
            else:
                result.start_s = t_s
            stamped = True
        if stamped:
            with self._cond:
                self._cond.notify_all()

    def _wait_stamped(self, result: WindowResult) -> None:
        limit_s = 60.0
        self._wake.set()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (
                    (result.end_s is not None and result.start_s is not None)
                    or self._error is not None
                    or self._closed
                ),
                limit_s,
            )
        if result.end_s is None or result.start_s is None:
            why = self._error or ("meter stopped" if ok else f"not stamped within {limit_s:g} s")
            raise DeviceError(f"energy window {result.name!r}: GPU edge unknown ({why})")

    def _resolve(self) -> None:
        latest = min(s.times_s[-1] for s in self._series.values())
        resolved = False
        for _ in range(len(self._pending)):
            result = self._pending[0]
            assert result.end_s is not None and result.start_s is not None
            if result.end_s > latest:
                self._pending.rotate(-1)  # ended out of order (other threads): look again later
                continue
            self._pending.popleft()
            result._energy = {
                i: max(0.0, s.at(result.end_s) - s.at(result.start_s))
                for i, s in self._series.items()
            }
            resolved = True
        if resolved:
            with self._cond:
                self._cond.notify_all()

    def _prune(self) -> None:
        latest = min(s.times_s[-1] for s in self._series.values())
        unresolved = [*self._open.values(), *(e[1] for e in tuple(self._edges)), *self._pending]
        needed = [w.start_s if w.start_s is not None else w._opened_s for w in unresolved]
        cutoff = min([latest - self._keep_s, *needed])
        for series in self._series.values():
            series.prune_before(cutoff)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        while self._pending:
            self._pending.popleft()._error = error
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.wait(self.interval_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                self._stamp_edges()
                self._sample()
                self._resolve()
                self._prune()
        except Exception as e:  # recorded and raised by the waiters
            log.error("energy meter stopped: %s", e)
            self._fail(e)

    def _wait_for(self, result: WindowResult, timeout_s: float | None) -> None:
        limit_s = timeout_s if timeout_s is not None else 10.0 * self.interval_s + 10.0
        self._wake.set()  # someone is waiting: sample now rather than at the next tick
        with self._cond:
            ok = self._cond.wait_for(
                lambda: result.ready or self._error is not None or self._closed, limit_s
            )
        if result.ready:
            return
        if self._error is not None:
            result._error = self._error
            return
        if not ok:
            raise DeviceError(
                f"energy window {result.name!r}: no meter sample after its end within {limit_s:g} s"
            )
        raise DeviceError(f"energy window {result.name!r} ended after the meter stopped")
