"""Name → class registries whose classes are imported on first use.

Each entry maps a name to ``"module:Class"`` and an install hint; :meth:`LazyRegistry.load`
imports the module only when the name is asked for, so an optional engine (Ray, NVML, a live
provider) costs nothing until used and its absence is one clear :class:`~caftm.errors.ConfigError`.
The signal sources, GPU backends and job executors are registries of this kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Generic, TypeVar, cast

from caftm.errors import ConfigError

T = TypeVar("T")


class LazyRegistry(dict[str, tuple[str, str]], Generic[T]):
    """name → (``"module:Class"``, install hint); the classes must subclass ``base``.

    Args:
        what: what a name names, for messages (``"GPU backend"``).
        base: the class every registered class must subclass (``T``, often abstract; name
            ``T`` in the variable's annotation: ``LazyRegistry[GpuBackend]``).
        entries: the initial entries.
        also_accepted: names handled before the registry (e.g. ``auto``), listed in the
            message about an unknown name.
    """

    def __init__(
        self,
        what: str,
        base: type,
        entries: Mapping[str, tuple[str, str]],
        *,
        also_accepted: tuple[str, ...] = (),
    ) -> None:
        super().__init__(entries)
        self.what = what
        self.base = base
        self.also_accepted = also_accepted

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self)

    def register(self, name: str, target: str, install_hint: str = "") -> None:
        """Register ``name`` → ``"module:Class"``.

        Raises:
            ConfigError: ``target`` does not look like ``module:Class``.
        """
        module_name, _, class_name = target.partition(":")
        if not module_name or not class_name:
            raise ConfigError(f"{self.what} target must look like 'module:Class', got {target!r}")
        self[name] = (target, install_hint)

    def load(self, name: str) -> type[T]:
        """The class registered as ``name``, imported now.

        Raises:
            ConfigError: unknown name (the message lists the known ones), the import fails
                (with the install hint), or the class is not a ``base``.
        """
        try:
            target, hint = self[name]
        except (KeyError, TypeError):  # TypeError: not a name at all (e.g. a list)
            known = ", ".join([*self.also_accepted, *self.names()])
            raise ConfigError(f"unknown {self.what} {name!r}; known: {known}") from None
        module_name, _, class_name = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"{self.what} {name!r} could not be imported ({e}); {hint}") from e
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            article = "an" if self.base.__name__[:1] in "AEIOU" else "a"
            raise ConfigError(
                f"{self.what} {name!r}: {target} is not {article} {self.base.__name__}"
            )
        return cast("type[T]", cls)
