"""A :class:`~caftm.report.html.ReportInput` from the ledger: a job (all its legs) or one run.

Read-only: open the ledger with ``read_only=True``. The same figures as the dashboard: the
path across sites with moves and pauses, each candidate site's intensity with θ, the GPU setting
and power, carbon so far against a carbon-agnostic run; then the legs, transfers, events, every
input labelled (SIMULATED GPU when a run had ``simulated`` set; SYNTHETIC intensities from the
embedded profiles) and the job's configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import accumulate

from caftm._units import J_PER_KWH
from caftm.errors import ConfigError
from caftm.ledger import EventRecord, JobBook, Ledger, RunSummary, WindowRecord
from caftm.ledger.feed import Feed, Scope
from caftm.report.carbon import (
    BASELINE_ESTIMATE_TEXT,
    BASELINE_TWIN_TEXT,
    SignalSetup,
    agnostic_window_carbon_g,
    back_to_back_times,
    signal_setup,
    site_outlooks,
)
from caftm.report.figures import carbon_png, gpu_png, outlook_png, png_bytes, series_png
from caftm.report.html import ReportFigure, ReportInput, ReportTable
from caftm.report.timeline import WindowGaps, timeline_figure

__all__ = ["ledger_report", "resolve_target"]

_UNITS = {"clock": "MHz", "power": "W"}
MAX_EVENTS = 500


def resolve_target(ledger: Ledger, target: str) -> Scope:
    """A job of that name, else the run whose id starts with ``target``.

    Raises:
        ConfigError: neither a job nor a run (or an ambiguous run id).
    """
    if JobBook(ledger).find(target) is not None:
        return Scope.of_job(target)
    try:
        return Scope.of_run(ledger.resolve_run(target))
    except ConfigError:
        raise ConfigError(
            f"no job or run {target!r} in ledger {ledger.path}; see `caftm jobs` or `caftm runs`"
        ) from None


def _fmt(value: float | int | None, fmt: str = ".3g") -> str:
    """``value`` formatted, or "—" where the ledger holds none (never "None")."""
    return "—" if value is None else format(value, fmt)


def _steps(start: int | None, end: int | None) -> str:
    """A leg's steps, ``200 → 400``; "—" for a step not recorded."""
    return f"{_fmt(start, 'd')} → {_fmt(end, 'd')}"


def _gapped(
    windows: Sequence[WindowRecord], events: Sequence[EventRecord], values: Sequence[float | None]
) -> tuple[list[datetime], list[float]]:
    """Times and values with a NaN point (a break in the line, step lines included) where
    nothing ran between two windows (:class:`~caftm.report.timeline.WindowGaps`)."""
    nan = float("nan")
    times: list[datetime] = []
    out: list[float] = []
    gaps = WindowGaps(events)
    for w, value in zip(windows, values, strict=True):
        # at the previous window's end: a step line stops there
        if gaps.before(w.time.timestamp(), w.duration_s, w.run_id):
            times.append(times[-1])
            out.append(nan)
        times.append(w.time)
        out.append(nan if value is None else value)
    return times, out


