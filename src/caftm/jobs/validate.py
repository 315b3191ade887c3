"""``caftm validate``: check a job beyond its schema and say what running it would do.

Nothing is started, created or written: the command's program is looked up, each site's store
URL is checked (protocol known, a local folder creatable), and each site's intensity now is read
from the configured source to say whether the job would start, move or wait.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from caftm.clock import AcceleratedClock
from caftm.errors import CaftmError, ConfigError
from caftm.jobs.executors import EXECUTORS, get_executor
from caftm.jobs.spec import JobSpec

log = logging.getLogger(__name__)

__all__ = ["JobDescription", "check_job", "check_stores_owned", "describe_job"]


@dataclass
class JobDescription:
    """Rows (site, zone, intensity now, store) and notes, for a table and a few lines."""

    sites: list[tuple[str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_job(spec: JobSpec) -> None:
    """Refuse what would only fail later: an unknown executor or program, a bad store URL.

    Raises:
        ConfigError: one line naming the problem and where.
    """
    if spec.job.executor not in EXECUTORS:
        raise ConfigError(
            f"job {spec.name}: unknown executor {spec.job.executor!r}; "
            f"known: {', '.join(sorted(EXECUTORS))}"
        )
    from caftm.jobs.executors.local import local_argv

    if spec.job.executor == "local":  # elsewhere the program lives on the engine's machines
        program = local_argv(spec.job.command)[0]
        where = spec.cwd / program if os.sep in program else None
        if where is not None and not where.exists():
            raise ConfigError(f"job {spec.name}: command {program!r} not found (from {spec.cwd})")
        if where is None and shutil.which(program) is None:
            raise ConfigError(f"job {spec.name}: command {program!r} is not on PATH")
    if not spec.cwd.is_dir():
        raise ConfigError(f"job {spec.name}: working directory {spec.cwd} does not exist")
    for site in spec.controller.site_zones():
        _check_store(spec, site, spec.store_url(site))
    check_stores_owned(spec)
    _check_deadline(spec)
    if spec.job.executor != "local":  # the engine's own checks (regions, accelerators)
        executor = get_executor(spec.job.executor, spec.job)
        try:
            executor.check_config(list(spec.controller.site_zones()))
        finally:
            executor.close()


def check_stores_owned(spec: JobSpec) -> None:
    """Refuse a site's store whose newest checkpoint belongs to another job.

    A store that cannot be read is left to the worker (which checks again before restoring).

    Raises:
        ConfigError: one line: whose the checkpoints are and how to proceed.
    """
    urls = {site: spec.store_url(site) for site in spec.controller.site_zones()}
    urls = {s: u for s, u in urls.items() if "://" in u or Path(u).exists()}
    if not urls:
        return  # nothing to read (and no need to import the checkpoint package)
    from caftm.checkpoint.owner import ForeignCheckpoints, check_store_owner

    identity = spec.identity
    for site, url in urls.items():
        try:
            check_store_owner(url, identity)
        except ForeignCheckpoints as e:
            raise ConfigError(f"job {spec.name}: site {site}: {e}") from None
        except CaftmError as e:
            log.debug("job %s: site %s: store not checked for its owner: %s", spec.name, site, e)


def _check_deadline(spec: JobSpec) -> None:
    """Refuse a deadline already past on the job's clock: every policy would just train on.

    (How long the job takes is not known before it runs, so only a past deadline is refused.)
    """
    deadline = spec.controller.policy.deadline
    if deadline is None:
        return
    now_s = _start_time_s(spec)
    if deadline.timestamp() <= now_s:
        clock = "the job's accelerated clock starts at" if spec.job.clock_speed else "now is"
        raise ConfigError(
            f"job {spec.name}: policy.deadline {_utc(deadline.timestamp())} is in the past "
            f"({clock} {_utc(now_s)}): the job would train at once wherever it is, ignoring "
            "carbon; set a later deadline or remove it"
        )


def _utc(seconds: float) -> str:
    from caftm.control.states import utc_from_s

    return utc_from_s(seconds).strftime("%Y-%m-%d %H:%M UTC")


def _check_store(spec: JobSpec, site: str, url: str) -> None:
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if protocol not in fsspec.available_protocols():
        raise ConfigError(
            f"job {spec.name}: site {site}: store {url} has an unknown protocol {protocol!r}"
        )
    if protocol == "file":
        path = Path(url.removeprefix("file://"))
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            raise ConfigError(
                f"job {spec.name}: site {site}: store {path} cannot be created "
                f"({existing} is not a writable folder)"
            )


def describe_job(spec: JobSpec) -> JobDescription:
    """Check ``spec`` (:func:`check_job`) and describe what running it would do.

    Raises:
        ConfigError: as :func:`check_job`.
    """
    from caftm.control.states import utc_from_s

    check_job(spec)
    config = spec.controller
    clock_s = _start_time_s(spec)
    description = JobDescription()
    readings: dict[str, float] = {}
    source = None
    try:
        from caftm.signals.registry import configured_source

        source = configured_source(config.signals.source, config.signals.trace_path)
    except CaftmError as e:
        description.notes.append(f"intensities unavailable: {e}")
    for site, zone in config.site_zones().items():
        shown = "—"
        if source is not None:
            try:
                value = source.intensity(zone, utc_from_s(clock_s)).intensity_g_per_kwh
                readings[site] = value
                shown = f"{value:.0f} g/kWh"
            except CaftmError as e:
                shown = f"unavailable ({e})"
        description.sites.append((site, zone, shown, spec.store_url(site)))
    start = config.start_site
    theta = config.threshold
    description.notes += [
        f"command: {' '.join(spec.job.command)} (in {spec.cwd}, executor {spec.job.executor})",
        f"starts at {start}; policy {config.policy.name}; θ {theta.mode.value} "
        f"{theta.value_g_per_kwh:.0f} g/kWh; GPU control {config.gpu.control} "
        f"({config.gpu.knob.value})",
        f"ledger: {spec.ledger_path}; logs under {spec.workdir}",
    ]
    if spec.job.clock_speed:
        description.notes.append(
            f"accelerated clock: {spec.job.clock_speed:g}× from "
            f"{utc_from_s(clock_s).strftime('%Y-%m-%d %H:%M UTC')} while it trains or pauses "
            "(1× while workers start or stop and checkpoints move)"
        )
    now = readings.get(start)
    if now is not None and math.isfinite(now) and theta.mode.value == "absolute":
        if now < theta.value_g_per_kwh:
            description.notes.append(f"{start} is below θ now: the job would train there")
        else:
            cleaner = sorted((v, s) for s, v in readings.items() if v < theta.value_g_per_kwh)
            where = f"; cleanest now {cleaner[0][1]} ({cleaner[0][0]:.0f})" if cleaner else ""
            description.notes.append(
                f"{start} is above θ now: after profiling the job would move or wait{where}"
            )
    return description


def _start_time_s(spec: JobSpec) -> float:
    import time

    start = spec.job.clock_start
    if spec.job.clock_speed and start is not None:
        return AcceleratedClock.starting_at(start.timestamp(), spec.job.clock_speed)()
    return time.time()
