"""Fork server for the kill -9 test: imports torch once, forks a fresh trainer per command.

Protocol, one line each way:
    stdin  ``run STORE LOG EVERY PADDING_BYTES UNTIL_STEP FINAL|-``  → fork a trainer
    stdout ``pid PID``   once forked;   ``exit STATUS``   once the trainer has ended.

The trainer restores the newest checkpoint, appends ``resume STEP`` to LOG, then trains and
checkpoints every EVERY steps, appending ``begin STEP`` before and ``done STEP`` after each save
returns (each line fsynced). It stops at UNTIL_STEP (writing final tensors to FINAL) unless it
is killed first. ``STORE`` ``-`` trains without any checkpointing (the reference run).
"""

from __future__ import annotations

import os
import sys

from ckpt_training import make_run, set_deterministic, train, write_final

from caftm.checkpoint import CheckpointStore


def log_line(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


class LoggingStore(CheckpointStore):
    def __init__(self, url: str, log_path: str) -> None:
        super().__init__(url, keep_last=3)
        self.log_path = log_path

    def save(self, state, *, step):  # type: ignore[no-untyped-def]
        log_line(self.log_path, f"begin {step}")
        info = super().save(state, step=step)
        log_line(self.log_path, f"done {step}")
        return info


def trainer(
    store_url: str, log_path: str, every: int, padding: int, until: int, final: str
) -> None:
    run = make_run(schedule_steps=1000, padding_bytes=padding)
    store = LoggingStore(store_url, log_path) if store_url != "-" else None
    info = store.restore_latest(run.state) if store is not None else None
    start = info.step if info is not None else 0
    if store is not None:
        log_line(log_path, f"resume {start}")
    train(run, start_step=start, total_steps=until, store=store, checkpoint_every=every)
    if final != "-":
        write_final(run, final)


def main() -> None:
    set_deterministic()
    for line in sys.stdin:
        command, *args = line.split()
        if command != "run":
            continue
        store_url, log_path, every, padding, until, final = args
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                trainer(store_url, log_path, int(every), int(padding), int(until), final)
            except BaseException as e:
                print(f"trainer failed: {e!r}", file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
