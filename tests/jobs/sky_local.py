"""SkyPilot's managed jobs played on this machine: each leg's task runs as a local process on a
private "VM" folder that shares nothing with the supervisor but the task's bucket (an S3 server).

Only the three calls caftm makes into SkyPilot's API server (launch, status, cancel:
:class:`caftm.jobs.executors.skypilot.ManagedJobs`) are replaced; caftm builds and validates the
task with SkyPilot's own code as for a cloud. What a VM would be, here:

- a folder ``$CAFTM_TEST_SKY_HOME/jobs/ID/vm`` as its disk: ``home/`` its home, the task's
  ``workdir`` copied to ``home/sky_workdir`` (the ``run`` command's working directory);
- the task's ``file_mounts`` (the bucket) as folders of that disk, each file uploaded to the
  bucket whenever it changed (checked every ``sky_vm.TICK_S``) and once more when the worker ends. A
  real mount may upload a file only once it is closed (goofys, rclone's cache): the supervisor's
  imports while a leg runs then find less, its import at the leg's end the same;
- the worker's environment: the task's ``envs`` over this machine's ``PATH``/``PYTHONPATH`` (its
  installed software), nothing else of the supervisor's (no ``CAFTM_*``, no ``FSSPEC_*``);
- a controller process per job (SkyPilot's jobs controller): it starts the worker, records the
  job's status (``PENDING`` … ``SUCCEEDED``/``FAILED``/``CANCELLED``), and on a cancel sends the
  worker SIGTERM, then SIGKILL after the graceful timeout. It outlives the supervisor.

A home that does not exist is an API server that cannot be reached: every call raises.

    python sky_local.py caftm ARGS...     caftm's CLI, its skypilot executor launching here

The jobs controller is ``sky_vm.py`` (it imports neither SkyPilot nor the executor).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sky_vm import TERMINAL, set_status

from caftm.jobs.executors.skypilot import SkyPilotExecutor
from caftm.jobs.spec import JobSection

HOME_ENV = "CAFTM_TEST_SKY_HOME"
_CONTROLLER = Path(__file__).with_name("sky_vm.py")


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
        set_status(folder, "PENDING")
        with (folder / "controller.log").open("ab") as log:
            subprocess.Popen(
                [sys.executable, str(_CONTROLLER), str(self.home), job_id],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # it outlives the supervisor, as SkyPilot's controller
            )  # fmt: skip
        return job_id

    def status(self, job_id: str) -> str | None:
        path = self._reachable() / job_id / "status"
        return path.read_text().strip() if path.exists() else None

    def cancel(self, job_id: str, *, graceful: bool, graceful_timeout: int | None) -> None:
        status = self.status(job_id)
        if status is None or status in TERMINAL:
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


def _caftm(argv: list[str]) -> None:
    """caftm's CLI with ``skypilot`` legs launched here."""
    from caftm.cli import main
    from caftm.jobs.executors import EXECUTORS

    EXECUTORS.register("skypilot", "sky_local:LocalSkyPilotExecutor")
    main(argv)


if __name__ == "__main__":
    if sys.argv[1:2] != ["caftm"]:
        sys.exit(f"usage: {sys.argv[0]} caftm ARGS...")
    _caftm(sys.argv[2:])
