"""One-off READ-ONLY check of caftm's energy meter on a real NVIDIA GPU (written for an H100).

Run from the repository root:  ``PYTHONPATH=src python bench/results/h100_meter_check.py``
Needs only torch (with CUDA), pynvml (nvidia-ml-py) and caftm's ``src``. It NEVER changes a clock,
power limit, persistence or MIG setting: the backend it uses refuses every setter.

What it measures (printed as JSON, and written to ``$OUT/h100_meter_check.json`` when OUT is set):
1. NVML read latencies (energy counter, power) and how often the energy counter changes.
2. A small conv net trained at ~20 ms/step; one 3 s window measured at once by two meters: the
   total-energy counter (interpolated between background reads) and power sampling (trapezoid,
   10 ms). They should agree within 2%.
3. The meter's cost per training step: blocks of steps with and without ``begin``/``end`` around
   every step, alternating; medians. It should be < 0.5% of the step.
Each part is guarded: a failure is recorded and the rest still runs. Total runtime < 2 minutes.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[2] / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

TARGET_STEP_S = 0.020
WINDOW_S = 3.0
WARMUP_S = 2.0
OVERHEAD_BLOCKS = 16  # per variant, alternating
OVERHEAD_STEPS_PER_BLOCK = 50
DEADLINE_S = 110.0

RESULT: dict[str, Any] = {"script": "h100_meter_check", "read_only": True, "errors": {}}
STARTED = time.monotonic()


def emit_and_exit(code: int = 0) -> None:
    RESULT["runtime_s"] = round(time.monotonic() - STARTED, 2)
    text = json.dumps(RESULT, indent=2, sort_keys=True, default=str)
    print(text, flush=True)
    out = os.environ.get("OUT")
    if out:
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "h100_meter_check.json").write_text(text + "\n")
        except OSError as e:
            print(f"could not write $OUT/h100_meter_check.json: {e}", file=sys.stderr)
    sys.exit(code)


def part(name: str):  # type: ignore[no-untyped-def]
    """Decorator: run a part, record its exception instead of stopping."""

    def wrap(fn):  # type: ignore[no-untyped-def]
        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            if time.monotonic() - STARTED > DEADLINE_S:
                RESULT["errors"][name] = "skipped: out of time"
                return None
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                RESULT["errors"][name] = f"{type(e).__name__}: {e}"
                traceback.print_exc(file=sys.stderr)
                return None

        return run

    return wrap


# -- set-up -------------------------------------------------------------------------------------
try:
    import torch
except ImportError as e:
    RESULT["status"] = "no_torch"
    RESULT["reason"] = f"torch is not importable: {e}"
    emit_and_exit(0)

try:
    from caftm.errors import DeviceError
    from caftm.gpu.base import KnobKind
    from caftm.gpu.meter import EnergyMeter
    from caftm.gpu.nvml import NvmlBackend
except ImportError as e:
    RESULT["status"] = "no_caftm"
    RESULT["reason"] = f"caftm is not importable (run from the repo root with PYTHONPATH=src): {e}"
    emit_and_exit(0)


class ReadOnlyNvml(NvmlBackend):
    """NvmlBackend whose setters refuse: this script must never change the GPU."""

    def set(self, index: int, knob: KnobKind, value: float) -> None:
        raise RuntimeError("h100_meter_check is read-only: refusing to set anything")

    def reset(self, index: int, knob: KnobKind) -> None:
        raise RuntimeError("h100_meter_check is read-only: refusing to reset anything")


if not torch.cuda.is_available():
    RESULT["status"] = "no_gpu"
    RESULT["reason"] = "torch sees no CUDA GPU; nothing to check (this script needs a real GPU)"
    emit_and_exit(0)
try:
    BACKEND = ReadOnlyNvml()
except DeviceError as e:
    RESULT["status"] = "no_nvml"
    RESULT["reason"] = str(e)
    emit_and_exit(0)
if BACKEND.device_count() == 0:
    RESULT["status"] = "no_gpu"
    RESULT["reason"] = "NVML sees no GPU"
    emit_and_exit(0)

DEVICE = torch.device("cuda", 0)
torch.cuda.set_device(DEVICE)
RESULT["status"] = "ran"


@part("device")
def describe_device() -> None:
    info = BACKEND.info(0)
    RESULT["device"] = {
        "name": info.name,
        "clocks_mhz": [min(info.clocks_mhz), max(info.clocks_mhz), len(info.clocks_mhz)]
        if info.clocks_mhz
        else [],
        "power_limits_w": list(info.power_limits_w),
        "power_limit_w": BACKEND.get(0, KnobKind.POWER),
        "has_energy_counter": info.has_energy_counter,
        "can_set": info.can_set,
        "mig_enabled": info.mig_enabled,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "torch_device": torch.cuda.get_device_name(0),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


@part("read_latency")
def read_latency() -> None:
    def timed(fn, n: int) -> float:  # type: ignore[no-untyped-def]
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn(0)
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples) * 1e6

    RESULT["read_latency_us"] = {
        "energy_counter": round(timed(BACKEND.energy_j, 30), 1),
        "power": round(timed(BACKEND.power_w, 200), 2),
    }
    # How often does the counter change? Read back-to-back for 0.4 s (idle-ish GPU).
    changes, last, t_end = [], BACKEND.energy_j(0), time.monotonic() + 0.4
    while time.monotonic() < t_end:
        value = BACKEND.energy_j(0)
        if value != last:
            changes.append(time.monotonic())
            last = value
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    RESULT["energy_counter_update"] = {
        "changes_in_0.4s": len(changes),
        "median_gap_ms": round(statistics.median(gaps) * 1e3, 2) if gaps else None,
    }


# -- the workload -------------------------------------------------------------------------------
def make_model(batch: int) -> tuple[Any, Any, Any, Any]:
    layers: list[Any] = []
    channels = 3
    for width in (64, 128, 256):
        layers += [
            torch.nn.Conv2d(channels, width, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(width, width, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(inplace=True),
            torch.nn.MaxPool2d(2),
        ]
        channels = width
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels, 100)]
    model = torch.nn.Sequential(*layers).to(DEVICE).to(memory_format=torch.channels_last)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 3, 64, 64, device=DEVICE).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 100, (batch,), device=DEVICE)
    return model, optimiser, images, labels


class Trainer:
    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.model, self.optimiser, self.images, self.labels = make_model(batch)
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def step(self) -> float:
        self.optimiser.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = self.loss_fn(self.model(self.images), self.labels)
        loss.backward()
        self.optimiser.step()
        return float(loss.item())  # syncs, as most training loops do (logging the loss)

    def step_time_s(self, steps: int) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps

    def run_for(self, seconds: float) -> int:
        end, n = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            self.step()
            n += 1
        return n


@part("calibrate")
def calibrate() -> Trainer:
    trainer = Trainer(64)
    for _ in range(2):  # rescale twice: small batches are launch-bound, not linear in size
        trainer.step_time_s(5)  # cudnn autotune, allocator warm-up
        per_step = trainer.step_time_s(10)
        batch = int(min(2048, max(8, round(trainer.batch * TARGET_STEP_S / max(per_step, 1e-4)))))
        if abs(batch - trainer.batch) <= 0.1 * trainer.batch:
            break
        del trainer
        torch.cuda.empty_cache()
        trainer = Trainer(batch)
    trainer.step_time_s(5)
    RESULT["workload"] = {
        "model": "8-layer conv net, 64x64 inputs, bf16 autocast, SGD",
        "batch": trainer.batch,
        "step_time_ms": round(trainer.step_time_s(20) * 1e3, 3),
    }
    return trainer


@part("energy_agreement")
def energy_agreement(trainer: Trainer) -> None:
    counter = EnergyMeter(BACKEND, [0], interval_s=0.05, source="counter", sampling="thread")
    power = EnergyMeter(BACKEND, [0], interval_s=0.01, source="power", sampling="thread")
    with counter, power:
        trainer.run_for(WARMUP_S)  # steady state before the window (power readings may be averaged)
        w_counter = counter.begin("window")
        w_power = power.begin("window")
        steps = trainer.run_for(WINDOW_S)
        counter.end("window")
        power.end("window")
        trainer.run_for(1.0)  # steady state after it, so both meters have samples past the edge
        e_counter = w_counter.wait(timeout_s=10).energy_j
        e_power = w_power.wait(timeout_s=10).energy_j
    rel = abs(e_counter - e_power) / e_counter
    RESULT["energy_agreement"] = {
        "window_s": round(w_counter.time_s, 4),
        "steps": steps,
        "counter_energy_j": round(e_counter, 2),
        "power_sampling_energy_j": round(e_power, 2),
        "counter_avg_power_w": round(e_counter / w_counter.time_s, 1),
        "rel_diff": round(rel, 5),
        "within_2pct": rel <= 0.02,
        "j_per_step": round(e_counter / max(steps, 1), 4),
    }


@part("meter_overhead")
def meter_overhead(trainer: Trainer) -> None:
    """Blocks of steps without a meter, with a begin/end pair per step and CUDA-event edges
    (the default), and with synchronising edges; interleaved so drift hits all three alike."""

    def block(meter: EnergyMeter | None) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(OVERHEAD_STEPS_PER_BLOCK):
            if meter is not None:
                meter.begin("step")
            trainer.step()
            if meter is not None:
                meter.end("step")
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / OVERHEAD_STEPS_PER_BLOCK

    variants = ("plain", "event", "sync")
    blocks: dict[str, list[float]] = {v: [] for v in variants}
    pair_us: dict[str, list[float]] = {"event": [], "sync": []}
    with (
        EnergyMeter(BACKEND, [0], interval_s=0.05, sampling="thread", cuda_edges="event") as ev,
        EnergyMeter(BACKEND, [0], interval_s=0.05, sampling="thread", cuda_edges="sync") as sy,
    ):
        meters = {"plain": None, "event": ev, "sync": sy}
        for v in variants:
            block(meters[v])  # warm-up
        for i in range(OVERHEAD_BLOCKS):
            order = variants if i % 2 == 0 else variants[::-1]
            for v in order:
                blocks[v].append(block(meters[v]))
        torch.cuda.synchronize()
        for v, meter in (("event", ev), ("sync", sy)):
            for _ in range(200):
                t0 = time.perf_counter()
                meter.begin("probe")
                meter.end("probe")
                pair_us[v].append((time.perf_counter() - t0) * 1e6)
        last = ev.begin("ten_steps")
        for _ in range(10):
            trainer.step()
        ev.end("ten_steps")
        ten_j = last.wait(timeout_s=10).energy_j
    plain_s = statistics.median(blocks["plain"])
    out: dict[str, object] = {
        "plain_step_ms": round(plain_s * 1e3, 4),
        "blocks_per_variant": OVERHEAD_BLOCKS,
        "steps_per_block": OVERHEAD_STEPS_PER_BLOCK,
        "ten_step_window_energy_j": round(ten_j, 3),
    }
    for v in ("event", "sync"):
        metered_s = statistics.median(blocks[v])
        pct = (metered_s - plain_s) / plain_s * 100.0
        out[f"{v}_step_ms"] = round(metered_s * 1e3, 4)
        out[f"{v}_overhead_pct"] = round(pct, 4)
        out[f"{v}_overhead_us_per_step"] = round((metered_s - plain_s) * 1e6, 2)
        out[f"{v}_begin_end_pair_us_median"] = round(statistics.median(pair_us[v]), 2)
    out["below_0.5pct"] = out["sync_overhead_pct"] < 0.5  # type: ignore[operator]  # default
    out["block_ms"] = {v: [round(x * 1e3, 3) for x in blocks[v]] for v in variants}
    RESULT["meter_overhead"] = out


def main() -> None:
    describe_device()
    read_latency()
    trainer = calibrate()
    if trainer is not None:
        energy_agreement(trainer)
        meter_overhead(trainer)
    agreement = RESULT.get("energy_agreement") or {}
    overhead = RESULT.get("meter_overhead") or {}
    RESULT["pass"] = bool(agreement.get("within_2pct")) and bool(overhead.get("below_0.5pct"))
    BACKEND.close()
    emit_and_exit(0)


if __name__ == "__main__":
    main()
