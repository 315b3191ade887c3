"""Config values users really write: a NaN eta and an unknown checkpoint protocol are refused
when the config is read, each with a message that names the field and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caftm.control.config import ControllerConfig
from caftm.errors import ConfigError


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_eta_says_finite_not_a_bound(value: str) -> None:
    with pytest.raises(ConfigError, match=r"policy\.eta \(set by CAFTM_POLICY_ETA\): .*finite"):
        ControllerConfig.from_dict({"sites": ["DE"]}, env={"CAFTM_POLICY_ETA": value})


@pytest.mark.parametrize("url", ["foo://bucket", "foo::s3://bucket/x"])
def test_unknown_checkpoint_protocol_is_refused_when_read(url: str) -> None:
    with pytest.raises(ConfigError, match=r"checkpoint: url .* has an unknown protocol 'foo'"):
        ControllerConfig.from_dict({"sites": ["DE"], "checkpoint": {"url": url}}, env={})


@pytest.mark.parametrize("url", ["./ckpt", "/tmp/x", "file:///tmp/x", "s3://b/p", "memory://m"])
def test_known_checkpoint_urls_are_accepted(url: str) -> None:
    config = ControllerConfig.from_dict({"sites": ["DE"], "checkpoint": {"url": url}}, env={})
    assert config.checkpoint.url == url


def test_signals_source_can_name_a_built_profile_set(tmp_path: Path) -> None:
    from caftm.signals.profiles import ProfileSource, load_profile_set
    from caftm.signals.registry import fallback_source

    embedded = load_profile_set()
    document = {
        "format": 1,
        "year": 2021,
        "basis": "direct",
        "zones": {"XA": embedded.profiles["FR"].to_dict()},
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(document))
    config = ControllerConfig.from_dict(
        {"sites": ["XA"], "signals": {"source": f"profile:{path}"}}, env={}
    )
    source = fallback_source(config.signals.source)
    assert isinstance(source, ProfileSource) and source.zones() == ["XA"]
    assert source.intensity("XA").source.startswith("typical-year profile (synthetic, 2021")
