"""A background thread that keeps the latest carbon intensities at hand.

The training step never calls a provider: it reads
:attr:`IntensityRefresher.current_intensity_g_per_kwh`, a plain float the thread replaces after
each poll. Provider failures keep the last value and are
logged once per failure streak. Tests (and the simulator) drive it with :meth:`refresh_once` and an
injected clock instead of the thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType

from caftm.errors import ConfigError
from caftm.signals.base import IntensitySource, Reading

log = logging.getLogger(__name__)

Listener = Callable[["IntensityRefresher"], None]


class IntensityRefresher:
    """Polls ``source`` for every site's zone each ``interval_s``.

    Args:
        source: where intensities come from.
        site_zones: site name → grid zone, the current site included.
        site: the site training runs at now.
        interval_s: poll period, s.
        forecast_interval_s: forecast refresh period, s (when ``want_forecast``).
        want_forecast: also fetch hourly forecasts (relative θ, forecast-aware policy).
        forecast_horizon_s: forecast length, s.
        history_size: how many past readings of the current site to keep.
        clock: POSIX seconds now (inject a fake one in tests).

    Attributes (replaced whole, read without locks):
        current_intensity_g_per_kwh: the current site's latest value (NaN before any).
        readings: site → latest Reading.
        forecasts: site → hourly intensities from the current hour.
        version: increments after every poll.
        last_refresh_s: time of the last poll (POSIX s).

    Raises:
        ConfigError: bad interval, no sites, or ``site`` not among them.
    """

    def __init__(
        self,
        source: IntensitySource,
        site_zones: Mapping[str, str],
        site: str,
        *,
        interval_s: float = 300.0,
        forecast_interval_s: float = 3600.0,
        want_forecast: bool = False,
        forecast_horizon_s: float = 24 * 3600.0,
        history_size: int = 48,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not interval_s > 0.0:
            raise ConfigError(f"refresher interval_s must be > 0 s, got {interval_s}")
        if not site_zones:
            raise ConfigError("refresher needs at least one site")
        if site not in site_zones:
            raise ConfigError(f"current site {site!r} is not among the sites {sorted(site_zones)}")
        self.source = source
        self.site_zones = dict(site_zones)
        self._site = site
        self.interval_s = interval_s
        self.forecast_interval_s = forecast_interval_s
        self.want_forecast = want_forecast
        self.forecast_horizon_s = forecast_horizon_s
        self.clock: Callable[[], float] = clock or time.time
        self.current_intensity_g_per_kwh = math.nan
        self.readings: dict[str, Reading] = {}
        self.forecasts: dict[str, tuple[float, ...]] = {}
        self._forecast_first_s: dict[str, float] = {}
        self.version = 0
        self.last_refresh_s = -math.inf
        self._last_forecast_s = -math.inf
        self._history: deque[float] = deque(maxlen=history_size)
        self._failing: set[str] = set()
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the current site --------------------------------------------------------------------
    @property
    def site(self) -> str:
        """The site training runs at now."""
        return self._site

    @site.setter
    def site(self, site: str) -> None:
        if site not in self.site_zones:
            raise ConfigError(f"site {site!r} is not among the sites {sorted(self.site_zones)}")
        self._site = site
        self._history.clear()
        reading = self.readings.get(site)
        self.current_intensity_g_per_kwh = (
            reading.intensity_g_per_kwh if reading is not None else math.nan
        )

    @property
    def running(self) -> bool:
        """Whether the polling thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def history(self) -> tuple[float, ...]:
        """Recent readings of the current site, oldest first (g/kWh)."""
        return tuple(self._history)

    def forecast_from(self, site: str, now_s: float) -> tuple[float, ...]:
        """The site's hourly forecast (g/kWh) from the hour containing ``now_s`` on (hours that
        passed since it was fetched are dropped; empty without a forecast)."""
        values = self.forecasts.get(site, ())
        first_s = self._forecast_first_s.get(site)
        if not values or first_s is None or now_s < first_s + 3600.0:
            return values
        return values[int((now_s - first_s) // 3600.0) :]

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(self)`` after each poll (on the polling thread)."""
        self._listeners.append(listener)

    # -- polling -------------------------------------------------------------------------------
    def refresh_once(self) -> None:
        """Poll every site now (and the forecasts when due); never raises for provider errors."""
        now_s = self.clock()
        when = datetime.fromtimestamp(now_s, UTC)
        readings = dict(self.readings)
        for site, zone in self.site_zones.items():
            try:
                readings[site] = self.source.intensity(zone, when)
            except Exception as e:  # any provider failure: keep the last value
                self._failed(site, zone, "intensity", e)
            else:
                self._failing.discard(f"{site}:intensity")
        self.readings = readings
        if self.want_forecast and now_s - self._last_forecast_s >= self.forecast_interval_s:
            self._refresh_forecasts(when)
            self._last_forecast_s = now_s
        current = readings.get(self._site)
        if current is not None:
            self._history.append(current.intensity_g_per_kwh)
            self.current_intensity_g_per_kwh = current.intensity_g_per_kwh
        self.last_refresh_s = now_s
        self.version += 1
        for listener in self._listeners:
            listener(self)

    def _refresh_forecasts(self, when: datetime) -> None:
        forecasts = dict(self.forecasts)
        horizon = timedelta(seconds=self.forecast_horizon_s)
        for site, zone in self.site_zones.items():
            try:
                values = self.source.forecast(zone, when, horizon)
            except Exception as e:  # forecasts are optional: keep the last
                self._failed(site, zone, "forecast", e)
                continue
            self._failing.discard(f"{site}:forecast")
            forecasts[site] = tuple(r.intensity_g_per_kwh for r in values)
            if values:
                self._forecast_first_s[site] = values[0].time.timestamp()
        self.forecasts = forecasts

    def _failed(self, site: str, zone: str, what: str, error: Exception) -> None:
        key = f"{site}:{what}"
        if key not in self._failing:
            self._failing.add(key)
            log.warning(
                "%s for site %s (zone %s) failed; keeping the last value: %s",
                what,
                site,
                zone,
                error,
            )

    # -- thread ----------------------------------------------------------------------------
    def start(self) -> IntensityRefresher:
        """Poll once now, then keep polling on a daemon thread; returns self."""
        if self._thread is not None:
            return self
        self.refresh_once()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="caftm-intensity", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def _run(self) -> None:
        from caftm.clock import clock_speed  # an accelerated clock polls as often in its own time

        while not self._stop.wait(self.interval_s / clock_speed(self.clock)):
            try:
                self.refresh_once()
            except Exception:  # a listener failed; the thread must live on
                log.exception("intensity refresher listener failed")

    def __enter__(self) -> IntensityRefresher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
