"""A job: the controller's configuration plus the supervisor's ``job:`` section, from one YAML.

Example (``examples/job.yaml``)::

    job:
      name: cnn
      command: python examples/train_cnn.py --config examples/job.yaml
      executor: local                   # where legs run (see caftm.jobs.executors)
      stores: {FR: s3://bucket/cnn}     # per site; default <workdir>/<name>/sites/<site>
      grace_s: 30                       # SIGTERM → checkpoint → exit, else SIGKILL
      max_restarts: 3                   # consecutive crashes without progress before failing
    sites: [KR, FR]
    threshold: {value_g_per_kwh: 400}
    ...                                 # every other section as in ControllerConfig

Relative paths (``workdir``, ``cwd``, local stores, ``ledger.path``, ``signals.trace_path``) are
relative to the YAML file's folder, so a job runs the same from any working directory. They are
resolved once, when the job is loaded: a :class:`JobSpec` holds absolute paths only.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from caftm._protocol_env import ENV_CHECKPOINT_URL, ENV_EXCLUDE_SITES, ENV_SITE
from caftm.control.config import JOB_SECTION, ControllerConfig
from caftm.errors import ConfigError

if TYPE_CHECKING:
    from caftm.checkpoint.owner import JobIdentity

__all__ = ["JobSection", "JobSpec", "RaySection", "SkyPilotSection", "load_job"]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class RaySection(BaseModel):
    """The ``ray`` executor's part of ``job:`` (``job.ray``).

    Attributes:
        address: the Ray dashboard's address (Jobs API), e.g. ``http://head:8265``
            (default: ``$RAY_ADDRESS``, else ``http://127.0.0.1:8265``).
        site_resource_prefix: a site's nodes carry the custom resource ``<prefix><site>``.
        site_label: when set, pin legs by the node label ``<site_label>=<site>`` instead
            (``ray start --labels site=FR``).
        resource_per_leg: how much of the site resource one leg takes.
        num_cpus, num_gpus: what the worker's entrypoint reserves on its node.
        resources: custom resources it reserves too (e.g. ``{"fast-disk": 1}``).
        start_timeout_s: a leg not running by then fails (Ray would keep it pending).
        request_timeout_s: timeout of each call to the cluster.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None
    site_resource_prefix: str = Field(default="site-", min_length=1)
    site_label: str | None = Field(default=None, min_length=1)
    resource_per_leg: float = Field(default=0.01, gt=0.0)
    num_cpus: float = Field(default=0.0, ge=0.0)
    num_gpus: float = Field(default=0.0, ge=0.0)
    resources: dict[str, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict)
    start_timeout_s: float = Field(default=120.0, gt=0.0)
    request_timeout_s: float = Field(default=10.0, gt=0.0)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r}: give the dashboard's URL, e.g. http://head:8265")
        return value


