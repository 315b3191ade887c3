"""The ``skypilot`` executor's tasks, validated by SkyPilot's own code, offline.

SkyPilot would download its catalog of clouds, regions and instance types; the tests seed it
with small CSV files (SYNTHETIC rows in SkyPilot's schema) under a private home, so validation
runs offline. Every SkyPilot call runs in a subprocess with that home (SkyPilot reads it on
import). No cloud credentials are needed, and nothing is launched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.jobs.jobs_support import write_job

pytestmark = [
    pytest.mark.slow,  # SkyPilot's own validation: seconds a task
    pytest.mark.skipif(
        importlib.util.find_spec("sky") is None,
        reason="SkyPilot is not installed (pip install 'caftm[skypilot]')",
    ),
]

SITES = ("aws:ap-northeast-2", "aws:eu-west-3", "aws:eu-central-1")
_GPU = "\"{'Gpus': [{'Name': 'A10G', 'Manufacturer': 'NVIDIA', 'Count': 1, 'MemoryInfo': {'SizeInMiB': 24576}}], 'TotalGpuMemoryInMiB': 24576}\""  # noqa: E501
_H100 = "\"{'Gpus': [{'Name': 'H100', 'Manufacturer': 'NVIDIA', 'Count': 8, 'MemoryInfo': {'SizeInMiB': 81920}}], 'TotalGpuMemoryInMiB': 655360}\""  # noqa: E501
#: SYNTHETIC catalog rows: A10G in the three regions, H100 only in ap-northeast-2; us-east-1
#: is left out (a region caftm knows that this catalog does not)
_VMS = [
    "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,"
    "Region,AvailabilityZone",
    *(
        f"g5.xlarge,A10G,1.0,4.0,16.0,{_GPU},1.0,0.4,{region},{region[:6]}-az1"
        for region in ("ap-northeast-2", "eu-west-3", "eu-central-1")
    ),
    f"p5.48xlarge,H100,8.0,192.0,2048.0,{_H100},98.0,40.0,ap-northeast-2,apne2-az1",
    *(
        f"m6i.2xlarge,,,8.0,32.0,,0.4,0.1,{region},{region[:6]}-az1"
        for region in ("ap-northeast-2", "eu-west-3", "eu-central-1")
    ),
]
_ACCELERATORS = ["AcceleratorName,Clouds", "A10G,AWS", "H100,AWS"]
_METADATA = ["GPU,MemoryGB,Manufacturer", "A10G,24,NVIDIA", "H100,80,NVIDIA"]

_BUILD = """
import json, sys
from pathlib import Path
from caftm.errors import CaftmError
from caftm.jobs.executors import LegLaunch, get_executor
from caftm.jobs.spec import load_job

spec = load_job(sys.argv[1])
executor = get_executor("skypilot", spec.job)
out = []
for leg, site in enumerate(sys.argv[2:], start=1):
    env = {"CAFTM_JOB": spec.name, "CAFTM_LEG": str(leg), "CAFTM_SITE": site,
           "CAFTM_CHECKPOINT_URL": spec.store_url(site), "HOME": "/secret-home"}
    launch = LegLaunch(spec.name, leg, site, spec.job.command, env, spec.cwd,
                       spec.workdir / f"leg-{leg:04d}" / "worker.log", spec.job.grace_s)
    try:
        task = executor.build_task(launch)
        out.append({"site": site, "config": executor.task_config(launch),
                    "regions": [r.region for r in task.resources], "envs": dict(task.envs)})
    except CaftmError as e:
        out.append({"site": site, "error": str(e)})