def ledger_report(ledger: Ledger, target: str) -> ReportInput:
    """The report of job or run ``target`` (see :func:`resolve_target`).

    Raises:
        ConfigError: no such job or run, or it has no measured window yet.
    """
    scope = resolve_target(ledger, target)
    book, feed = JobBook(ledger), Feed(ledger)
    job = book.get(scope.job) if scope.job is not None else None
    windows = feed.windows(scope)
    events = feed.events(scope)
    if not windows:
        raise ConfigError(f"{target!r} has no measured window yet: nothing to report")
    setup = signal_setup(job.spec if job else {}, [w.site for w in windows])
    simulated = feed.simulated(scope)
    times = [w.time for w in windows]
    carbon = [w.carbon_g or 0.0 for w in windows]
    baseline_total, method, baseline_cum = _baseline(book, scope, setup, windows)
    energy_j = sum(w.energy_j or 0.0 for w in windows)
    carbon_g = sum(carbon)
    knob = next((w.knob for w in reversed(windows) if w.knob), None)
    unit = _UNITS.get(knob or "", "")

    figures = []
    if job is not None:
        figures.append(ReportFigure(
            "the job's path across sites", png_bytes(timeline_figure(book, [job.name]), dpi=90),
            "Carbon intensity where the job ran, per site; moves (blue bands, dashed lines: "
            "checkpoint, copy, restart) and pauses (grey bands) marked; θ dotted.",
        ))  # fmt: skip
    else:
        figures.append(ReportFigure("intensity where the run ran", series_png(
            times, [w.intensity_g_per_kwh for w in windows], ylabel="gCO2eq/kWh",
            title=f"run {scope.run_id}: intensity where it ran")))  # fmt: skip
    span = (times[0], times[-1])
    middle = times[0] + (times[-1] - times[0]) / 2
    hours = (times[-1] - times[0]).total_seconds() / 3600
    outlooks = site_outlooks(setup, middle, before_h=hours / 2 + 2, after_h=hours / 2 + 2)
    figures.append(ReportFigure(
        "intensity at each candidate site", outlook_png(outlooks, setup.threshold_g_per_kwh,
                                                        span=span),
        f"Source: {setup.source_name}" + (" (SYNTHETIC: embedded typical-year profiles)"
                                          if setup.synthetic else "")
        + "; solid before the middle of the job, dotted the forecast from it; θ dashed.",
    ))  # fmt: skip
    power = [(w.energy_j / w.duration_s) if w.energy_j and w.duration_s > 0 else None
             for w in windows]  # fmt: skip
    gap_times, settings = _gapped(windows, events, [w.setting for w in windows])
    figures.append(ReportFigure(
        "GPU setting and power", gpu_png(
            gap_times, list(settings), list(_gapped(windows, events, power)[1]), unit),
        ("SIMULATED GPU: power from the GPU model, not a meter. " if simulated else "")
        + f"Setting in {unit or 'default units'}; power = window energy / window duration.",
    ))  # fmt: skip
    figures.append(ReportFigure(
        "carbon so far against a carbon-agnostic run",
        carbon_png(gap_times, _gapped(windows, events, list(accumulate(carbon)))[1], baseline_cum,
                   agnostic_label="carbon-agnostic " + method.split(":")[0]),
        f"Carbon-agnostic run: {method}.",
    ))  # fmt: skip

    saving = f"{100 * (1 - carbon_g / baseline_total):.1f} %" if baseline_total else "—"
    summary = [
        ("kind", "job" if job else "run"),
        ("status", job.status.value if job else _run(ledger, scope).status.value),
        ("sites", ", ".join(setup.sites) or "—"),
        ("start site", setup.start_site),
        ("final site", job.site if job else windows[-1].site),
        ("moves / pauses", f"{job.moves} / {job.pauses}" if job else "—"),
        ("steps measured", str(sum(w.steps for w in windows))),
        ("windows", str(len(windows))),
        ("energy", f"{energy_j / J_PER_KWH * 1000:.3g} Wh"),
        ("carbon", f"{carbon_g:.4g} gCO2eq"),
        ("carbon-agnostic run", f"{_fmt(baseline_total, '.4g')} gCO2eq ({method})"),
        ("saving", saving),
        ("θ", f"{_fmt(setup.threshold_g_per_kwh, '.0f')} gCO2eq/kWh"),
        ("first / last window (job clock, UTC)", f"{times[0]:%Y-%m-%d %H:%M} / "
                                                 f"{times[-1]:%Y-%m-%d %H:%M}"),
    ]  # fmt: skip
    labels = []
    if simulated:
        labels.append("SIMULATED GPU")
    if setup.synthetic:
        labels.append("SYNTHETIC intensities")
    if baseline_total is not None and method.startswith("estimated"):
        labels.append("ESTIMATED carbon-agnostic baseline")
    inputs = [
        ("GPU energy and setting", "simulated GPU model (runs with simulated set)" if simulated
         else "the GPU's meter (NVML)", simulated),
        ("carbon intensity", f"source {setup.source_name!r}", setup.synthetic),
        ("carbon-agnostic baseline", method, method.startswith("estimated")),
    ]  # fmt: skip
    return ReportInput(
        title=f"job {job.name}" if job else f"run {scope.run_id}",
        source=f"ledger {ledger.path}",
        labels=labels,
        summary=summary,
        figures=figures,
        tables=_tables(ledger, book, feed, scope),
        inputs=inputs,
        configuration=job.spec if job else _run_config(_run(ledger, scope)),
    )


