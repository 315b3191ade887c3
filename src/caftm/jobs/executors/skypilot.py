"""The ``skypilot`` executor: each leg a SkyPilot managed job pinned to its site's cloud region.

A site is a cloud region named as in :mod:`caftm.regions` (``aws:eu-west-3``: nothing else to
configure). Each leg becomes a SkyPilot task: ``resources`` pinned to that cloud and region (the
job's accelerators, spot or not), job recovery within the region (``FAILOVER``, SkyPilot restarts
a preempted or failed VM there), the checkpoint bucket mounted, the worker protocol's variables as
``envs``, and the worker command as ``run``. It is launched, watched and cancelled through
SkyPilot's Python API (``sky.jobs.launch``, ``sky.jobs.queue``, ``sky.jobs.cancel``), which needs
the user's cloud credentials (``sky check``); those three calls are :class:`ManagedJobs`, the one
seam between caftm and where a leg runs (tests put a local launcher there).

The worker runs on a cloud VM: its outcome and status files go to ``job.skypilot.bucket``
(mounted at ``mount_path``), from which the supervisor copies them back; checkpoint stores must be
URLs both the VM and the supervisor reach (``s3://…``, ``gs://…``). A VM reaches the bucket, not
the supervisor's ledger file: its worker writes the supervisor's PostgreSQL (where the ledger is
one) or spools its measurements into the leg's folder in the bucket, which the supervisor fetches
and imports (:mod:`caftm.ledger.spool`). Before any launch, caftm
refuses a region SkyPilot does not know and an accelerator the region does not offer, using
SkyPilot's own catalog, with one line.
"""

from __future__ import annotations

import copy
import logging
import math
import shlex
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import sky

from caftm.clock import CLOCK_ENV
from caftm.errors import CaftmError, ConfigError, ExecutorError
from caftm.jobs import protocol
from caftm.jobs.executors.base import (
    OUTCOME_FILE,
    STATUS_FILE,
    LegFolderExecutor,
    LegLaunch,
    LegRef,
    WorkerHandle,
)
from caftm.jobs.spec import SkyPilotSection
from caftm.ledger.spool import SPOOL_FILE, remote_worker_ledger

if TYPE_CHECKING:
    from typing import Self

    from caftm.jobs.protocol import StopRequest
    from caftm.jobs.spec import JobSection
    from caftm.ledger.jobs import LegRecord
    from caftm.regions import Region

__all__ = ["ManagedJobs", "SkyManagedJobs", "SkyPilotExecutor"]

log = logging.getLogger(__name__)

#: caftm's providers → SkyPilot's cloud names
_CLOUDS = {"aws": "aws", "gcp": "gcp", "azure": "azure"}
#: variables passed to the worker besides the job's own ``env``
_PROTOCOL = (
    protocol.ENV_JOB, protocol.ENV_JOB_DIGEST, protocol.ENV_ADOPT_CHECKPOINTS_OF, protocol.ENV_LEG,
    protocol.ENV_SITE, protocol.ENV_CHECKPOINT_URL, protocol.ENV_EXCLUDE_SITES,
    protocol.ENV_GRACE_S, CLOCK_ENV,
)  # fmt: skip
_STATUS_EVERY_S = 5.0


class ManagedJobs(Protocol):
    """Where a leg's task runs: launch it, ask how it stands, cancel it (SkyPilot's managed jobs,
    :class:`SkyManagedJobs`; any failure raises, the executor says it in one line)."""

    def launch(self, task: Any, name: str) -> str:
        """Launch ``task`` (a validated ``sky.Task``) as ``name``; returns the job's id."""
        ...

    def status(self, job_id: str) -> str | None:
        """The job's ``sky.jobs.ManagedJobStatus`` name; None: no such job."""
        ...

    def cancel(self, job_id: str, *, graceful: bool, graceful_timeout: int | None) -> None:
        """Cancel the job (``graceful``: SIGTERM first, SIGKILL after ``graceful_timeout`` s)."""
        ...


