"""A real PostgreSQL server for the tests: a fresh cluster in a temporary folder on 127.0.0.1.

Debian's ``postgresql`` package (``.ci/run`` installs it where missing). The server refuses to
run as root: as root, the cluster belongs to the ``postgres`` user. Each test gets a database of
its own (:meth:`PostgresServer.new_database`).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

SKIP_REASON = "postgres not installed (apt-get install postgresql)"


def postgres_bin() -> Path | None:
    """The folder of Debian's newest installed PostgreSQL programs, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _major(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A cluster started by :meth:`start`, stopped (and its folder removed) by :meth:`stop`."""

    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        self.durable = durable  # PostgreSQL's defaults; else fsync off (tests: faster, same SQL)
        self.dir = Path(tempfile.mkdtemp(prefix="caftm-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> PostgresServer:
        """initdb, then start on 127.0.0.1 at a free port (its socket in the cluster folder).

        Raises:
            RuntimeError: initdb or the start failed (with their output).
        """
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        done = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        for attempt in range(3):
            options = (
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
                f" -c max_connections=200{'' if self.durable else ' -c fsync=off'}"
            )
            started = self._run(
                "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                "-w", "-t", "60", "start",
            )  # fmt: skip
            if started.returncode == 0:
                return self
            if attempt == 2:
                log = (self.dir / "log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres did not start: {started.stderr}{log}")
            self.port = _free_port()  # the port was taken meanwhile: another one
        return self

    def url(self, database: str = "postgres") -> str:
        """A URL for ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty ledger database; its URL (a schema of its own in the server's one
        database: as separate as a database, and made in milliseconds)."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        """Stop the server at once and remove its folder."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
