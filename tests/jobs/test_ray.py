"""The ``ray`` executor on a real local multi-node Ray cluster (head + 2 worker nodes, one site
each, on 127.0.0.1: run under ``.ci/isolated``, a network namespace with only ``lo``).

Jobs train the demo CNN on the SYNTHETIC rotating trace of :mod:`tests.jobs.jobs_support`; their
final parameters are compared bit for bit with the same job run unmigrated on the local executor.
The node-kill test starts the FR node again when it is done (the tests run in any order).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.jobs.jobs_support import (
    STEPS,
    Gate,
    LineReader,
    assert_identical,
    caftm_cli,
    final_model,
    kill_group,
    supervise_cli,
    write_job,
    write_trace,
)

from caftm.jobs.spec import load_job
from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus

pytest.importorskip("ray", reason="Ray is not installed (pip install 'caftm[ray]')")

from tests.jobs.ray_cluster import RayCluster

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.xdist_group("ray"),  # one cluster for the session
]

#: head, then two worker nodes
NODES = ("KR", "FR", "DE")


@pytest.fixture(scope="session")
def cluster() -> Iterator[RayCluster]:
    """The cluster, started once for the session (its tests share an xdist group, so one
    worker runs them all, in any order) and stopped (its processes only) after."""
    ray_cluster = RayCluster(NODES)
    try:
        ray_cluster.start()
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"cannot start a local Ray cluster: {e}")
    try:
        yield ray_cluster
    finally:
        ray_cluster.stop()
    assert not ray_cluster.processes(), "processes of the test cluster outlived it"


def _ray_job(
    tmp: Path, name: str, cluster: RayCluster, *, env: dict[str, str] | None = None, **kwargs: Any
) -> Path:
    env = {"OMP_NUM_THREADS": "1", **(env or {})}
    job = {"executor": "ray", "ray": {"address": cluster.address}, "env": env}
    return write_job(tmp, name, steps=STEPS, job=job, **kwargs)


def _supervise(config: Path, timeout_s: float = 900) -> str:
    """``caftm run`` to its end; returns its output."""
    process = supervise_cli(config)
    try:
        out, _ = process.communicate(timeout=timeout_s)
    finally:
        kill_group(process)
    assert process.returncode == 0, out
    return out


def _book(config: Path) -> JobBook:
    return JobBook(Ledger(load_job(config).ledger_path))


def test_migrates_three_times_across_three_ray_sites_bit_identical(
    tmp_path: Path, cluster: RayCluster, reference: dict[str, torch.Tensor], ledger_location: str
) -> None:
    # the workers' clock follows their steps: a move every 100 steps however slowly Ray starts
    config = _ray_job(tmp_path, "rayjob", cluster, ledger=ledger_location)  # on each backend
    out = _supervise(config)
    book = _book(config)
    job = book.get("rayjob")
    assert job.status is JobStatus.SUCCEEDED, job.message
    legs = book.legs("rayjob")
    assert job.moves >= 3, [(leg.site, leg.status) for leg in legs]
    assert {leg.site for leg in legs} == {"KR", "FR", "DE"}
    # each leg a Ray job, run on its site's node
    nodes = {site: cluster.node_id(site) for site in NODES}
    for leg in legs:
        assert leg.executor == "ray" and leg.external_id and leg.external_id.startswith("caftm-")
        assert leg.node == nodes[leg.site], (leg.leg, leg.site)
    assert all(leg.status is not LegStatus.RUNNING for leg in legs)
    assert "Traceback" not in out
    assert_identical(final_model(load_job(config), job.site, step=STEPS), reference)
    # `caftm status` shows each leg's Ray job id and node
    status = subprocess.run(
        [sys.executable, "-m", "caftm.cli", "status", "rayjob", "--db",
         str(load_job(config).ledger_path)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    for leg in legs:
        assert leg.external_id in status.stdout and str(leg.node) in status.stdout


def test_a_site_without_a_live_node_is_skipped_with_one_line(
    tmp_path: Path, cluster: RayCluster, reference: dict[str, torch.Tensor]
) -> None:
    # GB is always clean, KR never: the job wants GB at once, but no node carries GB (Ray
    # would leave the leg PENDING for 15 minutes); it is refused at once and the job stays
    write_trace(tmp_path / "trace.csv", sites=("KR", "GB"), period_h=10_000)
    config = _ray_job(tmp_path, "rayskip", cluster, sites=("KR", "GB"))
    out = _supervise(config)
    skipped = [line for line in out.splitlines() if "no live Ray node" in line]
    assert len(skipped) == 1, out
    assert "GB" in skipped[0] and "site-GB" in skipped[0] and "staying at KR" in skipped[0]
    assert "Traceback" not in out
    book = _book(config)
    job = book.get("rayskip")
    assert job.status is JobStatus.SUCCEEDED, job.message
    assert {leg.site for leg in book.legs("rayskip")} == {"KR"}
    failed = [t for t in book.transfers("rayskip") if t.status == "failed"]
    assert [t.dst_site for t in failed] == ["GB"]
    assert_identical(final_model(load_job(config), "KR", step=STEPS), reference)


def test_cancel_stops_a_running_ray_leg_after_its_checkpoint(
    tmp_path: Path, cluster: RayCluster
) -> None:
    gate = Gate(tmp_path, 60)
    config = _ray_job(tmp_path, "raycx", cluster, policy="carbon-agnostic", every=10_000,
                      env=gate.env)  # fmt: skip
    process = supervise_cli(config)
    output = LineReader(process)
    book = _book(config)
    try:
        gate.wait_reached(timeout_s=240)
        db = str(load_job(config).ledger_path)
        cancel = subprocess.run(
            [sys.executable, "-m", "caftm.cli", "cancel", "raycx", "--db", db],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cancel.returncode == 0, cancel.stderr
        output.wait_for_line("cancelling")  # the supervisor stops the Ray job (SIGTERM)
        gate.open()
        process.wait(timeout=120)
        out = output.text()
    finally:
        kill_group(process)
    job = book.get("raycx")
    assert job.status is JobStatus.CANCELLED, out
    (leg,) = book.legs("raycx")
    # the Ray job's SIGTERM may land a step or two after the gate opened
    assert leg.status is LegStatus.CANCELLED and leg.end_step is not None and leg.end_step >= 60
    # no periodic checkpoint before step 10000: this one was written on the stop
    store = Path(load_job(config).store_url("KR"))
    assert (store / f"step-{leg.end_step:09d}" / "MANIFEST.json").exists()
    log = (load_job(config).workdir / "leg-0001" / "worker.log").read_text()
    assert "SIGTERM received: checkpointing" in log and "Traceback" not in log


def test_a_worker_node_killed_during_a_leg(
    tmp_path: Path, cluster: RayCluster, reference: dict[str, torch.Tensor]
) -> None:
    # carbon-agnostic: it stays where it starts (FR, a worker node) until that node dies
    gate = Gate(tmp_path, 120)
    config = _ray_job(tmp_path, "raykill", cluster, policy="carbon-agnostic",
                      sites=("FR", "DE", "KR"), env=gate.env)  # fmt: skip
    process = supervise_cli(config)
    book = _book(config)
    killed: set[int] = set()
    try:
        gate.wait_reached(timeout_s=240)  # the FR leg waits in step 120 while its node dies
        assert [leg.site for leg in book.legs("raykill")] == ["FR"]
        killed = cluster.kill_node("FR")
        assert len(killed) >= 4  # raylet, agents, the job's supervisor actor, the worker
        out, _ = process.communicate(timeout=400)
    finally:
        kill_group(process)
        if killed:
            cluster.restart_node("FR")  # for the tests that run after this one
    assert process.returncode == 0, out
    job = book.get("raykill")
    assert job.status is JobStatus.SUCCEEDED, job.message
    legs = book.legs("raykill")
    assert legs[0].site == "FR" and legs[0].status is LegStatus.CRASHED, legs[0]
    assert all(leg.site != "FR" for leg in legs[1:])
    assert legs[-1].start_step == 100  # from its checkpoint
    skipped = [line for line in out.splitlines() if "skipping FR" in line]
    assert len(skipped) == 1 and "no live Ray node" in skipped[0], out
    assert "Traceback" not in out
    assert all(leg.status is not LegStatus.RUNNING for leg in legs)
    assert_identical(final_model(load_job(config), job.site, step=STEPS), reference)


# -- what the terminal and the ledger say (issue 18) ---------------------------------------------
@pytest.mark.parametrize(
    ("asked", "named"),
    [({"num_gpus": 1}, "num_gpus: 1"), ({"resources": {"fast-disk": 2}}, "resources.fast-disk: 2")],
)
def test_validate_names_a_resource_no_node_of_the_cluster_offers(
    tmp_path: Path, cluster: RayCluster, asked: dict[str, Any], named: str
) -> None:
    ray = {"address": cluster.address, **asked}
    config = write_job(tmp_path, "rayask", job={"executor": "ray", "ray": ray})
    run = caftm_cli("validate", str(config))
    assert run.returncode == 2, run.stdout + run.stderr
    [line] = run.stderr.strip().splitlines()
    assert named in line and "no live node of site KR offers" in line, line
    assert "Traceback" not in run.stderr


def test_a_leg_asking_what_its_site_lacks_fails_at_once_naming_it(
    tmp_path: Path, cluster: RayCluster
) -> None:
    import time

    from caftm.errors import ExecutorError
    from caftm.jobs.executors import LegLaunch
    from caftm.jobs.executors.ray import RayExecutor
    from caftm.jobs.spec import RaySection

    executor = RayExecutor(RaySection(address=cluster.address, num_gpus=1))
    launch = LegLaunch("raypend", 1, "FR", (sys.executable, "-c", "pass"), {}, tmp_path,
                       tmp_path / "worker.log", 5.0)  # fmt: skip
    started = time.monotonic()
    with pytest.raises(ExecutorError) as raised:
        executor.start(launch)
    assert time.monotonic() - started < 60  # not the 120 s start timeout
    assert "no live node of site FR offers num_gpus: 1" in str(raised.value)


def test_fate_lines_of_a_ray_worker_reach_the_run_terminal(
    tmp_path: Path, cluster: RayCluster
) -> None:
    from tests.jobs.test_truth_workers import damage_a_checkpoint

    config = _ray_job(tmp_path, "rayfate", cluster, policy="carbon-agnostic", every=1000)
    spec = load_job(config)
    spec_steps = spec.controller.total_steps
    damage_a_checkpoint(spec, "KR", 20)
    out = _supervise(config)
    skipped = [line for line in out.splitlines() if "skipping checkpoint" in line]
    assert len(skipped) == 1 and "0 bytes" in skipped[0] and "leg 1 at KR" in skipped[0], out
    assert sum("starting from step 0 although" in line for line in out.splitlines()) == 1, out
    [leg] = _book(config).legs("rayfate")
    assert (leg.start_step, leg.end_step) == (0, spec_steps)


def test_cancel_without_a_supervisor_stops_the_ray_job(tmp_path: Path, cluster: RayCluster) -> None:
    from ray.job_submission import JobSubmissionClient

    gate = Gate(tmp_path, 40)
    config = _ray_job(tmp_path, "rayorphan", cluster, policy="carbon-agnostic", every=10_000,
                      env=gate.env)  # fmt: skip
    process = supervise_cli(config)
    try:
        gate.wait_reached(timeout_s=240)
    finally:
        kill_group(process)  # kill -9 the supervisor: the Ray job trains on
    book = _book(config)
    [leg] = book.legs("rayorphan")
    assert leg.status is LegStatus.RUNNING and leg.external_id
    cancel = subprocess.Popen(
        [sys.executable, "-m", "caftm.cli", "cancel", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    log = load_job(config).workdir / "leg-0001" / "worker.log"
    from tests.jobs.jobs_support import wait_for

    wait_for(lambda: "SIGTERM received" in log.read_text(), 120, what="SIGTERM via Ray")
    gate.open()
    out, _ = cancel.communicate(timeout=180)
    assert cancel.returncode == 0, out
    assert "stopped through ray" in out, out
    [leg] = book.legs("rayorphan")
    assert leg.status is LegStatus.CANCELLED and leg.end_step is not None and leg.end_step >= 40
    info = JobSubmissionClient(cluster.address).get_job_info(str(leg.external_id))
    assert info.status.is_terminal(), info.status
    assert book.get("rayorphan").status is JobStatus.CANCELLED


def test_cancel_says_so_when_it_cannot_reach_the_cluster(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = {"address": f"http://127.0.0.1:{port}"}
    config = write_job(tmp_path, "raygone", job={"executor": "ray", "ray": ray})
    spec = load_job(config)
    book = JobBook(Ledger(spec.ledger_path))
    book.create("raygone", site="KR", store_url=spec.store_url("KR"), executor="ray",
                spec=spec.to_dict())  # fmt: skip
    book.start_leg("raygone", 1, site="KR", executor="ray", start_step=0)
    book.update_leg("raygone", 1, external_id="caftm-raygone-leg1-00000000")
    run = caftm_cli("cancel", str(config))
    assert run.returncode == 2, run.stdout + run.stderr
    [line] = run.stderr.strip().splitlines()
    assert "cannot stop leg 1 of job raygone" in line and "not marked cancelled" in line, line
    [leg] = book.legs("raygone")
    assert leg.status is LegStatus.RUNNING  # it may still run: not marked cancelled
    assert book.get("raygone").status is not JobStatus.CANCELLED


def test_a_leg_pending_on_busy_nodes_says_what_it_waits_for(
    tmp_path: Path, cluster: RayCluster
) -> None:
    import signal

    from caftm.errors import ExecutorError
    from caftm.jobs.executors import LegLaunch
    from caftm.jobs.executors.ray import RayExecutor
    from caftm.jobs.spec import RaySection

    # each test node offers one CPU: a first leg holding it leaves the second pending
    executor = RayExecutor(RaySection(address=cluster.address, num_cpus=1, start_timeout_s=8))

    def launch(leg: int, seconds: int) -> LegLaunch:
        argv = (sys.executable, "-c", f"import time; time.sleep({seconds})")
        return LegLaunch("raybusy", leg, "DE", argv, {}, tmp_path, tmp_path / f"{leg}.log", 1.0)

    first = executor.start(launch(1, 120))
    try:
        with pytest.raises(ExecutorError) as raised:
            executor.start(launch(2, 1))
    finally:
        executor.signal(first, signal.SIGKILL)
    said = str(raised.value)
    assert "still pending after 8 s, waiting for num_cpus: 1 on a node of site DE" in said, said
