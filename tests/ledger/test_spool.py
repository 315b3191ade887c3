"""A worker's spool (it could not reach the ledger) imported exactly once, on each backend, even
when an import is killed midway and repeated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from caftm.errors import ConfigError
from caftm.ledger import Ledger
from caftm.ledger.spool import SPOOL_FILE, SpoolWriter, import_spool, open_for_worker
from caftm.records import Event, RunStatus, State

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _spool(path: Path, windows: int, *, run_id: str = "spooled0001") -> str:
    writer = SpoolWriter(path)
    run = writer.start_run(name="w", policy="caftm", site="FR", started_at=T0, job="j", leg=2,
                           run_id=run_id)  # fmt: skip
    writer.record_event(run, Event(T0, State.SCALING, State.TOLERANCE, "settled", 40.0, "FR", 1.0))
    writer.record_plan(run, T0, {"v": 1, "summary": "plans to run in FR"})
    for i in range(windows):
        writer.record_window(
            run, time=T0 + timedelta(seconds=i), duration_s=1.0, steps=5, setting=1.0,
            knob="power", energy_j=100.0, intensity_g_per_kwh=40.0, site="FR", phase="train",
        )  # fmt: skip
    writer.end_run(run, ended_at=T0 + timedelta(seconds=windows), status=RunStatus.MOVED)
    writer.close()
    return run


def test_a_spool_is_imported_once_however_often(ledger_location: str, tmp_path: Path) -> None:
    path = tmp_path / SPOOL_FILE
    run = _spool(path, 50)
    with path.open("a", encoding="utf-8") as fh:  # a line the worker is still writing
        fh.write('{"key": "spooled0001:999", "kind": "window"')
    with Ledger(ledger_location) as ledger:
        assert import_spool(ledger, path) == 1 + 1 + 1 + 50 + 1  # run, event, plan, windows, end
        assert import_spool(ledger, path) == 0
        assert ledger.latest_plan(run_id=run) == {"v": 1, "summary": "plans to run in FR"}
        assert ledger._read("SELECT COUNT(*) FROM plans")[0][0] == 1
        summary = ledger.run(run)
        assert summary is not None and summary.windows == 50 and summary.events == 1
        assert summary.steps == 250 and summary.status is RunStatus.MOVED and summary.leg == 2
        assert summary.carbon_g == pytest.approx(50 * 100.0 / 3.6e6 * 40.0)


def test_an_import_killed_midway_and_repeated_stores_each_record_once(
    ledger_location: str, tmp_path: Path
) -> None:
    path = tmp_path / SPOOL_FILE
    n = 20_000
    run = _spool(path, n)
    with Ledger(ledger_location):
        pass  # the schema, before the importer and the watcher open it
    importer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from caftm.ledger import Ledger;"
         "from caftm.ledger.spool import import_spool;"
         "import_spool(Ledger(sys.argv[1]), Path(sys.argv[2]))",
         ledger_location, str(path)],
    )  # fmt: skip
    with Ledger(ledger_location, read_only=True) as viewer:
        deadline = time.monotonic() + 120
        while True:  # kill -9 once some batches are in, well before all
            summary = viewer.run(run)
            if summary is not None and summary.windows > 0:
                break
            assert importer.poll() is None and time.monotonic() < deadline, "no batch came"
            time.sleep(0.01)
        os.kill(importer.pid, signal.SIGKILL)
        importer.wait()
        partial = viewer.run(run)
        assert partial is not None and 0 < partial.windows < n, partial.windows
    with Ledger(ledger_location) as ledger:
        imported = import_spool(ledger, path)
        assert imported == n + 4 - (1 + 1 + 1 + partial.windows)  # only what was missing
        assert import_spool(ledger, path) == 0
        times = [w.time for w in ledger.windows(run)]
    assert times == [T0 + timedelta(seconds=i) for i in range(n)]


def test_a_supervised_worker_that_cannot_reach_the_ledger_spools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg", reason="postgres not installed (pip install 'caftm[postgres]')")
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"postgresql://caftm@127.0.0.1:{closed.getsockname()[1]}/ledger"
        with pytest.raises(ConfigError):  # no supervisor: the error, as before
            open_for_worker(url)
        monkeypatch.setenv("CAFTM_STATUS_FILE", str(tmp_path / "leg-0001" / "status.json"))
        writer = open_for_worker(url)
    assert isinstance(writer, SpoolWriter)
    assert writer.path == tmp_path / "leg-0001" / SPOOL_FILE
    writer.close()
