"""The demo worker with its move's checkpoint held open: before writing a manifest (the last
file of a checkpoint) of step ≥ ``$HOLD_SAVE_FROM`` it waits until ``$HOLD_SAVE_RELEASE``
exists (up to 300 s), so a test sees what happens while a move's checkpoint is written.

    python held_save_worker.py --config JOB.yaml --checkpoint-every N
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


def _held_write(self: LocalBackend, path: str, buffers: Sequence[memoryview]) -> tuple[int, str]:
    name = Path(path)
    step = int(name.parent.name.rsplit("-", 1)[1]) if name.parent.name.startswith("step-") else 0
    release = Path(os.environ["HOLD_SAVE_RELEASE"])
    if name.name == "MANIFEST.json" and step >= int(os.environ.get("HOLD_SAVE_FROM", "0")):
        deadline = time.monotonic() + 300
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return _write_file(self, path, buffers)


LocalBackend.write_file = _held_write  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
