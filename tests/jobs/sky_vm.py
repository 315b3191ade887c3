"""The jobs controller of ``sky_local.py``: runs one managed job's task on its VM folder.

python sky_vm.py HOME ID
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

#: the controller's period (s): status, cancel requests, uploads of the mounted bucket
TICK_S = 0.2
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
#: what a VM's worker keeps of this machine's environment: its installed software
_IMAGE_ENV = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TMPDIR")


def set_status(folder: Path, status: str) -> None:
    """Record the job's status (``TERMINAL`` ones end it)."""
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
    set_status(folder, "STARTING")
    with (vm_home / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            ["bash", "-c", _on_vm(task["run"], points)], cwd=workdir, env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    (folder / "pids.json").write_text(json.dumps({"controller": os.getpid(), "worker": worker.pid}))
    set_status(folder, "RUNNING")
    cancel, kill_at = folder / "cancel.json", float("inf")
    cancelled = False
    while worker.poll() is None:
        if not cancelled and cancel.exists():
            cancelled = True
            request = json.loads(cancel.read_text())
            set_status(folder, "CANCELLING")
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
    set_status(folder, "CANCELLED" if cancelled else "SUCCEEDED" if code == 0 else "FAILED")
    return 0


def stop_all(home: Path) -> None:
    """SIGKILL every job of ``home`` still running, its worker and its controller (a test's
    teardown: a failed test leaves no VM behind)."""
    for pids in home.glob("jobs/*/pids.json"):
        if (pids.parent / "status").read_text().strip() in TERMINAL:
            continue
        known = json.loads(pids.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(known["worker"], signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(known["controller"], signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(controller(Path(sys.argv[1]), sys.argv[2]))
