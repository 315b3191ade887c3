"""Where checkpoints lie in a store, and which steps are complete: the one reader of the layout.

A store's root holds one folder per step; a job that ran under DDP holds one such store per
rank instead, in ``rank-NNNNN/`` folders numbered from 0::

    <root>/step-000000123/MANIFEST.json            one store
    <root>/rank-00000/step-000000123/MANIFEST.json  DDP: one store per rank

A step is *complete* when its manifest parses and names that step (on every rank under DDP).
Scanning reads only manifests, never the data files' checksums::

    step = latest_complete_step("s3://bucket/job-7", storage_options={...})   # or None
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from caftm.checkpoint._backend import Backend, open_backend
from caftm.checkpoint.manifest import MANIFEST_NAME, Manifest
from caftm.errors import CheckpointError

__all__ = [
    "DamagedManifest",
    "complete_steps",
    "latest_complete_step",
    "rank_backends",
    "rank_dir_name",
    "read_manifest",
    "step_dir_name",
    "step_numbers",
]

_STEP_DIR = re.compile(r"^step-(\d{9,})$")
_RANK_DIR = re.compile(r"^rank-(\d{5,})$")


class DamagedManifest(CheckpointError):
    """A step's manifest is absent, malformed or names another step: the step is incomplete."""


def step_dir_name(step: int) -> str:
    """The folder name of ``step`` in a store (``step-000000123``)."""
    return f"step-{step:09d}"


def rank_dir_name(rank: int) -> str:
    """The folder name of ``rank``'s store under a DDP job's root (``rank-00001``)."""
    return f"rank-{rank:05d}"


def step_numbers(backend: Backend) -> list[int]:
    """Steps with a folder in the store at ``backend``'s root, complete or not, oldest first."""
    found = (_STEP_DIR.match(name) for name in backend.list_names(backend.root))
    return sorted(int(match.group(1)) for match in found if match is not None)


def read_manifest(backend: Backend, step: int) -> tuple[Manifest, bytes]:
    """The parsed manifest of ``step`` and its bytes as stored.

    Raises:
        DamagedManifest: It is absent, malformed, or names another step.
        CheckpointError: It cannot be read (permissions, network).
    """
    where = backend.url(backend.join(step_dir_name(step)))
    try:
        data = backend.read_bytes(backend.join(step_dir_name(step), MANIFEST_NAME))
    except FileNotFoundError as e:
        raise DamagedManifest(f"{where} has no {MANIFEST_NAME} (incomplete checkpoint)") from e
    except OSError as e:
        raise CheckpointError(f"cannot read {where}/{MANIFEST_NAME}: {e}") from e
    try:
        manifest = Manifest.from_json(data, where=where)
    except CheckpointError as e:
        raise DamagedManifest(str(e)) from e
    if manifest.step != step:
        raise DamagedManifest(f"{where}/{MANIFEST_NAME} says step {manifest.step}")
    return manifest, data


def rank_backends(backend: Backend) -> list[tuple[str | None, Backend]]:
    """The stores under a job's root: each rank's under DDP, else the root itself (named None).

    Raises:
        CheckpointError: The rank folders are not numbered 0, 1, ... without a gap.
    """
    found = (_RANK_DIR.match(name) for name in backend.list_names(backend.root))
    numbers = sorted(int(match.group(1)) for match in found if match is not None)
    if not numbers:
        return [(None, backend)]
    if numbers != list(range(len(numbers))):
        missing = sorted(set(range(max(numbers) + 1)) - set(numbers))
        raise CheckpointError(
            f"{backend.url(backend.root)} holds rank sub-stores {numbers} but not rank {missing[0]}"
        )
    return [(rank_dir_name(n), backend.subdir(rank_dir_name(n))) for n in numbers]


def complete_steps(stores: Sequence[Backend]) -> Iterator[int]:
    """Steps complete in every one of ``stores``, newest first (manifests read lazily).

    Raises:
        CheckpointError: A folder or manifest cannot be read (not: a manifest is damaged).
    """
    common: set[int] | None = None
    for store in stores:
        steps = set(step_numbers(store))
        common = steps if common is None else common & steps
    for step in sorted(common or (), reverse=True):
        try:
            for store in stores:
                read_manifest(store, step)
        except DamagedManifest:
            continue
        yield step


def latest_complete_step(
    url: str | os.PathLike[str],
    *,
    storage_options: dict[str, Any] | None = None,
    filesystem: Any = None,
) -> int | None:
    """The newest step complete in the store at ``url`` (on every rank under DDP), or None.

    Cheap: reads folder listings and manifests, never checksums; a restore still verifies.

    Raises:
        ConfigError: ``url`` or the options are malformed.
        CheckpointError: The store cannot be opened or read, or a DDP rank store is missing.
    """
    root = open_backend(url, storage_options=storage_options, filesystem=filesystem)
    stores = [store for _, store in rank_backends(root)]
    return next(complete_steps(stores), None)
