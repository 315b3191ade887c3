"""The ``local`` executor: each leg a subprocess on this machine, in its own process group.

Sites are directories (or any fsspec URL) for their stores; the worker runs here whatever the
site, so this executor is for one machine, a laptop demo, and tests. Signals go to the worker's
whole process group (``torchrun`` and its ranks alike).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from typing import ClassVar

from caftm.errors import ExecutorError
from caftm.jobs.executors.base import EXIT_UNKNOWN, LegFolderExecutor, LegLaunch, WorkerHandle
from caftm.ledger.jobs import LegRecord
from caftm.ledger.store import pid_alive

__all__ = ["LocalExecutor", "local_argv"]


def local_argv(command: tuple[str, ...]) -> tuple[str, ...]:
    """``command`` with ``python``/``python3`` bound to the Python running caftm and
    ``torchrun`` to its ``torch.distributed.run``: a job runs in caftm's own environment."""
    program, *rest = command
    if program in ("python", "python3"):
        return (sys.executable, *rest)
    if program == "torchrun":
        return (sys.executable, "-m", "torch.distributed.run", *rest)
    return command


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (with the pid: its identity)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class LocalExecutor(LegFolderExecutor):
    """Workers as subprocesses of this process (see the module docstring)."""

    name: ClassVar[str] = "local"
    takes_standby: ClassVar[bool] = True

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, launch: LegLaunch) -> WorkerHandle:
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(launch.log_path, "ab") as log:
                child = subprocess.Popen(
                    list(local_argv(launch.argv)),
                    cwd=launch.cwd,
                    env=launch.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, signalled as a whole
                )
        except OSError as e:
            raise ExecutorError(
                f"cannot start the worker of job {launch.job} ({launch.argv[0]}): {e.strerror or e}"
            ) from e
        self._children[child.pid] = child
        ticks = _start_ticks(child.pid) or "?"
        return WorkerHandle(
            self.name, f"{child.pid}:{ticks}", pid=child.pid, host=socket.gethostname()
        )

    def poll(self, handle: WorkerHandle) -> int | None:
        if handle.exit_code is not None:
            return handle.exit_code
        assert handle.pid is not None
        child = self._children.get(handle.pid)
        if child is not None:
            code = child.poll()
            if code is None:
                return None
            del self._children[handle.pid]
        elif self._same_process(handle):
            return None
        else:
            code = EXIT_UNKNOWN  # adopted: its parent (a dead supervisor) cannot tell us
        self._reap_group(handle.pid)
        handle.exit_code = code
        return code

    def signal(self, handle: WorkerHandle, signum: int) -> None:
        if handle.pid is None or handle.exit_code is not None:
            return
        try:
            os.killpg(handle.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            raise ExecutorError(f"cannot signal worker {handle.pid}: {e}") from e

    def stop_leg(self, leg: LegRecord, grace_s: float, *, poll_s: float = 0.1) -> int | None:
        if leg.pid is not None and leg.host is not None and leg.host != socket.gethostname():
            raise ExecutorError(
                f"leg {leg.leg} of job {leg.job} runs on host {leg.host} (process {leg.pid}); "
                "run `caftm cancel` there"
            )
        return super().stop_leg(leg, grace_s, poll_s=poll_s)

    def adopt(self, leg: LegRecord) -> WorkerHandle | None:
        if leg.pid is None or leg.host != socket.gethostname() or leg.external_id is None:
            return None
        handle = WorkerHandle(self.name, leg.external_id, pid=leg.pid, host=leg.host)
        return handle if self._same_process(handle) else None

    @staticmethod
    def _same_process(handle: WorkerHandle) -> bool:
        """The pid still names the process that was started (not a reused pid)."""
        assert handle.pid is not None
        ticks = handle.external_id.partition(":")[2]
        return pid_alive(handle.pid) and _start_ticks(handle.pid) == ticks

    @staticmethod
    def _reap_group(pgid: int) -> None:
        """Kill what the worker left behind in its group (e.g. ranks of a killed launcher)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