class SkyPilotSection(BaseModel):
    """The ``skypilot`` executor's part of ``job:`` (``job.skypilot``).

    Attributes:
        accelerators: e.g. ``H100:1`` (checked against the region's offer before launch).
        cpus, memory: SkyPilot's resource strings (e.g. ``4+``, ``16+``), optional.
        use_spot: run on spot instances (a preemption is a SIGTERM the worker checkpoints on).
        bucket: the checkpoint bucket mounted on every leg's VM (e.g. ``s3://my-ckpts``).
        mount_path: where the bucket is mounted on the VM.
        setup: a setup script run once on each new VM.
        workdir: a local folder synced to the VM.
        max_restarts_on_errors: SkyPilot's job recovery within the region.
        name_prefix: managed jobs are named ``<prefix><job>-leg<N>``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    accelerators: str | None = Field(default=None, min_length=1)
    cpus: str | None = None
    memory: str | None = None
    use_spot: bool = False
    bucket: str | None = None
    mount_path: str = "/caftm"
    setup: str | None = None
    workdir: str | None = None
    max_restarts_on_errors: int = Field(default=3, ge=0, le=100)
    name_prefix: str = "caftm-"

    @field_validator("accelerators")
    @classmethod
    def _accelerators(cls, value: str | None) -> str | None:
        if value is None:
            return value
        name, _, count = value.partition(":")
        if not name or (count and not _positive_number(count)):
            raise ValueError(f"{value!r}: write NAME or NAME:COUNT, e.g. H100:1")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError(f"{value!r}: give a bucket URL, e.g. s3://my-checkpoints")
        return value


def _positive_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


class JobSection(BaseModel):
    """The supervisor's part of a job file.

    Attributes:
        name: the job's name (its key in the ledger; letters, digits, ``-_.``).
        command: the worker command, a string (split like a shell) or a list. With the
            ``local`` executor, ``python``/``python3`` mean the Python that runs caftm and
            ``torchrun`` its ``torch.distributed.run`` (caftm's environment, activated or not).
        executor: ``local`` (subprocesses on this machine), ``ray`` or ``skypilot``.
        workdir: where legs keep their logs and default stores.
        cwd: the worker's working directory (default: the YAML file's folder).
        stores: site → checkpoint store URL (local path or fsspec URL, e.g. ``s3://b/p``).
        env: extra environment variables for the worker.
        grace_s: seconds a worker has to checkpoint after SIGTERM before SIGKILL.
        max_restarts: consecutive crashes (without progress) before the job fails.
        backoff_s: wait before the first restart after a crash (doubles each time, ≤ 5 min).
        bandwidth_mb_per_s: emulate a wide-area link when moving checkpoints (MB/s).
        prune_after_move: delete the source's copy once the destination verified it.
        direct_moves: a moving worker writes its last checkpoint straight into the
            destination's store (one pass instead of a write and a copy); where it cannot
            (unreachable, full), it writes it at the source and the supervisor copies it.
            Off while ``bandwidth_mb_per_s`` emulates a link.
        standby_workers: start the destination's worker while the checkpoint is written and
            moved (it waits for the verified checkpoint; :mod:`caftm.jobs.standby`).
        clock_speed: run on an accelerated clock (virtual seconds per wall second).
        clock_start: the accelerated clock's start (default: now).
        adopt_checkpoints_of: continue from checkpoints this job's stores hold of that job
            (another name, or this one before its command or total_steps changed); without
            it such a store is refused (see :mod:`caftm.checkpoint.owner`).
        ray: the ``ray`` executor's settings (:class:`RaySection`).
        skypilot: the ``skypilot`` executor's settings (:class:`SkyPilotSection`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    command: tuple[str, ...] = Field(min_length=1)
    executor: str = "local"
    workdir: str = ".caftm/jobs"
    cwd: str | None = None
    stores: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    grace_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    max_restarts: int = Field(default=3, ge=0, le=1000)
    backoff_s: float = Field(default=5.0, ge=0.0, le=3600.0)
    bandwidth_mb_per_s: float | None = Field(default=None, gt=0.0)
    prune_after_move: bool = False
    direct_moves: bool = True
    standby_workers: bool = True
    clock_speed: float | None = Field(default=None, gt=0.0, le=1e7)
    clock_start: AwareDatetime | None = None
    adopt_checkpoints_of: str | None = Field(default=None, min_length=1, max_length=64)
    ray: RaySection = Field(default_factory=RaySection)
    skypilot: SkyPilotSection = Field(default_factory=SkyPilotSection)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not set(value) <= _NAME_CHARS:
            raise ValueError(f"{value!r}: use letters, digits, '-', '_' and '.' only")
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return tuple(shlex.split(value))
            except ValueError as e:
                raise ValueError(f"cannot split the command: {e}") from e
        return value


@dataclass(frozen=True)
class JobSpec:
    """A validated job: the supervisor's section, the controller config and where it came from.

    Built by :func:`job_from_dict` (and :func:`load_job`), which resolve every path in it.

    Attributes:
        job: the ``job:`` section (``workdir``, ``cwd`` and local ``stores`` absolute).
        controller: the rest, as the worker reads it (``ledger.path`` and
            ``signals.trace_path`` absolute).
        path: the YAML file (None: built in code).
        base_dir: the folder relative paths were resolved against (absolute).
    """

    job: JobSection
    controller: ControllerConfig
    path: Path | None
    base_dir: Path

    @property
    def name(self) -> str:
        """The job's name."""
        return self.job.name

    @property
    def workdir(self) -> Path:
        """Logs and default stores (absolute)."""
        return Path(self.job.workdir) / self.name

    @property
    def cwd(self) -> Path:
        """The worker's working directory (absolute)."""
        return Path(self.job.cwd) if self.job.cwd else self.base_dir

    @property
    def ledger_path(self) -> Path | str:
        """The ledger every process of the job writes to (an absolute path, or a URL)."""
        from caftm.ledger.backend import ledger_location
        from caftm.ledger.store import default_ledger_path

        path = self.controller.ledger.path
        return ledger_location(path) if path else default_ledger_path()

    @property
    def identity(self) -> JobIdentity:
        """Who owns the job's checkpoints: its name and the digest of command and total_steps."""
        from caftm.checkpoint.owner import JobIdentity, training_digest  # imports torch

        digest = training_digest(self.job.command, self.controller.total_steps)
        return JobIdentity(self.name, digest, self.job.adopt_checkpoints_of)

    def store_url(self, site: str) -> str:
        """The checkpoint store of ``site`` (an absolute path or a URL)."""
        url = self.job.stores.get(site)
        return str(self.workdir / "sites" / site / "checkpoints") if url is None else url

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, recorded with the job in the ledger."""
        return {
            "job": self.job.model_dump(mode="json"),
            "controller": self.controller.model_dump(mode="json"),
            "path": None if self.path is None else str(self.path),
        }


def load_job(path: str | Path, *, env: Mapping[str, str] | None = None) -> JobSpec:
    """Read and validate a job file.

    Raises:
        ConfigError: unreadable file, bad YAML, a bad value (naming its field), or a store
            for a site the job does not have.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read job {path}: {' '.join(str(e).split())}") from e
    if not isinstance(data, Mapping):
        raise ConfigError(f"job {path} must hold a mapping at the top level")
    return job_from_dict(data, base_dir=path.resolve().parent, path=path, env=env)


def job_from_dict(
    data: Mapping[str, Any],
    *,
    base_dir: Path,
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> JobSpec:
    """Validate a job given as a mapping (see :func:`load_job`)."""
    where = f"job {path}" if path is not None else "job"
    section = data.get(JOB_SECTION)
    if not isinstance(section, Mapping):
        raise ConfigError(f"invalid {where}: a 'job:' section with name and command is needed")
    try:
        job = JobSection.model_validate(section)
    except ValidationError as e:
        problems = "; ".join(
            f"job.{'.'.join(str(p) for p in err['loc'])}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        )
        raise ConfigError(f"invalid {where}: {problems}") from None
    # the supervisor's own view ignores per-leg overrides a parent supervisor may have set
    controller_env = {
        k: v
        for k, v in (env if env is not None else _environ()).items()
        if k not in (ENV_SITE, ENV_CHECKPOINT_URL, ENV_EXCLUDE_SITES)
    }
    controller = ControllerConfig.from_dict(data, env=controller_env, where=where)
    names = {s.name for s in controller.sites}
    unknown = sorted(set(job.stores) - names)
    if unknown:
        raise ConfigError(
            f"invalid {where}: job.stores names sites that are not in 'sites': {unknown}"
        )
    base_dir = base_dir.resolve()
    return JobSpec(
        _job_paths(job, base_dir), _controller_paths(controller, base_dir), path, base_dir
    )


def _absolute(path: str, base_dir: Path) -> str:
    """``path`` (``~`` expanded) as an absolute path, a relative one taken from ``base_dir``."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base_dir / p).resolve())


def _job_paths(job: JobSection, base_dir: Path) -> JobSection:
    """``job`` with its workdir, cwd and local stores absolute (URLs kept as written)."""
    stores = {
        site: url if "://" in url else _absolute(url, base_dir) for site, url in job.stores.items()
    }
    cwd = None if job.cwd is None else _absolute(job.cwd, base_dir)
    workdir = _absolute(job.workdir, base_dir)
    return job.model_copy(update={"workdir": workdir, "cwd": cwd, "stores": stores})


def _controller_paths(config: ControllerConfig, base_dir: Path) -> ControllerConfig:
    """``config`` with its ledger path and trace path absolute."""
    ledger, signals = config.ledger, config.signals
    if ledger.path and "://" not in ledger.path:
        ledger = ledger.model_copy(update={"path": _absolute(ledger.path, base_dir)})
    if signals.trace_path:
        signals = signals.model_copy(update={"trace_path": _absolute(signals.trace_path, base_dir)})
    return config.model_copy(update={"ledger": ledger, "signals": signals})


def _environ() -> Mapping[str, str]:
    import os

    return os.environ
