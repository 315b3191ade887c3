"""The one integer check of the checkpoint package: plain ints (numpy and torch integers too)."""

from __future__ import annotations

import operator
from typing import Any

from caftm.errors import ConfigError


def as_int(name: str, value: Any) -> int:
    """``value`` as a plain int; bools and non-integers are refused.

    Raises:
        ConfigError: It is not an integer.
    """
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
