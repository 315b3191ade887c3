"""The executors' sections of a job file: bad values give one line naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from caftm.errors import ConfigError
from caftm.jobs.executors import EXECUTORS
from caftm.jobs.spec import job_from_dict


def _job(tmp_path: Path, **job: Any) -> Any:
    data = {"job": {"name": "j", "command": "python train.py", **job}, "sites": ["KR", "FR"]}
    return job_from_dict(data, base_dir=tmp_path)


def test_the_engines_are_registered_with_install_hints() -> None:
    assert EXECUTORS["ray"] == ("caftm.jobs.executors.ray:RayExecutor", "pip install 'caftm[ray]'")
    assert EXECUTORS["skypilot"][1] == "pip install 'caftm[skypilot]'"


def test_defaults_and_values_are_read(tmp_path: Path) -> None:
    spec = _job(tmp_path, executor="ray", ray={"address": "http://head:8265", "num_gpus": 1})
    assert spec.job.ray.address == "http://head:8265" and spec.job.ray.num_gpus == 1
    assert spec.job.ray.site_resource_prefix == "site-" and spec.job.skypilot.bucket is None


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"ray": {"address": "head:6379"}}, "job.ray.address: 'head:6379': give the dashboard's"),
        ({"ray": {"num_gpus": -1}}, "job.ray.num_gpus: Input should be greater than or equal"),
        ({"ray": {"adress": "http://x"}}, "job.ray.adress: Extra inputs are not permitted"),
        ({"skypilot": {"accelerators": "H100:x"}}, "job.skypilot.accelerators: 'H100:x'"),
        ({"skypilot": {"bucket": "my-bucket"}}, "job.skypilot.bucket: 'my-bucket': give a bucket"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_field(
    tmp_path: Path, job: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _job(tmp_path, **job)
    message = str(caught.value)
    assert expected in message and "\n" not in message, message
