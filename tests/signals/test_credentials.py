"""Provider keys from environment and config file, never shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from caftm.errors import AuthError, ConfigError
from caftm.signals.credentials import config_path, env_names, find_secret, require_secret

KEY = "cfg-key-77aa21"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_env_order_prefers_caftm_names() -> None:
    assert env_names("electricitymaps", "token")[:2] == [
        "CAFTM_ELECTRICITYMAPS_TOKEN",
        "ELECTRICITYMAPS_TOKEN",
    ]
    env = {"ELECTRICITYMAPS_TOKEN": "other", "CAFTM_ELECTRICITYMAPS_TOKEN": KEY}
    secret = find_secret("electricitymaps", "token", env=env, path=Path("/nonexistent"))
    assert secret is not None and secret.get_secret_value() == KEY
    assert KEY not in repr(secret) and KEY not in str(secret)


def test_watttime_sdk_alias() -> None:
    secret = find_secret("watttime", "username", env={"WATTTIME_USER": "me"}, path=Path("/no"))
    assert secret is not None and secret.get_secret_value() == "me"


def test_config_file_from_caftm_config(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", f'[watttime]\nusername = "u"\npassword = "{KEY}"\n')
    env = {"CAFTM_CONFIG": str(path)}
    assert config_path(env) == path
    secret = find_secret("watttime", "password", env=env)
    assert secret is not None and secret.get_secret_value() == KEY
    assert find_secret("electricitymaps", "token", env=env) is None


def test_default_config_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path({}) == tmp_path / ".config" / "caftm" / "credentials.toml"


def test_missing_key_is_auth_error_saying_where_to_put_it(tmp_path: Path) -> None:
    env = {"CAFTM_CONFIG": str(tmp_path / "none.toml")}
    with pytest.raises(AuthError, match=r"missing key for electricitymaps: set CAFTM_ELEC.*\[elec"):
        require_secret("electricitymaps", "token", env=env)


def test_bad_toml_is_config_error_without_values(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", f'[electricitymaps]\ntoken = "{KEY}\n')
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        find_secret("electricitymaps", "token", env={"CAFTM_CONFIG": str(path)})
    assert KEY not in str(info.value)
    path = write(tmp_path / "d.toml", "[electricitymaps]\ntoken = 5\n")
    with pytest.raises(ConfigError, match="must be a string"):
        find_secret("electricitymaps", "token", env={"CAFTM_CONFIG": str(path)})


def test_world_readable_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write(tmp_path / "c.toml", f'[electricitymaps]\ntoken = "{KEY}"\n')
    path.chmod(0o644)
    assert find_secret("electricitymaps", "token", env={"CAFTM_CONFIG": str(path)}) is not None
    assert "chmod 600" in caplog.text and KEY not in caplog.text
