"""A real local multi-node Ray cluster for the tests: a head and worker nodes, one site each.

Every node is bound to 127.0.0.1 (run the tests in a network namespace with only ``lo``:
``.ci/isolated``); each node carries the custom resource ``site-<SITE>`` and the label
``site=<SITE>``. The cluster's processes are found by its own temp folder (and their
descendants), so stopping it, or killing one node, never touches another Ray on this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
#: a dead node is noticed within a few seconds (Ray's default is about 30 s)
_HEALTH = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 2000,
    "health_check_failure_threshold": 4,
}


#: Ray's ports come from a block below the kernel's ephemeral range (32768-60999): a port Ray
#: is told to use can then never be taken meanwhile by another test's socket bound to port 0
#: (tests run in parallel), which left a node without its job agent
_PORT_BLOCK = (20000, 32000)
_PORTS_PER_NODE = 64


class _PortBlock:
    """Consecutive ports on 127.0.0.1, handed out one by one (each checked free)."""

    def __init__(self, size: int) -> None:
        import random

        low, high = _PORT_BLOCK
        for _ in range(100):
            start = random.randrange(low, high - size)
            if all(_bindable(port) for port in range(start, start + size, 7)):
                break
        self.next, self.end = start, start + size

    def take(self, count: int = 1) -> int:
        """The first of ``count`` consecutive ports not handed out yet."""
        port = self.next
        self.next += count
        assert self.next <= self.end, "the cluster's port block is exhausted"
        return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _with_descendants(roots: set[int]) -> set[int]:
    tree, found, todo = _children(), set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(tree.get(pid, []))
    return found


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class RayCluster:
    """A head (the first site) and one worker node per further site.

    Args:
        sites: one site per node, the head's first.
    """

    def __init__(self, sites: tuple[str, ...]) -> None:
        self.sites = sites
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        self._fresh()

    def _fresh(self) -> None:
        """A new temp folder and ports (a start that failed leaves its own behind)."""
        # short: Ray's socket paths under it must stay within the 107-byte limit
        self.temp_dir = Path(f"/tmp/caftm-ray-{uuid.uuid4().hex[:8]}")
        # a node's worth of spare ports: a killed node can be started again
        self.ports = _PortBlock(_PORTS_PER_NODE * (len(self.sites) + 2))
        self.gcs_port = self.ports.take()
        self.dashboard_port = self.ports.take()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, attempts: int = 3) -> RayCluster:
        """Start every node; returns once all are up. A start that fails (Ray's own start-up
        races on a loaded machine: "Session name ... does not match persisted value") is
        cleaned up and tried again on fresh ports, up to ``attempts`` times.

        Raises:
            RuntimeError: the last attempt failed too.
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._start_nodes()
            except (RuntimeError, subprocess.TimeoutExpired):
                self.stop()
                if attempt == attempts:
                    raise
                self._fresh()
        raise AssertionError("unreachable")

    def restart_node(self, site: str) -> None:
        """Start a worker node for ``site`` again (after :meth:`kill_node`)."""
        self._ray_start(site, f"--address=127.0.0.1:{self.gcs_port}")

    def _start_nodes(self) -> RayCluster:
        head, *workers = self.sites
        self._ray_start(
            head,
            "--head",
            f"--port={self.gcs_port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--temp-dir={self.temp_dir}",
            f"--system-config={json.dumps(_HEALTH)}",
            f"--ray-client-server-port={self.ports.take()}",
        )
        for site in workers:
            self._ray_start(site, f"--address=127.0.0.1:{self.gcs_port}")
        return self

    def _ray_start(self, site: str, *args: str) -> None:
        take = self.ports.take
        workers = take(40)
        ports = [
            f"--node-manager-port={take()}",
            f"--object-manager-port={take()}",
            f"--dashboard-agent-listen-port={take()}",
            f"--dashboard-agent-grpc-port={take()}",
            f"--metrics-export-port={take()}",
            f"--runtime-env-agent-port={take()}",
            f"--min-worker-port={workers}",
            f"--max-worker-port={workers + 39}",
        ]
        command = [
            RAY, "start", *args, *ports, "--node-ip-address=127.0.0.1", "--num-cpus=1",
            "--object-store-memory=80000000", "--disable-usage-stats",
            f"--resources={json.dumps({f'site-{site}': 1})}", f"--labels=site={site}",
        ]  # fmt: skip
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise RuntimeError(f"ray start for {site} failed: {' | '.join(tail)}")

    def processes(self) -> set[int]:
        """Every process of this cluster (those naming its temp folder, and their descendants)."""
        marker = str(self.temp_dir)
        roots = {int(e) for e in os.listdir("/proc") if e.isdigit() and marker in _cmdline(int(e))}
        return _with_descendants(roots - {os.getpid()})

    def node_id(self, site: str) -> str:
        """The id of ``site``'s node."""
        from ray.util.state import list_nodes

        for node in list_nodes(address=self.address, detail=True, limit=1000):
            if node.state == "ALIVE" and (node.labels or {}).get("site") == site:
                return str(node.node_id)
        raise LookupError(f"no live node for site {site}")

    def kill_node(self, site: str) -> set[int]:
        """SIGKILL a node's Ray processes and everything they started (its workers too)."""
        node = self.node_id(site)
        roots = {
            int(e)
            for e in os.listdir("/proc")
            if e.isdigit() and node in _cmdline(int(e)) and str(self.temp_dir) in _cmdline(int(e))
        }
        assert roots, f"no process of node {node} ({site})"
        pids = _with_descendants(roots)
        _kill(pids)
        return pids

    def stop(self) -> None:
        """Kill this cluster's processes (only them) and remove its temp folder."""
        for _ in range(3):
            pids = self.processes()
            if not pids:
                break
            _kill(pids)
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
