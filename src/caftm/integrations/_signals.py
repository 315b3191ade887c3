"""SIGTERM and SIGINT during training: checkpoint at the end of the mini-batch, then stop.

Cloud spot preemption and ``caftm cancel`` send SIGTERM; Ctrl-C sends SIGINT. The first one asks
the training loop to take a complete checkpoint after the current mini-batch and stop with the
outcome ``PREEMPTED``; a second SIGINT aborts at once (Python's usual KeyboardInterrupt). Handlers
are installed only from the main thread and restored when training ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["PreemptionSignals"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionSignals:
    """Installs the handlers; ``on_signal(signum)`` runs on the first signal."""

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}
        self.received: int | None = None

    def install(self) -> None:
        """Take over SIGTERM and SIGINT (main thread only; elsewhere nothing changes)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put the previous handlers back (idempotent)."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return  # a repeated SIGTERM: the checkpoint is already on its way
        self.received = signum
        self._on_signal(signum)
