"""The ledger on each backend (a sqlite file; a real PostgreSQL server): the same records, the
same queries, one schema and its migrations, every reader; the supervisor's lease."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from tests.dashboard.known import ENERGY_J, build_known, ledger_totals

from caftm.errors import ConfigError, LedgerError
from caftm.ledger import JobBook, Ledger, TransferRecord, TransferStatus
from caftm.ledger.feed import Feed, Scope
from caftm.ledger.schema import SCHEMA_VERSION
from caftm.records import Event, State

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _run(ledger: Ledger, job: str | None = None, leg: int | None = None) -> str:
    return ledger.start_run(name="r", policy="caftm", site="KR", started_at=T0, job=job, leg=leg)


def _window(ledger: Ledger, run_id: str, i: int, energy_j: float = 1 / 3) -> None:
    ledger.record_window(
        run_id, time=T0 + timedelta(seconds=i), duration_s=0.1, steps=7, setting=1755.0,
        knob="clock", energy_j=energy_j, intensity_g_per_kwh=491.25, site="KR", phase="train",
    )  # fmt: skip


def test_records_read_back_exactly(ledger_location: str) -> None:
    with Ledger(ledger_location) as ledger:
        run_id = _run(ledger, "j", 1)
        for i in range(3):
            _window(ledger, run_id, i)
        ledger.record_event(run_id, Event(T0, State.SCALING, State.TOLERANCE, "ok", 491.25,
                                          "KR", 1755.0))  # fmt: skip
        (window, *_) = ledger.windows(run_id)
        assert window.energy_j == 1 / 3  # double precision, not rounded to float4
        assert window.time == T0 and window.setting == 1755.0 and window.knob == "clock"
        (summary,) = ledger.runs()
        assert summary.windows == 3 and summary.events == 1 and summary.steps == 21
        assert type(summary.steps) is int and type(summary.energy_j) is float  # no Decimal
        assert summary.energy_j == pytest.approx(1.0) and summary.job == "j"
        assert ledger.resolve_run(run_id[:5]) == run_id
        assert ledger.events(run_id)[0].to_state is State.TOLERANCE
        totals = JobBook(ledger).totals("j")
        assert totals.steps == 21 and not isinstance(totals.steps, Decimal)


def test_transfers_get_increasing_ids(ledger_location: str) -> None:
    with Ledger(ledger_location) as ledger:
        book = JobBook(ledger)
        book.create("j", site="KR", store_url="/kr", executor="local", spec={"a": [1, 2]})
        record = TransferRecord("j", 1, T0, "KR", "FR", "/kr", "/fr", None, None, None,
                                TransferStatus.STARTED, "")  # fmt: skip
        first, second = book.record_transfer(record), book.record_transfer(record)
        assert second > first
        big = 5 * 2**30  # a 5 GiB checkpoint: 64-bit integers on both backends
        book.finish_transfer(first, status=TransferStatus.DONE, step=300, size_bytes=big,
                             seconds=2.5)  # fmt: skip
        done, started = book.transfers("j")
        assert (done.status, done.step, done.bytes, done.seconds) == ("done", 300, big, 2.5)
        assert started.status == "started" and book.get("j").spec == {"a": [1, 2]}


def test_the_feed_and_every_reader_see_the_same_job(ledger_location: str, tmp_path: Path) -> None:
    known = build_known(ledger_location, store_dir=tmp_path)
    with Ledger(ledger_location, read_only=True) as ledger:
        feed = Feed(ledger)
        windows = feed.windows(Scope.of_job("known"))
        assert len(windows) == 13 and [w.id for w in windows] == sorted(w.id for w in windows)
        assert feed.windows(Scope.of_job("known"), after_id=windows[5].id) == windows[6:]
        assert feed.windows(Scope.of_job("known"), limit=2) == windows[:2]
        assert feed.run_ids(Scope.of_job("known")) == known.run_ids
        spans = feed.run_spans(Scope.of_job("known"))
        assert [s.leg for s in spans] == [1, 2, 3] and spans[0].end_reason == "run ended: moved"
        assert feed.simulated(Scope.of_job("known"))
        high = feed.high_water()
        assert high[0] == windows[-1].id
        with pytest.raises(LedgerError, match="read-only"):
            ledger.start_run(name="x", policy="p", site="KR", started_at=T0)
    _, energy, n, site, status, moves, pauses = ledger_totals(ledger_location)
    assert (n, site, status, moves, pauses) == (13, "FR", "running", 1, 1)
    assert energy == pytest.approx(13 * ENERGY_J)


def test_the_dashboard_metrics_and_report_read_either_backend(
    ledger_location: str, tmp_path: Path
) -> None:
    pytest.importorskip("starlette", reason="the dashboard extra is not installed")
    from caftm.dashboard.metrics import metrics_text
    from caftm.dashboard.model import Board
    from caftm.report.build import ledger_report

    build_known(ledger_location, store_dir=tmp_path)
    board = Board(ledger_location)
    try:
        (listed,) = board.jobs()
        assert listed["name"] == "known"
        _, view = board.view(Scope.of_job("known"))
        assert view and "known" in repr(view)
        text = metrics_text(board).decode()
        assert 'caftm_job_moves_total{job_name="known"} 1.0' in text
    finally:
        board.close()
    with Ledger(ledger_location, read_only=True) as ledger:
        report = ledger_report(ledger, "known")
    assert "known" in report.title and "password" not in report.source


def test_the_cli_reads_a_postgres_ledger(postgres_url: str, tmp_path: Path) -> None:
    build_known(postgres_url, store_dir=tmp_path)
    env = {**os.environ, "COLUMNS": "300"}
    for command in (["jobs"], ["status", "known"], ["runs"]):
        done = subprocess.run(
            [sys.executable, "-m", "caftm.cli", *command, "--db", postgres_url],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "known" in done.stdout
    done = subprocess.run(  # $CAFTM_LEDGER selects it too
        [sys.executable, "-m", "caftm.cli", "report", "known", "-o", str(tmp_path / "r.html")],
        capture_output=True, text=True, timeout=120, env={**env, "CAFTM_LEDGER": postgres_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.html").stat().st_size > 1000


def test_an_unreachable_server_is_one_line_without_its_password() -> None:
    pytest.importorskip("psycopg", reason="postgres not installed (pip install 'caftm[postgres]')")
    with socket_free_port() as port:
        url = f"postgresql://caftm:s3cret@127.0.0.1:{port}/ledger"
        with pytest.raises(ConfigError) as caught:
            Ledger(url)
    message = str(caught.value)
    assert "s3cret" not in message and "postgresql://caftm:***@127.0.0.1" in message
    assert "\n" not in message
    done = subprocess.run(
        [sys.executable, "-m", "caftm.cli", "jobs", "--db", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert "s3cret" not in done.stderr + done.stdout


def test_schema_is_versioned_and_migrations_run_once(ledger_location: str) -> None:
    with Ledger(ledger_location) as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION
        run_id = _run(ledger)
    with Ledger(ledger_location) as ledger:  # opened again: nothing re-created or lost
        assert ledger.schema_version() == SCHEMA_VERSION
        assert [r.run_id for r in ledger.runs()] == [run_id]
        ledger._write(
            "UPDATE caftm_schema SET version = ?" if ledger.dialect == "postgresql"
            else f"PRAGMA user_version = {SCHEMA_VERSION + 1}",
            (SCHEMA_VERSION + 1,) if ledger.dialect == "postgresql" else (),
        )  # fmt: skip
    with pytest.raises(ConfigError, match="newer caftm"):
        Ledger(ledger_location)


def test_a_postgres_database_of_other_tables_is_refused(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(ConfigError, match=r"not a caftm ledger .*customers"):
        Ledger(postgres_url)
    with psycopg.connect(postgres_url) as conn:  # left as it was
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema()")}  # fmt: skip
    assert tables == {"customers"}


def test_a_viewer_never_migrates_an_empty_postgres_database(postgres_url: str) -> None:
    with (
        Ledger(postgres_url, read_only=True) as ledger,
        pytest.raises(ConfigError, match="schema 0"),
    ):
        Feed(ledger)


def test_writers_in_threads_and_two_openings_lose_nothing(ledger_location: str) -> None:
    with Ledger(ledger_location) as one, Ledger(ledger_location) as two:
        runs = [_run(one), _run(two)]
        errors: list[BaseException] = []

        def write(ledger: Ledger, run_id: str) -> None:
            try:
                for i in range(40):
                    _window(ledger, run_id, i)
            except BaseException as e:
                errors.append(e)

        pairs = ((one, runs[0]), (two, runs[1]), (one, runs[1]))
        threads = [threading.Thread(target=write, args=pair) for pair in pairs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        one.flush()  # a server's ledger sends windows in batches: another opening sees them now
        counts = {r.run_id: r.windows for r in two.runs()}
        assert counts == {runs[0]: 40, runs[1]: 80}


def test_one_supervisor_holds_a_jobs_lease(ledger_location: str) -> None:
    with Ledger(ledger_location) as one, Ledger(ledger_location) as two:
        a, b = JobBook(one), JobBook(two)
        a.create("j", site="KR", store_url="/kr", executor="local", spec={})
        assert a.take_lease("j", "h1/10/x", now_s=100.0, lease_s=30.0)
        assert not b.take_lease("j", "h2/20/y", now_s=110.0, lease_s=30.0)  # held, live
        assert a.renew_lease("j", "h1/10/x", now_s=125.0, lease_s=30.0)  # heartbeat: to 155
        assert not b.take_lease("j", "h2/20/y", now_s=150.0, lease_s=30.0)
        assert b.take_lease("j", "h2/20/y", now_s=156.0, lease_s=30.0)  # expired: taken over
        assert not a.renew_lease("j", "h1/10/x", now_s=157.0, lease_s=30.0)  # lost, it knows
        job = b.get("j")
        assert (job.lease_owner, job.lease_expires_s) == ("h2/20/y", 186.0)
        assert (job.supervisor_pid, job.supervisor_host) == (20, "h2")
        assert a.take_lease("j", "h1/11/z", now_s=160.0, lease_s=30.0, replacing="h2/20/y")
        a.release_lease("j", "h1/11/z")
        assert b.get("j").lease_owner is None


def test_two_supervisors_racing_for_a_lease_one_wins(ledger_location: str) -> None:
    openings = [Ledger(ledger_location) for _ in range(6)]
    try:
        JobBook(openings[0]).create("j", site="KR", store_url="/kr", executor="l", spec={})
        won: list[str] = []
        barrier = threading.Barrier(len(openings))

        def race(ledger: Ledger, i: int) -> None:
            barrier.wait()
            if JobBook(ledger).take_lease("j", f"h{i}/{i}/t", now_s=1.0, lease_s=30.0):
                won.append(f"h{i}/{i}/t")

        threads = [threading.Thread(target=race, args=(ledger, i))
                   for i, ledger in enumerate(openings)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1 and JobBook(openings[0]).get("j").lease_owner == won[0]
    finally:
        for ledger in openings:
            ledger.close()


class socket_free_port:  # a context manager used like a function
    """A loopback port nothing listens on (held bound, not listening, while in use)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def test_windows_leave_in_batches_and_survive_dropped_connections(postgres_url: str) -> None:
    import psycopg

    with Ledger(postgres_url) as ledger, Ledger(postgres_url, read_only=True) as viewer:
        run_id = _run(ledger)
        started = time.perf_counter()
        for i in range(200):
            _window(ledger, run_id, i)
        assert time.perf_counter() - started < 0.5  # queued: no round trip per window
        wait_until(lambda: len(viewer.windows(run_id)) == 200)  # the writer thread sent them
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # the server drops us
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        for i in range(200, 300):
            _window(ledger, run_id, i)
        for _ in range(5):  # a batch that met a dead connection stays queued and goes again
            try:
                ledger.flush()
                break
            except LedgerError:
                time.sleep(0.2)
        assert ledger.dropped_records == 0
        stored = ledger.windows(run_id)
    assert [w.time for w in stored] == [T0 + timedelta(seconds=i) for i in range(300)]


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_ray_job_with_a_sqlite_ledger_on_a_network_filesystem_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.jobs.jobs_support import write_job

    import caftm.ledger.backend as backend
    from caftm.jobs.spec import load_job
    from caftm.jobs.validate import check_job

    shared = tmp_path / "shared"
    shared.mkdir()
    assert backend.network_filesystem(shared) is None  # this machine's own disk
    table = tmp_path / "mounts"
    table.write_text(
        Path("/proc/mounts").read_text(encoding="utf-8")
        + f"server:/export {shared} nfs4 rw,relatime 0 0\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(backend, "MOUNT_TABLE", table)  # the machine's table, plus an NFS mount
    assert backend.network_filesystem(shared / "ledger.sqlite") == "nfs4"
    assert backend.network_filesystem(tmp_path / "elsewhere") is None
    job = {"executor": "ray", "ray": {"address": "http://127.0.0.1:1"}}
    config = write_job(tmp_path, "nfs", job=job, ledger=str(shared / "ledger.sqlite"))
    with pytest.raises(ConfigError, match=r"nfs4 filesystem.*use PostgreSQL") as caught:
        check_job(load_job(config))
    assert "\n" not in str(caught.value)
    local = write_job(tmp_path, "local", ledger=str(shared / "ledger.sqlite"))
    check_job(load_job(local))  # one machine: sqlite is fine wherever it is