class SkyManagedJobs:
    """:class:`ManagedJobs` through SkyPilot's API server (the user's ``sky`` setup)."""

    def launch(self, task: Any, name: str) -> str:
        job_ids, _ = sky.get(sky.jobs.launch(task, name=name))
        return str(job_ids[0] if isinstance(job_ids, list) else job_ids)

    def status(self, job_id: str) -> str | None:
        records = sky.get(sky.jobs.queue(refresh=False, skip_finished=False, job_ids=[int(job_id)]))
        for record in records:
            fields = record if isinstance(record, dict) else vars(record)
            if str(fields.get("job_id")) == job_id:
                status = fields.get("status")
                return None if status is None else str(getattr(status, "name", status))
        return None

    def cancel(self, job_id: str, *, graceful: bool, graceful_timeout: int | None) -> None:
        sky.get(
            sky.jobs.cancel(
                job_ids=[int(job_id)], graceful=graceful,
                graceful_timeout=graceful_timeout,
            )
        )  # fmt: skip


def _terminal(status: str | None) -> bool:
    """Whether a managed job in ``status`` has ended (an unknown job has; a status this
    SkyPilot does not name has not)."""
    if status is None:
        return True
    known = sky.jobs.ManagedJobStatus.__members__.get(status)
    return known is not None and bool(known.is_terminal())


