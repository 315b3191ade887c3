"""caftm.checkpoint: bit-exact, verified training checkpoints on local disk or object storage.

Name what makes the run resumable once, then save and restore it::

    from caftm.checkpoint import CheckpointStore, ResumableSampler, TrainingState

    sampler = ResumableSampler(len(dataset), shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler, generator=torch.Generator())
    state = TrainingState(model=model, optimizer=opt, scheduler=sched, scaler=scaler,
                          sampler=sampler, extra={"controller": {...}})
    store = CheckpointStore("s3://bucket/run-7", keep_last=3)   # or a local path
    info = store.restore_latest(state)     # newest verified checkpoint, or None
    step = info.step if info else 0
    ...
    store.save(state, step=step)           # synchronous, atomic, durable
    handle = store.save_async(state, step=step)   # snapshot now, write in the background
    handle.wait()

Tensors go to one safetensors file, everything else to type-tagged JSON, and a manifest with
sizes and sha256 is written last; nothing is ever unpickled, and checksums are verified before
anything is parsed. Global RNGs, optimiser, scheduler, GradScaler and sampler position are all
captured, so a resumed run continues bit-identically (use ``torch.use_deterministic_algorithms``
and give the DataLoader its own ``generator=``).

Between stores, :func:`transfer_latest` moves the newest complete step (verified, resumable),
and :func:`latest_complete_step` names it without reading any checksum.
"""

from __future__ import annotations

from caftm.checkpoint.layout import latest_complete_step
from caftm.checkpoint.manifest import FORMAT_VERSION, FileEntry, Manifest
from caftm.checkpoint.rng import capture_rng_state, restore_rng_state
from caftm.checkpoint.sampler import ResumableSampler
from caftm.checkpoint.serialize import EncodedTree, decode_tree, encode_tree
from caftm.checkpoint.state import Stateful, TrainingState
from caftm.checkpoint.store import CheckpointInfo, CheckpointStore, SaveHandle
from caftm.checkpoint.transfer import TransferError, TransferResult, transfer_latest

__all__ = [
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
