"""A persistent sqlite cache of readings, shared across processes and restarts.

One table keyed by ``(source, zone, time, kind, basis)``; writes are upserts, reads are by time
range. WAL journal and a busy timeout let several processes write at once. Default location
``~/.cache/caftm/signals.sqlite``; ``$CAFTM_CACHE_DIR`` or the ``path`` argument override it.

:class:`CachedSource` wraps any :class:`IntensitySource`: it answers from the cache while the
cached data is fresh and writes every live answer through.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from caftm.errors import ConfigError
from caftm.signals.base import Basis, IntensitySource, Kind, Reading, as_utc, utcnow

logger = logging.getLogger(__name__)

CACHE_FILE = "signals.sqlite"
#: Readings not in the future: what the cache may answer "intensity" with.
OBSERVED_KINDS = (Kind.MEASURED, Kind.ESTIMATED, Kind.UNKNOWN)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    source TEXT NOT NULL,
    zone TEXT NOT NULL,
    time_s INTEGER NOT NULL,
    kind TEXT NOT NULL,
    basis TEXT NOT NULL,
    intensity_g_per_kwh REAL NOT NULL,
    fetched_at_s REAL NOT NULL,
    PRIMARY KEY (source, zone, time_s, kind, basis)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, zone, time_s, kind, basis) DO UPDATE SET
    intensity_g_per_kwh = excluded.intensity_g_per_kwh,
    fetched_at_s = excluded.fetched_at_s
WHERE excluded.fetched_at_s >= readings.fetched_at_s
"""


