"""A backend that answers from measured power-limit profiles (the Zeus traces), in virtual time.

The Zeus traces (``data/gpu/zeus_power_limit_traces/power_{v100,a40}.csv``) hold, per workload
(dataset, network, batch size, optimiser) and power limit, the measured time per epoch and average
power. Each workload becomes one replayable job; rows repeated for the same workload and limit are
averaged. Only the power-limit knob exists here.

A "step" is one mini-batch: step time = time_per_epoch / steps_per_epoch, where steps_per_epoch =
ceil(training-set size / batch size) from :data:`DATASET_TRAIN_SIZES` (an assumption: the traces
record epochs, not steps; unknown datasets use 1000 steps per epoch). The choice scales every
setting's time and energy alike, so it never moves an optimum. Noise as in
:class:`caftm.gpu.simulated.VirtualGpuBackend` (seeded, relative, shrinking as 1/√steps).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from caftm.errors import ConfigError, DataError, DeviceError
from caftm.gpu.base import DeviceInfo, KnobKind
from caftm.gpu.simulated import VirtualGpuBackend

__all__ = [
    "DATASET_TRAIN_SIZES",
    "ReplayBackend",
    "ReplayWorkload",
    "default_trace_path",
    "load_traces",
    "workloads",
]

log = logging.getLogger(__name__)

#: Training-set sizes (samples) used to turn epochs into steps.
DATASET_TRAIN_SIZES: dict[str, int] = {
    "cifar100": 50_000,
    "imagenet": 1_281_167,
    "librispeech": 281_241,
    "movielens-1m": 1_000_209,
    "squad": 87_599,
    "sentiment140": 1_600_000,
}
DEFAULT_STEPS_PER_EPOCH = 1000
REQUIRED_COLUMNS = (
    "dataset",
    "network",
    "batch_size",
    "optimizer",
    "power_limit",
    "time_per_epoch",
    "average_power",
)
_TRACE_DIR = "gpu/zeus_power_limit_traces"


@dataclass(frozen=True, slots=True)
class ReplayWorkload:
    """One traced job: its identity and (power_limit_w, time_per_epoch_s, average_power_w) rows."""

    gpu: str
    dataset: str
    network: str
    batch_size: int
    optimizer: str
    points: tuple[tuple[float, float, float], ...]  # ascending power limit

    @property
    def key(self) -> str:
        """Name used to pick the workload, e.g. ``imagenet/resnet50/bs128/adadelta``."""
        return f"{self.dataset}/{self.network}/bs{self.batch_size}/{self.optimizer}"

    @property
    def steps_per_epoch(self) -> int:
        size = DATASET_TRAIN_SIZES.get(self.dataset)
        return DEFAULT_STEPS_PER_EPOCH if size is None else math.ceil(size / self.batch_size)

    @property
    def limits_w(self) -> list[float]:
        return [p[0] for p in self.points]


def default_trace_path(gpu: str = "v100") -> Path:
    """``$CAFTM_SHARED_DATA/gpu/zeus_power_limit_traces/power_{gpu}.csv``.

    Without ``CAFTM_SHARED_DATA`` the root is ``../shared/data`` beside the repository.
    """
    env = os.environ.get("CAFTM_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return root / _TRACE_DIR / f"power_{gpu.lower()}.csv"


def _gpu_name(path: Path) -> str:
    stem = path.stem
    return stem.removeprefix("power_").upper() if stem.startswith("power_") else stem


def load_traces(path: Path) -> dict[str, ReplayWorkload]:
    """Parse a Zeus power-limit trace CSV into workloads keyed by :attr:`ReplayWorkload.key`.

    Raises:
        DataError: the file is missing, unreadable, lacks a column, or has a bad value (with line).
    """
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"cannot read replay trace {path}: {e}; set CAFTM_SHARED_DATA") from e
    except UnicodeDecodeError as e:
        raise DataError(f"replay trace {path} is not a UTF-8 CSV text file ({e})") from e
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"replay trace {path} lacks column(s) {missing}; need {list(REQUIRED_COLUMNS)}"
        )
    rows: dict[tuple[str, str, int, str], dict[float, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    try:
        for row in reader:
            line = reader.line_num
            if any(row.get(c) is None for c in REQUIRED_COLUMNS):
                raise DataError(f"replay trace {path} line {line}: too few fields")
            try:
                ident = (row["dataset"], row["network"], int(row["batch_size"]), row["optimizer"])
                limit, epoch_s, power = (
                    float(row["power_limit"]),
                    float(row["time_per_epoch"]),
                    float(row["average_power"]),
                )
            except ValueError as e:
                raise DataError(f"replay trace {path} line {line}: bad value ({e})") from e
            values = (limit, epoch_s, power)
            if not all(0 < v < math.inf for v in values) or ident[2] < 1 or not all(ident):
                raise DataError(
                    f"replay trace {path} line {line}: values must be positive, finite and named"
                )
            rows[ident][limit].append((epoch_s, power))
    except csv.Error as e:
        line = reader.reader.line_num  # DictReader.line_num lags on errors
        raise DataError(f"replay trace {path} line {line}: malformed CSV ({e})") from e
    if not rows:
        raise DataError(f"replay trace {path} has no data rows")
    gpu = _gpu_name(path)
    out: dict[str, ReplayWorkload] = {}
    for (dataset, network, batch, opt), by_limit in rows.items():
        points = tuple(
            (
                limit,
                sum(v[0] for v in values) / len(values),
                sum(v[1] for v in values) / len(values),
            )
            for limit, values in sorted(by_limit.items())
        )
        wl = ReplayWorkload(gpu, dataset, network, batch, opt, points)
        out[wl.key] = wl
    return out


def workloads(path: Path | None = None) -> list[str]:
    """Keys of the workloads in a trace file (default: the V100 trace), sorted."""
    return sorted(load_traces(path or default_trace_path()))


class ReplayBackend(VirtualGpuBackend):
    """One GPU that replays a traced workload (power-limit knob only; virtual time).

    Args:
        workload: key from :func:`workloads`; None = the first one.
        path: trace CSV; default :func:`default_trace_path` of ``gpu``.
        gpu: 'v100' or 'a40' (which default trace to read).
        noise_rel: relative std of a 20-step window's time and energy.
        seed: seed of the noise.

    Raises:
        DataError: malformed trace. ConfigError: unknown workload.
    """

    name = "replay"
    default_knob = KnobKind.POWER

    def __init__(
        self,
        workload: str | None = None,
        *,
        path: Path | None = None,
        gpu: str = "v100",
        noise_rel: float = 0.01,
        seed: int = 0,
    ) -> None:
        super().__init__(device_count=1, noise_rel=noise_rel, seed=seed)
        self.path = path or default_trace_path(gpu)
        traced = load_traces(self.path)
        key = workload or sorted(traced)[0]
        if key not in traced:
            raise ConfigError(
                f"workload {key!r} not in replay trace {self.path}; e.g. {sorted(traced)[:3]}"
            )
        self.workload = traced[key]
        self._by_limit = {p[0]: (p[1], p[2]) for p in self.workload.points}
        self._limit_w = max(self._by_limit)

    def info(self, index: int) -> DeviceInfo:
        self.check_index(index)
        limits = self.workload.limits_w
        return DeviceInfo(
            index=index,
            name=f"{self.workload.gpu} (replay)",
            clocks_mhz=(),
            power_limits_w=(min(limits), max(limits)),
            default_power_limit_w=max(limits),
            has_energy_counter=True,
            can_set=True,
            backend=self.name,
            simulated=True,
            notes=(
                f"replay of measured Zeus trace {self.path.name}: {self.workload.key}",
                "virtual time; power-limit knob only",
            ),
        )

    def _refuse_clock(self, knob: KnobKind) -> None:
        if knob is KnobKind.CLOCK:
            raise DeviceError("replay traces cover power limits only; use the power knob")

    def supported(self, index: int, knob: KnobKind) -> list[float]:
        self.check_index(index)
        self._refuse_clock(knob)
        return self.workload.limits_w

    def get(self, index: int, knob: KnobKind) -> float | None:
        self.check_index(index)
        self._refuse_clock(knob)
        return self._limit_w

    def set(self, index: int, knob: KnobKind, value: float) -> None:
        self.check_index(index)
        self._refuse_clock(knob)
        if float(value) not in self._by_limit:
            raise DeviceError(
                f"power limit {value:g} W is not in the replay trace for {self.workload.key}; "
                f"traced limits: {[f'{x:g}' for x in self.workload.limits_w]} W"
            )
        self._limit_w = float(value)

    def reset(self, index: int, knob: KnobKind) -> None:
        self.check_index(index)
        self._refuse_clock(knob)
        self._limit_w = max(self._by_limit)

    def true_step_at(self, knob: KnobKind, setting: float) -> tuple[float, float]:
        """Noise-free (step_time_s, power_w) at a traced power limit."""
        self._refuse_clock(knob)
        if setting not in self._by_limit:
            raise DeviceError(f"power limit {setting:g} W is not traced for {self.workload.key}")
        epoch_s, power = self._by_limit[setting]
        return epoch_s / self.workload.steps_per_epoch, power

    def true_step(self, index: int) -> tuple[float, float]:
        self.check_index(index)
        return self.true_step_at(KnobKind.POWER, self._limit_w)

    def idle_power_w(self, index: int) -> float:
        return 0.0
