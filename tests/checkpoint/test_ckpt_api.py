"""The public API of caftm.checkpoint is short, sorted and importable."""

from __future__ import annotations

import caftm.checkpoint as checkpoint


def test_public_names_are_pinned_and_sorted() -> None:
    assert checkpoint.__all__ == [
        "FORMAT_VERSION",
        "CheckpointInfo",
        "CheckpointStore",
        "EncodedTree",
        "FileEntry",
        "Manifest",
        "ResumableSampler",
        "SaveHandle",
        "Stateful",
        "TrainingState",
        "capture_rng_state",
        "decode_tree",
        "encode_tree",
        "restore_rng_state",
    ]
    assert checkpoint.__all__ == sorted(checkpoint.__all__, key=lambda n: (not n.isupper(), n))
    # each public name is the package's own object, from the module that defines it
    homes = {
        name: getattr(checkpoint, name).__module__
        for name in checkpoint.__all__
        if name != "FORMAT_VERSION"
    }
    assert {name for name, home in homes.items() if not home.startswith("caftm.checkpoint.")} == (
        set()
    )
    assert homes["CheckpointStore"] == "caftm.checkpoint.store"
    assert isinstance(checkpoint.FORMAT_VERSION, int) and checkpoint.FORMAT_VERSION >= 1