def default_cache_path() -> Path:
    """``$CAFTM_CACHE_DIR/signals.sqlite`` or ``~/.cache/caftm/signals.sqlite``."""
    root = os.environ.get("CAFTM_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "caftm"
    return base / CACHE_FILE


@dataclass(frozen=True, slots=True)
class CachedReading:
    """A reading as stored, with when it was fetched (UTC)."""

    reading: Reading
    fetched_at: datetime


def _epoch_s(time: datetime) -> int:
    return int(as_utc(time).timestamp())


class ReadingCache:
    """Readings in one sqlite file, safe for concurrent writers from several processes.

    Args:
        path: The sqlite file (default :func:`default_cache_path`).
        busy_timeout_s: How long a writer waits for another's lock, seconds.

    Raises:
        ConfigError: the file cannot be created or opened.
    """

    def __init__(self, path: Path | str | None = None, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.busy_timeout_s = busy_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(
                f"cannot open signal cache {self.path}: {e}; set CAFTM_CACHE_DIR to a writable dir"
            ) from e

    def __repr__(self) -> str:
        return f"ReadingCache({str(self.path)!r})"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One short-lived connection per operation: safe across threads and forks.

        Raises:
            ConfigError: sqlite failed (file damaged, replaced or locked past the timeout).
        """
        try:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            try:
                db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
                db.execute("PRAGMA synchronous=NORMAL")
                yield db
            finally:
                db.close()
        except sqlite3.Error as e:
            raise ConfigError(
                f"signal cache {self.path} cannot be used: {e}; delete the file or set "
                "CAFTM_CACHE_DIR to another dir"
            ) from e

    def put(
        self,
        readings: Iterable[Reading],
        *,
        source: str | None = None,
        fetched_at: datetime | None = None,
    ) -> int:
        """Upsert ``readings`` (under ``source``, default each reading's own); returns the count.

        An older fetch never overwrites a newer one.
        """
        fetched_s = (as_utc(fetched_at) if fetched_at else utcnow()).timestamp()
        rows = [
            (
                source or r.source,
                r.zone,
                _epoch_s(r.time),
                r.kind.value,
                r.basis.value,
                r.intensity_g_per_kwh,
                fetched_s,
            )
            for r in readings
        ]
        if not rows:
            return 0
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(rows)

    def get(
        self,
        source: str,
        zone: str,
        start: datetime,
        end: datetime,
        *,
        kinds: Sequence[Kind] | None = None,
        fetched_since: datetime | None = None,
    ) -> list[CachedReading]:
        """Stored readings of ``source``/``zone`` with time in ``[start, end)``, oldest first.

        When several kinds/bases share a time, all are returned.
        """
        sql = (
            "SELECT time_s, kind, basis, intensity_g_per_kwh, fetched_at_s FROM readings "
            "WHERE source = ? AND zone = ? AND time_s >= ? AND time_s < ?"
        )
        args: list[object] = [source, zone, _epoch_s(start), _epoch_s(end)]
        if kinds:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args += [k.value for k in kinds]
        if fetched_since is not None:
            sql += " AND fetched_at_s >= ?"
            args.append(as_utc(fetched_since).timestamp())
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY time_s, fetched_at_s", args).fetchall()
        return [
            CachedReading(
                Reading(
                    zone,
                    datetime.fromtimestamp(t, UTC),
                    value,
                    Basis(basis),
                    Kind(kind),
                    source,
                ),
                datetime.fromtimestamp(fetched, UTC),
            )
            for t, kind, basis, value, fetched in rows
        ]

    def latest(
        self,
        source: str,
        zone: str,
        at: datetime,
        *,
        not_before: datetime,
        kinds: Sequence[Kind] = OBSERVED_KINDS,
        fetched_since: datetime | None = None,
    ) -> CachedReading | None:
        """The newest stored reading with time in ``[not_before, at]``, or None."""
        found = self.get(
            source,
            zone,
            not_before,
            as_utc(at) + timedelta(seconds=1),
            kinds=kinds,
            fetched_since=fetched_since,
        )
        return found[-1] if found else None

    def count(self) -> int:
        """Number of stored readings."""
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])


def relabel(reading: Reading, source: str, kind: Kind | None = None) -> Reading:
    """``reading`` with another ``source`` label (and optionally kind)."""
    return Reading(
        reading.zone,
        reading.time,
        reading.intensity_g_per_kwh,
        reading.basis,
        kind or reading.kind,
        source,
    )


def _covers(readings: Sequence[Reading], start: datetime, end: datetime, gap: timedelta) -> bool:
    if not readings:
        return False
    edges = [start, *(r.time for r in readings), end]
    return all(b - a <= gap for a, b in itertools.pairwise(edges))


class CachedSource(IntensitySource):
    """Answer from the cache while fresh; otherwise ask ``inner`` and write through.

    Readings answered from the cache carry ``source="cache:<inner name>"``.

    Args:
        inner: The source to cache (usually a live client).
        cache: Where readings live.
        max_age_s: A current value or forecast fetched longer ago than this is refetched.
        resolution_s: The source's step; a cached range with a gap larger than this is a miss.
    """

    def __init__(
        self,
        inner: IntensitySource,
        cache: ReadingCache,
        *,
        max_age_s: float = 900.0,
        resolution_s: float = 3600.0,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.max_age = timedelta(seconds=max_age_s)
        self.resolution = timedelta(seconds=resolution_s)
        self.name = inner.name

    def __repr__(self) -> str:
        max_age_s = self.max_age.total_seconds()
        return f"CachedSource({self.inner!r}, {self.cache!r}, max_age_s={max_age_s:g})"

    def zones(self) -> list[str]:
        """The inner source's zones."""
        return self.inner.zones()

    def _label(self) -> str:
        return f"cache:{self.name}"

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        """Cached reading in force at ``time`` if fresh, else the inner source's."""
        now = utcnow()
        at = now if time is None else as_utc(time, what=f"time for zone {zone}")
        recent = at > now - self.max_age
        hit = self.cache.latest(
            self.name,
            zone,
            at,
            not_before=at - self.resolution,
            fetched_since=now - self.max_age if recent else None,
        )
        if hit is not None:
            return relabel(hit.reading, self._label())
        reading = self.inner.intensity(zone, time)
        self.cache.put([reading], source=self.name)
        return reading

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        """Cached range if it is settled past and has no gap; else the inner source's."""
        start, end = as_utc(start), as_utc(end)
        if end <= utcnow() - self.max_age:
            cached = [
                c.reading for c in self.cache.get(self.name, zone, start, end, kinds=OBSERVED_KINDS)
            ]
            if _covers(cached, start, end, self.resolution):
                return [relabel(r, self._label()) for r in cached]
        readings = self.inner.history(zone, start, end)
        self.cache.put(readings, source=self.name)
        return readings

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        """A forecast fetched within ``max_age_s`` from the cache, else the inner source's."""
        now = utcnow()
        begin = now if start is None else as_utc(start, what="forecast start")
        cached = [
            c.reading
            for c in self.cache.get(
                self.name,
                zone,
                begin - self.resolution,
                begin + horizon,
                kinds=(Kind.FORECAST,),
                fetched_since=now - self.max_age,
            )
        ]
        window = [r for r in cached if r.time > begin - self.resolution]
        if _covers(
            window, begin - self.resolution + timedelta(seconds=1), begin + horizon, self.resolution
        ):
            return [relabel(r, self._label()) for r in window]
        readings = self.inner.forecast(zone, start, horizon)
        self.cache.put(readings, source=self.name)
        return readings
