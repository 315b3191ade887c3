"""Conformance tests every IntensitySource's tests subclass.

Subclass :class:`IntensitySourceConformance` as ``TestXxxConformance``, provide a ``source``
fixture and set the class attributes::

    class TestMySourceConformance(IntensitySourceConformance):
        zone = "DE"
        @pytest.fixture
        def source(self): return MySource(...)
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from caftm.clock import FakeClock
from caftm.errors import AuthError, ConfigError, ProviderError
from caftm.signals.base import MAX_PLAUSIBLE_G_PER_KWH, Basis, IntensitySource, Kind, Reading
from caftm.signals.http import RetryPolicy

from .servers import FakeProvider, Fault


def check_reading(reading: Reading, zone: str) -> None:
    """Assert ``reading`` honours the contract for ``zone``."""
    assert isinstance(reading, Reading)
    assert reading.zone == zone
    assert reading.time.tzinfo is not None and reading.time.utcoffset() == timedelta(0)
    assert 0.0 <= reading.intensity_g_per_kwh <= MAX_PLAUSIBLE_G_PER_KWH
    assert isinstance(reading.basis, Basis)
    assert isinstance(reading.kind, Kind)
    assert isinstance(reading.source, str) and reading.source


class IntensitySourceConformance:
    """The IntensitySource contract, run against one source.

    Attributes:
        zone: A zone the source answers for.
        unknown_zone: A zone it must refuse with ConfigError (None: not checked).
        past: How long before now the past-time checks look.
        span: Length of the history window checked.
        step: The source's time step (history readings at most this far apart).
        has_forecast: Whether :meth:`IntensitySource.forecast` must work.
        now: The "current" time for sources with fixed data (None: the wall clock).
    """

    zone: str = "DE"
    unknown_zone: str | None = None
    past: timedelta = timedelta(days=3)
    span: timedelta = timedelta(hours=6)
    step: timedelta = timedelta(hours=1)
    has_forecast: bool = True
    now: datetime | None = None

    @pytest.fixture
    def source(self) -> IntensitySource:
        raise NotImplementedError("subclasses provide a `source` fixture")

    def _now(self) -> datetime:
        return self.now or datetime.now(UTC)

    def _window(self) -> tuple[datetime, datetime]:
        start = (self._now() - self.past).replace(minute=0, second=0, microsecond=0)
        return start, start + self.span

    def test_name_and_zones(self, source: IntensitySource) -> None:
        assert isinstance(source.name, str) and source.name
        zones = source.zones()
        assert isinstance(zones, list) and all(isinstance(z, str) for z in zones)

    def test_intensity_now(self, source: IntensitySource) -> None:
        if self.now is not None:
            pytest.skip("fixed-data source: no 'now'")
        reading = source.intensity(self.zone)
        check_reading(reading, self.zone)
        assert reading.kind is not Kind.FORECAST or reading.time <= datetime.now(UTC)

    def test_intensity_at_past_time_is_in_force(self, source: IntensitySource) -> None:
        start, _ = self._window()
        at = start + timedelta(minutes=17)
        reading = source.intensity(self.zone, at)
        check_reading(reading, self.zone)
        assert at - self.step <= reading.time <= at

    def test_history_is_sorted_typed_and_within_range(self, source: IntensitySource) -> None:
        start, end = self._window()
        readings = source.history(self.zone, start, end)
        assert readings, "a past window must have readings"
        for reading in readings:
            check_reading(reading, self.zone)
            assert start <= reading.time < end
            assert reading.kind is not Kind.FORECAST
        times = [r.time for r in readings]
        assert times == sorted(times) and len(set(times)) == len(times)
        edges = [start, *times, end]
        assert max(b - a for a, b in itertools.pairwise(edges)) <= self.step

    def test_naive_timestamps_are_refused(self, source: IntensitySource) -> None:
        naive = datetime(2024, 1, 1, 12)
        with pytest.raises(ConfigError, match="no timezone"):
            source.intensity(self.zone, naive)
        with pytest.raises(ConfigError, match="no timezone"):
            source.history(self.zone, naive, naive + timedelta(hours=1))

    def test_forecast_is_kind_forecast_and_ahead(self, source: IntensitySource) -> None:
        if not self.has_forecast:
            pytest.skip("source gives no forecast")
        start = self._now()
        horizon = timedelta(hours=6)
        readings = source.forecast(self.zone, start, horizon)
        assert readings
        for reading in readings:
            check_reading(reading, self.zone)
            assert reading.kind is Kind.FORECAST
            assert start - self.step < reading.time < start + horizon
        times = [r.time for r in readings]
        assert times == sorted(times)

    def test_unknown_zone_is_a_config_error(self, source: IntensitySource) -> None:
        if self.unknown_zone is None:
            pytest.skip("source accepts any zone name (the provider decides)")
        with pytest.raises(ConfigError, match=self.unknown_zone):
            source.intensity(self.unknown_zone)


#: Retries fast so fault tests stay short.
FAST = RetryPolicy(
    timeout_s=3.0,
    max_retries=2,
    backoff_base_s=0.01,
    backoff_max_s=0.05,
    retry_after_cap_s=3.0,
    deadline_s=20.0,
)


def retry_on(clock: FakeClock, **fields: Any) -> RetryPolicy:
    """A :class:`RetryPolicy` waiting on a fake clock: retries take no wall time and the clock
    records how long they would have waited (``clock.slept_s``)."""
    return RetryPolicy(clock=clock.monotonic, sleep=clock.sleep, **fields)


class LiveProviderConformance(IntensitySourceConformance):
    """Fault handling every live client must show against its fake server.

    Subclasses provide a ``server`` fixture (a :class:`FakeProvider` in the provider's format)
    and :meth:`make_source`; ``secret`` is the key the source was given (None: keyless).
    """

    secret: str | None = None

    def make_source(self, server: FakeProvider, policy: RetryPolicy) -> IntensitySource:
        raise NotImplementedError

    @pytest.fixture
    def server(self) -> Iterator[FakeProvider]:
        raise NotImplementedError("subclasses provide a `server` fixture")

    @pytest.fixture
    def source(self, server: FakeProvider) -> IntensitySource:
        return self.make_source(server, FAST)

    def call(self, source: IntensitySource) -> Reading:
        """One ordinary request."""
        return source.intensity(self.zone)

    def assert_no_secret(self, text: str) -> None:
        if self.secret:
            assert self.secret not in text

    def test_401_is_auth_error_without_the_key(
        self, server: FakeProvider, source: IntensitySource, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        server.fail(*[Fault(401, {"error": f"bad key {self.secret}"}) for _ in range(4)])
        with pytest.raises(AuthError, match="missing/invalid/expired key") as info:
            self.call(source)
        self.assert_no_secret(str(info.value))
        self.assert_no_secret(repr(source))
        self.assert_no_secret(caplog.text)

    def test_429_waits_for_retry_after(
        self, server: FakeProvider, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        virtual = FakeClock()
        source = self.make_source(server, retry_on(virtual, timeout_s=3.0, retry_after_cap_s=3.0))
        server.fail(Fault(429, {"error": "slow down"}, headers={"Retry-After": "1"}))
        check_reading(self.call(source), self.zone)
        assert virtual.slept_s == [1.0]
        assert "429" in caplog.text
        self.assert_no_secret(caplog.text)

    def test_500_then_success_is_retried(
        self, server: FakeProvider, source: IntensitySource
    ) -> None:
        server.fail(Fault(500), Fault(503, "<html>busy</html>", "text/html"))
        before = len(server.seen)
        check_reading(self.call(source), self.zone)
        assert len(server.seen) - before >= 3

    def test_persistent_500_is_provider_error(
        self, server: FakeProvider, source: IntensitySource
    ) -> None:
        server.fail(*[Fault(500) for _ in range(3)])
        with pytest.raises(ProviderError, match=f"{source.name} answered HTTP 500") as info:
            self.call(source)
        assert not isinstance(info.value, AuthError)
        self.assert_no_secret(str(info.value))

    def test_timeout_is_provider_error_naming_the_timeout(self, server: FakeProvider) -> None:
        source = self.make_source(server, RetryPolicy(timeout_s=0.2, max_retries=0, deadline_s=1.0))
        server.delay_s = 1.0
        began = time.monotonic()
        with pytest.raises(ProviderError, match=r"0\.2 s timeout") as info:
            self.call(source)
        assert time.monotonic() - began < 0.8
        self.assert_no_secret(str(info.value))

    def test_html_instead_of_json(self, server: FakeProvider, source: IntensitySource) -> None:
        server.fail(Fault(200, "<html><body>Maintenance</body></html>", "text/html"))
        with pytest.raises(ProviderError, match=r"non-JSON \(text/html\) at /") as info:
            self.call(source)
        assert source.name in str(info.value)
        self.assert_no_secret(str(info.value))
