"""SkyPilot's managed jobs played on this machine: each leg's task runs as a local process on a
private "VM" folder that shares nothing with the supervisor but the task's bucket (an S3 server).

Only the three calls caftm makes into SkyPilot's API server (launch, status, cancel:
:class:`caftm.jobs.executors.skypilot.ManagedJobs`) are replaced; caftm builds and validates the
task with SkyPilot's own code as for a cloud. What a VM would be, here:

- a folder ``$CAFTM_TEST_SKY_HOME/jobs/ID/vm`` as its disk: ``home/`` its home, the task's
  ``workdir`` copied to ``home/sky_workdir`` (the ``run`` command's working directory);
- the task's ``file_mounts`` (the bucket) as folders of that disk, uploaded to the bucket as the
  worker writes them and once more when it ends (SkyPilot's cached mount, ``MOUNT_CACHED``);
- the worker's environment: the task's ``envs`` over this machine's ``PATH``/``PYTHONPATH`` (its
  installed software), nothing else of the supervisor's (no ``CAFTM_*``, no ``FSSPEC_*``);
- a controller process per job (SkyPilot's jobs controller): it starts the worker, records the
  job's status (``PENDING`` … ``SUCCEEDED``/``FAILED``/``CANCELLED``), and on a cancel sends the
  worker SIGTERM, then SIGKILL after the graceful timeout. It outlives the supervisor.

A home that does not exist is an API server that cannot be reached: every call raises.

    python sky_local.py caftm ARGS...         caftm's CLI, its skypilot executor launching here
    python sky_local.py controller HOME ID    (internal) the controller of job ID
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from caftm.jobs.executors.skypilot import SkyPilotExecutor
from caftm.jobs.spec import JobSection

HOME_ENV = "CAFTM_TEST_SKY_HOME"
#: the controller's period (s): status, cancel requests, uploads of the mounted bucket
TICK_S = 0.2
_TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
#: what a VM's worker keeps of this machine's environment: its installed software
_IMAGE_ENV = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TMPDIR")


class LocalManagedJobs:
    """Managed jobs whose VMs are folders of ``home`` (see the module docstring)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def _reachable(self) -> Path:
        if not self.home.is_dir():
            raise ConnectionError(f"cannot reach the SkyPilot API server (no {self.home})")
        return self.home / "jobs"

    def launch(self, task: Any, name: str) -> str:
        jobs = self._reachable()
        jobs.mkdir(exist_ok=True)
        for number in itertools.count(1):  # ids as SkyPilot gives them: 1, 2, …
            try:
                (jobs / str(number)).mkdir()
            except FileExistsError:
                continue
            job_id = str(number)
            break
        folder = jobs / job_id
        (folder / "task.json").write_text(json.dumps({"name": name, "task": task.to_yaml_config()}))
        _set_status(folder, "PENDING")
        with (folder / "controller.log").open("ab") as log:
            subprocess.Popen(
                [sys.executable, __file__, "controller", str(self.home), job_id],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # it outlives the supervisor, as SkyPilot's controller
            )  # fmt: skip
        return job_id

    def status(self, job_id: str) -> str | None:
        path = self._reachable() / job_id / "status"
        return path.read_text().strip() if path.exists() else None

    def cancel(self, job_id: str, *, graceful: bool, graceful_timeout: int | None) -> None:
        status = self.status(job_id)
        if status is None or status in _TERMINAL:
            return
        request = {"graceful": graceful, "timeout_s": graceful_timeout or 0}
        (self._reachable() / job_id / "cancel.json").write_text(json.dumps(request))

    def vm(self, job_id: str) -> Path:
        """The job's VM disk (for tests to look at)."""
        return self.home / "jobs" / job_id / "vm"


class LocalSkyPilotExecutor(SkyPilotExecutor):
    """The ``skypilot`` executor, its managed jobs on this machine (``$CAFTM_TEST_SKY_HOME``)."""

    @classmethod
    def from_job(cls, job: JobSection) -> LocalSkyPilotExecutor:
        return cls(job.skypilot, job.env, LocalManagedJobs(Path(os.environ[HOME_ENV])))


