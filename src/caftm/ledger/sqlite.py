"""The embedded ledger backend: one sqlite file (WAL), one connection shared by threads.

Statements on the connection are serialised by a lock; a transaction holds it and sqlite's
write lock (``BEGIN IMMEDIATE``) from start to end. For one machine: sqlite's locking is not
reliable on network filesystems, where several hosts want PostgreSQL
(:mod:`caftm.ledger.postgres`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from caftm.errors import ConfigError
from caftm.ledger.backend import BackendError, Params

__all__ = ["SqliteBackend"]


class _Session:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._db.execute(sql, tuple(params)).rowcount

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        return self._db.execute(sql, tuple(params)).fetchall()


class SqliteBackend:
    """A ledger file (created with its folder when missing; opened without writing when
    ``read_only``).

    Raises:
        ConfigError: the file cannot be opened (a directory; missing while ``read_only``).
    """

    dialect = "sqlite"

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.path = path
        self.lock = threading.Lock()
        try:
            if read_only:
                if not path.is_file():
                    raise ConfigError(f"no ledger at {path}")
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            else:
                if path.is_dir():
                    raise ConfigError(
                        f"ledger {path} is a directory; give a file such as "
                        f"{path / 'ledger.sqlite'}"
                    )
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=10000")
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open ledger {path}: {e}") from e

    def prepare(self) -> None:
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as e:
            raise BackendError(str(e)) from e

    def execute(self, sql: str, params: Params = ()) -> int:
        with self.lock:
            try:
                return self.db.execute(sql, tuple(params)).rowcount
            except sqlite3.Error as e:
                raise BackendError(str(e)) from e

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self.transaction():
            try:
                self.db.executemany(sql, [tuple(r) for r in rows])
            except sqlite3.Error as e:
                raise BackendError(str(e)) from e

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        with self.lock:
            try:
                return self.db.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as e:
                raise BackendError(str(e)) from e

    @contextmanager
    def transaction(self) -> Iterator[_Session]:
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise BackendError(str(e)) from e
            try:
                yield _Session(self.db)
            except sqlite3.Error as e:
                self.db.execute("ROLLBACK")
                raise BackendError(str(e)) from e
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as e:
                raise BackendError(str(e)) from e

    def schema_version(self, session: Any) -> int:
        return int(session.query("PRAGMA user_version")[0][0])

    def set_schema_version(self, session: Any, version: int) -> None:
        session.execute(f"PRAGMA user_version = {int(version)}")

    def tables(self, session: Any) -> set[str]:
        return {r[0] for r in session.query("SELECT name FROM sqlite_master WHERE type='table'")}

    def columns(self, session: Any, table: str) -> set[str]:
        return {r[1] for r in session.query(f"PRAGMA table_info({table})")}

    def ddl(self, script: str) -> str:
        return script

    def close(self) -> None:
        with self.lock:
            self.db.close()
