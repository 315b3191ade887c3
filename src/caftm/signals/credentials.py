"""Provider keys from the environment or a config file, held as :class:`pydantic.SecretStr`.

Lookup order for ``(provider, field)``, first hit wins:

1. ``CAFTM_<PROVIDER>_<FIELD>`` (e.g. ``CAFTM_ELECTRICITYMAPS_TOKEN``), then the provider's own
   conventional names (``ELECTRICITYMAPS_TOKEN``, ``WATTTIME_USERNAME``/``WATTTIME_USER``, ...);
2. the TOML file ``$CAFTM_CONFIG`` or else ``~/.config/caftm/credentials.toml``, table
   ``[<provider>]``, key ``<field>``::

       [electricitymaps]
       token = "..."
       [watttime]
       username = "..."
       password = "..."

Values never appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from caftm.errors import AuthError, ConfigError

logger = logging.getLogger(__name__)

#: Extra environment names accepted per (provider, field), after ``CAFTM_<PROVIDER>_<FIELD>``.
ENV_ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("electricitymaps", "token"): ("ELECTRICITYMAPS_TOKEN", "ELECTRICITYMAPS_API_KEY"),
    ("watttime", "username"): ("WATTTIME_USERNAME", "WATTTIME_USER"),
    ("watttime", "password"): ("WATTTIME_PASSWORD",),
    ("carbonaware", "api_key"): ("CARBON_AWARE_API_KEY",),
}


def env_names(provider: str, field: str) -> list[str]:
    """Environment variable names consulted for ``field`` of ``provider``, in order."""
    primary = f"CAFTM_{provider.upper()}_{field.upper()}"
    return [primary, *ENV_ALIASES.get((provider, field), ())]


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The credentials file: ``$CAFTM_CONFIG`` or ``~/.config/caftm/credentials.toml``."""
    env = os.environ if env is None else env
    if env.get("CAFTM_CONFIG"):
        return Path(env["CAFTM_CONFIG"]).expanduser()
    return Path.home() / ".config" / "caftm" / "credentials.toml"


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            logger.warning("credentials file %s is readable by others; chmod 600 it", path)
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as e:
        # The decoder's message holds a line/column, not the file's values.
        raise ConfigError(f"credentials file {path} is not valid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"cannot read credentials file {path}: {e.strerror}") from e


def find_secret(
    provider: str,
    field: str,
    *,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> SecretStr | None:
    """The value of ``field`` for ``provider`` from the environment or config file, or None.

    Raises:
        ConfigError: the config file exists but is unreadable or not TOML, or the value
            there is not a string.
    """
    env = os.environ if env is None else env
    for name in env_names(provider, field):
        value = env.get(name, "").strip()
        if value:
            return SecretStr(value)
    path = path or config_path(env)
    table = _read_config(path).get(provider, {})
    if not isinstance(table, dict) or field not in table:
        return None
    value = table[field]
    if not isinstance(value, str):
        raise ConfigError(f"[{provider}] {field} in {path} must be a string")
    return SecretStr(value.strip()) if value.strip() else None


def require_secret(
    provider: str,
    field: str,
    *,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> SecretStr:
    """Like :func:`find_secret` but a missing value is an :class:`AuthError`."""
    secret = find_secret(provider, field, env=env, path=path)
    if secret is None:
        raise AuthError(f"missing key for {provider}: {how_to_set(provider, field, env=env)}")
    return secret


def how_to_set(provider: str, field: str, *, env: Mapping[str, str] | None = None) -> str:
    """One line telling the user where to put ``field`` of ``provider``."""
    return (
        f'set {env_names(provider, field)[0]} or add {field} = "..." under [{provider}] '
        f"in {config_path(env)}"
    )
