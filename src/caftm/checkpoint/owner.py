"""Which job a checkpoint belongs to, so that a job never silently continues another's.

Under a supervisor each checkpoint's manifest records the job that wrote it: its name and a
digest of what defines its training — the worker command (as written in the job file) and
``total_steps``, hashed with sha256 (first 16 hex digits). Threshold, sites, policy or stores
may change between runs of a job; a new name, command or step count makes another job.

A job restores only its own checkpoints. A store whose newest checkpoint belongs to another
job (another name, or the same name with another digest) is refused with one line naming the
owner and the ways out: give the job its own store (``job.stores``), remove or rename the
store, or adopt the checkpoints explicitly with ``job.adopt_checkpoints_of: <owner>``.

Checkpoints without an owner — written by a script run alone (no ``CAFTM_JOB``), or by a caftm
from before owners were recorded — belong to nobody and any job may continue from them, as
before. A script run alone records no owner and checks none.

The supervisor hands the identity to its workers in ``CAFTM_JOB``, ``CAFTM_JOB_DIGEST`` and
``CAFTM_ADOPT_CHECKPOINTS_OF`` (see :mod:`caftm.jobs.protocol`)::

    owner = JobIdentity.from_env()            # None when run alone
    store = CheckpointStore(url, owner=owner) # writes the owner; refuses another job's
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from caftm._protocol_env import ENV_ADOPT_CHECKPOINTS_OF, ENV_JOB, ENV_JOB_DIGEST
from caftm.checkpoint.manifest import Manifest
from caftm.errors import CheckpointError

__all__ = ["ForeignCheckpoints", "JobIdentity", "check_store_owner", "training_digest"]


class ForeignCheckpoints(CheckpointError):
    """A store holds checkpoints of another job (one line: whose, and how to proceed)."""


def training_digest(command: Sequence[str], total_steps: int | None) -> str:
    """The digest of what defines a job's training: its command and ``total_steps``."""
    text = json.dumps({"command": list(command), "total_steps": total_steps}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class JobIdentity:
    """The job a process trains for.

    Attributes:
        name: the job's name.
        digest: :func:`training_digest` of its command and total steps (None: unknown, only
            the name is compared).
        adopts: another job (or this one before a change) whose checkpoints it may continue.
    """

    name: str
    digest: str | None = None
    adopts: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JobIdentity | None:
        """The identity a supervisor set in the environment; None when run alone."""
        environment = os.environ if env is None else env
        name = environment.get(ENV_JOB)
        if not name:
            return None
        return cls(
            name,
            environment.get(ENV_JOB_DIGEST) or None,
            environment.get(ENV_ADOPT_CHECKPOINTS_OF) or None,
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that carry this identity to a worker."""
        env = {ENV_JOB: self.name}
        if self.digest:
            env[ENV_JOB_DIGEST] = self.digest
        if self.adopts:
            env[ENV_ADOPT_CHECKPOINTS_OF] = self.adopts
        return env

    def check(self, manifest: Manifest, *, where: str) -> None:
        """Refuse a checkpoint of another job (an ownerless one passes).

        Raises:
            ForeignCheckpoints: it belongs to another job, or to this name with another digest.
        """
        owner = manifest.job
        if owner is None or owner == self.adopts:
            return
        if owner == self.name and (
            self.digest is None or manifest.job_digest is None or manifest.job_digest == self.digest
        ):
            return
        how = (
            f"give job {self.name} its own store (job.stores), remove or rename {where}, or set "
            f"job.adopt_checkpoints_of: {owner} to continue from them"
        )
        if owner != self.name:
            raise ForeignCheckpoints(
                f"{where} holds checkpoints of job {owner!r} (newest: step {manifest.step}), "
                f"not of job {self.name!r}: {how}"
            )
        raise ForeignCheckpoints(
            f"{where} holds checkpoints of job {owner!r} as it was before its command or "
            f"total_steps changed (newest: step {manifest.step}; digest {manifest.job_digest}, "
            f"now {self.digest}): {how}"
        )


def check_store_owner(
    url: str, identity: JobIdentity, *, storage_options: dict[str, Any] | None = None
) -> None:
    """Refuse a store whose newest complete checkpoint belongs to another job (every rank).

    Reads folder listings and manifests only. A store that does not exist yet passes.

    Raises:
        ForeignCheckpoints: see :meth:`JobIdentity.check`.
        CheckpointError: the store cannot be read.
    """
    from caftm.checkpoint._backend import open_backend
    from caftm.checkpoint.layout import complete_steps, rank_backends, read_manifest

    root = open_backend(url, storage_options=storage_options, filesystem=None)
    stores = [store for _, store in rank_backends(root)]
    step = next(complete_steps(stores), None)
    if step is None:
        return
    for store in stores:
        manifest, _ = read_manifest(store, step)
        identity.check(manifest, where=root.url(root.root))
