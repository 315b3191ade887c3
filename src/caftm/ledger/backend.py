"""Where a ledger lives: the one small interface its SQL goes through, and the choice by location.

=====================  ==========================================================================
location               backend
=====================  ==========================================================================
a path                 :class:`~caftm.ledger.sqlite.SqliteBackend` (embedded, the default; one
                       machine)
``postgresql://…``     :class:`~caftm.ledger.postgres.PostgresBackend` (psycopg 3, a pool; teams
                       and several machines: ``pip install 'caftm[postgres]'``)
=====================  ==========================================================================

The ledger's SQL is written once, with ``?`` placeholders and SQLite's column types; a backend
translates what its dialect spells differently (:meth:`Backend.ddl`, placeholders). A backend
raises :class:`BackendError` for any failure of its database; :class:`~caftm.ledger.Ledger`
turns it into the library's errors with the ledger's location.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "Backend",
    "BackendError",
    "Session",
    "is_url",
    "ledger_location",
    "ledger_missing",
    "network_filesystem",
    "open_backend",
    "shown",
]

Params = Sequence[object]

_URL_SCHEMES = ("postgresql://", "postgres://")


class BackendError(Exception):
    """The ledger's database failed (unreachable, locked, damaged, full)."""


class Session(Protocol):
    """Statements inside one transaction (:meth:`Backend.transaction`)."""

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; how many rows it changed."""
        ...

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        """All rows of one query."""
        ...


class Backend(Protocol):
    """One ledger database: statements on their own (autocommit) or in a transaction."""

    dialect: str
    """``sqlite`` or ``postgresql``."""

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement, committed; how many rows it changed."""
        ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement for each of ``rows``, all committed together."""
        ...

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        """All rows of one query."""
        ...

    def transaction(self) -> AbstractContextManager[Session]:
        """A transaction that no other writer interleaves with (committed at the end, rolled
        back on an exception)."""
        ...

    def schema_version(self, session: Session) -> int:
        """The ledger's schema version (0: empty, or written before versioning)."""
        ...

    def set_schema_version(self, session: Session, version: int) -> None:
        """Record the schema version (inside the migrating transaction)."""
        ...

    def tables(self, session: Session) -> set[str]:
        """The names of the tables the database holds."""
        ...

    def columns(self, session: Session, table: str) -> set[str]:
        """The column names of ``table`` (empty when it does not exist)."""
        ...

    def prepare(self) -> None:
        """Settings a writer wants, applied once the database is known to be a ledger."""
        ...

    def ddl(self, script: str) -> str:
        """``script`` (SQLite's types) in this dialect."""
        ...

    def close(self) -> None:
        """Close every connection."""
        ...


def is_url(location: str | Path) -> bool:
    """Whether ``location`` names a database server (``postgresql://…``) rather than a file."""
    return isinstance(location, str) and location.startswith(_URL_SCHEMES)


def ledger_location(location: str | Path) -> Path | str:
    """A URL as given, anything else as a path (``~`` expanded)."""
    if is_url(location):
        return str(location)
    return Path(location).expanduser()


def ledger_missing(location: Path | str) -> bool:
    """Whether ``location`` is a file that does not exist (a URL is never missing here: opening
    it says whether the server answers)."""
    return not is_url(location) and not Path(location).exists()


_NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs",
                        "lustre", "gpfs", "beegfs", "afs", "sshfs", "davfs")  # fmt: skip


MOUNT_TABLE = Path("/proc/mounts")


def network_filesystem(path: Path) -> str | None:
    """The type of the network or FUSE filesystem holding ``path`` (``nfs4``, ``fuse.s3fs``…),
    or None for a local one (or where the mount table :data:`MOUNT_TABLE` cannot be read)."""
    try:
        table = MOUNT_TABLE.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target = str(path.expanduser().absolute())
    best, kind = "", ""
    for line in table:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    if kind.startswith("fuse") or kind in _NETWORK_FILESYSTEMS:
        return kind
    return None


def shown(location: str | Path) -> str:
    """``location`` fit to print: a URL's password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(location))


def open_backend(location: str | Path, *, read_only: bool) -> Backend:
    """The backend for ``location`` (a path or a ``postgresql://`` URL).

    Raises:
        ConfigError: the database cannot be opened or reached, or psycopg is not installed.
    """
    if is_url(location):
        from caftm.ledger.postgres import PostgresBackend

        return PostgresBackend(str(location), read_only=read_only)
    from caftm.ledger.sqlite import SqliteBackend

    return SqliteBackend(Path(location), read_only=read_only)
