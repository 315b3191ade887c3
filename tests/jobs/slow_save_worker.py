"""The demo worker with a checkpoint held open: before writing a manifest (the last file of a
checkpoint) at step ≥ ``$SLOW_SAVE_FROM`` it writes its step to ``$SLOW_SAVE_MARKER`` and waits
(up to 300 s) for the test to kill it in the middle of that checkpoint. Once the marker exists,
later legs save without waiting.

    python slow_save_worker.py --config JOB.yaml --checkpoint-every N
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from caftm.checkpoint._backend import LocalBackend
from caftm.demo.worker import main

_write_file = LocalBackend.write_file


def _slow_write(self: LocalBackend, path: str, buffers: Sequence[memoryview]) -> tuple[int, str]:
    name = Path(path)
    step = int(name.parent.name.rsplit("-", 1)[1]) if name.parent.name.startswith("step-") else 0
    marker = Path(os.environ["SLOW_SAVE_MARKER"])
    slow_from = int(os.environ.get("SLOW_SAVE_FROM", "0"))
    if name.name == "MANIFEST.json" and step >= slow_from and not marker.exists():
        marker.write_text(str(step), encoding="utf-8")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the test kills this process now
            time.sleep(0.01)
    return _write_file(self, path, buffers)


LocalBackend.write_file = _slow_write  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
