"""The fallback chain: live provider -> cache -> earlier forecast -> embedded profile.

:class:`FallbackChain` asks the live client first, under a deadline, so a slow provider never
stalls the caller for longer than ``deadline_s``. When the live stage fails (ProviderError, a
zone it cannot map, or the deadline), it answers from, in order:

1. ``cache:<live>`` — the freshest cached observed reading, if younger than ``max_cache_age_s``;
2. ``forecast:<live>`` — a forecast the live provider made earlier for that time (cached);
3. the embedded profile (``profile (synthetic)``) or any other last-resort source given.

Every live answer is written to the cache, so the next outage has something to fall back to;
each returned reading's ``source`` says which stage answered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timedelta
from typing import TypeVar

from caftm.errors import ConfigError, ProviderError
from caftm.signals.base import IntensitySource, Kind, Reading, as_utc, forecast_start, utcnow
from caftm.signals.cache import OBSERVED_KINDS, ReadingCache, relabel

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _forecast(
    source: IntensitySource, zone: str, start: datetime, horizon: timedelta
) -> list[Reading]:
    """The source's own forecast, or one made from its history when it gives none."""
    try:
        return source.forecast(zone, start, horizon)
    except NotImplementedError:
        from caftm.signals.forecast import forecast_readings  # numpy/scipy: load on need

        return forecast_readings(source, zone, start, horizon)


class FallbackChain(IntensitySource):
    """Live -> cache -> forecast -> profile, recording the stage used on each reading.

    Args:
        live: The live client, or None (no key): then the chain starts at the cache.
        cache: The shared reading cache, or None for no cache stages.
        last_resort: The final stage; default the embedded :class:`ProfileSource`.
        deadline_s: Longest wait for the live stage, seconds.
        max_cache_age_s: Oldest cached observation (relative to the asked time) still used.
        forecast_slot_s: A cached forecast point answers for this long after its time.
        cache_name: Whose cached readings to use when ``live`` is None (e.g. no key).
        why_no_live: Why ``live`` is None (the missing key's message), said in the notes.
    """

    def __init__(
        self,
        live: IntensitySource | None,
        *,
        cache: ReadingCache | None = None,
        last_resort: IntensitySource | None = None,
        deadline_s: float = 15.0,
        max_cache_age_s: float = 3 * 3600.0,
        forecast_slot_s: float = 3600.0,
        cache_name: str | None = None,
        why_no_live: str | None = None,
    ) -> None:
        self.live = live
        self.why_no_live = why_no_live
        self._cache_name = live.name if live is not None else cache_name
        self.cache = cache
        if last_resort is None:
            from caftm.signals.profiles import ProfileSource  # numpy/scipy: load on need

            last_resort = ProfileSource()
        self.last_resort = last_resort
        self.deadline_s = deadline_s
        self.max_cache_age = timedelta(seconds=max_cache_age_s)
        self.forecast_slot = timedelta(seconds=forecast_slot_s)
        self.name = live.name if live is not None else self.last_resort.name
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="caftm-live")

    def __repr__(self) -> str:
        return f"FallbackChain(live={self.live!r}, cache={self.cache!r}, last={self.last_resort!r})"

    def close(self) -> None:
        """Stop the worker threads and close the live client (an in-flight call runs out)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.live, "close", None)
        if callable(close):
            close()

    def zones(self) -> list[str]:
        """Zones of the live source and the last resort together."""
        known = set(self.last_resort.zones())
        if self.live is not None:
            known |= set(self.live.zones())
        return sorted(known)

    def _live(self, what: str, call: Callable[[IntensitySource], T]) -> T | None:
        """Run ``call(live)`` under the deadline; None when it failed or ran late."""
        live = self.live
        if live is None:
            if self.why_no_live:
                self.note(f"{self.why_no_live}; {what} answered by a fallback stage")
            return None
        future: Future[T] = self._pool.submit(call, live)
        try:
            return future.result(timeout=self.deadline_s)
        except FutureTimeout:
            self.note(
                f"{live.name}: no answer for {what} within {self.deadline_s:.3g} s; "
                "answered by a fallback stage"
            )
            future.add_done_callback(self._store_late)
        except (ProviderError, ConfigError) as e:
            self.note(f"{live.name} failed for {what} ({e}); answered by a fallback stage")
        return None

    def take_notes(self) -> list[str]:
        """This chain's notes and those of its live source and last resort, oldest first."""
        notes = super().take_notes()
        for stage in (self.live, self.last_resort):
            if stage is not None:
                notes += [n for n in stage.take_notes() if n not in notes]
        return notes

    def _store_late(self, future: Future[T]) -> None:
        """Keep a late live answer in the cache for the next caller."""
        if future.cancelled() or future.exception() is not None:
            return
        result = future.result()
        readings = result if isinstance(result, list) else [result]
        self._store([r for r in readings if isinstance(r, Reading)])

    def _store(self, readings: list[Reading]) -> None:
        if self.cache is None or self.live is None or not readings:
            return
        try:
            self.cache.put(readings, source=self.live.name)
        except Exception as e:  # the cache is a convenience; never fail a live answer for it
            logger.warning("could not write %d readings to %s: %s", len(readings), self.cache, e)

    def _label(self, stage: str) -> str:
        return f"{stage}:{self._cache_name}" if self._cache_name is not None else stage

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        """The reading in force at ``time`` (default now) from the first stage that answers."""
        at = utcnow() if time is None else as_utc(time, what=f"time for zone {zone}")
        reading = self._live(f"zone {zone}", lambda s: s.intensity(zone, time))
        if reading is not None:
            self._store([reading])
            return reading
        if self.cache is not None and self._cache_name is not None:
            hit = self.cache.latest(self._cache_name, zone, at, not_before=at - self.max_cache_age)
            if hit is not None:
                return relabel(hit.reading, self._label("cache"))
            planned = self.cache.latest(
                self._cache_name,
                zone,
                at,
                not_before=at - self.forecast_slot,
                kinds=(Kind.FORECAST,),
            )
            if planned is not None:
                return relabel(planned.reading, self._label("forecast"))
        return self.last_resort.intensity(zone, at)

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        """Readings in ``[start, end)`` from live, else the cache, else the last resort."""
        start = as_utc(start, what="history start")
        end = as_utc(end, what="history end")
        readings = self._live(f"zone {zone} history", lambda s: s.history(zone, start, end))
        if readings is not None:
            self._store(readings)
            return readings
        if self.cache is not None and self._cache_name is not None:
            cached = self.cache.get(self._cache_name, zone, start, end, kinds=OBSERVED_KINDS)
            if cached:
                return [relabel(c.reading, self._label("cache")) for c in cached]
        return self.last_resort.history(zone, start, end)

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        """Live forecast, else one made earlier (cached), else the last resort's forecast."""
        begin = forecast_start(start)
        readings = self._live(f"zone {zone} forecast", lambda s: _forecast(s, zone, begin, horizon))
        if readings is not None:
            self._store(readings)
            return readings
        if self.cache is not None and self._cache_name is not None:
            cached = self.cache.get(
                self._cache_name,
                zone,
                begin - self.forecast_slot + timedelta(seconds=1),
                begin + horizon,
                kinds=(Kind.FORECAST,),
            )
            if cached:
                return [relabel(c.reading, self._label("forecast")) for c in cached]
        return self.last_resort.forecast(zone, begin, horizon)
