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
        "TransferError",
        "TransferResult",
        "capture_rng_state",
        "decode_tree",
        "encode_tree",
        "latest_complete_step",
        "restore_rng_state",
        "transfer_latest",
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
    assert homes["transfer_latest"] == "caftm.checkpoint.transfer"
    assert homes["latest_complete_step"] == "caftm.checkpoint.layout"
    assert isinstance(checkpoint.FORMAT_VERSION, int) and checkpoint.FORMAT_VERSION >= 1