def _baseline(
    book: JobBook, scope: Scope, setup: SignalSetup, windows: list[WindowRecord]
) -> tuple[float | None, str, tuple[list[datetime], list[float]]]:
    """(total g, method text, (times, cumulative g)) of the carbon-agnostic run."""
    twin = book.find(f"{scope.job}-agnostic") if scope.job is not None else None
    if twin is not None:
        total = book.totals(twin.name).carbon_g
        twin_windows = Feed(book.ledger).windows(Scope.of_job(twin.name))
        cumulative = list(accumulate(w.carbon_g or 0.0 for w in twin_windows))
        curve = ([w.time for w in twin_windows], cumulative)
        return total, BASELINE_TWIN_TEXT.format(twin=twin.name), curve
    origin = windows[0].time - timedelta(seconds=windows[0].duration_s)
    times = back_to_back_times(origin, [w.duration_s for w in windows])
    per_window = agnostic_window_carbon_g(
        setup, times, [w.energy_j for w in windows],
        [(w.site, w.intensity_g_per_kwh) for w in windows],
    )  # fmt: skip
    cumulative = list(accumulate(per_window))
    curve = (times, cumulative)  # on the times of a run without pauses or moves
    return cumulative[-1], BASELINE_ESTIMATE_TEXT.format(site=setup.start_site), curve


def _tables(ledger: Ledger, book: JobBook, feed: Feed, scope: Scope) -> list[ReportTable]:
    tables = []
    if scope.job is not None:
        tables.append(ReportTable(
            "Legs", ("leg", "site", "status", "started (UTC)", "ended (UTC)", "steps", "message"),
            [(str(leg.leg), leg.site, leg.status.value, f"{leg.started_at:%Y-%m-%d %H:%M:%S}",
              "—" if leg.ended_at is None else f"{leg.ended_at:%Y-%m-%d %H:%M:%S}",
              _steps(leg.start_step, leg.end_step), leg.message or "—")
             for leg in book.legs(scope.job)],
        ))  # fmt: skip
        transfers = book.transfers(scope.job)
        if transfers:
            tables.append(ReportTable(
                "Checkpoint transfers", ("leg", "from", "to", "step", "bytes", "s", "status"),
                [(str(t.leg), t.src_site, t.dst_site, _fmt(t.step, "d"), _fmt(t.bytes, "d"),
                  _fmt(t.seconds), str(t.status)) for t in transfers],
            ))  # fmt: skip
    events = feed.events(scope)
    shown = events[-MAX_EVENTS:]
    title = "Events" + (f" (the last {MAX_EVENTS} of {len(events)})" if len(events) > len(shown)
                        else "")  # fmt: skip
    tables.append(ReportTable(
        title, ("time (job clock, UTC)", "from", "to", "site", "gCO2eq/kWh", "setting", "reason"),
        [(f"{e.time:%Y-%m-%d %H:%M:%S}", e.from_state, e.to_state, e.site,
          _fmt(e.intensity_g_per_kwh, ".0f"), _fmt(e.gpu_setting, ".0f"), e.reason)
         for e in shown],
    ))  # fmt: skip
    return tables


def _run(ledger: Ledger, scope: Scope) -> RunSummary:
    """The scope's run (ConfigError when it is gone)."""
    run = ledger.run(str(scope.run_id))
    if run is None:
        raise ConfigError(f"no run {scope.run_id!r} in ledger {ledger.path}")
    return run


def _run_config(run: RunSummary) -> dict[str, object]:
    return {"run": run.run_id, "name": run.name, "policy": run.policy, "site": run.site,
            "started_at": run.started_at.isoformat(), "config": run.config}  # fmt: skip
