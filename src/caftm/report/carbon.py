"""The carbon-agnostic baseline and the candidate sites' intensities, for the report and the
dashboard alike.

**Baseline** (what a carbon-agnostic run would have emitted):

- when the ledger holds the job's carbon-agnostic twin (a job named ``<job>-agnostic``, as the
  demo runs), the twin's own measured carbon;
- otherwise an estimate: the job's measured windows run back to back from its first window's
  start, at the *start site*, with no pause and no move (:func:`back_to_back_times`); each
  window's measured energy at the start site's intensity at the time such a run would have
  reached it (from the job's intensity source; where that source cannot answer, the intensity
  last recorded at the start site). It keeps the job's own GPU setting and energy, so it credits
  moves and pauses (waiting for cleaner hours), not GPU tuning.

**Outlook**: each candidate site's intensity over the hours before a time (history) and its
forecast after it, from the source the job was configured with (offline sources answer at
once; a live source is wrapped in the fallback chain, with a short deadline).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from caftm._units import carbon_g
from caftm.errors import CaftmError
from caftm.signals.base import IntensitySource, Kind

__all__ = [
    "BASELINE_ESTIMATE_TEXT",
    "BASELINE_TWIN_TEXT",
    "SignalSetup",
    "SiteOutlook",
    "agnostic_window_carbon_g",
    "back_to_back_times",
    "signal_setup",
    "site_outlooks",
]

logger = logging.getLogger(__name__)

BASELINE_TWIN_TEXT = "measured: its carbon-agnostic twin job {twin!r} ran in the same ledger"
BASELINE_ESTIMATE_TEXT = (
    "estimated: the job's windows run back to back at the start site {site} from its start, "
    "without its pauses and moves, each window's measured energy at {site}'s intensity when "
    "that run would have reached it (credits moves and pauses, not GPU tuning)"
)


@dataclass(frozen=True)
class SignalSetup:
    """Where a job's intensities come from: its sites (name → zone), start site, θ and source.

    ``synthetic`` is True when the source makes its values up (the embedded profiles).
    """

    sites: dict[str, str]
    start_site: str
    threshold_g_per_kwh: float | None
    source_name: str
    trace_path: str | None = None
    synthetic: bool = True
    _source: list[IntensitySource] = field(default_factory=list, repr=False, compare=False)

    def source(self) -> IntensitySource:
        """The source (built on first use; a live one behind the fallback chain).

        Raises:
            ConfigError: the source cannot be set up.
        """
        if not self._source:
            from caftm.signals.registry import configured_source

            self._source.append(
                configured_source(self.source_name, self.trace_path, deadline_s=3.0)
            )
        return self._source[0]


def signal_setup(spec: Mapping[str, Any], seen_sites: Sequence[str] = ()) -> SignalSetup:
    """The setup a job's stored spec describes (``JobSpec.to_dict()``); a bare run's (no spec)
    falls back to the sites its windows name, read as zones of the embedded profiles."""
    controller = spec.get("controller") or {}
    sites = {
        str(s.get("name") or s.get("zone")): str(s.get("zone") or s.get("name"))
        for s in controller.get("sites") or []
        if isinstance(s, Mapping)
    }
    if not sites:
        sites = {site: site for site in dict.fromkeys(seen_sites)}
    start = controller.get("site") or next(iter(sites), "")
    threshold = controller.get("threshold") or {}
    mode = threshold.get("mode", "absolute")
    theta = threshold.get("value_g_per_kwh", 400.0) if mode == "absolute" else None
    signals = controller.get("signals") or {}
    name = str(signals.get("source", "profile"))
    return SignalSetup(
        sites, str(start), None if theta is None else float(theta), name,
        signals.get("trace_path"), synthetic=name == "profile",
    )  # fmt: skip


@dataclass(frozen=True)
class SiteOutlook:
    """One site around ``now``: hourly history before it and forecast after (gCO2eq/kWh)."""

    site: str
    zone: str
    now_g_per_kwh: float | None
    times: list[datetime]
    values: list[float]
    forecast_from: int  # index of the first forecast value in ``times``/``values``
    kind: str  # "synthetic", "measured", ... (the readings' kind)


def site_outlooks(
    setup: SignalSetup, now: datetime, *, before_h: float = 12.0, after_h: float = 24.0
) -> list[SiteOutlook]:
    """Every candidate site's intensity at ``now``, the ``before_h`` hours before and the
    forecast over ``after_h`` hours; a site whose source cannot answer has no values."""
    out = []
    for site, zone in setup.sites.items():
        try:
            source = setup.source()
            past = source.history(zone, now - timedelta(hours=before_h), now)
            reading = source.intensity(zone, now)
            try:
                ahead = source.forecast(zone, now, timedelta(hours=after_h))
            except NotImplementedError:
                ahead = []
            except CaftmError as e:  # the history still shows
                logger.info("no forecast for site %s (zone %s): %s", site, zone, e)
                ahead = []
        except CaftmError as e:
            logger.warning("no outlook for site %s (zone %s): %s", site, zone, e)
            out.append(SiteOutlook(site, zone, None, [], [], 0, "unavailable"))
            continue
        times = [r.time for r in past] + [r.time for r in ahead]
        values = [r.intensity_g_per_kwh for r in past] + [r.intensity_g_per_kwh for r in ahead]
        kind = reading.kind.value if isinstance(reading.kind, Kind) else str(reading.kind)
        out.append(
            SiteOutlook(site, zone, reading.intensity_g_per_kwh, times, values, len(past), kind)
        )
    return out


def back_to_back_times(
    origin: datetime, durations_s: Sequence[float], *, before_s: float = 0.0
) -> list[datetime]:
    """When each window would have ended in a run that never paused or moved: ``origin`` (the
    job's first window's start) plus every window's duration so far.

    Args:
        origin: the start of the job's first window (UTC).
        durations_s: each window's duration (s), in order.
        before_s: the durations of the windows before these (an incremental caller's total).
    """
    ends = before_s + np.cumsum(np.asarray(durations_s, dtype=np.float64))
    return [origin + timedelta(seconds=float(s)) for s in ends]


def agnostic_window_carbon_g(
    setup: SignalSetup,
    times: Sequence[datetime],
    energies_j: Sequence[float | None],
    recorded: Sequence[tuple[str, float | None]],
) -> list[float]:
    """Per window, the carbon (g) its measured energy would have emitted at the start site.

    Args:
        times: when each window ran in the carbon-agnostic run (the job's clock; see
            :func:`back_to_back_times`).
        energies_j: each window's measured energy (None: not metered, counts 0).
        recorded: each window's (site, recorded intensity), the fallback where the source
            cannot answer: the start site's last recorded intensity.
    """
    zone = setup.sites.get(setup.start_site, setup.start_site)
    intensities = _intensities_at(setup, zone, times)
    last = next((ci for site, ci in recorded if site == setup.start_site and ci is not None), None)
    out = []
    for i, energy in enumerate(energies_j):
        site, ci = recorded[i]
        if site == setup.start_site and ci is not None:
            last = ci
        value = intensities[i] if intensities is not None else None
        value = value if value is not None and np.isfinite(value) else last
        out.append(0.0 if energy is None or value is None else carbon_g(energy, float(value)))
    return out


def _intensities_at(setup: SignalSetup, zone: str, times: Sequence[datetime]) -> list[float] | None:
    """The source's intensity of ``zone`` at each time (step-hold hourly), or None."""
    if not times:
        return []
    try:
        source = setup.source()
        values_at = getattr(source, "values_at", None)
        seconds = np.array([t.timestamp() for t in times], dtype=np.float64)
        if callable(values_at):  # the embedded profiles answer any times at once
            return [float(v) for v in values_at(zone, seconds.astype(np.int64))]
        readings = source.history(zone, min(times) - timedelta(hours=1), max(times))
    except CaftmError as e:
        logger.warning("no intensities of zone %s for the baseline: %s", zone, e)
        return None
    if not readings:
        return None
    stamps = np.array([r.time.timestamp() for r in readings])
    values = np.array([r.intensity_g_per_kwh for r in readings])
    index = np.clip(np.searchsorted(stamps, seconds, side="right") - 1, 0, len(values) - 1)
    return [float(v) for v in values[index]]
