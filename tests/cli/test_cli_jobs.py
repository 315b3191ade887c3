"""``caftm jobs``/``status``/``cancel`` find a job's ledger from its job file, and their tables
fit 80 columns without cutting a job name (the jobs are run by a scripted executor)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.jobs.jobs_support import START, write_job

from caftm.cli import app
from caftm.cli._common import console, err_console, run_app
from caftm.clock import FakeClock
from caftm.jobs.executors.scripted import LegScript, ScriptedExecutor
from caftm.jobs.spec import load_job
from caftm.jobs.supervisor import Supervisor

LONG = "move-and-pause-demo-" + "x" * 44  # 64 characters, the longest name a job may have


def _run_scripted(config: Path, *scripts: LegScript) -> None:
    spec = load_job(config)
    supervisor = Supervisor(spec, executor=ScriptedExecutor(scripts),
                            clock=FakeClock(START.timestamp(), speed=3600))  # fmt: skip
    try:
        supervisor.run()
    finally:
        supervisor.close()


def _cli(capsys: pytest.CaptureFixture[str], *args: str, width: int = 80) -> tuple[int, str]:
    widths = (console.width, err_console.width)
    console.width = err_console.width = width
    try:
        code = run_app(app, list(args))
    finally:
        console.width, err_console.width = widths
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def no_default_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CAFTM_LEDGER", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "nowhere"))
    return tmp_path / "nowhere" / "caftm" / "ledger.sqlite"


def test_jobs_status_and_cancel_find_the_ledger_from_the_job_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_default_ledger: Path
) -> None:
    config = write_job(tmp_path, "pj", command=["python", "-c", "pass"])
    _run_scripted(config, LegScript.moved("FR", step=100), LegScript.completed(400))
    code, out = _cli(capsys, "status", "pj")  # by name: the default ledger, which is not there
    assert code == 2 and "give the job file" in out and str(no_default_ledger) in out, out
    code, out = _cli(capsys, "status", str(config))
    assert code == 0, out
    assert "job pj: succeeded" in out and "0→100" in out and "100→400" in out
    code, out = _cli(capsys, "jobs", str(config))
    assert code == 0 and "pj" in out and str(load_job(config).ledger_path) in out.replace("\n", "")
    code, out = _cli(capsys, "cancel", str(config))
    assert code == 0 and "job pj is succeeded already" in out


def test_tables_fit_80_columns_and_never_cut_a_job_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [LONG, "move-a-second-job", "p"]
    for name in names:
        config = write_job(tmp_path, name, command=["python", "-c", "pass"])
        _run_scripted(config, LegScript.preempted(250), LegScript.completed(400))
    code, out = _cli(capsys, "jobs", str(config))
    assert code == 0, out
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert "…" not in out
    # the job column read down the table gives every name whole, in order (newest first)
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("job "))
    width = lines[header].index("status")
    column = "".join(line[:width].strip() for line in lines[header + 2 :])
    assert column == "".join(reversed(names))
    code, out = _cli(capsys, "status", str(tmp_path / f"{LONG}.yaml"))
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert f"job {LONG}: succeeded" in out  # on one line
    assert "250→400" in out and "preempted" in out and "1 preemptions" in out
    assert "…" not in out
    assert f"scripted-{LONG}-2-2" in out  # each leg's engine id, whole, on a line below
