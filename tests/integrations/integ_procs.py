"""What the scenario tests and their child scripts share: the child's command line and output,
running a child in a fresh Python process, and the three-moves run every integration passes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import integ_workloads as wl
import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent

Params = dict[str, torch.Tensor]
Segment = Callable[[Path, str, tuple[int, ...]], tuple[dict[str, Any], Params]]


def _switch_steps(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s)


def child_parser() -> argparse.ArgumentParser:
    """``STORE PARAMS_OUT --site SITE --switch S1,S2,S3`` (``args.switch``: a tuple of ints)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("store", type=Path)
    parser.add_argument("params_out", type=Path)
    parser.add_argument("--site", default="site-a")
    parser.add_argument("--switch", type=_switch_steps, default="")
    return parser


def child_report(result: dict[str, Any], params: Params, params_out: Path) -> None:
    """A child's output: its parameters to ``params_out``, its outcome as JSON on stdout."""
    save_file(params, str(params_out))
    print(json.dumps(result))


def spawn(script: str, *args: str, timeout_s: float = 240.0) -> subprocess.CompletedProcess[str]:
    """Run ``script`` of this folder with ``args`` in a fresh Python process, to its end."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    return subprocess.run(
        [sys.executable, str(HERE / script), *args],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run_child(script: str, *args: str, timeout_s: float = 240.0) -> dict[str, Any]:
    """Run ``script`` with ``args``; returns the JSON object on its last stdout line."""
    done = spawn(script, *args, timeout_s=timeout_s)
    if done.returncode != 0:
        raise AssertionError(f"{script} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def load_params(path: Path) -> Params:
    """Parameters a child wrote with safetensors."""
    return load_file(str(path))


def assert_three_moves_bit_identical(
    tmp_path: Path,
    script: str,
    run_segment: Segment,
    total_steps: int,
    switch: tuple[int, int, int],
    fresh_process_segments: Collection[int],
) -> Path:
    """Train uninterrupted, then again moved at the ``switch`` steps (four segments, those in
    ``fresh_process_segments`` run by ``script`` in a fresh process); both must end
    bit-identical. Returns the moved run's store."""
    reference, ref_params = run_segment(tmp_path / "reference", "site-a", ())
    assert (reference["steps_done"], reference["outcome"]) == (total_steps, "completed")
    store_dir = tmp_path / "moved"
    site, results = "site-a", []
    for segment in range(4):
        if segment in fresh_process_segments:
            out = tmp_path / f"params-{segment}.safetensors"
            args = ["--site", site, "--switch", ",".join(map(str, switch))]
            result = run_child(script, str(store_dir), str(out), *args)
            params = load_params(out)
        else:
            result, params = run_segment(store_dir, site, switch)
        results.append(result)
        site = result["dest"] or site
    assert [r["start_step"] for r in results] == [0, *switch]
    assert [r["steps_done"] for r in results] == [*switch, total_steps]
    assert [r["outcome"] for r in results] == ["moved", "moved", "moved", "completed"]
    assert [r["dest"] for r in results] == ["site-b", "site-a", "site-b", None]
    wl.assert_bit_identical(ref_params, params)
    return store_dir
