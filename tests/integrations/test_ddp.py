"""Two processes, DDP on gloo: rank 0 decides, both ranks stop at the same step, and the
resumed run ends bit-identical (every rank) to an uninterrupted 2-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import integ_workloads as wl
import pytest
from integ_procs import HERE, load_params

from caftm.errors import ConfigError
from caftm.integrations.ddp import _decode_dest, _encode, world

WORLD = 2


def run_pair(
    tmp_path: Path, tag: str, store: Path, site: str, segments: int, switch: str
) -> list[dict[str, Any]]:
    """Both ranks in fresh processes; returns each rank's JSON output."""
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", PYTHONHASHSEED="0")
    init = f"file://{tmp_path / f'pg-{tag}'}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "ddp_child.py"),
                str(store),
                str(tmp_path / f"params-{tag}-{rank}.st"),
                "--rank",
                str(rank),
                "--world",
                str(WORLD),
                "--init",
                init,
                "--site",
                site,
                "--segments",
                str(segments),
                "--switch",
                switch,
            ],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(WORLD)
    ]
    outputs = []
    try:
        for rank, proc in enumerate(procs):
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, f"rank {rank} failed:\n{err[-4000:]}"
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:  # a failed or hung rank must not leave its peer waiting
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outputs


@pytest.mark.slow
def test_two_ranks_move_three_times_bit_identical(tmp_path: Path) -> None:
    reference = run_pair(tmp_path, "ref", tmp_path / "reference", "site-a", 1, "")
    assert [o["results"][0]["outcome"] for o in reference] == ["completed", "completed"]

    switch = (4, 9, 15)  # 9 and 15 are mid-epoch (6 batches per rank and epoch), 4 too
    text = ",".join(map(str, switch))
    store = tmp_path / "moved"
    # segments 1-2 in one pair of processes (resumed in-process), 3-4 in a fresh pair
    first = run_pair(tmp_path, "a", store, "site-a", 2, text)
    second = run_pair(tmp_path, "b", store, first[0]["site"], 2, text)
    for rank in range(WORLD):
        results = first[rank]["results"] + second[rank]["results"]
        assert [r["start_step"] for r in results] == [0, *switch]
        assert [r["steps_done"] for r in results] == [*switch, 20]
        assert [r["outcome"] for r in results] == ["moved", "moved", "moved", "completed"]
        assert [r["dest"] for r in results] == ["site-b", "site-a", "site-b", None]
        wl.assert_bit_identical(
            load_params(tmp_path / f"params-ref-{rank}.st"),
            load_params(tmp_path / f"params-b-{rank}.st"),
        )
    assert sorted(p.name for p in store.iterdir()) == ["rank-00000", "rank-00001"]


def test_command_encoding_round_trips() -> None:
    message = _encode(3.0, 1, 1.5e9, "gcp:europe-west1")
    assert _decode_dest(message) == "gcp:europe-west1"
    assert (message[0].item(), message[1].item(), message[2].item()) == (3.0, 1.0, 1.5e9)
    with pytest.raises(ConfigError, match="longer than"):
        _encode(3.0, dest="x" * 65)


def test_world_without_a_process_group() -> None:
    assert world() == (0, 1)
