"""The one name → class registry helper: lazy imports, install hints, clear errors."""

from __future__ import annotations

import sys

import pytest

from caftm._registry import LazyRegistry
from caftm.errors import CaftmError, ConfigError
from caftm.jobs.executors import get_executor


def _errors() -> LazyRegistry[CaftmError]:
    return LazyRegistry(
        "error kind",
        CaftmError,
        {
            "config": ("caftm.errors:ConfigError", "part of caftm"),
            "ghost": ("caftm_ghost_pkg.errors:Ghost", "pip install 'caftm[ghost]'"),
            "builtin": ("builtins:ValueError", ""),
            "typo": ("caftm.errors:NoSuchError", "reinstall caftm"),
        },
        also_accepted=("auto",),
    )


def test_a_name_loads_its_class() -> None:
    assert _errors().load("config") is ConfigError
    assert _errors().names() == ["builtin", "config", "ghost", "typo"]


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"^unknown error kind 'x'; known: auto, builtin, conf"):
        _errors().load("x")
    with pytest.raises(ConfigError, match="unknown error kind"):
        _errors().load(["not", "a", "name"])  # type: ignore[arg-type]


def test_the_module_is_imported_only_when_asked_for_and_its_failure_gives_the_hint() -> None:
    registry = _errors()
    assert "caftm_ghost_pkg" not in sys.modules
    with pytest.raises(ConfigError, match=r"'ghost' could not be imported .*caftm\[ghost\]'$"):
        registry.load("ghost")
    with pytest.raises(ConfigError, match=r"'typo' could not be imported .*; reinstall caftm$"):
        registry.load("typo")


def test_a_class_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="'builtin': builtins:ValueError is not a CaftmError"):
        _errors().load("builtin")


def test_register_checks_the_target() -> None:
    registry = _errors()
    with pytest.raises(ConfigError, match="must look like 'module:Class'"):
        registry.register("bad", "no_colon_here")
    registry.register("also", "caftm.errors:DataError", "hint")
    assert registry["also"] == ("caftm.errors:DataError", "hint")


def test_executors_use_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown executor 'k8s'; known: local, ray, skypilot"):
        get_executor("k8s")
    assert type(get_executor("local")).__name__ == "LocalExecutor"
