"""The sqlite reading cache: upserts, ranges, concurrent writers, CachedSource freshness."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from caftm.errors import ConfigError
from caftm.signals.base import Basis, IntensitySource, Kind, Reading, utcnow
from caftm.signals.cache import CachedSource, ReadingCache, default_cache_path

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def reading(hour: int, value: float, *, zone: str = "DE", kind: Kind = Kind.MEASURED) -> Reading:
    return Reading(zone, T0 + timedelta(hours=hour), value, Basis.LIFECYCLE, kind, "em")


class CountingSource(IntensitySource):
    """An in-memory hourly source that counts the calls it answers."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def zones(self) -> list[str]:
        return ["DE"]

    def _at(self, time: datetime, kind: Kind = Kind.MEASURED) -> Reading:
        hour = time.replace(minute=0, second=0, microsecond=0)
        return Reading("DE", hour, 100.0 + hour.hour, Basis.LIFECYCLE, kind, self.name)

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        self.calls += 1
        return self._at(time or utcnow())

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        self.calls += 1
        first = start.replace(minute=0, second=0, microsecond=0)
        first = first if first >= start else first + timedelta(hours=1)
        hours = int((end - first).total_seconds() // 3600) + 1
        times = [first + timedelta(hours=h) for h in range(hours)]
        return [self._at(t) for t in times if t < end]

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        self.calls += 1
        begin = (start or utcnow()).replace(minute=0, second=0, microsecond=0)
        steps = int(horizon.total_seconds() // 3600) + 1
        return [self._at(begin + timedelta(hours=h), Kind.FORECAST) for h in range(steps)]


def test_upsert_and_range_reads(tmp_path: Path) -> None:
    cache = ReadingCache(tmp_path / "c.sqlite")
    assert cache.put([reading(h, 100 + h) for h in range(5)]) == 5
    cache.put([reading(2, 555.0)])  # same key: replaced, not duplicated
    cache.put([reading(2, 10.0, kind=Kind.FORECAST)])  # another kind: a separate row
    got = cache.get("em", "DE", T0 + timedelta(hours=1), T0 + timedelta(hours=4))
    assert [(c.reading.time.hour, c.reading.kind) for c in got] == [
        (1, Kind.MEASURED),
        (2, Kind.MEASURED),
        (2, Kind.FORECAST),
        (3, Kind.MEASURED),
    ]
    assert got[1].reading.intensity_g_per_kwh == 555.0
    assert cache.count() == 6
    only = cache.get("em", "DE", T0, T0 + timedelta(days=1), kinds=[Kind.FORECAST])
    assert [c.reading.intensity_g_per_kwh for c in only] == [10.0]


def test_an_older_fetch_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    cache = ReadingCache(tmp_path / "c.sqlite")
    cache.put([reading(0, 200.0)], fetched_at=T0 + timedelta(hours=2))
    cache.put([reading(0, 100.0)], fetched_at=T0 + timedelta(hours=1))
    (only,) = cache.get("em", "DE", T0, T0 + timedelta(hours=1))
    assert only.reading.intensity_g_per_kwh == 200.0
    assert only.fetched_at == T0 + timedelta(hours=2)


def test_persists_across_instances_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ReadingCache(path).put([reading(0, 1.0)])
    assert ReadingCache(path).count() == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_location_from_env_and_unwritable_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAFTM_CACHE_DIR", str(tmp_path / "cachedir"))
    assert default_cache_path() == tmp_path / "cachedir" / "signals.sqlite"
    assert ReadingCache().path.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="CAFTM_CACHE_DIR"):
        ReadingCache(blocker / "sub" / "c.sqlite")


WRITER = textwrap.dedent(
    """
    import pathlib, sys, time
    from datetime import UTC, datetime, timedelta
    from caftm.signals.base import Basis, Kind, Reading
    from caftm.signals.cache import ReadingCache
    path, me, gate = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
    cache = ReadingCache(path, busy_timeout_s=30)
    (gate.parent / f"ready-{me}").touch()
    while not gate.exists():  # start writing together
        time.sleep(0.01)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for batch in range(100):
        rows = [Reading("Z%d" % me, t0 + timedelta(hours=batch * 5 + k), 100.0 + me,
                        Basis.LIFECYCLE, Kind.MEASURED, "src") for k in range(5)]
        shared = [Reading("SHARED", t0 + timedelta(hours=batch), 10.0 * me,
                          Basis.LIFECYCLE, Kind.MEASURED, "src")]
        cache.put(rows + shared)
    """
)
WRITERS = 3


def test_concurrent_writers_from_several_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    gate = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(me), str(gate)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(WRITERS)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < WRITERS and time.monotonic() < deadline:
        assert all(w.poll() is None for w in writers), "a writer died before the start"
        time.sleep(0.02)
    gate.touch()
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    cache = ReadingCache(path)
    assert cache.count() == WRITERS * 100 * 5 + 100
    for me in range(WRITERS):
        mine = cache.get("src", f"Z{me}", T0, T0 + timedelta(days=30))
        assert len(mine) == 500 and {c.reading.intensity_g_per_kwh for c in mine} == {100.0 + me}
    shared = cache.get("src", "SHARED", T0, T0 + timedelta(days=30))
    assert len(shared) == 100
    assert {c.reading.intensity_g_per_kwh for c in shared} <= {10.0 * me for me in range(WRITERS)}


def test_cached_source_answers_fresh_current_value_from_cache(tmp_path: Path) -> None:
    inner = CountingSource()
    source = CachedSource(inner, ReadingCache(tmp_path / "c.sqlite"), max_age_s=600)
    first = source.intensity("DE")
    second = source.intensity("DE")
    assert inner.calls == 1
    assert first.source == "counting" and second.source == "cache:counting"
    assert second.intensity_g_per_kwh == first.intensity_g_per_kwh


def test_cached_source_refetches_stale_current_value(tmp_path: Path) -> None:
    inner = CountingSource()
    cache = ReadingCache(tmp_path / "c.sqlite")
    now_hour = utcnow().replace(minute=0, second=0, microsecond=0)
    stale = Reading("DE", now_hour, 1.0, Basis.LIFECYCLE, Kind.MEASURED, "counting")
    cache.put([stale], fetched_at=utcnow() - timedelta(hours=1))
    reading = CachedSource(inner, cache, max_age_s=600).intensity("DE")
    assert inner.calls == 1 and reading.source == "counting" and reading.intensity_g_per_kwh > 1


def test_cached_source_history_served_when_range_is_covered(tmp_path: Path) -> None:
    inner = CountingSource()
    source = CachedSource(inner, ReadingCache(tmp_path / "c.sqlite"))
    start, end = T0, T0 + timedelta(hours=12)
    live = source.history("DE", start, end)
    again = source.history("DE", start + timedelta(hours=2), end - timedelta(hours=2))
    assert inner.calls == 1
    assert [r.intensity_g_per_kwh for r in again] == [r.intensity_g_per_kwh for r in live[2:-2]]
    assert {r.source for r in again} == {"cache:counting"}
    source.history("DE", start, end + timedelta(hours=3))  # not covered: asks inner
    assert inner.calls == 2


def test_cached_source_forecast_reused_while_fresh(tmp_path: Path) -> None:
    inner = CountingSource()
    source = CachedSource(inner, ReadingCache(tmp_path / "c.sqlite"), max_age_s=600)
    start = utcnow()
    live = source.forecast("DE", start, timedelta(hours=6))
    cached = source.forecast("DE", start, timedelta(hours=6))
    assert inner.calls == 1
    assert all(r.kind is Kind.FORECAST and r.source == "cache:counting" for r in cached)
    assert [r.time for r in cached] == [r.time for r in live if r.time < start + timedelta(hours=6)]
