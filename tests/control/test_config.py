"""The one validated config: YAML, code, environment overrides and field-path errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from caftm.control import CAFTM, ControllerConfig, GreedyCleanest, ThresholdMode
from caftm.control.config import apply_env, policy_names
from caftm.errors import ConfigError
from caftm.gpu.base import KnobKind

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"


def test_example_config_validates_and_resolves_regions() -> None:
    config = ControllerConfig.from_yaml(EXAMPLE, env={})
    zones = config.site_zones()
    assert zones["KR"] == "KR" and zones["lab"] == "CA-QC"
    assert zones["gcp:europe-west1"] == "BE"
    assert config.start_site == "KR"
    rules = config.rules()
    assert rules.min_dwell_s == 1800 and rules.deadline_s is not None
    assert rules.move_cost.downtime_s == 300
    assert config.threshold_spec().hysteresis_fraction == 0.1


def test_defaults_from_code() -> None:
    config = ControllerConfig.from_dict({"sites": ["DE"]}, env={})
    assert config.policy.name == "planner" and config.gpu.knob is KnobKind.CLOCK
    assert config.build_policy().name == "planner"
    assert config.threshold_spec().mode == "relative"  # scale-free: no g/kWh in a default
    assert config.rules().deadline_s is None
    assert "suspend-resume" in policy_names()


def test_environment_overrides_section_keys() -> None:
    env = {
        "CAFTM_THRESHOLD_MODE": "relative",
        "CAFTM_POLICY_MIN_DWELL_S": "600",
        "CAFTM_GPU_KNOB": "power",
        "CAFTM_LEDGER": "/elsewhere.sqlite",  # the CLI's variable, not a section key: ignored
        "CAFTM_POLICY_NO_SUCH_KEY": "1",
        "OTHER": "x",
    }
    config = ControllerConfig.from_dict({"sites": ["DE"], "policy": {"eta": 0.9}}, env=env)
    assert config.threshold.mode is ThresholdMode.RELATIVE
    assert config.policy.min_dwell_s == 600 and config.policy.eta == 0.9
    assert config.gpu.knob is KnobKind.POWER
    assert apply_env({"a": 1}, {}) == {"a": 1}


@pytest.mark.parametrize(
    ("data", "env", "path"),
    [
        ({"sites": ["DE"], "threshold": {"value_g_per_kwh": -1}}, {}, "threshold.value_g_per_kwh"),
        ({"sites": ["DE"], "policy": {"eta": 2}}, {}, "policy.eta"),
        ({"sites": ["DE"], "policy": {"name": "yolo"}}, {}, "policy.name"),
        ({"sites": ["DE"], "policy": {"deadline": "2026-01-01T00:00:00"}}, {}, "policy.deadline"),
        ({"sites": []}, {}, "sites"),
        ({"sites": ["DE", "DE"]}, {}, "site names repeat"),
        ({"sites": [{"name": "x" * 65, "zone": "DE"}]}, {}, "longer than 64 bytes"),
        ({"sites": ["DE"], "site": "FR"}, {}, "not among the sites"),
        ({"sites": ["aws:nowhere-1"]}, {}, "sites.0"),
        ({"sites": ["DE"], "gpu": {"steps_per_probe": 0}}, {}, "gpu.steps_per_probe"),
        ({"sites": ["DE"], "unknown": 1}, {}, "unknown"),
        ({"sites": ["DE"]}, {"CAFTM_MIGRATION_MARGIN_G": "-3"}, "migration.margin_g"),
        (
            {"sites": ["DE"]},
            {"CAFTM_POLICY_ETA": "abc"},
            "policy.eta (set by CAFTM_POLICY_ETA): Input should be a valid number",
        ),
        (
            {"sites": ["DE"], "policy": {"greedy_switch_fraction": 1.0}},
            {},
            "policy.greedy_switch_fraction",
        ),
    ],
)
def test_bad_values_name_their_field(data: dict, env: dict, path: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(path)):
        ControllerConfig.from_dict(data, env=env)


def test_unreadable_and_malformed_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        ControllerConfig.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites: [DE\n")
    with pytest.raises(ConfigError, match="cannot read config") as raised:
        ControllerConfig.from_yaml(bad)
    assert "\n" not in str(raised.value) and "line 2" in str(raised.value)  # one line, with where
    listed = tmp_path / "list.yaml"
    listed.write_text("- DE\n")
    with pytest.raises(ConfigError, match="mapping"):
        ControllerConfig.from_yaml(listed)


def test_build_policy_hands_greedy_its_switch_fraction_and_the_rules() -> None:
    config = ControllerConfig.from_dict(
        {
            "sites": ["KR", "FR"],
            "policy": {"name": "greedy-cleanest", "greedy_switch_fraction": 0.3},
        },
        env={},
    )
    policy = config.build_policy()
    assert isinstance(policy, GreedyCleanest) and policy.switch_fraction == 0.3
    assert policy.rules == config.rules()
    other = ControllerConfig.from_dict(
        {"sites": ["KR"], "policy": {"name": "caftm", "min_dwell_s": 60}}, env={}
    )
    assert isinstance(other.build_policy(), CAFTM)
    assert other.build_policy().rules.min_dwell_s == 60


@pytest.mark.parametrize("fraction", [1.5, -0.2])
def test_build_policy_range_checks_a_switch_fraction_that_skipped_validation(
    fraction: float,
) -> None:
    config = ControllerConfig.from_dict(
        {"sites": ["KR", "FR"], "policy": {"name": "greedy-cleanest"}}, env={}
    )
    # model_copy(update=...) skips pydantic's checks: the policy's constructor must catch it
    policy = config.policy.model_copy(update={"greedy_switch_fraction": fraction})
    unchecked = config.model_copy(update={"policy": policy})
    with pytest.raises(ConfigError, match=r"policy\.greedy_switch_fraction.*\[0, 1\)"):
        unchecked.build_policy()


def test_sites_on_the_embedded_profiles_must_have_one() -> None:
    """With the default signals (the embedded profiles) a zone without a profile could never be
    read: refused when the config is read, naming the site and the closest zones."""
    with pytest.raises(ConfigError, match=r"site 'FRR': no embedded profile.*did you mean FR"):
        ControllerConfig.from_dict({"sites": ["DE", "FRR"]}, env={})
    with pytest.raises(ConfigError) as raised:
        ControllerConfig.from_dict({"sites": ["DE", {"name": "lab", "zone": "XX"}]}, env={})
    assert str(raised.value).startswith("invalid config: site 'lab'")  # no pydantic prefixes
    live = {"sites": ["DE", "XX"], "signals": {"source": "electricitymaps"}}
    assert ControllerConfig.from_dict(live, env={}).site_zones()["XX"] == "XX"  # its call


def test_zones_take_their_canonical_spelling() -> None:
    config = ControllerConfig.from_dict({"sites": ["de", {"name": "lab", "zone": "ca-qc"}]}, env={})
    assert config.site_zones() == {"DE": "DE", "lab": "CA-QC"}
