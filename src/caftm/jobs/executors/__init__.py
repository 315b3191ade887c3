"""Executors by name: where a job's legs run.

=========  ==========================================================================
name       what
=========  ==========================================================================
local      subprocesses on this machine (the default; no extra needed)
=========  ==========================================================================

Engines that run legs on other machines (Ray, SkyPilot) register here with an install hint.
"""

from __future__ import annotations

import importlib

from caftm.errors import ConfigError
from caftm.jobs.executors.base import EXIT_UNKNOWN, Executor, LegLaunch, WorkerHandle

__all__ = ["EXECUTORS", "EXIT_UNKNOWN", "Executor", "LegLaunch", "WorkerHandle", "get_executor"]

#: name → ("module:Class", install hint)
EXECUTORS: dict[str, tuple[str, str]] = {
    "local": ("caftm.jobs.executors.local:LocalExecutor", ""),
}


def get_executor(name: str) -> Executor:
    """A new executor of this name.

    Raises:
        ConfigError: unknown name, or its engine is not installed (with the install hint).
    """
    try:
        target, hint = EXECUTORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown executor {name!r}; known: {', '.join(sorted(EXECUTORS))}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConfigError(f"executor {name!r} needs {e.name}: {hint}") from e
    executor: Executor = getattr(module, class_name)()
    return executor
