"""The Ray executor's submission when the cluster answers "try again later" (a node's job agent
still starting): retried, not a failed job. A scripted Jobs API client stands in for the cluster
here; tests/jobs/test_ray.py runs the executor against a real one."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'caftm[ray]')")

from ray.job_submission import JobStatus

import caftm.jobs.executors.ray as ray_executor
from caftm.errors import ExecutorError
from caftm.jobs.executors import LegLaunch

AGENT_STARTING = (
    "Request failed with status code 500: No available agent to submit job, please try again later."
)


class ScriptedJobsClient:
    """Answers ``submit_job`` with the scripted errors first, then accepts; jobs then run."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        self.submitted: list[str] = []

    def submit_job(self, *, submission_id: str, **_: Any) -> str:
        self.submitted.append(submission_id)
        if self.errors:
            raise RuntimeError(self.errors.pop(0))
        return submission_id

    def get_job_info(self, submission_id: str) -> Any:
        return SimpleNamespace(status=JobStatus.RUNNING, driver_node_id="node-1")


def _executor(monkeypatch: pytest.MonkeyPatch, errors: list[str]) -> Any:
    monkeypatch.setattr(ray_executor, "_RECHECK_S", 0.01)
    executor = ray_executor.RayExecutor()
    executor._client = ScriptedJobsClient(errors)  # type: ignore[assignment]
    return executor


def _launch(tmp_path: Path) -> LegLaunch:
    return LegLaunch(
        "job", 1, "KR", (sys.executable, "-c", "pass"), {}, tmp_path, tmp_path / "w.log", 5.0
    )


def test_a_starting_job_agent_is_waited_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    executor = _executor(monkeypatch, [AGENT_STARTING, AGENT_STARTING])
    handle = executor.start(_launch(tmp_path))
    submitted = executor._client.submitted
    assert len(submitted) == 3 and len(set(submitted)) == 1  # one submission id, retried
    assert handle.external_id == submitted[0] and handle.node == "node-1"


def test_other_refusals_fail_at_once_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    executor = _executor(monkeypatch, ["Request failed with status code 400: bad runtime_env"])
    with pytest.raises(ExecutorError, match=r"cannot submit leg 1 of job job .* bad runtime_env"):
        executor.start(_launch(tmp_path))
    assert len(executor._client.submitted) == 1


def test_an_agent_that_never_comes_fails_after_the_retry_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ray_executor, "_SUBMIT_RETRY_S", 0.05)
    executor = _executor(monkeypatch, [AGENT_STARTING] * 1000)
    with pytest.raises(ExecutorError, match="try again later"):
        executor.start(_launch(tmp_path))
    assert 1 < len(executor._client.submitted) < 1000
