"""Helpers shared by the checkpoint tests: an independent manifest check, tensor comparison."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


def choice_rng() -> tuple[random.Random, int]:
    """A random generator for test choices, with its seed (CAFTM_TEST_SEED pins it)."""
    seed = int(os.environ.get("CAFTM_TEST_SEED", random.SystemRandom().randrange(2**31)))
    return random.Random(seed), seed


def tree_checksum(data: bytes) -> str:
    """The manifest's checksum, computed plainly: sha256 of each 64 MiB block, then sha256 of
    the concatenated block digests; a file of at most one block has its plain sha256."""
    block = 64 * 2**20
    if len(data) <= block:
        return hashlib.sha256(data).hexdigest()
    digests = b"".join(
        hashlib.sha256(data[i : i + block]).digest() for i in range(0, len(data), block)
    )
    return hashlib.sha256(digests).hexdigest()


def newest_complete_step(root: Path) -> int | None:
    """The newest step whose manifest lists files that exist with matching size and sha256.

    Written independently of caftm.checkpoint so the tests do not trust the code under test.
    """
    steps = sorted(
        (int(p.name.removeprefix("step-")) for p in root.glob("step-*") if p.is_dir()),
        reverse=True,
    )
    for step in steps:
        directory = root / f"step-{step:09d}"
        try:
            manifest = json.loads((directory / "MANIFEST.json").read_bytes())
            ok = manifest["format_version"] == 2 and manifest["step"] == step
            for entry in manifest["files"]:
                data = (directory / entry["name"]).read_bytes()
                ok = ok and len(data) == entry["size_bytes"]
                ok = ok and tree_checksum(data) == entry["sha256"]
        except (OSError, ValueError, KeyError):
            ok = False
        if ok:
            return step
    return None


def assert_bit_identical(path_a: Path, path_b: Path) -> None:
    a, b = load_file(str(path_a)), load_file(str(path_b))
    assert sorted(a) == sorted(b)
    different = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different}"
