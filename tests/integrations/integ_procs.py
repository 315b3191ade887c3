"""Run a child script of this folder in a fresh Python process and read its JSON outcome."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent


def run_child(script: str, *args: str, timeout_s: float = 240.0) -> dict[str, Any]:
    """Run ``script`` with ``args``; returns the JSON object on its last stdout line."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    done = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{script} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def load_params(path: Path) -> dict[str, torch.Tensor]:
    """Parameters a child wrote with safetensors."""
    return load_file(str(path))
