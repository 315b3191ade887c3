"""One validated configuration for the controller, from YAML, a dict or code.

Example (see ``examples/config.yaml``)::

    sites: [KR, FR, "gcp:europe-west1"]      # zones or cloud regions; the first is the start
    threshold: {mode: relative, percentile: 75, hysteresis_fraction: 0.1}
    policy: {name: planner, deadline: 2026-12-01T00:00:00Z}   # the default policy
    migration: {checkpoint_s: 60, transfer_s: 120, restart_s: 120, margin_g: 5}

Environment variables ``CAFTM_<SECTION>_<KEY>`` override a section's key (value parsed as YAML),
e.g. ``CAFTM_THRESHOLD_MODE=relative`` or ``CAFTM_POLICY_MIN_DWELL_S=600``; ``CAFTM_SITE`` sets
the start site, ``CAFTM_LEDGER`` the ledger file and ``CAFTM_EXCLUDE_SITES`` (comma-separated)
drops candidate sites other than the current one (the job supervisor sets these for each leg).
A job file's ``job:`` section belongs to the supervisor and is ignored here. Bad values raise
:class:`~caftm.errors.ConfigError` naming the field path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from caftm._protocol_env import ENV_EXCLUDE_SITES, ENV_LEDGER, ENV_SITE
from caftm.control.migration import HOUR_S, MoveCost
from caftm.control.policies import POLICIES, GreedyCleanest, Policy, Rules, make_policy
from caftm.control.threshold import ThresholdMode, ThresholdSpec
from caftm.errors import ConfigError
from caftm.gpu.base import KnobKind

PolicyName = Literal[
    "planner", "caftm", "forecast-caftm", "suspend-resume", "greedy-cleanest", "carbon-agnostic"
]


#: Longest site name, in UTF-8 bytes (what a DDP stop message carries).
MAX_SITE_NAME_BYTES = 64


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Section):
    """A candidate site: a grid ``zone`` or a cloud ``region`` (``provider:region``)."""

    name: str = ""
    zone: str = ""
    region: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"region": data} if ":" in data else {"zone": data}
        return data

    @model_validator(mode="after")
    def _resolve(self) -> SiteConfig:
        if self.zone:  # a known zone in its canonical spelling (fr → FR); others kept as given
            from caftm.regions import Catalog

            object.__setattr__(
                self, "zone", Catalog.load_default().zone_of(self.zone, strict=False)
            )
        else:
            if not self.region:
                raise ValueError("give a zone (e.g. FR) or a region (e.g. aws:eu-west-3)")
            from caftm.regions import Catalog

            try:
                zone = Catalog.load_default().zone_of(self.region)
            except ConfigError as e:
                raise ValueError(str(e)) from e
            object.__setattr__(self, "zone", zone)
        if not self.name:
            object.__setattr__(self, "name", self.region or self.zone)
        return self


class ThresholdConfig(_Section):
    """θ: see :mod:`caftm.control.threshold`. The default is relative (a percentile of the
    forecast): scale-free, as every shipped default (``value_g_per_kwh`` is read only when
    ``mode: absolute`` is asked for)."""

    mode: ThresholdMode = ThresholdMode.RELATIVE
    value_g_per_kwh: float = Field(default=400.0, ge=0.0, le=2500.0)
    percentile: float = Field(default=75.0, ge=0.0, le=100.0)
    hysteresis_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)


class PolicyConfig(_Section):
    """Which policy, and the rules every policy obeys. The default, ``planner``, plans to the
    ``deadline`` (without one: 1.1× the job's expected length, see
    :mod:`caftm.control.planner`); ``eta`` weighs the GPU optimiser of the other policies only."""

    name: PolicyName = "planner"
    eta: float = Field(default=0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    min_dwell_s: float = Field(default=1800.0, ge=0.0)
    reoptimize_ci_fraction: float = Field(default=0.15, gt=0.0)
    deadline: AwareDatetime | None = None
    greedy_switch_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)


class MigrationConfig(_Section):
    """The cost of a move and the pause limits."""

    checkpoint_s: float = Field(default=60.0, ge=0.0)
    transfer_s: float = Field(default=120.0, ge=0.0)
    restart_s: float = Field(default=120.0, ge=0.0)
    transfer_energy_j: float = Field(default=0.0, ge=0.0)
    margin_g: float = Field(default=5.0, ge=0.0)
    margin_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    horizon_h: float = Field(default=24.0, gt=0.0)
    pause_recheck_s: float = Field(default=900.0, gt=0.0)
    max_pause_h: float = Field(default=24.0, ge=0.0)


class CheckpointConfig(_Section):
    """Where checkpoints go (local path or fsspec URL) and how many to keep."""

    url: str = "./checkpoints"
    keep_last: int = Field(default=3, ge=1)
    async_save: bool = False

    @model_validator(mode="after")
    def _known_protocol(self) -> CheckpointConfig:
        """Refuse a URL whose protocol fsspec does not know (``foo://bucket``) when read."""
        import fsspec  # only its table of protocols: no store is opened here

        head, sep, _ = self.url.partition("://")
        known = set(fsspec.available_protocols())
        unknown = [p for p in head.split("::") if sep and p.lower() not in known]
        if unknown:
            raise ValueError(
                f"url {self.url!r} has an unknown protocol {unknown[0]!r}; use a local path "
                "or a protocol fsspec knows (file://, s3://, gs://, az://, memory://, ...)"
            )
        return self


class GpuConfig(_Section):
    """The GPU knob and how it is profiled.

    ``control``: ``auto`` tunes the clock or power limit where this process may (else it falls
    back to ``off`` with one warning); ``off`` only observes: energy is metered and carbon
    accounted, moves and pauses still happen, and no GPU setter is ever called (for users
    without root on a shared cluster).
    """

    control: Literal["auto", "off"] = "auto"
    knob: KnobKind = KnobKind.CLOCK
    steps_per_probe: int = Field(default=20, ge=1)
    max_probes: int = Field(default=8, ge=1)
    window_steps: int = Field(default=200, ge=1)
    drift_every_windows: int = Field(default=5, ge=1)
    check_every_steps: int = Field(default=100, ge=1)
    power_w: float = Field(default=300.0, gt=0.0)
    idle_power_w: float = Field(default=100.0, ge=0.0)
    ref_intensity_g_per_kwh: float = Field(default=400.0, ge=0.0, le=2500.0)


class SignalsConfig(_Section):
    """Where intensities come from (a :mod:`caftm.signals.registry` name; ``trace`` reads
    ``trace_path``) and how often they are polled."""

    source: str = "profile"
    trace_path: str | None = None
    refresh_interval_s: float = Field(default=300.0, gt=0.0)
    forecast_interval_s: float = Field(default=3600.0, gt=0.0)


class LedgerConfig(_Section):
    """The sqlite ledger (``$CAFTM_LEDGER`` overrides ``path``; default
    ~/.local/share/caftm/ledger.sqlite)."""

    path: str | None = None
    run_name: str = "run"


class ControllerConfig(_Section):
    """The whole controller configuration."""

    sites: tuple[SiteConfig, ...] = Field(min_length=1)
    site: str | None = None
    total_steps: int | None = Field(default=None, ge=1)
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    migration: MigrationConfig = Field(default_factory=MigrationConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    signals: SignalsConfig = Field(default_factory=SignalsConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)

    @model_validator(mode="after")
    def _check_sites(self) -> ControllerConfig:
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names repeat: {names}")
        for name in names:  # DDP ranks receive the destination in a fixed-size message
            if len(name.encode()) > MAX_SITE_NAME_BYTES:
                raise ValueError(
                    f"site name {name!r} is longer than {MAX_SITE_NAME_BYTES} bytes; "
                    "give the site a shorter name"
                )
        if self.site is not None and self.site not in names:
            raise ValueError(f"site {self.site!r} is not among the sites {names}")
        if self.signals.source == "profile":  # the embedded default knows only its own zones
            from caftm.regions.hints import did_you_mean
            from caftm.signals.profiles import shipped_zones

            known = shipped_zones()
            for site in self.sites:
                if site.zone not in known:
                    raise ValueError(
                        f"site {site.name!r}: no embedded profile for zone {site.zone!r}"
                        f"{did_you_mean(site.zone, known)}; pick a zone from 'caftm zones' or "
                        "a live signals.source that knows it"
                    )
        return self

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, env: Mapping[str, str] | None = None, where: str = "config"
    ) -> ControllerConfig:
        """Validate ``data`` after applying ``CAFTM_<SECTION>_<KEY>`` overrides from ``env``
        (default: ``os.environ``; pass ``{}`` to ignore the environment).

        Raises:
            ConfigError: a bad value, naming its field path.
        """
        environment = os.environ if env is None else env
        merged = apply_env({k: v for k, v in data.items() if k != JOB_SECTION}, environment)
        try:
            return _exclude_sites(cls.model_validate(merged), environment, where)
        except ValidationError as e:
            problems = "; ".join(
                _problem(err["loc"], err["msg"], environment) for err in e.errors()
            )
            raise ConfigError(f"invalid {where}: {problems}") from None

    @classmethod
    def from_yaml(
        cls, path: str | Path, *, env: Mapping[str, str] | None = None
    ) -> ControllerConfig:
        """Read and validate a YAML file.

        Raises:
            ConfigError: unreadable file, bad YAML, or a bad value.
        """
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config {path}: {' '.join(str(e).split())}") from e
        if not isinstance(data, Mapping):
            raise ConfigError(f"config {path} must hold a mapping at the top level")
        return cls.from_dict(data, env=env, where=f"config {path}")

    # -- views used by the controller ------------------------------------------------------------
    @property
    def start_site(self) -> str:
        """Where training starts."""
        return self.site or self.sites[0].name

    def site_zones(self) -> dict[str, str]:
        """Site name → grid zone."""
        return {s.name: s.zone for s in self.sites}

    def threshold_spec(self) -> ThresholdSpec:
        """θ's specification."""
        t = self.threshold
        return ThresholdSpec(t.mode, t.value_g_per_kwh, t.percentile, t.hysteresis_fraction)

    def move_cost(self) -> MoveCost:
        """The cost of one move."""
        m = self.migration
        return MoveCost(
            m.checkpoint_s,
            m.transfer_s,
            m.restart_s,
            m.transfer_energy_j,
            m.margin_g,
            m.margin_fraction,
        )

    def rules(self) -> Rules:
        """The rules every policy obeys."""
        deadline = self.policy.deadline
        return Rules(
            min_dwell_s=self.policy.min_dwell_s,
            reoptimize_ci_fraction=self.policy.reoptimize_ci_fraction,
            deadline_s=None if deadline is None else deadline.timestamp(),
            move_cost=self.move_cost(),
            horizon_s=self.migration.horizon_h * HOUR_S,
            pause_recheck_s=self.migration.pause_recheck_s,
            max_pause_s=self.migration.max_pause_h * HOUR_S,
        )

    def build_policy(self) -> Policy:
        """The policy ``policy.name`` names, built (and range-checked) by its own constructor.

        Raises:
            ConfigError: a policy option is out of range, naming its field (e.g. a config
                changed with pydantic's ``model_copy(update=...)``, which skips validation).
        """
        rules = self.rules()
        if self.policy.name != GreedyCleanest.name:
            return make_policy(self.policy.name, rules)
        fraction = self.policy.greedy_switch_fraction
        try:
            return GreedyCleanest(rules, switch_fraction=fraction)
        except ConfigError as e:
            raise ConfigError(f"invalid config: policy.greedy_switch_fraction: {e}") from e


_SECTIONS = {
    name: field.annotation
    for name, field in ControllerConfig.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
}


def _problem(loc: tuple[int | str, ...], message: str, env: Mapping[str, str]) -> str:
    """One validation problem: its field path, and the variable that set it when one did."""
    message = message.removeprefix("Value error, ")  # pydantic's prefix for our own checks
    if not loc:
        return message
    path = ".".join(str(p) for p in loc)
    variable = "CAFTM_" + "_".join(str(p) for p in loc[:2]).upper()
    source = f" (set by {variable})" if len(loc) == 2 and variable in env else ""
    return f"{path}{source}: {message}"


#: The section of a job file that only the supervisor reads.
JOB_SECTION = "job"
#: Top-level keys set by one variable each (the supervisor tells every leg its site and ledger).
_ALIASES = {ENV_SITE: ("site",), ENV_LEDGER: ("ledger", "path")}


def apply_env(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with ``CAFTM_<SECTION>_<KEY>`` overrides applied (values parsed as YAML).

    Variables naming no known section key are ignored (other parts of caftm use the prefix too).

    Raises:
        ConfigError: a value does not parse, or ``CAFTM_LEDGER_PATH`` is set (the ledger's
            variable is ``CAFTM_LEDGER``, one name everywhere).
    """
    merged: dict[str, Any] = {
        k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()
    }
    if env.get("CAFTM_LEDGER_PATH"):
        raise ConfigError("CAFTM_LEDGER_PATH is not read; set CAFTM_LEDGER to the ledger file")
    for variable, path in _ALIASES.items():
        text = env.get(variable)
        if not text:
            continue
        if len(path) == 1:
            merged[path[0]] = text
        else:
            current = merged.get(path[0])
            section_data = dict(current) if isinstance(current, Mapping) else {}
            section_data[path[1]] = text
            merged[path[0]] = section_data
    for variable, text in env.items():
        if not variable.startswith("CAFTM_") or variable in _ALIASES:
            continue
        rest = variable[len("CAFTM_") :].lower()
        for section, model in _SECTIONS.items():
            key = rest[len(section) + 1 :]
            if rest.startswith(section + "_") and key in model.model_fields:
                try:
                    value = yaml.safe_load(text)
                except yaml.YAMLError as e:
                    raise ConfigError(f"cannot parse {variable}={text!r}: {e}") from e
                current = merged.get(section)
                section_data = dict(current) if isinstance(current, Mapping) else {}
                section_data[key] = value
                merged[section] = section_data
    return merged


def _exclude_sites(
    config: ControllerConfig, env: Mapping[str, str], where: str
) -> ControllerConfig:
    """``config`` without the sites ``CAFTM_EXCLUDE_SITES`` names (never the current one).

    Raises:
        ConfigError: the variable names a site the config does not have.
    """
    text = env.get(ENV_EXCLUDE_SITES, "")
    excluded = {name.strip() for name in text.split(",") if name.strip()}
    if not excluded:
        return config
    names = [s.name for s in config.sites]
    unknown = sorted(excluded - set(names))
    if unknown:
        raise ConfigError(f"invalid {where}: {ENV_EXCLUDE_SITES} names unknown sites {unknown}")
    excluded.discard(config.start_site)
    kept = tuple(s for s in config.sites if s.name not in excluded)
    return config.model_copy(update={"sites": kept, "site": config.start_site})


def policy_names() -> list[str]:
    """Names accepted by ``policy.name``."""
    return sorted(POLICIES)
