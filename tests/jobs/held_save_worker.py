"""The demo worker with a checkpoint held open: before writing a manifest (the last file of a
checkpoint) of step ≥ ``$HOLD_SAVE_FROM`` it waits, up to 300 s, so that a test sees (or
kills) what happens while that checkpoint is written.

- ``$HOLD_SAVE_RELEASE``: the wait ends once this file exists (without it: only a kill or the
  300 s end it);
- ``$HOLD_SAVE_MARKER``: the worker first writes the held step to this file; once it exists,
  later checkpoints (of this leg or the next) are not held.

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
_HOLD_S = 300.0


def _hold(step: int) -> None:
    """Wait before the manifest of ``step`` as the environment says (or return at once)."""
    if step < int(os.environ.get("HOLD_SAVE_FROM", "0")):
        return
    marker = os.environ.get("HOLD_SAVE_MARKER")
    if marker:
        if Path(marker).exists():
            return  # held once already
        Path(marker).write_text(str(step), encoding="utf-8")
    release = os.environ.get("HOLD_SAVE_RELEASE")
    deadline = time.monotonic() + _HOLD_S
    while time.monotonic() < deadline and not (release and Path(release).exists()):
        time.sleep(0.01)


def _held_write(self: LocalBackend, path: str, buffers: Sequence[memoryview]) -> tuple[int, str]:
    name = Path(path)
    if name.name == "MANIFEST.json" and name.parent.name.startswith("step-"):
        _hold(int(name.parent.name.rsplit("-", 1)[1]))
    return _write_file(self, path, buffers)


LocalBackend.write_file = _held_write  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
