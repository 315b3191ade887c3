"""Executors by name: where a job's legs run.

=========  ==========================================================================
name       what
=========  ==========================================================================
local      subprocesses on this machine (the default; no extra needed)
ray        each leg a Ray job (Jobs API) pinned to the site's nodes (``caftm[ray]``)
skypilot   each leg a SkyPilot managed job in the site's cloud region (``caftm[skypilot]``)
=========  ==========================================================================

For tests, :class:`~caftm.jobs.executors.scripted.ScriptedExecutor` runs no worker: each leg ends
as its script says (it has no name here: a job file cannot carry a script).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from caftm._registry import LazyRegistry
from caftm.jobs.executors.base import (
    EXIT_UNKNOWN,
    Executor,
    LegFolderExecutor,
    LegLaunch,
    LegRef,
    WorkerHandle,
)

if TYPE_CHECKING:
    from caftm.jobs.spec import JobSection

__all__ = [
    "EXECUTORS",
    "EXIT_UNKNOWN",
    "Executor",
    "LegFolderExecutor",
    "LegLaunch",
    "LegRef",
    "WorkerHandle",
    "get_executor",
]

#: name → ("module:Class", install hint)
EXECUTORS: LazyRegistry[Executor] = LazyRegistry(
    "executor",
    Executor,
    {
        "local": ("caftm.jobs.executors.local:LocalExecutor", ""),
        "ray": ("caftm.jobs.executors.ray:RayExecutor", "pip install 'caftm[ray]'"),
        "skypilot": (
            "caftm.jobs.executors.skypilot:SkyPilotExecutor",
            "pip install 'caftm[skypilot]'",
        ),
    },
)


def get_executor(name: str, job: JobSection | None = None) -> Executor:
    """A new executor of this name, set up from ``job`` (a job's ``job:`` section) if given.

    Raises:
        ConfigError: unknown name, or its engine is not installed (with the install hint).
    """
    cls = EXECUTORS.load(name)
    return cls() if job is None else cls.from_job(job)
