"""Building the :class:`~caftm.control.states.Observation` a policy decides on.

One home for the observation, shared by the live :class:`~caftm.control.controller.Controller` and
the trace-driven simulator (:mod:`caftm.sim`): both read the signals through the small
:class:`SignalView` protocol (the latest intensity of every site, hourly forecasts, the current
site's recent history), so the policy sees the same thing whether the readings come from a
refresher polling a provider or from a trace replayed in virtual time.

Units: times POSIX s, intensities gCO2eq/kWh, power W.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from caftm.control.planning import GpuCurve
from caftm.control.states import Band, Observation, SiteOutlook
from caftm.control.threshold import ThresholdSpec, compute_band

if TYPE_CHECKING:
    from caftm.control.policies import Rules
    from caftm.signals.refresher import IntensityRefresher


class SignalView(Protocol):
    """What the observation needs of the signals (a refresher, or a trace in the simulator)."""

    @property
    def current_intensity_g_per_kwh(self) -> float:
        """The current site's latest intensity (NaN before any reading)."""
        ...

    def intensities(self) -> Mapping[str, float]:
        """Site → latest intensity, every site with a reading (the current one included)."""
        ...

    def forecast_from(self, site: str, now_s: float) -> tuple[float, ...]:
        """The site's hourly forecast from the hour containing ``now_s`` (empty: none)."""
        ...

    def history(self) -> tuple[float, ...]:
        """Recent readings of the current site, oldest first."""
        ...

    def outlooks(self, now_s: float) -> tuple[SiteOutlook, ...]:
        """Every site's latest reading and its forecast from ``now_s`` on (see :func:`outlooks`)."""
        ...


class RefresherView:
    """:class:`SignalView` over a live :class:`~caftm.signals.refresher.IntensityRefresher`."""

    def __init__(self, refresher: IntensityRefresher) -> None:
        self.refresher = refresher

    @property
    def current_intensity_g_per_kwh(self) -> float:
        return self.refresher.current_intensity_g_per_kwh

    def intensities(self) -> Mapping[str, float]:
        return {site: r.intensity_g_per_kwh for site, r in self.refresher.readings.items()}

    def forecast_from(self, site: str, now_s: float) -> tuple[float, ...]:
        return self.refresher.forecast_from(site, now_s)

    def history(self) -> tuple[float, ...]:
        return self.refresher.history()

    def outlooks(self, now_s: float) -> tuple[SiteOutlook, ...]:
        return tuple(
            SiteOutlook(site, value, self.forecast_from(site, now_s))
            for site, value in self.intensities().items()
        )


def outlooks(view: SignalView, now_s: float) -> tuple[SiteOutlook, ...]:
    """Every site's latest reading and its forecast from ``now_s`` on (the view's own, which a
    trace view may memoise)."""
    return view.outlooks(now_s)


def band(
    view: SignalView,
    site: str,
    site_outlooks: tuple[SiteOutlook, ...],
    intensity_g_per_kwh: float,
    remaining_work_s: float | None,
    *,
    threshold: ThresholdSpec,
    rules: Rules,
    power_w: float,
    idle_power_w: float,
) -> Band:
    """The θ band for these outlooks at ``site`` (its outlook falls back to its bare reading)."""
    current = next(
        (o for o in site_outlooks if o.site == site), SiteOutlook(site, intensity_g_per_kwh)
    )
    return compute_band(
        threshold,
        current=current,
        candidates=site_outlooks,
        history_g_per_kwh=view.history(),
        power_w=power_w,
        idle_power_w=idle_power_w,
        window_s=rules.window_s(remaining_work_s),
        cost=rules.move_cost,
    )


def remaining_work_s(
    total_steps: int | None, steps_done: int, step_time_s: float | None
) -> float | None:
    """Training time (s) left at ``step_time_s`` per step (None: total or speed unknown)."""
    if total_steps is None or step_time_s is None:
        return None
    return max(0, total_steps - steps_done) * step_time_s


def observe(
    view: SignalView,
    site: str,
    now_s: float,
    *,
    threshold: ThresholdSpec,
    rules: Rules,
    remaining_work_s: float | None,
    power_w: float,
    idle_power_w: float,
    optimizer_settled: bool = False,
    best_setting: float | None = None,
    drift: bool = False,
    checkpoint_ok: bool | None = None,
    finished: bool = False,
    gpu_curve: GpuCurve | None = None,
    pace_known: bool = True,
) -> Observation:
    """The observation at ``now_s`` for a run at ``site`` (see :class:`Observation`)."""
    site_outlooks = outlooks(view, now_s)
    ci = view.current_intensity_g_per_kwh
    return Observation(
        now_s=now_s,
        intensity_g_per_kwh=ci,
        band=band(
            view,
            site,
            site_outlooks,
            ci,
            remaining_work_s,
            threshold=threshold,
            rules=rules,
            power_w=power_w,
            idle_power_w=idle_power_w,
        ),
        outlooks=site_outlooks,
        optimizer_settled=optimizer_settled,
        best_setting=best_setting,
        drift=drift,
        checkpoint_ok=checkpoint_ok,
        remaining_work_s=remaining_work_s,
        pace_known=pace_known,
        power_w=power_w,
        idle_power_w=idle_power_w,
        finished=finished,
        gpu_curve=gpu_curve,
    )
