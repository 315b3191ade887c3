"""Write-behind for a ledger on a server: a worker's windows and events leave in batches, so a
training step never waits on a network round trip.

Rows are queued in memory and written by a background thread, together in one transaction,
every :data:`FLUSH_S` or as soon as :data:`BATCH_ROWS` are waiting; a read through the same
:class:`~caftm.ledger.Ledger`, the end of a run and ``close()`` flush first, so a process always
reads what it wrote. A batch that fails (the server restarting) stays queued and is tried again
at the next flush; past :data:`MAX_QUEUED` rows the oldest are dropped and counted (the
controller reports them as lost records).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from caftm.errors import LedgerError

__all__ = ["BATCH_ROWS", "FLUSH_S", "MAX_QUEUED", "WriteBehind"]

log = logging.getLogger(__name__)

FLUSH_S = 0.25
BATCH_ROWS = 500
MAX_QUEUED = 200_000

Row = tuple[object, ...]
Writer = Callable[[str, list[Row]], None]


class WriteBehind:
    """Queued inserts, by statement, written by a daemon thread (see the module docstring).

    Args:
        write: writes one statement's rows in one transaction (raises LedgerError).
    """

    def __init__(self, write: Writer) -> None:
        self._write = write
        self._queue: list[tuple[str, Row]] = []
        self._lock = threading.Lock()  # the queue
        self._flushing = threading.Lock()  # one flush at a time, in queue order
        self._wake = threading.Event()
        self._closed = False
        self.dropped = 0
        """Rows dropped because the queue overflowed while the server failed."""
        self._thread = threading.Thread(target=self._loop, name="caftm-ledger-writer", daemon=True)
        self._thread.start()

    def add(self, sql: str, row: Row) -> None:
        """Queue one row of ``sql`` (returns at once)."""
        with self._lock:
            self._queue.append((sql, row))
            if len(self._queue) > MAX_QUEUED:
                del self._queue[0]
                self.dropped += 1
            full = len(self._queue) >= BATCH_ROWS
        if full:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows queued and not written yet."""
        return len(self._queue)

    def flush(self) -> None:
        """Write everything queued now.

        Raises:
            LedgerError: the database failed (the rows stay queued).
        """
        with self._flushing:
            with self._lock:
                taken, self._queue = self._queue, []
            done = 0
            try:
                while done < len(taken):
                    sql = taken[done][0]
                    end = done
                    while end < len(taken) and taken[end][0] == sql:
                        end += 1
                    self._write(sql, [row for _, row in taken[done:end]])
                    done = end
            except LedgerError:
                with self._lock:  # back at the front, in order, for the next try
                    self._queue[:0] = taken[done:]
                raise

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            if not self._queue:
                continue
            try:
                self.flush()
            except LedgerError as e:
                log.warning("ledger batch of %d rows not written yet: %s", self.pending, e)

    def close(self) -> None:
        """Stop the thread after a last flush.

        Raises:
            LedgerError: the last flush failed (its rows are lost; counted in :attr:`dropped`).
        """
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        try:
            self.flush()
        except LedgerError:
            self.dropped += self.pending
            raise
