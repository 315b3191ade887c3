"""The worker protocol: what a supervisor tells a worker, and how a worker says how it ended.

The supervisor starts each leg of a job with these environment variables (a script written with
:class:`~caftm.integrations.torch.CarbonAwareTraining` reads them itself; run alone, none is set):

======================  ==========================================================================
variable                meaning
======================  ==========================================================================
``CAFTM_JOB``           the job's name
``CAFTM_JOB_DIGEST``    digest of the job's command and total_steps (its checkpoints' owner)
``CAFTM_ADOPT_CHECKPOINTS_OF``  a job whose checkpoints it may continue (``adopt_checkpoints_of``)
``CAFTM_LEG``           the leg's number (1, 2, ...)
``CAFTM_SITE``          the site this leg runs at (overrides the config's ``site``)
``CAFTM_CHECKPOINT_URL``  the site's checkpoint store (overrides ``checkpoint.url``)
``CAFTM_LEDGER``        the ledger every process of the job writes to
``CAFTM_OUTCOME_FILE``  where the worker writes its :class:`StopRequest` as JSON when it ends
``CAFTM_STATUS_FILE``   where the worker keeps a small live status (step, state, carbon so far)
``CAFTM_EXCLUDE_SITES``  sites this leg must not move to (comma-separated; e.g. a full store)
``CAFTM_CLOCK``         an accelerated clock shared by the job (see :mod:`caftm.clock`)
``CAFTM_GRACE_S``       seconds the worker has to checkpoint after SIGTERM/SIGINT
``CAFTM_SITE_STORES``   every site's checkpoint store (JSON object): a moving worker may write its
                        last checkpoint straight into the destination's (``job.direct_moves``)
``CAFTM_STANDBY_FILE``  set on a worker started before its move is done: it waits for the go in
``CAFTM_STANDBY_TOKEN``  this file before restoring (:mod:`caftm.jobs.standby`)
======================  ==========================================================================

Checkpoints record their job, and a worker restores only its own (:mod:`caftm.checkpoint.owner`).
(The names are defined once in :mod:`caftm._protocol_env`, which the controller's config reads too.)

How a leg ended is read from the outcome file first (rank 0 writes it, so launchers such as
``torchrun`` that fold exit codes do not matter); without one, exit code 0 means completed and
anything else a crash. The outcomes are :class:`Outcome`'s; what the supervisor does with each
is the table in :mod:`caftm.jobs.outcomes`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from caftm._files import atomic_write_json
from caftm._protocol_env import (
    ENV_ADOPT_CHECKPOINTS_OF,
    ENV_CHECKPOINT_URL,
    ENV_EXCLUDE_SITES,
    ENV_GRACE_S,
    ENV_JOB,
    ENV_JOB_DIGEST,
    ENV_LEDGER,
    ENV_LEG,
    ENV_OUTCOME_FILE,
    ENV_SITE,
    ENV_SITE_STORES,
    ENV_STANDBY_FILE,
    ENV_STANDBY_TOKEN,
    ENV_STATUS_FILE,
    worker_leg,
)
from caftm.errors import ExecutorError

__all__ = [
    "ENV_ADOPT_CHECKPOINTS_OF",
    "ENV_CHECKPOINT_URL",
    "ENV_EXCLUDE_SITES",
    "ENV_GRACE_S",
    "ENV_JOB",
    "ENV_JOB_DIGEST",
    "ENV_LEDGER",
    "ENV_LEG",
    "ENV_OUTCOME_FILE",
    "ENV_SITE",
    "ENV_SITE_STORES",
    "ENV_STANDBY_FILE",
    "ENV_STANDBY_TOKEN",
    "ENV_STATUS_FILE",
    "Outcome",
    "StopRequest",
    "read_outcome",
    "read_status",
    "worker_leg",
    "write_outcome",
    "write_status",
]


class Outcome(StrEnum):
    """How a run segment (a leg) ended, or that it is still running."""

    RUNNING = "running"
    COMPLETED = "completed"  # training reached its end
    MOVED = "moved"  # checkpointed; restart at ``dest``
    PAUSED = "paused"  # checkpointed; restart here at ``until_s`` or later
    PREEMPTED = "preempted"  # SIGTERM/SIGINT: checkpointed; restart here or at a better site


@dataclass(frozen=True, slots=True)
class StopRequest:
    """Why and where a run segment stopped after ``step`` completed steps.

    Attributes:
        outcome: ``MOVED``, ``PAUSED``, ``PREEMPTED`` (or ``COMPLETED`` in an outcome file).
        step: completed steps when the checkpoint was taken.
        dest: the destination site (``MOVED``).
        until_s: POSIX time (s) before which a paused job should not restart (``PAUSED``).
    """

    outcome: Outcome
    step: int
    dest: str | None = None
    until_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for executors)."""
        return {
            "outcome": self.outcome.value,
            "step": self.step,
            "dest": self.dest,
            "until_s": self.until_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "outcome") -> StopRequest:
        """Parse :meth:`to_dict`'s form.

        Raises:
            ExecutorError: a field is missing or has the wrong type.
        """
        try:
            outcome = Outcome(data["outcome"])
            step = data["step"]
            dest = data.get("dest")
            until_s = data.get("until_s")
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ValueError(f"step {step!r}")
            if dest is not None and not isinstance(dest, str):
                raise ValueError(f"dest {dest!r}")
            if until_s is not None and not (
                isinstance(until_s, int | float) and math.isfinite(until_s)
            ):
                raise ValueError(f"until_s {until_s!r}")
        except (KeyError, ValueError, TypeError) as e:
            raise ExecutorError(f"malformed {where}: {e}") from None
        if outcome is Outcome.MOVED and not dest:
            raise ExecutorError(f"malformed {where}: a move without a destination")
        return cls(outcome, step, dest, None if until_s is None else float(until_s))


def write_outcome(request: StopRequest, path: str | os.PathLike[str] | None = None) -> bool:
    """Write ``request`` to ``path`` (default: ``$CAFTM_OUTCOME_FILE``); False when neither."""
    target = path if path is not None else os.environ.get(ENV_OUTCOME_FILE)
    if not target:
        return False
    atomic_write_json(Path(target), request.to_dict())
    return True


def read_outcome(path: str | os.PathLike[str]) -> StopRequest | None:
    """The outcome a worker wrote, or None when it wrote none.

    Raises:
        ExecutorError: the file exists but is malformed.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ExecutorError(f"cannot read worker outcome {path}: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ExecutorError(f"malformed worker outcome {path}: {e}") from None
    if not isinstance(data, dict):
        raise ExecutorError(f"malformed worker outcome {path}: not an object")
    return StopRequest.from_dict(data, where=f"worker outcome {path}")


def write_status(status: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> None:
    """Write the worker's live status (best effort: a failed write never stops training)."""
    target = path if path is not None else os.environ.get(ENV_STATUS_FILE)
    if not target:
        return
    with contextlib.suppress(OSError):
        atomic_write_json(Path(target), dict(status))


def read_status(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The worker's live status, or None when there is none (yet) or it cannot be read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
