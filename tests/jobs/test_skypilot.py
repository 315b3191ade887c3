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
import subprocess
import sys
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
