"""Ledger writes as a worker makes them: windows per second on each backend.

``ledger_write_windows_per_s_sqlite``: ``Ledger.record_window`` on a sqlite file (WAL), each
window committed as it is written. ``ledger_write_windows_per_s_postgres``: the same calls on
a PostgreSQL server on loopback (a fresh cluster with PostgreSQL's default, durable settings),
counted until every window is committed (the shipped default: windows leave in batches,
:mod:`caftm.ledger.batch`); ``ledger_record_window_us_postgres``: what one call costs the
training loop (mean). ``..._postgres_unbatched``: one commit per window, for comparison.
The machine's load is recorded: timings on a shared machine vary.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from caftm.ledger import Ledger

HERE = Path(__file__).resolve().parent
WINDOWS = 3000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _write(ledger: Ledger, n: int) -> tuple[float, float, float]:
    """(wall s until every window is stored, CPU s, wall s of the record_window calls alone)."""
    run = ledger.start_run(name="bench", policy="caftm", site="KR", started_at=T0)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        ledger.record_window(
            run, time=T0 + timedelta(seconds=i), duration_s=1.0, steps=10, setting=1755.0,
            knob="clock", energy_j=300.0, intensity_g_per_kwh=491.0, site="KR", phase="train",
        )  # fmt: skip
    calls_s = time.perf_counter() - wall0
    ledger.flush()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    stored = ledger.run(run)
    assert stored is not None and stored.windows == n, "windows went missing"
    return wall, cpu, calls_s


def run() -> dict[str, float | int | str | bool]:
    sys.path.insert(0, str(HERE.parent))
    from tests.postgres_support import PostgresServer, postgres_bin

    result: dict[str, float | int | str | bool] = {"windows": WINDOWS}
    result["load_1min_before"] = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "l.sqlite") as ledger:
        wall, cpu, _ = _write(ledger, WINDOWS)
    result["ledger_write_windows_per_s_sqlite"] = round(WINDOWS / wall)
    result["sqlite_cpu_s"] = round(cpu, 3)
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise SystemExit("error: postgres not installed (apt-get install postgresql)")
    server = PostgresServer(bin_dir, durable=True).start()
    try:
        with Ledger(server.url()) as ledger:
            wall, cpu, calls = _write(ledger, WINDOWS)
            result["ledger_write_windows_per_s_postgres"] = round(WINDOWS / wall)
            result["ledger_record_window_us_postgres"] = round(calls / WINDOWS * 1e6, 1)
            result["postgres_cpu_s"] = round(cpu, 3)
            if ledger._batch is not None:  # one commit per window: what batching saves
                ledger._batch.close()
                ledger._batch = None
            n = WINDOWS // 3
            wall, _, _ = _write(ledger, n)
            result["ledger_write_windows_per_s_postgres_unbatched"] = round(n / wall)
    finally:
        server.stop()
    result["load_1min_after"] = round(os.getloadavg()[0], 2)
    result["cpus"] = os.cpu_count() or 0
    return result


if __name__ == "__main__":
    print(run())
