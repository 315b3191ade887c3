"""``caftm gpu info`` and ``caftm gpu profile``.

``info`` shows each GPU's clocks, power limits, permissions and energy counter on the chosen
backend; ``profile`` sweeps every supported setting with the exhaustive (Zeus-style) baseline on a
virtual backend and shows time, power, energy and cost per setting as a table and a PNG.
Simulated numbers carry a SIMULATED banner. Errors become one line and exit code 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from caftm.cli._common import console
from caftm.cli._render import probe_writable
from caftm.errors import ConfigError, DeviceError
from caftm.gpu.backends import available_backends, get_backend
from caftm.gpu.base import DeviceInfo, GpuBackend, KnobKind, Measurement

if TYPE_CHECKING:
    from caftm.gpu.knob import GpuKnob

#: Reference intensity CI_ref of the cost's time term when none is given, gCO2eq/kWh.
DEFAULT_REF_INTENSITY_G_PER_KWH = 300.0
#: Most ``--steps`` per setting ``profile`` accepts (Zeus uses 50).
MAX_PROFILE_STEPS = 1_000_000
_LABELS = {KnobKind.CLOCK: "SM clock (MHz)", KnobKind.POWER: "power limit (W)"}

gpu_app = typer.Typer(
    name="gpu", help="GPU backends: devices, settings and energy profiles.", no_args_is_help=True
)

BackendOption = Annotated[
    str,
    typer.Option("--backend", "-b", help=f"auto or one of: {', '.join(available_backends())}."),
]
WorkloadOption = Annotated[
    str | None,
    typer.Option("--workload", help="Simulated job (resnet50, gpt) or replay trace workload key."),
]


def register(app: typer.Typer) -> None:
    """Add the ``gpu`` group to ``app``."""
    app.add_typer(gpu_app)


def _open_backend(name: str, workload: str | None) -> GpuBackend:
    options: dict[str, Any] = {}
    if workload is not None:
        if name not in ("simulated", "replay", "auto"):
            raise ConfigError(
                f"--workload applies to the simulated and replay backends, not {name}"
            )
        options["workload"] = workload
    return get_backend(name, **options)


def _banner(backend: GpuBackend, requested: str) -> None:
    if backend.simulated:
        why = " (auto: no usable NVIDIA GPU found)" if requested == "auto" else ""
        console.print(
            f"[bold yellow]SIMULATED[/] — backend {backend.name!r}{why}: numbers come from a model "
            "or replayed traces, not from this machine's hardware.",
            highlight=False,
        )


def _indices(backend: GpuBackend, gpu: int | None) -> list[int]:
    if gpu is None:
        return list(range(backend.device_count()))
    backend.info(gpu)  # DeviceError naming the valid range
    return [gpu]


def _current(backend: GpuBackend, index: int, knob: KnobKind) -> str:
    try:
        value = backend.get(index, knob)
    except DeviceError:  # a backend without this knob (e.g. replay has no clock)
        return "n/a"
    if value is None:
        return "unlocked"
    return f"{value:g} {knob.unit}"


def _info_rows(backend: GpuBackend, info: DeviceInfo) -> list[tuple[str, str]]:
    clocks = sorted(info.clocks_mhz)
    clock_text = f"{clocks[0]}–{clocks[-1]} MHz ({len(clocks)} values)" if clocks else "none"
    lo, hi = info.power_limits_w
    return [
        ("name", info.name),
        ("backend", info.backend + (" (SIMULATED)" if info.simulated else "")),
        ("SM clocks", clock_text),
        ("SM clock lock", _current(backend, info.index, KnobKind.CLOCK)),
        ("power limits", f"{lo:g}–{hi:g} W (default {info.default_power_limit_w:g} W)"),
        ("power limit", _current(backend, info.index, KnobKind.POWER)),
        ("energy counter", "yes" if info.has_energy_counter else "no (power sampling)"),
        ("can change settings", "yes" if info.can_set else "no"),
        ("MIG", "enabled (settings refused)" if info.mig_enabled else "off"),
        *[("note", note) for note in info.notes],
    ]


@gpu_app.command("info")
def info_command(
    backend_name: BackendOption = "auto",
    gpu: Annotated[int | None, typer.Option("--gpu", help="Only this GPU index.")] = None,
    workload: WorkloadOption = None,
) -> None:
    """Devices, clocks, power limits, permissions and energy counter of the backend's GPUs."""
    backend = _open_backend(backend_name, workload)
    indices = _indices(backend, gpu)
    _banner(backend, backend_name)
    if not indices:
        console.print(f"backend {backend.name!r} sees no GPU")
    for index in indices:
        table = Table(title=f"GPU {index}", title_justify="left", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        for key, value in _info_rows(backend, backend.info(index)):
            table.add_row(key, value)
        console.print(table)


def _plot(
    path: Path, measurements: list[Measurement], costs: dict[float, float], best: float, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    knob = measurements[0].knob
    xs = [m.setting for m in measurements]
    series = [
        ("step time (s)", [m.step_time_s for m in measurements]),
        ("avg power (W)", [m.avg_power_w for m in measurements]),
        ("energy per step (J)", [m.step_energy_j for m in measurements]),
        # the same unit as the table's cost column
        ("cost per step (mgCO2eq)", [1000.0 * costs[m.setting] for m in measurements]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, (label, ys) in zip(axes.flat, series, strict=True):
        ax.plot(xs, ys, marker=".", linewidth=1, label="measured")
        ax.axvline(
            best,
            color="tab:green",
            linestyle="--",
            linewidth=1,
            label=f"best (least cost): {best:g} {knob.unit}",
        )
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(loc="best", fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel(_LABELS[knob])
    fig.suptitle(title)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, format="png")
    except OSError as e:
        raise ConfigError(f"cannot write --plot {path}: {e.strerror or e}") from e
    finally:
        plt.close(fig)


def _check_plot_path(path: Path) -> None:
    """ConfigError unless ``path`` can name the PNG (checked before any work is done)."""
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot must name a .png file, got {str(path)!r}")
    if path.is_dir():
        raise ConfigError(f"--plot {path} is a directory: name a .png file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--plot {path}: cannot create its folder ({e.strerror or e})") from e
    probe_writable(path)


def _supported(checker: GpuKnob, value: float, knob: KnobKind, gpu: int) -> float:
    """``value`` when GPU ``gpu`` supports it; else a ConfigError in the command line's words."""
    try:
        return checker.check(value)
    except DeviceError:
        if not math.isfinite(value):
            raise
        values = checker.supported()
        if not values:
            raise
        nearest = checker.check(value, snap=True)
        unit = knob.unit
        raise ConfigError(
            f"--settings {value:g}: GPU {gpu} has no {knob.value} setting {value:g} {unit}; it "
            f"supports {values[0]:g}-{values[-1]:g} {unit} ({len(values)} values), the nearest "
            f"is {nearest:g} (run 'caftm gpu info' to list them)"
        ) from None


@gpu_app.command("profile")
def profile_command(
    backend_name: BackendOption = "simulated",
    gpu: Annotated[int, typer.Option("--gpu", help="GPU index.")] = 0,
    knob_name: Annotated[
        str | None,
        typer.Option("--knob", help="clock or power [default: clock where the GPU has clocks]."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Training steps per setting.")] = 50,
    eta: Annotated[float, typer.Option("--eta", help="Carbon vs time weight η in [0, 1].")] = 0.5,
    intensity: Annotated[
        float, typer.Option("--intensity", help="Carbon intensity CI, gCO2eq/kWh.")
    ] = 300.0,
    ref_intensity: Annotated[
        float, typer.Option("--ref-intensity", help="Reference intensity CI_ref, gCO2eq/kWh.")
    ] = DEFAULT_REF_INTENSITY_G_PER_KWH,
    max_slowdown: Annotated[
        float | None, typer.Option("--max-slowdown", help="Allowed slowdown, e.g. 0.1 = 10%.")
    ] = None,
    settings: Annotated[
        str | None,
        typer.Option("--settings", help="Comma-separated subset to sweep, e.g. 1980,1410,990."),
    ] = None,
    workload: WorkloadOption = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw a PNG here.")] = None,
) -> None:
    """Sweep every supported setting (exhaustive baseline): time, power, energy, cost per step."""
    from caftm.gpu.cost import CostWeights
    from caftm.gpu.exhaustive import exhaustive_search, sweep
    from caftm.gpu.knob import GpuKnob

    try:
        wanted_knob = KnobKind(knob_name) if knob_name is not None else None
    except ValueError as e:
        raise ConfigError(f"unknown --knob {knob_name!r}: use clock or power") from e
    if not 1 <= steps <= MAX_PROFILE_STEPS:
        raise ConfigError(f"--steps must be in [1, {MAX_PROFILE_STEPS}], got {steps}")
    if plot is not None:
        _check_plot_path(plot)
    backend = _open_backend(backend_name, workload)
    info = backend.info(gpu)
    # replayed traces have power limits only: without --knob, sweep what the GPU offers
    knob = wanted_knob or (KnobKind.CLOCK if info.clocks_mhz else KnobKind.POWER)
    weights = CostWeights(
        eta=eta,
        intensity_g_per_kwh=intensity,
        ref_intensity_g_per_kwh=ref_intensity,
        ref_power_w=info.power_limits_w[1],
        max_slowdown=max_slowdown,
    )
    checker = GpuKnob(backend, [gpu], knob, dry_run=True)  # validation only: never starts
    if settings is not None:
        try:
            wanted = [float(s) for s in settings.split(",") if s.strip()]
        except ValueError as e:
            raise ConfigError(
                f"--settings must be numbers separated by commas: {settings!r}"
            ) from e
        chosen = [_supported(checker, v, knob, gpu) for v in wanted]
    else:
        chosen = checker.supported()
    if not chosen:
        raise ConfigError(f"nothing to sweep: GPU {gpu} has no {knob.value} settings")

    def measure(setting: float, n: int) -> Measurement:
        return sweep(backend, gpu, knob, n, settings=[setting])[0]

    result = exhaustive_search(measure, chosen, weights, steps_per_setting=steps)
    measurements = sorted(result.measurements, key=lambda m: m.setting)
    sim = " — SIMULATED" if backend.simulated else ""
    title = (
        f"{info.name}: {knob.value} sweep, {steps} steps each, η={eta:g}, CI={intensity:g} "
        f"g/kWh{sim}"
    )
    _banner(backend, backend_name)
    table = Table(title=title, title_justify="left")
    unit = knob.unit
    for column in (_LABELS[knob], "step time (s)", "avg power (W)", "energy/step (J)"):
        table.add_column(column, justify="right")
    table.add_column("cost/step (mgCO2eq)", justify="right")
    table.add_column("")
    for m in measurements:
        table.add_row(
            f"{m.setting:g}",
            f"{m.step_time_s:.4f}",
            f"{m.avg_power_w:.1f}",
            f"{m.step_energy_j:.3f}",
            f"{1000.0 * result.costs[m.setting]:.4f}",
            "best" if m.setting == result.best else "",
        )
    console.print(table)
    console.print(
        f"best {knob.value}: {result.best:g} {unit} ({result.steps_used} profiling steps)",
        highlight=False,
    )
    if plot is not None:
        _plot(plot, measurements, result.costs, result.best, title)
        console.print(f"plot written to {plot}", highlight=False)
