"""The worker protocol, the job clock, the job file and its checks: fast, no workers."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from caftm.clock import AcceleratedClock, job_clock
from caftm.control import ControllerConfig
from caftm.errors import ConfigError, ExecutorError
from caftm.jobs.executors.local import local_argv
from caftm.jobs.protocol import Outcome, StopRequest, read_outcome, worker_leg, write_outcome
from caftm.jobs.spec import load_job
from caftm.jobs.validate import check_job


def test_outcomes_round_trip_and_malformed_ones_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "outcome.json"
    assert read_outcome(path) is None
    request = StopRequest(Outcome.MOVED, 12, dest="FR")
    assert write_outcome(request, path)
    assert read_outcome(path) == request
    for text, match in [
        ("{", "malformed worker outcome"),
        ('{"outcome": "moved", "step": 3}', "without a destination"),
        ('{"outcome": "flying", "step": 3}', "malformed"),
        ('{"outcome": "paused", "step": -1}', "step -1"),
        ('{"outcome": "paused", "step": 1, "until_s": "soon"}', "until_s"),
    ]:
        path.write_text(text)
        with pytest.raises(ExecutorError, match=match):
            read_outcome(path)


def test_worker_leg_reads_the_environment() -> None:
    assert worker_leg({}) == (None, None)
    assert worker_leg({"CAFTM_JOB": "j", "CAFTM_LEG": "3"}) == ("j", 3)
    assert worker_leg({"CAFTM_JOB": "j", "CAFTM_LEG": "x"}) == ("j", None)


def test_the_accelerated_clock_is_shared_through_the_environment() -> None:
    clock = AcceleratedClock.starting_at(1_000_000.0, 3600.0)
    again = job_clock({"CAFTM_CLOCK": clock.to_env()})
    assert isinstance(again, AcceleratedClock) and again == clock
    t0 = clock()
    time.sleep(0.05)
    assert clock() - t0 >= 0.05 * 3600
    assert job_clock({}) is time.time
    with pytest.raises(ConfigError, match="CAFTM_CLOCK"):
        job_clock({"CAFTM_CLOCK": "soon"})
    with pytest.raises(ConfigError, match="speed must be > 0"):
        AcceleratedClock(0.0, 0.0, 0.0)


def _config(env: dict[str, str]) -> ControllerConfig:
    data = {"sites": ["KR", "FR", "DE"], "job": {"name": "ignored", "command": "x"}}
    return ControllerConfig.from_dict(data, env=env)


def test_the_supervisor_sets_site_store_ledger_and_exclusions_by_environment() -> None:
    config = _config(
        {
            "CAFTM_SITE": "FR",
            "CAFTM_CHECKPOINT_URL": "/s/fr",
            "CAFTM_LEDGER": "/l.sqlite",
            "CAFTM_EXCLUDE_SITES": "DE,FR",
        }
    )
    assert config.start_site == "FR"
    assert config.checkpoint.url == "/s/fr" and config.ledger.path == "/l.sqlite"
    assert [s.name for s in config.sites] == ["KR", "FR"]  # the current site is never dropped
    with pytest.raises(ConfigError, match="unknown sites"):
        _config({"CAFTM_EXCLUDE_SITES": "MARS"})
    with pytest.raises(ConfigError, match="set CAFTM_LEDGER"):
        _config({"CAFTM_LEDGER_PATH": "/l.sqlite"})
    with pytest.raises(ConfigError, match="site 'XX' is not among"):
        _config({"CAFTM_SITE": "XX"})


def _job_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_job_files_resolve_paths_next_to_themselves(tmp_path: Path) -> None:
    path = _job_file(
        tmp_path,
        "job: {name: j, command: python t.py --x 'a b', "
        "stores: {FR: s3://b/fr, KR: kr}}\nsites: [KR, FR]\n"
        "ledger: {path: l.sqlite}\n",
    )
    spec = load_job(path)
    assert spec.job.command == ("python", "t.py", "--x", "a b")
    assert spec.store_url("FR") == "s3://b/fr"
    assert spec.store_url("KR") == str(tmp_path / "kr")
    assert spec.ledger_path == tmp_path / "l.sqlite" and spec.cwd == tmp_path
    assert spec.workdir == tmp_path / ".caftm" / "jobs" / "j"
    assert local_argv(spec.job.command) == (sys.executable, "t.py", "--x", "a b")  # caftm's Python


def test_every_path_of_a_job_is_absolute_once_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths are the file's, never the process's
    spec = load_job(
        _job_file(
            folder,
            "job: {name: j, command: x, workdir: w, cwd: run, stores: {KR: ../kr, FR: s3://b}}\n"
            "sites: [KR, FR]\nledger: {path: l.sqlite}\n"
            "signals: {source: trace, trace_path: traces/t.csv}\n",
        )
    )
    assert spec.job.workdir == str(folder / "w") and spec.workdir == folder / "w" / "j"
    assert spec.job.cwd == str(folder / "run") and spec.cwd == folder / "run"
    assert spec.job.stores == {"KR": str(tmp_path / "kr"), "FR": "s3://b"}
    assert spec.controller.ledger.path == str(folder / "l.sqlite")
    assert spec.controller.signals.trace_path == str(folder / "traces" / "t.csv")
    recorded = spec.to_dict()  # what the ledger keeps (the report reads the trace from it)
    assert recorded["controller"]["signals"]["trace_path"] == str(folder / "traces" / "t.csv")


def test_the_demos_job_files_in_a_relative_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caftm.demo.showcase import write_jobs

    monkeypatch.chdir(tmp_path)
    paths = write_jobs(Path("demo"), speed=3600.0)
    spec = load_job(paths["move"])
    assert spec.workdir == tmp_path / "demo" / "jobs" / "move"
    assert spec.ledger_path == tmp_path / "demo" / "ledger.sqlite"
    assert spec.cwd == tmp_path / "demo"
    config = spec.job.command[spec.job.command.index("--config") + 1]
    assert (spec.cwd / config).samefile(paths["move"])  # the worker runs in spec.cwd


def test_torchrun_means_caftms_own_torch(tmp_path: Path) -> None:
    spec = load_job(
        _job_file(
            tmp_path, "job: {name: j, command: torchrun --nproc-per-node 2 t.py}\nsites: [KR]\n"
        )
    )
    assert local_argv(spec.job.command) == (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "t.py",
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sites: [KR]\n", "a 'job:' section"),
        ("job: {name: 'a b', command: x}\nsites: [KR]\n", "job.name: 'a b'"),
        ("job: {name: j, command: x, stores: {MARS: /m}}\nsites: [KR]\n", "not in 'sites'"),
        ("job: {name: j, command: x, grace_s: -1}\nsites: [KR]\n", "job.grace_s"),
        ("job: {name: j, command: x}\nsites: [KR]\npolicy: {eta: 3}\n", "policy.eta"),
        ("job: [\n", "cannot read job"),
    ],
)
def test_bad_job_files_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_job(_job_file(tmp_path, text))


def test_check_job_refuses_what_would_fail_later(tmp_path: Path) -> None:
    spec = load_job(
        _job_file(tmp_path, "job: {name: j, command: no-such-program-xyz}\nsites: [KR]\n")
    )
    with pytest.raises(ConfigError, match="'no-such-program-xyz' is not on PATH"):
        check_job(spec)
    spec = load_job(
        _job_file(
            tmp_path,
            "job: {name: j, command: python, stores: {KR: 'foo://bucket/x'}}\nsites: [KR]\n",
        )
    )
    with pytest.raises(ConfigError, match="unknown protocol 'foo'"):
        check_job(spec)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spec = load_job(
        _job_file(
            tmp_path,
            f"job: {{name: j, command: python, stores: {{KR: {blocker}/s}}}}\nsites: [KR]\n",
        )
    )
    with pytest.raises(ConfigError, match="cannot be created"):
        check_job(spec)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.yaml"], "cannot read job missing.yaml"),
        (["validate", "missing.yaml"], "cannot read job missing.yaml"),
        (["status", "nojob", "--db", "{db}"], "no job 'nojob'"),
        (["cancel", "nojob", "--db", "{db}"], "no job 'nojob'"),
        (["jobs", "--db", "{missing}"], "no ledger at"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    from caftm.ledger import Ledger

    db = tmp_path / "l.sqlite"
    Ledger(db).close()
    argv = [a.format(db=db, missing=tmp_path / "none.sqlite") for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "caftm.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines


def test_fate_notices_reach_the_terminal_unless_logging_is_configured() -> None:
    code = (
        "import logging, sys\n"
        "from caftm._notice import notice\n"
        "notice('moving to %s', 'FR')\n"
        "logging.getLogger('caftm.integrations').info('quiet detail')\n"
        "if len(sys.argv) > 1:\n"
        "    logging.basicConfig(format='app: %(message)s', level=logging.INFO)\n"
        "    notice('pausing')\n"
    )
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert plain.stderr.splitlines() == ["caftm: moving to FR"]
    configured = subprocess.run([sys.executable, "-c", code, "x"], capture_output=True, text=True)
    assert configured.stderr.splitlines() == ["caftm: moving to FR", "app: pausing"]
    logging.getLogger("caftm.notice")  # the logger exists for users to silence