def _set_status(folder: Path, status: str) -> None:
    tmp = folder / "status.tmp"
    tmp.write_text(status + "\n")
    tmp.replace(folder / "status")


def _on_vm(text: str, mounts: dict[str, Path]) -> str:
    """``text`` with each mount point (a whole path component) at its folder on the VM disk."""
    for point, local in mounts.items():
        pattern = rf"(?<![^\s'\"=]){re.escape(point.rstrip('/'))}(?=/|$|[\s'\"])"
        text = re.sub(pattern, str(local), text)
    return text


class _Mount:
    """A bucket mounted at a VM folder: files the worker writes are uploaded when they change."""

    def __init__(self, local: Path, source: str) -> None:
        import fsspec

        self.local, self.source = local, source.rstrip("/")
        self.fs, _ = fsspec.core.url_to_fs(self.source)
        self.seen: dict[Path, tuple[int, int]] = {}
        local.mkdir(parents=True, exist_ok=True)

    def upload(self) -> None:
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            try:
                stat = path.stat()
                mark = (stat.st_mtime_ns, stat.st_size)
                if self.seen.get(path) == mark:
                    continue
                data = path.read_bytes()
            except FileNotFoundError:  # a temporary file renamed meanwhile
                continue
            self.fs.pipe_file(f"{self.source}/{path.relative_to(self.local).as_posix()}", data)
            self.seen[path] = mark


def controller(home: Path, job_id: str) -> int:
    """Run job ``job_id``'s task on its VM folder to its end (see the module docstring)."""
    folder = home / "jobs" / job_id
    task = json.loads((folder / "task.json").read_text())["task"]
    vm = folder / "vm"
    vm_home = vm / "home"
    workdir = vm_home / "sky_workdir"
    if task.get("workdir"):
        shutil.copytree(task["workdir"], workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    points = {point: vm / point.lstrip("/") for point in task.get("file_mounts") or {}}
    mounts = [_Mount(points[p], m["source"]) for p, m in task["file_mounts"].items()]
    env = {key: os.environ[key] for key in _IMAGE_ENV if key in os.environ}
    env.update({key: _on_vm(str(value), points) for key, value in task.get("envs", {}).items()})
    env["HOME"] = str(vm_home)
    (folder / "worker-env.json").write_text(json.dumps(env))
    _set_status(folder, "STARTING")
    with (vm_home / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            ["bash", "-c", _on_vm(task["run"], points)], cwd=workdir, env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    _set_status(folder, "RUNNING")
    cancel, kill_at = folder / "cancel.json", float("inf")
    cancelled = False
    while worker.poll() is None:
        if not cancelled and cancel.exists():
            cancelled = True
            request = json.loads(cancel.read_text())
            _set_status(folder, "CANCELLING")
            graceful = bool(request["graceful"])
            os.killpg(worker.pid, signal.SIGTERM if graceful else signal.SIGKILL)
            kill_at = time.monotonic() + float(request["timeout_s"])
        if time.monotonic() > kill_at:
            os.killpg(worker.pid, signal.SIGKILL)
            kill_at = float("inf")
        for mount in mounts:
            mount.upload()
        time.sleep(TICK_S)
    for mount in mounts:
        mount.upload()
    code = worker.returncode
    _set_status(folder, "CANCELLED" if cancelled else "SUCCEEDED" if code == 0 else "FAILED")
    return 0


def _caftm(argv: list[str]) -> None:
    """caftm's CLI with ``skypilot`` legs launched here."""
    from caftm.cli import main
    from caftm.jobs.executors import EXECUTORS

    EXECUTORS.register("skypilot", "sky_local:LocalSkyPilotExecutor")
    main(argv)


if __name__ == "__main__":
    if sys.argv[1] == "controller":
        sys.exit(controller(Path(sys.argv[2]), sys.argv[3]))
    if sys.argv[1] == "caftm":
        _caftm(sys.argv[2:])
    sys.exit(f"usage: {sys.argv[0]} caftm ARGS... | controller HOME ID")