print(json.dumps(out))
"""


@pytest.fixture
def sky_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose SkyPilot home holds the seeded catalog (and nothing else)."""
    home = tmp_path / "home"
    catalogs = home / ".sky" / "catalogs" / "v8"
    for name, lines in {
        "aws/vms.csv": _VMS,
        "common/accelerators.csv": _ACCELERATORS,
        "common/metadata.csv": _METADATA,
    }.items():
        (catalogs / name).parent.mkdir(parents=True, exist_ok=True)
        (catalogs / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SKY"))}
    env.update({"HOME": str(home), "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
                "SKY_RUNTIME_DIR": str(home), "COLUMNS": "200"})  # fmt: skip
    return env


def _sky_job(tmp: Path, *, accelerators: str = "A10G:1", sites: tuple[str, ...] = SITES) -> Path:
    stores = {site: f"s3://ckpt/{site.replace(':', '-')}" for site in sites}
    skypilot = {"accelerators": accelerators, "bucket": "s3://caftm-legs", "use_spot": True}
    return write_job(
        tmp, "skyjob", sites=sites, job={"executor": "skypilot", "skypilot": skypilot,
                                         "stores": stores, "env": {"WANDB_MODE": "off"}},
    )  # fmt: skip


def _build(config: Path, env: dict[str, str], *sites: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, str(config), *sites],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result: list[dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_each_leg_of_a_three_site_job_is_a_valid_skypilot_task(
    tmp_path: Path, sky_env: dict[str, str]
) -> None:
    config = _sky_job(tmp_path)
    # legs visit each site (and come back): each task validates with SkyPilot's own code
    built = _build(config, sky_env, *SITES, SITES[0])
    assert [b.get("error") for b in built] == [None] * 4, built
    for leg, item in enumerate(built, start=1):
        site = str(item["site"])
        task = item["config"]
        assert isinstance(task, dict)
        resources = task["resources"]
        assert resources["cloud"] == "aws" and resources["region"] == site.split(":")[1]
        assert resources["accelerators"] == "A10G:1" and resources["use_spot"] is True
        assert resources["job_recovery"]["strategy"] == "FAILOVER"  # within the region
        assert task["file_mounts"] == {"/caftm": {"source": "s3://caftm-legs", "mode": "MOUNT"}}
        envs = item["envs"]
        assert isinstance(envs, dict)
        assert envs["CAFTM_SITE"] == site and envs["CAFTM_LEG"] == str(leg)
        assert envs["CAFTM_CHECKPOINT_URL"] == f"s3://ckpt/{site.replace(':', '-')}"
        assert envs["CAFTM_OUTCOME_FILE"].startswith("/caftm/caftm-jobs/skyjob/leg-")
        assert envs["WANDB_MODE"] == "off" and "HOME" not in envs  # only what caftm sets
        assert envs["CAFTM_LEDGER"] == "spool:"  # a VM reaches its bucket, not a ledger file
        assert item["regions"] == [site.split(":")[1]]  # as SkyPilot's own Resources read it
        assert "paced_worker.py" in task["run"]


def test_skypilot_validation_really_runs_offline(tmp_path: Path, sky_env: dict[str, str]) -> None:
    # a region caftm knows but the (seeded) SkyPilot catalog does not: SkyPilot refuses the task
    config = _sky_job(tmp_path, sites=(*SITES, "aws:us-east-1"))
    (item,) = _build(config, sky_env, "aws:us-east-1")
    assert "us-east-1" in str(item["error"]) and "\n" not in str(item["error"])


@pytest.mark.parametrize(
    ("sites", "accelerators", "expected"),
    [
        (SITES[1:], "H100:1", "site aws:eu-west-3: aws offers no H100 in eu-west-3"),
        (SITES[:1], "H100:1", "offers H100 in ap-northeast-2 only in counts of 8, not 1"),
        ((*SITES, "aws:us-east-1"), "A10G:1", "site aws:us-east-1: SkyPilot refuses region"),
        (("aws:eu-west-9",), "A10G:1", "unknown aws region 'eu-west-9'"),
    ],
    ids=["accelerator-missing", "accelerator-count", "region-not-in-skypilot", "region-typo"],
)
def test_a_site_skypilot_cannot_serve_is_refused_before_launch_with_one_line(
    tmp_path: Path, sky_env: dict[str, str], sites: tuple[str, ...], accelerators: str,
    expected: str,
) -> None:  # fmt: skip
    config = _sky_job(tmp_path, accelerators=accelerators, sites=sites)
    for command in ("validate", "run"):
        done = subprocess.run(
            [sys.executable, "-m", "caftm.cli", command, str(config)],
            capture_output=True, text=True, timeout=240, env=sky_env,
        )  # fmt: skip
        assert done.returncode != 0, done.stdout
        errors = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and expected in errors[0], done.stderr
        assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "work").exists()  # nothing was started


def test_a_leg_writes_a_postgres_ledger_directly_and_spools_otherwise(tmp_path: Path) -> None:
    from caftm.ledger.spool import SPOOL_FILE, SpoolWriter, open_for_worker, remote_worker_ledger

    url = "postgresql://caftm@db.example/caftm"
    assert remote_worker_ledger(url) == url
    assert remote_worker_ledger(tmp_path / "ledger.sqlite") == "spool:"
    leg = tmp_path / "bucket" / "caftm-jobs" / "j" / "leg-0001"
    os.environ["CAFTM_STATUS_FILE"] = str(leg / "status.json")
    try:
        writer = open_for_worker("spool:")
    finally:
        del os.environ["CAFTM_STATUS_FILE"]
    assert isinstance(writer, SpoolWriter) and writer.path == leg / SPOOL_FILE
    writer.close()


# -- legs launched on this machine: only SkyPilot's launch/status/cancel replaced ---------------
SKY_LOCAL = Path(__file__).with_name("sky_local.py")
_BUCKET = "caftm-legs"


@pytest.fixture
def local_sky(
    tmp_path: Path, sky_env: dict[str, str], s3_endpoint: str
) -> Iterator[dict[str, str]]:  # fmt: skip
    """The environment of ``sky_local.py``: SkyPilot's seeded catalog, its managed jobs on this
    machine, and fsspec's S3 options (for the supervisor and the jobs controller; a leg's worker
    gets them from the job's ``env`` only). Jobs left running are killed at the end."""
    s3fs = pytest.importorskip("s3fs")
    from tests.jobs.sky_vm import stop_all

    s3 = {"ENDPOINT_URL": s3_endpoint, "KEY": "testing", "SECRET": "testing"}
    fs = s3fs.S3FileSystem(key="testing", secret="testing", skip_instance_cache=True,
                           client_kwargs={"endpoint_url": s3_endpoint})  # fmt: skip
    for bucket in (_BUCKET, "ckpt"):
        if not fs.exists(bucket):
            fs.mkdir(bucket)
    (tmp_path / "sky").mkdir()
    env = {k: v for k, v in sky_env.items() if not k.startswith(("CAFTM_", "FSSPEC_"))}
    env.update({f"FSSPEC_S3_{k}": v for k, v in s3.items()})
    env["CAFTM_TEST_SKY_HOME"] = str(tmp_path / "sky")
    try:
        yield env
    finally:
        stop_all(tmp_path / "sky")


def _local_sky_job(
    tmp: Path, env: dict[str, str], name: str, *, sites: tuple[str, ...], policy: str,
    steps: int = 200, job_env: dict[str, str] | None = None, ledger: str | None = None,
) -> Path:  # fmt: skip
    """A SkyPilot job whose legs run through ``sky_local.py``: checkpoint stores and leg folders
    in the S3 bucket; the worker's job file is its own copy, shipped as the task's ``workdir``,
    whose ledger is a file on the VM (the supervisor's ledger is out of its reach)."""
    import yaml

    stores = {site: f"s3://ckpt/{name}/{site.replace(':', '-')}" for site in sites}
    s3_env = {k: v for k, v in env.items() if k.startswith("FSSPEC_S3_")}
    vm_code = tmp / "vm-code"
    vm_code.mkdir()
    command = [sys.executable, str(Path(__file__).with_name("paced_worker.py")), "--config",
               "job.yaml", "--checkpoint-every", "50"]  # fmt: skip
    skypilot = {"bucket": f"s3://{_BUCKET}", "workdir": str(vm_code)}
    config = write_job(
        tmp, name, sites=sites, policy=policy, steps=steps, command=command,
        job={"executor": "skypilot", "skypilot": skypilot, "stores": stores,
             "env": {**s3_env, **(job_env or {})}}, ledger=ledger,
    )  # fmt: skip
    worker_copy = yaml.safe_load(config.read_text())
    worker_copy["ledger"]["path"] = "vm-ledger.sqlite"
    (vm_code / "job.yaml").write_text(yaml.safe_dump(worker_copy))
    return config


def _caftm(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SKY_LOCAL), "caftm", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)  # fmt: skip