class SkyPilotExecutor(LegFolderExecutor):
    """Legs as SkyPilot managed jobs (see the module docstring).

    Args:
        config: the ``job.skypilot`` section.
        job_env: the job's own ``env`` (passed to every leg).
        managed_jobs: where legs run (default: SkyPilot's managed jobs).
    """

    name: ClassVar[str] = "skypilot"

    def __init__(
        self,
        config: SkyPilotSection | None = None,
        job_env: dict[str, str] | None = None,
        managed_jobs: ManagedJobs | None = None,
    ) -> None:
        self.config = config or SkyPilotSection()
        self.job_env = dict(job_env or {})
        self.managed_jobs: ManagedJobs = managed_jobs or SkyManagedJobs()

    @classmethod
    def from_job(cls, job: JobSection) -> Self:
        return cls(job.skypilot, job.env)

    # -- sites -------------------------------------------------------------------------------------
    @staticmethod
    def region_of(site: str) -> Region:
        """The cloud region a site names (``provider:region``).

        Raises:
            ConfigError: not a cloud region caftm and SkyPilot both know.
        """
        from caftm.regions import Catalog

        if ":" not in site:
            raise ConfigError(
                f"site {site}: the skypilot executor needs cloud sites written provider:region "
                "(e.g. aws:eu-west-3)"
            )
        region = Catalog.load_default().resolve(site)
        if region.provider not in _CLOUDS:
            raise ConfigError(
                f"site {site}: provider {region.provider!r} is not a SkyPilot cloud "
                f"({', '.join(sorted(_CLOUDS))})"
            )
        return region

    def check_config(self, sites: list[str]) -> None:
        """Refuse, before any launch, sites SkyPilot cannot serve as configured.

        Raises:
            ConfigError: one line: the site, and what SkyPilot's catalog says.
        """
        if self.config.bucket is None:
            raise ConfigError(
                "job.skypilot.bucket: a bucket URL is needed (legs write their outcome there)"
            )
        for site in sites:
            self._check_region(site)

    def check_site(self, site: str) -> None:
        try:
            self._check_region(site)
        except ConfigError as e:
            raise ExecutorError(str(e)) from e

    def _check_region(self, site: str) -> None:
        region = self.region_of(site)
        cloud = _CLOUDS[region.provider]
        try:
            from sky.utils import registry

            sky_cloud: Any = registry.CLOUD_REGISTRY.from_str(cloud)
            sky_cloud.validate_region_zone(region.region_id, None)
        except Exception as e:  # SkyPilot raises ValueError with a multi-line message
            raise ConfigError(f"site {site}: SkyPilot refuses region: {_first_line(e)}") from e
        accelerators = self.config.accelerators
        if accelerators is None:
            return
        name, _, count_text = accelerators.partition(":")
        count = float(count_text) if count_text else 1.0
        from sky import catalog

        try:
            offered = catalog.list_accelerators(
                gpus_only=False, name_filter=name, region_filter=region.region_id,
                clouds=cloud, case_sensitive=False, all_regions=True,
            )  # fmt: skip
        except Exception as e:
            raise ConfigError(
                f"site {site}: cannot read SkyPilot's {cloud} catalog: {_first_line(e)}"
            ) from e
        counts = sorted(
            {
                info.accelerator_count
                for key, infos in offered.items()
                if key.lower() == name.lower()
                for info in infos
                if info.region == region.region_id
            }
        )
        if not counts:
            raise ConfigError(
                f"site {site}: {cloud} offers no {name} in {region.region_id} "
                "(job.skypilot.accelerators)"
            )
        if count not in counts:
            shown = ", ".join(f"{c:g}" for c in counts)
            raise ConfigError(
                f"site {site}: {cloud} offers {name} in {region.region_id} only in counts of "
                f"{shown}, not {count:g} (job.skypilot.accelerators)"
            )

    # -- tasks -------------------------------------------------------------------------------------
    def remote_leg_dir(self, launch: LegLaunch | LegRef) -> tuple[str, str]:
        """The leg's folder for its outcome and status: (path on the VM, bucket URL)."""
        relative = f"caftm-jobs/{launch.job}/leg-{launch.leg:04d}"
        bucket = (self.config.bucket or "").rstrip("/")
        return f"{self.config.mount_path.rstrip('/')}/{relative}", f"{bucket}/{relative}"

    def task_config(self, launch: LegLaunch) -> dict[str, Any]:
        """The SkyPilot task (YAML form) of one leg.

        Raises:
            ConfigError: the site is not a cloud region.
        """
        region = self.region_of(launch.site)
        resources: dict[str, Any] = {
            "cloud": _CLOUDS[region.provider],
            "region": region.region_id,
            "use_spot": self.config.use_spot,
            "job_recovery": {
                "strategy": "FAILOVER",  # recover within the region: the site is the region
                "max_restarts_on_errors": self.config.max_restarts_on_errors,
            },
        }
        for key in ("accelerators", "cpus", "memory"):
            value = getattr(self.config, key)
            if value is not None:
                resources[key] = value
        remote_dir, _ = self.remote_leg_dir(launch)
        envs = {key: launch.env[key] for key in _PROTOCOL if key in launch.env}
        envs.update(self.job_env)
        envs.update(
            {
                protocol.ENV_OUTCOME_FILE: f"{remote_dir}/{OUTCOME_FILE}",
                protocol.ENV_STATUS_FILE: f"{remote_dir}/{STATUS_FILE}",
                protocol.ENV_LEDGER: remote_worker_ledger(launch.env.get(protocol.ENV_LEDGER, "")),
                protocol.ENV_GRACE_S: repr(launch.grace_s),
                "PYTHONUNBUFFERED": "1",
            }
        )
        config: dict[str, Any] = {
            "name": f"{self.config.name_prefix}{launch.job}-leg{launch.leg}",
            "resources": resources,
            "envs": envs,
            "run": f"mkdir -p {shlex.quote(remote_dir)} && exec {shlex.join(launch.argv)}",
        }
        if self.config.bucket is not None:
            config["file_mounts"] = {
                self.config.mount_path: {"source": self.config.bucket, "mode": "MOUNT"}
            }
        if self.config.setup:
            config["setup"] = self.config.setup
        if self.config.workdir:
            config["workdir"] = self.config.workdir
        return config

    def build_task(self, launch: LegLaunch) -> Any:
        """The leg's ``sky.Task``, validated by SkyPilot.

        Raises:
            ExecutorError: SkyPilot refuses it (one line).
        """
        config = self.task_config(launch)
        try:
            task = sky.Task.from_yaml_config(copy.deepcopy(config))  # it empties what it reads
            task.validate()
        except Exception as e:
            raise ExecutorError(
                f"SkyPilot refuses the task of leg {launch.leg} at {launch.site}: {_first_line(e)}"
            ) from e
        return task

    # -- legs --------------------------------------------------------------------------------------
    def start(self, launch: LegLaunch) -> WorkerHandle:
        task = self.build_task(launch)
        name = f"{self.config.name_prefix}{launch.job}-leg{launch.leg}"
        try:
            job_id = self.managed_jobs.launch(task, name)
        except Exception as e:
            raise ExecutorError(
                f"cannot launch leg {launch.leg} of job {launch.job} at {launch.site} "
                f"with SkyPilot: {_first_line(e)}"
            ) from e
        _, remote = self.remote_leg_dir(launch)
        return WorkerHandle(
            self.name,
            job_id,
            node=launch.site,
            extra={
                "remote": remote,
                "local": str(launch.log_path.parent),
                "fetched": 0.0,
                "grace_s": launch.grace_s,
            },
        )

    def poll(self, handle: WorkerHandle) -> int | None:
        if handle.exit_code is not None:
            return handle.exit_code
        try:
            status = self.managed_jobs.status(handle.external_id)
        except Exception as e:
            log.warning("cannot ask SkyPilot about job %s: %s", handle.external_id, e)
            return None
        terminal = _terminal(status)
        now = time.monotonic()
        if terminal or now - float(handle.extra.get("fetched", 0.0)) > _STATUS_EVERY_S:  # type: ignore[arg-type]
            handle.extra["fetched"] = now
            ending = (STATUS_FILE, OUTCOME_FILE) if terminal else (STATUS_FILE,)
            self._fetch(handle, (*ending, SPOOL_FILE))
        if not terminal:
            return None
        code = 0 if status == "SUCCEEDED" else -signal.SIGTERM if status == "CANCELLED" else 1
        handle.exit_code = code
        return code

    def _fetch(self, handle: WorkerHandle, names: tuple[str, ...]) -> None:
        """Copy the leg's status/outcome files from the bucket to where the supervisor reads."""
        if "remote" not in handle.extra or "local" not in handle.extra:
            return  # adopted: :meth:`outcome` reads what the bucket holds when the leg ends
        self._copy_home(str(handle.extra["remote"]), Path(str(handle.extra["local"])), names)

    def outcome(self, leg: LegRef) -> StopRequest | None:
        """The leg's outcome, its status and its spool fetched from the bucket first (a leg
        adopted, or stopped by ``caftm cancel``, was never fetched by this process)."""
        _, remote = self.remote_leg_dir(leg)
        self._copy_home(remote, leg.folder, (STATUS_FILE, OUTCOME_FILE, SPOOL_FILE))
        return super().outcome(leg)

    @staticmethod
    def _copy_home(remote: str, local: Path, names: tuple[str, ...]) -> None:
        """Copy the files ``names`` the bucket holds from ``remote`` into ``local``."""
        import fsspec

        for name in names:
            try:
                with fsspec.open(f"{remote}/{name}", "rb") as fh:
                    data = fh.read()
            except (OSError, ValueError, ImportError):
                continue
            local.mkdir(parents=True, exist_ok=True)
            (local / name).write_bytes(data)

    def signal(self, handle: WorkerHandle, signum: int) -> None:
        if handle.exit_code is not None:
            return
        grace_s = handle.extra.get("grace_s", 30.0)
        graceful = signum != signal.SIGKILL  # the worker checkpoints on SIGTERM first
        try:
            self.managed_jobs.cancel(
                handle.external_id, graceful=graceful,
                graceful_timeout=math.ceil(float(grace_s)) if graceful else None,  # type: ignore[arg-type]
            )  # fmt: skip
        except Exception as e:
            raise ExecutorError(
                f"cannot cancel SkyPilot job {handle.external_id}: {_first_line(e)}"
            ) from e

    def stop_leg(self, leg: LegRecord, grace_s: float, *, poll_s: float = 5.0) -> int | None:
        """``sky.jobs.cancel`` (graceful) on the leg's managed job; raises ExecutorError when
        SkyPilot cannot be asked or does not end it."""
        if leg.executor != self.name or not leg.external_id:
            return None
        try:
            status = self.managed_jobs.status(leg.external_id)
        except Exception as e:
            raise ExecutorError(
                f"cannot ask SkyPilot about managed job {leg.external_id}: {_first_line(e)}"
            ) from e
        if _terminal(status):
            return None
        handle = WorkerHandle(self.name, leg.external_id, node=leg.site, extra={"grace_s": grace_s})
        self.signal(handle, signal.SIGTERM)
        deadline = time.monotonic() + grace_s + 300.0  # a VM's teardown takes minutes
        while (code := self.poll(handle)) is None:
            if time.monotonic() > deadline:
                raise ExecutorError(
                    f"SkyPilot managed job {leg.external_id} still runs after its cancel"
                )
            time.sleep(poll_s)
        return code

    def adopt(self, leg: LegRecord) -> WorkerHandle | None:
        if leg.executor != self.name or not leg.external_id:
            return None
        try:
            status = self.managed_jobs.status(leg.external_id)
        except (CaftmError, Exception):
            return None
        if _terminal(status):
            return None
        return WorkerHandle(self.name, leg.external_id, node=leg.site)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]
