"""A CPU training run interrupted 3 times, each resume in a fresh process, ends bit-identical."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ckpt_helpers import HERE, PYTHON, assert_bit_identical, choice_rng

TOTAL_STEPS = 200  # a little over 3 epochs of 64 steps
EVERY = 10


def child(store: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, str(HERE / "train_child.py"), store, str(TOTAL_STEPS), str(EVERY), *args],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], expected_code: int) -> int:
    out, err = process.communicate(timeout=120)
    assert process.returncode == expected_code, err
    return int(out.split()[1])  # "resumed STEP"


@pytest.mark.slow  # four fresh processes
def test_three_interruptions_resume_bit_identical(tmp_path: Path) -> None:
    rng, seed = choice_rng()
    stops = sorted(rng.sample(range(5, TOTAL_STEPS - 5), 3))
    modes = ["crash", "suspend", "crash"]
    store = str(tmp_path / "store")
    reference = child("-", "--final", str(tmp_path / "reference.safetensors"))

    resumed_at = []
    for stop, mode in zip(stops, modes, strict=True):
        process = child(store, "--exit-at", str(stop), "--mode", mode)
        resumed_at.append(finish(process, 3 if mode == "crash" else 0))
    resumed_at.append(finish(child(store, "--final", str(tmp_path / "resumed.safetensors")), 0))
    assert finish(reference, 0) == 0

    # crash: resume from the newest checkpoint before it (periodic, or the suspend's own when
    # no periodic one came after it); suspend: exactly where it stopped
    expected = [0, stops[0] // EVERY * EVERY, stops[1], max(stops[1], stops[2] // EVERY * EVERY)]
    assert resumed_at == expected, f"seed {seed}, stops {stops}"
    assert_bit_identical(tmp_path / "reference.safetensors", tmp_path / "resumed.safetensors")
    assert len(list((tmp_path / "store").iterdir())) == 3  # keep_last