def _spooled_windows(env: dict[str, str], job: str) -> dict[str, dict[str, object]]:
    """Every window the job's legs spooled into the bucket, by key."""
    import fsspec

    options = {"endpoint_url": env["FSSPEC_S3_ENDPOINT_URL"], "key": "testing", "secret": "testing"}
    fs, _ = fsspec.core.url_to_fs(f"s3://{_BUCKET}", skip_instance_cache=True, **options)
    windows = {}
    for path in fs.glob(f"{_BUCKET}/caftm-jobs/{job}/leg-*/ledger-spool.jsonl"):
        for line in fs.cat_file(path).decode().splitlines():
            record = json.loads(line)
            if record["kind"] == "window":
                windows[record["key"]] = record
    return windows


def _ledger_windows(ledger: object, job: str) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = ledger._read(  # type: ignore[attr-defined]
        "SELECT w.spool_key, w.energy_j, w.carbon_g, r.host, r.run_id FROM windows w"
        " JOIN runs r ON r.run_id = w.run_id WHERE r.job = ?", (job,),
    )  # fmt: skip
    return rows


def test_skypilot_legs_carbon_reaches_the_central_ledger(
    tmp_path: Path, local_sky: dict[str, str], ledger_location: str
) -> None:
    """A SQLite ledger is out of a VM's reach: each leg spools into its bucket folder and the
    supervisor imports it; a PostgreSQL ledger the legs write directly."""
    from caftm.dashboard.model import Board
    from caftm.jobs.spec import load_job
    from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus
    from caftm.ledger.feed import Scope
    from caftm.report.build import ledger_report

    spooling = not ledger_location.startswith("postgresql")
    name = "skyhome" if spooling else "skyhome-pg"  # the S3 server serves the whole module
    home = Path(local_sky["CAFTM_TEST_SKY_HOME"])
    config = _local_sky_job(tmp_path, local_sky, name, sites=SITES[:2],
                            policy="greedy-cleanest", ledger=ledger_location)  # fmt: skip
    done = _caftm(local_sky, "run", "--quiet", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    spec = load_job(config)
    with Ledger(spec.ledger_path) as ledger:
        book = JobBook(ledger)
        job = book.get(name)
        legs = book.legs(name)
        assert job.status is JobStatus.SUCCEEDED and job.moves >= 1, job.message
        assert all(leg.executor == "skypilot" and leg.external_id for leg in legs)
        assert legs[-1].status is LegStatus.COMPLETED
        rows = _ledger_windows(ledger, name)
        totals = book.totals(name)
        # every window a leg spooled into its bucket folder is in the ledger, exactly once
        spooled = _spooled_windows(local_sky, name)
        assert sorted(str(r[0]) for r in rows if r[0] is not None) == sorted(spooled)
        if spooling:
            assert len(spooled) >= len(legs) and all(r[0] is not None for r in rows)
        else:  # written straight into PostgreSQL, nothing spooled
            logs = "".join(p.read_text() for p in home.glob("jobs/*/vm/home/worker.log"))
            assert rows and not spooled and all(r[0] is None for r in rows), logs
        assert all(r[1] is not None and r[2] is not None and float(str(r[2])) > 0 for r in rows)
        assert {str(r[3]) for r in rows} == {os.uname().nodename}  # written by the VMs' workers
        assert len({r[4] for r in rows}) == len(legs)  # one run per leg, each measured
        assert totals.carbon_g is not None and totals.energy_j is not None
        assert totals.carbon_g == pytest.approx(sum(float(str(r[2])) for r in rows))
        # the report and the dashboard show them
        report = ledger_report(ledger, name)
        summary = dict(report.summary)
        assert summary["windows"] == str(len(rows))
        assert summary["carbon"] == f"{totals.carbon_g:.4g} gCO2eq"
        (legs_table,) = [t for t in report.tables if t.title == "Legs"]
        assert [row[0] for row in legs_table.rows] == [str(leg.leg) for leg in legs]
    board = Board(spec.ledger_path)
    try:
        _, view = board.view(Scope.of_job(name))
    finally:
        board.close()
    assert view["totals"]["windows"] == len(rows)
    assert view["totals"]["carbon_g"] == pytest.approx(totals.carbon_g)
    assert any(t is not None for t in view["series"]["t"])
    # `caftm status` (the plain CLI: it reads the ledger only) shows the legs and their carbon
    status = subprocess.run(
        [sys.executable, "-m", "caftm.cli", "status", str(config)], capture_output=True,
        text=True, timeout=120, env={**local_sky, "COLUMNS": "200"},
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert f"carbon {totals.carbon_g:.2f} g" in status.stdout, status.stdout
    assert f"energy {totals.energy_j / 3.6e6:.4f} kWh" in status.stdout
    for leg in legs:
        assert f"{leg.external_id}" in status.stdout
    # the VMs wrote no ledger file on their disks; with SQLite, theirs was named nowhere
    assert not list(home.glob("jobs/*/vm/**/*.sqlite*"))
    env_files = list(home.glob("jobs/*/worker-env.json"))
    assert len(env_files) == len(legs)
    for env_file in env_files:
        told = json.loads(env_file.read_text())["CAFTM_LEDGER"]
        assert told == ("spool:" if spooling else ledger_location)
        assert not spooling or str(spec.ledger_path) not in env_file.read_text()


def test_cancel_without_a_supervisor_stops_a_skypilot_leg_through_skypilot(
    tmp_path: Path, local_sky: dict[str, str]
) -> None:
    from tests.jobs.jobs_support import Gate, wait_for

    from caftm.jobs.spec import load_job
    from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus
    from caftm.ledger.store import pid_alive

    gate = Gate(tmp_path, 60)  # the test's hand on the worker, not a path for its data
    config = _local_sky_job(tmp_path, local_sky, "skycx", sites=SITES[1:2],
                            policy="carbon-agnostic", job_env=gate.env)  # fmt: skip
    supervisor = subprocess.Popen(
        [sys.executable, str(SKY_LOCAL), "caftm", "run", "--quiet", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=local_sky,
        start_new_session=True,
    )  # fmt: skip
    try:
        worker = gate.wait_reached()
    finally:
        os.kill(supervisor.pid, signal.SIGKILL)  # the supervisor only: the managed job runs on
        supervisor.wait()
    spec = load_job(config)
    home = Path(local_sky["CAFTM_TEST_SKY_HOME"])
    # SkyPilot cannot be asked: the cancel says so in one line, exit 2, and marks nothing
    unreachable = _caftm({**local_sky, "CAFTM_TEST_SKY_HOME": str(tmp_path / "nowhere")},
                         "cancel", str(config), timeout=120)  # fmt: skip
    assert unreachable.returncode == 2, unreachable.stdout + unreachable.stderr
    errors = [line for line in unreachable.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "cannot stop leg 1 of job skycx (skypilot 1)" in errors[0]
    assert "may still run" in errors[0] and "Traceback" not in unreachable.stderr
    with Ledger(spec.ledger_path) as ledger:
        assert JobBook(ledger).get("skycx").status is JobStatus.RUNNING
    assert pid_alive(worker)
    # SkyPilot reachable: its cancel stops the worker after its checkpoint
    cancel = subprocess.Popen(
        [sys.executable, str(SKY_LOCAL), "caftm", "cancel", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=local_sky,
    )  # fmt: skip
    log = home / "jobs" / "1" / "vm" / "home" / "worker.log"
    try:
        wait_for(lambda: "SIGTERM received" in log.read_text(), what="SkyPilot's cancel at it")
        gate.open()
        out, err = cancel.communicate(timeout=120)
    finally:
        cancel.kill()  # (ended already unless the test failed)
        cancel.wait()
    assert cancel.returncode == 0, out + err
    assert "leg 1 stopped through skypilot after step 60" in out, out
    assert (home / "jobs" / "1" / "status").read_text().strip() == "CANCELLED"
    wait_for(lambda: not pid_alive(worker), what="the worker's end")
    with Ledger(spec.ledger_path) as ledger:
        book = JobBook(ledger)
        job = book.get("skycx")
        (leg,) = book.legs("skycx")
        assert job.status is JobStatus.CANCELLED and job.step == 60, job.message
        assert leg.status is LegStatus.CANCELLED and leg.end_step == 60
        # the stopped leg's measurements came home too, each once; its run is closed
        rows = _ledger_windows(ledger, "skycx")
        assert sorted(str(r[0]) for r in rows) == sorted(_spooled_windows(local_sky, "skycx"))
        assert rows and all(r[2] is not None for r in rows)
        assert all(r.status != "running" for r in ledger.runs())
    import fsspec

    options = {"endpoint_url": local_sky["FSSPEC_S3_ENDPOINT_URL"], "key": "testing",
               "secret": "testing"}  # fmt: skip
    fs, root = fsspec.core.url_to_fs(spec.store_url(SITES[1]), skip_instance_cache=True, **options)
    assert fs.exists(f"{root}/step-{60:09d}/MANIFEST.json")  # it checkpointed before it stopped


def test_a_managed_job_status_this_skypilot_does_not_name_is_watched_on(
    sky_env: dict[str, str],
) -> None:
    check = (
        "from caftm.jobs.executors.skypilot import _terminal as t\n"
        "assert t(None) and t('CANCELLED') and t('FAILED_SETUP')\n"
        "assert not t('RUNNING') and not t('RECOVERING')\n"
        "assert not t('A_STATUS_OF_A_LATER_SKYPILOT')  # not taken for an end\n"
    )  # SkyPilot imported in a subprocess, as everywhere in this module
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          timeout=120, env=sky_env)  # fmt: skip
    assert done.returncode == 0, done.stderr
