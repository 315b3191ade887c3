"""100 kill -9's at random moments, mostly mid-checkpoint: every resume loads the last complete
checkpoint, and the run finally ends bit-identical to one that was never interrupted.

A fork server (kill_zygote.py) imports torch once and forks a fresh trainer per round, so a
round costs milliseconds of start-up instead of seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ckpt_helpers import HERE, PYTHON, assert_bit_identical, choice_rng, newest_complete_step

KILLS = 100
EVERY = 2
PADDING_BYTES = 4 * 2**20  # so that each checkpoint write takes a few milliseconds
MAX_DELAY_S = 0.3  # after the trainer has restored; one step + checkpoint takes 20-100 ms


class Zygote:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [PYTHON, str(HERE / "kill_zygote.py")],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def start(self, store: str, log: Path, until: int, final: str = "-") -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"run {store} {log} {EVERY} {PADDING_BYTES} {until} {final}\n")
        self.process.stdin.flush()
        word, pid = self.process.stdout.readline().split()
        assert word == "pid"
        return int(pid)

    def wait_exit(self) -> int:
        assert self.process.stdout is not None
        word, code = self.process.stdout.readline().split()
        assert word == "exit"
        return int(code)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def read_log(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(w, int(n)) for w, n in (line.split() for line in log.read_text().splitlines())]


def wait_for_lines(log: Path, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(read_log(log)) < count:
        assert time.monotonic() < deadline, "trainer did not start"
        time.sleep(0.002)


@pytest.mark.slow
def test_hundred_kills_resume_last_complete_and_finish_bit_identical(tmp_path: Path) -> None:
    rng, seed = choice_rng()
    store, log = tmp_path / "store", tmp_path / "events.log"
    zygote = Zygote()
    try:
        expected_resume = 0
        killed_mid_save = 0
        for round_index in range(KILLS):
            lines_before = len(read_log(log))
            pid = zygote.start(str(store), log, until=10**9)
            if rng.random() < 0.9:  # most kills while training and saving, some during restore
                wait_for_lines(log, lines_before + 1)
            time.sleep(rng.uniform(0.0, MAX_DELAY_S))
            os.kill(pid, signal.SIGKILL)
            assert zygote.wait_exit() == -signal.SIGKILL, f"round {round_index} (seed {seed})"
            events = read_log(log)[lines_before:]
            if events:
                assert events[0] == ("resume", expected_resume), f"round {round_index}, seed {seed}"
            done = [n for w, n in events if w == "done"]
            begun = [n for w, n in events if w == "begin"]
            if events and events[-1][0] == "begin":
                killed_mid_save += 1
            # what any resume must now load: the newest complete checkpoint on disk, which is
            # the last save that returned, or the one being written if it got its manifest out
            newest = newest_complete_step(store)
            floor = done[-1] if done else expected_resume
            allowed = {floor} | ({begun[-1]} if begun else set())
            assert (newest or 0) in allowed, f"round {round_index}: {newest} not in {allowed}"
            expected_resume = newest or 0
        assert killed_mid_save >= 10, f"only {killed_mid_save} kills landed inside a save"
        print(f"{KILLS} kills, {killed_mid_save} inside a save, reached step {expected_resume}")

        finish_at = expected_resume + 2 * EVERY + 1
        lines_before = len(read_log(log))
        zygote.start(str(store), log, until=finish_at, final=str(tmp_path / "resumed.st"))
        assert zygote.wait_exit() == 0
        assert read_log(log)[lines_before] == ("resume", expected_resume)
        zygote.start("-", log, until=finish_at, final=str(tmp_path / "reference.st"))
        assert zygote.wait_exit() == 0
    finally:
        zygote.close()
    assert_bit_identical(tmp_path / "reference.st", tmp_path / "resumed.st")
    assert len([p for p in store.iterdir() if (p / "MANIFEST.json").exists()]) <= 3
