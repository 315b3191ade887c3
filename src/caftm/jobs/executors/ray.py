"""The ``ray`` executor: each leg a Ray job (Jobs API) pinned to its site's nodes.

A site is the set of nodes that carry the custom resource ``<site_resource_prefix><site>``
(``ray start --resources '{"site-FR": 1}'``), or, with ``site_label`` set, the node label
``<site_label>=<site>`` (``ray start --labels site=FR``). Each leg is submitted with that resource
(or label selector) as its entrypoint's requirement, so Ray runs the worker on one of the site's
nodes; its job id and driver node are recorded with the leg.

=========================  ====================================================================
supervisor asks            Ray does
=========================  ====================================================================
start                      ``submit_job`` (env: the worker protocol's variables and the job's
                           ``env``); waits until it runs, fails fast when the site has no live node
poll                       ``get_job_info``: the driver's exit code once the job ended
signal SIGTERM/SIGINT      ``stop_job``: SIGTERM to the worker, SIGKILL ``grace_s`` later
signal SIGKILL             ``stop_job`` (Ray escalates to SIGKILL itself after the grace)
adopt                      finds the leg's Ray job by its id (a supervisor restarted)
check_site                 the dashboard's node list: refuses a site with no live node at once
                           (Ray itself would leave the job PENDING for 15 minutes)
=========================  ====================================================================

The worker runs on another node: its outcome and status files, its log and the ledger are paths
under the job's ``workdir``, which every node must see at the same path (a shared filesystem);
checkpoint stores are per-site URLs every node of the site and the supervisor can reach (S3, or a
shared folder). Credentials are never shipped through Ray: nodes need their own (instance role,
or the environment ``ray start`` ran in).
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import signal
import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from ray.job_submission import JobStatus, JobSubmissionClient

from caftm.clock import CLOCK_ENV
from caftm.errors import ExecutorError
from caftm.jobs import protocol
from caftm.jobs.executors.base import LegFolderExecutor, LegLaunch, WorkerHandle
from caftm.jobs.spec import RaySection

if TYPE_CHECKING:
    from typing import Self

    from caftm.jobs.spec import JobSection
    from caftm.ledger.jobs import LegRecord

__all__ = ["RayExecutor"]

log = logging.getLogger(__name__)

_DEFAULT_ADDRESS = "http://127.0.0.1:8265"
#: variables always passed to the worker (the rest of its environment is its node's)
_ALWAYS = frozenset(
    {
        protocol.ENV_JOB, protocol.ENV_JOB_DIGEST, protocol.ENV_ADOPT_CHECKPOINTS_OF,
        protocol.ENV_LEG, protocol.ENV_SITE, protocol.ENV_CHECKPOINT_URL,
        protocol.ENV_LEDGER, protocol.ENV_OUTCOME_FILE, protocol.ENV_STATUS_FILE,
        protocol.ENV_EXCLUDE_SITES, protocol.ENV_GRACE_S, CLOCK_ENV, "PYTHONUNBUFFERED",
    }
)  # fmt: skip
#: how often a pending leg re-checks that its site still has a live node (s)
_RECHECK_S = 2.0
#: how long a submission answered "try again later" (a job agent still starting) is retried
_SUBMIT_RETRY_S = 60.0
#: the least time between two questions to the cluster about one leg (s)
_POLL_EVERY_S = 0.25
#: how long after a stopped leg's grace period Ray may take to end it (s)
_STOP_MARGIN_S = 30.0
#: how long the cluster may stay unreachable while a leg runs before the leg is given up (s)
_UNREACHABLE_S = 120.0


class RayExecutor(LegFolderExecutor):
    """Legs as Ray jobs (see the module docstring).

    Args:
        config: the ``job.ray`` section (default: all defaults, address from ``$RAY_ADDRESS``).
    """

    name: ClassVar[str] = "ray"
    takes_standby: ClassVar[bool] = True

    def __init__(self, config: RaySection | None = None) -> None:
        self.config = config or RaySection()
        address = self.config.address or os.environ.get("RAY_ADDRESS") or _DEFAULT_ADDRESS
        self.address = address if "://" in address else f"http://{address}"
        self._client: JobSubmissionClient | None = None

    @classmethod
    def from_job(cls, job: JobSection) -> Self:
        return cls(job.ray)

    # -- the cluster -------------------------------------------------------------------------------
    @property
    def client(self) -> JobSubmissionClient:
        """The Jobs API client (connected on first use)."""
        if self._client is None:
            try:
                self._client = JobSubmissionClient(self.address)
            except Exception as e:  # ray raises ConnectionError, RuntimeError, ValueError
                raise ExecutorError(
                    f"cannot reach the Ray cluster at {self.address}: {_one_line(e)}"
                ) from e
        return self._client

    def _pin(self, site: str) -> dict[str, Any]:
        """The submit_job arguments that run an entrypoint on ``site``'s nodes (and reserve
        the custom resources it asks for)."""
        resources = dict(self.config.resources)
        if self.config.site_label:
            pin: dict[str, Any] = {"entrypoint_label_selector": {self.config.site_label: site}}
        else:
            resources[f"{self.config.site_resource_prefix}{site}"] = self.config.resource_per_leg
            pin = {}
        return {**pin, "entrypoint_resources": resources} if resources else pin

    def asks(self) -> dict[str, float]:
        """What one leg's entrypoint reserves on its node, by Ray's resource name (``CPU``,
        ``GPU`` and custom ones; the site's own pin aside)."""
        asked = {"CPU": self.config.num_cpus, "GPU": self.config.num_gpus, **self.config.resources}
        return {name: amount for name, amount in asked.items() if amount > 0}

    def _describe_ask(self, name: str, amount: float) -> str:
        option = {"CPU": "num_cpus", "GPU": "num_gpus"}.get(name, f"resources.{name}")
        return f"{option}: {amount:g}"

    def missing(self, site: str, nodes: list[Any]) -> str | None:
        """Why no live node of ``site`` (``nodes``: its nodes, with ``resources_total``) can
        ever run a leg: the resources it asks that none offers, by the job file's names;
        None when one can."""
        asked = self.asks()
        if not asked or not nodes:
            return None
        totals = [node.resources_total or {} for node in nodes]
        if any(all(t.get(n, 0.0) >= a for n, a in asked.items()) for t in totals):
            return None
        short = [
            f"{self._describe_ask(n, a)} (at most {max(t.get(n, 0.0) for t in totals):g} on a node)"
            for n, a in asked.items()
            if all(t.get(n, 0.0) < a for t in totals)
        ]
        if not short:
            wanted = ", ".join(self._describe_ask(n, a) for n, a in asked.items())
            return f"no single live node of site {site} offers all of {wanted}"
        return f"no live node of site {site} offers {'; '.join(short)}"

    def _describe_pin(self, site: str) -> str:
        if self.config.site_label:
            return f"label {self.config.site_label}={site}"
        return f"resource {self.config.site_resource_prefix}{site}"

    def site_nodes(self, site: str) -> list[str]:
        """Ids of the live nodes of ``site``.

        Raises:
            ExecutorError: the cluster cannot be asked.
        """
        return [str(node.node_id) for node in self._site_nodes(site)]

    def check_config(self, sites: list[str]) -> None:
        """Refuse a job whose legs no live node of a site could ever run: a resource it asks
        (``num_gpus``, ``num_cpus``, a custom one) that none of the site's nodes offers.
        (A site with no live node now is skipped when a leg should start there.)"""
        from caftm.errors import ConfigError

        for site in sites:
            try:
                why = self.missing(site, self._site_nodes(site))
            except ExecutorError as e:
                raise ConfigError(f"cannot check the job's Ray resources: {e}") from None
            if why is not None:
                raise ConfigError(
                    f"{why} in the Ray cluster at {self.address}: its legs would stay pending "
                    "there; change job.ray or the cluster"
                )

    def _site_nodes(self, site: str) -> list[Any]:
        """The live nodes of ``site`` (Ray's node states, with ``resources_total``)."""
        from ray.util.state import list_nodes

        try:
            nodes = list_nodes(
                address=self.address,
                filters=[("state", "=", "ALIVE")],
                detail=True,
                timeout=max(1, math.ceil(self.config.request_timeout_s)),
                raise_on_missing_output=False,
            )
        except Exception as e:
            raise ExecutorError(
                f"cannot list the nodes of the Ray cluster at {self.address}: {_one_line(e)}"
            ) from e
        label, resource = self.config.site_label, f"{self.config.site_resource_prefix}{site}"
        found = []
        for node in nodes:
            if label:
                ok = (node.labels or {}).get(label) == site
            else:
                ok = (node.resources_total or {}).get(resource, 0.0) > 0.0
            if ok:
                found.append(node)
        return found

    def check_site(self, site: str) -> None:
        if not self.site_nodes(site):
            raise ExecutorError(
                f"site {site} has no live Ray node ({self._describe_pin(site)}) "
                f"in the cluster at {self.address}"
            )

    # -- legs --------------------------------------------------------------------------------------
    def start(self, launch: LegLaunch) -> WorkerHandle:
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        submission_id = f"caftm-{launch.job}-leg{launch.leg}-{uuid.uuid4().hex[:8]}"
        env = self._worker_env(launch)
        deadline = time.monotonic() + _SUBMIT_RETRY_S
        while True:
            try:
                self.client.submit_job(
                    entrypoint=self._entrypoint(launch),
                    submission_id=submission_id,
                    runtime_env={"env_vars": env},
                    metadata={"caftm_job": launch.job, "caftm_site": launch.site},
                    entrypoint_num_cpus=self.config.num_cpus,
                    entrypoint_num_gpus=self.config.num_gpus,
                    **self._pin(launch.site),
                )
                break
            except ExecutorError:
                raise
            except Exception as e:
                # a node's job agent that is still starting answers "try again later"
                if "try again later" in str(e) and time.monotonic() < deadline:
                    log.info("Ray at %s not ready to take leg %d: %s", self.address,
                             launch.leg, _one_line(e))  # fmt: skip
                    time.sleep(_RECHECK_S)
                    continue
                raise ExecutorError(
                    f"cannot submit leg {launch.leg} of job {launch.job} to the Ray cluster at "
                    f"{self.address}: {_one_line(e)}"
                ) from e
        handle = WorkerHandle(self.name, submission_id, extra={"log": str(launch.log_path)})
        self._wait_running(handle, launch)
        return handle

    def _wait_running(self, handle: WorkerHandle, launch: LegLaunch) -> None:
        """Wait until the leg leaves PENDING (recording its node); fail fast when it cannot."""
        started = time.monotonic()
        next_check = started + _RECHECK_S
        while True:
            info = self._info(handle.external_id)
            if info.status is not JobStatus.PENDING:
                handle.node = info.driver_node_id or None
                return
            now = time.monotonic()
            why = None
            if now - started > self.config.start_timeout_s:
                asked = ", ".join(self._describe_ask(n, a) for n, a in self.asks().items())
                waits = f"for {asked} on a node of site {launch.site}" if asked else "for a slot"
                why = (
                    f"still pending after {self.config.start_timeout_s:.0f} s, waiting {waits} "
                    f"({self._describe_pin(launch.site)}): the nodes that offer it are busy"
                )
            elif now >= next_check:
                next_check = now + _RECHECK_S
                nodes = self._site_nodes(launch.site)
                if not nodes:
                    pin = self._describe_pin(launch.site)
                    why = f"site {launch.site} has no live Ray node ({pin})"
                else:
                    why = self.missing(launch.site, nodes)
            if why is not None:
                self._stop(handle.external_id)
                raise ExecutorError(f"leg {launch.leg} of job {launch.job} did not start: {why}")
            time.sleep(0.1)

    def poll(self, handle: WorkerHandle) -> int | None:
        if handle.exit_code is not None:
            return handle.exit_code
        now = time.monotonic()
        if now - float(handle.extra.get("polled", 0.0)) < _POLL_EVERY_S:  # type: ignore[arg-type]
            return None  # the supervisor polls often; the dashboard is asked at most this often
        handle.extra["polled"] = now
        try:
            info = self.client.get_job_info(handle.external_id)
        except Exception as e:
            first = float(handle.extra.setdefault("unreachable_since", time.monotonic()))  # type: ignore[arg-type]
            if time.monotonic() - first > _UNREACHABLE_S:
                raise ExecutorError(
                    f"lost the Ray cluster at {self.address} while Ray job "
                    f"{handle.external_id} ran: {_one_line(e)}"
                ) from e
            log.warning("cannot ask Ray about job %s: %s", handle.external_id, _one_line(e))
            return None
        handle.extra.pop("unreachable_since", None)
        if handle.node is None and info.driver_node_id:
            handle.node = info.driver_node_id
        if not info.status.is_terminal():
            return None
        code = info.driver_exit_code
        if code is None:
            # stopped (SIGTERM, then SIGKILL) or lost with its node: Ray knows no exit code
            code = -signal.SIGTERM if info.status is JobStatus.STOPPED else -signal.SIGKILL
            if info.status is JobStatus.FAILED:
                self._note(handle, f"ray: job {handle.external_id} failed: {info.message}")
        handle.exit_code = int(code)
        return int(code)

    def signal(self, handle: WorkerHandle, signum: int) -> None:
        if handle.exit_code is not None:
            return
        if signum not in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            raise ExecutorError(
                f"the ray executor cannot send {signal.Signals(signum).name} to a worker"
            )
        # Ray sends SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S (the leg's grace)
        self._stop(handle.external_id)

    def adopt(self, leg: LegRecord) -> WorkerHandle | None:
        if leg.executor != self.name or not leg.external_id:
            return None
        try:
            info = self.client.get_job_info(leg.external_id)
        except Exception:  # the cluster or the job is gone: the leg counts as interrupted
            return None
        handle = WorkerHandle(self.name, leg.external_id, node=info.driver_node_id or leg.node)
        if info.status.is_terminal():
            return None if self.poll(handle) is None else handle
        return handle

    def stop_leg(self, leg: LegRecord, grace_s: float, *, poll_s: float = 0.1) -> int | None:
        """``stop_job`` on the leg's Ray job; raises ExecutorError when the cluster cannot say
        whether it runs (unreachable) or does not stop it."""
        if leg.executor != self.name or not leg.external_id:
            return None
        try:
            info = self.client.get_job_info(leg.external_id)
        except ExecutorError:
            raise
        except Exception as e:
            if "does not exist" in str(e) or "404" in str(e):
                return None  # Ray forgot it (a restarted head): nothing runs it
            raise ExecutorError(
                f"cannot ask the Ray cluster at {self.address} about job {leg.external_id}: "
                f"{_one_line(e)}"
            ) from e
        if info.status.is_terminal():
            return None
        handle = WorkerHandle(self.name, leg.external_id, node=info.driver_node_id or leg.node)
        try:
            if not self.client.stop_job(leg.external_id):
                raise ExecutorError(f"Ray did not stop job {leg.external_id}")
        except ExecutorError:
            raise
        except Exception as e:
            raise ExecutorError(f"cannot stop Ray job {leg.external_id}: {_one_line(e)}") from e
        # Ray sends SIGTERM, then SIGKILL after the leg's RAY_JOB_STOP_WAIT_TIME_S
        deadline = time.monotonic() + grace_s + _STOP_MARGIN_S
        while (code := self.poll(handle)) is None:
            if time.monotonic() > deadline:
                raise ExecutorError(
                    f"Ray job {leg.external_id} still runs {grace_s + _STOP_MARGIN_S:.0f} s "
                    "after it was stopped"
                )
            time.sleep(poll_s)
        return code

    def close(self) -> None:
        self._client = None

    # -- helpers -----------------------------------------------------------------------------------
    def _info(self, submission_id: str) -> Any:
        try:
            return self.client.get_job_info(submission_id)
        except Exception as e:
            raise ExecutorError(
                f"cannot ask the Ray cluster at {self.address} about job {submission_id}: "
                f"{_one_line(e)}"
            ) from e

    def _stop(self, submission_id: str) -> None:
        try:
            self.client.stop_job(submission_id)
        except Exception as e:
            log.warning("cannot stop Ray job %s: %s", submission_id, _one_line(e))

    @staticmethod
    def _entrypoint(launch: LegLaunch) -> str:
        """``cd CWD && exec ARGV >> LOG 2>&1`` (the log on the shared filesystem)."""
        return (
            f"cd {shlex.quote(str(launch.cwd))} && exec {shlex.join(launch.argv)} "
            f">> {shlex.quote(str(launch.log_path))} 2>&1"
        )

    @staticmethod
    def _worker_env(launch: LegLaunch) -> dict[str, str]:
        """What the supervisor set for the worker (not its own environment: the node has one)."""
        env = {
            key: value
            for key, value in launch.env.items()
            if key in _ALWAYS or os.environ.get(key) != value
        }
        env[protocol.ENV_GRACE_S] = repr(launch.grace_s)
        env["RAY_JOB_STOP_WAIT_TIME_S"] = str(max(1, math.ceil(launch.grace_s)))
        return env

    @staticmethod
    def _note(handle: WorkerHandle, line: str) -> None:
        path = handle.extra.get("log")
        if isinstance(path, str):
            try:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(" ".join(line.split())[:300] + "\n")
            except OSError:
                pass


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]
