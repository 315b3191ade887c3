"""Events that change the fate of a user's job reach their terminal, even with logging unset.

caftm logs through :mod:`logging` and stays quiet by default, except here: a move, a pause, a
preemption, a checkpoint skipped as damaged or a fresh start although checkpoints exist is logged
on the ``caftm.notice`` logger, whose own handler prints one line to stderr *unless* the
application configured logging (a handler on the root logger), which then receives it as usual.
``logging.getLogger("caftm.notice").setLevel(logging.ERROR)`` silences it.

A worker under ``caftm run`` prints to its leg's log, which the user does not watch: it keeps
its warnings (:class:`NoticeRecorder`) and reports them in its live status, from which the
supervisor prints them on its own terminal, whatever the executor.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

__all__ = ["NOTICE_LOGGER", "NoticeRecorder", "notice"]

NOTICE_LOGGER = "caftm.notice"


class _TerminalHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Prints to stderr only while the application has not configured logging itself."""

    def __init__(self) -> None:
        super().__init__()

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return  # the record propagates to the application's own handlers
        self.stream = sys.stderr  # the current stderr (tests and CLIs replace it)
        super().emit(record)


_logger = logging.getLogger(NOTICE_LOGGER)
if not any(isinstance(h, _TerminalHandler) for h in _logger.handlers):
    _handler = _TerminalHandler()
    _handler.setFormatter(logging.Formatter("caftm: %(message)s"))
    _logger.addHandler(_handler)
if _logger.level == logging.NOTSET:
    _logger.setLevel(logging.INFO)


def notice(message: str, *args: object, warning: bool = False) -> None:
    """Log a fate-changing event (``%``-style ``args``) so that it reaches the terminal."""
    _logger.log(logging.WARNING if warning else logging.INFO, message, *args)


class NoticeRecorder(logging.Handler):
    """Keeps the warnings logged on the notice logger while attached (the first ``limit``).

    Attributes:
        lines: the messages, oldest first.
        on_record: called after each new line (e.g. to write the worker's status at once).
    """

    def __init__(self, limit: int = 20) -> None:
        super().__init__(level=logging.WARNING)
        self.limit = limit
        self.lines: list[str] = []
        self.on_record: Callable[[], None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.add(record.getMessage())

    def add(self, line: str) -> None:
        """Keep one line (on one line, at most 500 characters), as if it had been logged."""
        if len(self.lines) >= self.limit:
            return
        self.lines.append(" ".join(line.split())[:500])
        if self.on_record is not None:
            self.on_record()

    def attach(self) -> NoticeRecorder:
        """Start recording; returns itself."""
        _logger.addHandler(self)
        return self

    def detach(self) -> None:
        """Stop recording (the lines stay)."""
        _logger.removeHandler(self)

    @contextlib.contextmanager
    def recording(self) -> Iterator[NoticeRecorder]:
        """Record while in the block."""
        self.attach()
        try:
            yield self
        finally:
            self.detach()
