"""Small adapters between framework state and :class:`~caftm.checkpoint.TrainingState`."""

from __future__ import annotations

from typing import Any

__all__ = ["TreeHolder"]


class TreeHolder:
    """A state tree that is already plain data (a framework's own checkpoint dict), carried
    through ``TrainingState(stateful={...})``: saving returns it, loading keeps it."""

    def __init__(self, tree: Any = None) -> None:
        self.tree = tree

    def state_dict(self) -> Any:
        """The tree as given."""
        return self.tree

    def load_state_dict(self, state_dict: Any, /) -> None:
        """Keep the loaded tree in :attr:`tree`."""
        self.tree = state_dict
