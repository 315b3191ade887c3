"""A checkpoint records the job that wrote it; a store refuses to restore another job's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caftm.checkpoint import CheckpointStore, Manifest, TrainingState
from caftm.checkpoint.layout import rank_dir_name
from caftm.checkpoint.owner import (
    ForeignCheckpoints,
    JobIdentity,
    check_store_owner,
    training_digest,
)
from caftm.errors import CheckpointError

DIGEST_A = training_digest(["python", "train.py"], 1500)
A = JobIdentity("a", DIGEST_A)


def _save(url: Path, step: int, owner: JobIdentity | None) -> None:
    with CheckpointStore(url, keep_last=None, owner=owner) as store:
        store.save(TrainingState(extra={"step_seen": step}, rng=False), step=step)


def _manifest(url: Path, step: int) -> dict[str, object]:
    data = json.loads((url / f"step-{step:09d}" / "MANIFEST.json").read_text())
    assert isinstance(data, dict)
    return data


def test_the_digest_covers_command_and_total_steps_only() -> None:
    assert training_digest(["python", "train.py"], 1500) == DIGEST_A  # stable
    assert len(DIGEST_A) == 16
    assert training_digest(["python", "train.py", "--lr", "1"], 1500) != DIGEST_A
    assert training_digest(["python", "train.py"], 3000) != DIGEST_A


def test_the_identity_travels_in_the_environment() -> None:
    assert JobIdentity.from_env({}) is None  # a script run alone
    assert JobIdentity.from_env({"CAFTM_JOB": ""}) is None
    full = JobIdentity("b", "0123456789abcdef", adopts="a")
    assert JobIdentity.from_env(full.to_env()) == full
    assert JobIdentity.from_env({"CAFTM_JOB": "b"}) == JobIdentity("b")


def test_a_checkpoint_records_its_job_and_a_plain_one_records_none(tmp_path: Path) -> None:
    _save(tmp_path / "owned", 5, A)
    assert _manifest(tmp_path / "owned", 5)["job"] == {"name": "a", "digest": DIGEST_A}
    _save(tmp_path / "plain", 5, None)
    assert "job" not in _manifest(tmp_path / "plain", 5)
    with CheckpointStore(tmp_path / "owned") as store:
        (info,) = store.checkpoints()
    assert (info.manifest.job, info.manifest.job_digest) == ("a", DIGEST_A)


def test_manifests_without_a_job_still_parse_and_a_malformed_one_is_refused() -> None:
    body = json.loads(Manifest(step=1, files=(), created_unix_s=0.0, caftm_version="0").to_json())
    body["files"] = [
        {"name": n, "size_bytes": 1, "sha256": "0" * 64}
        for n in ("tensors.safetensors", "state.json")
    ]
    old = Manifest.from_json(json.dumps(body).encode(), where="x")
    assert (old.job, old.job_digest) == (None, None)
    body["job"] = {"name": 7}
    with pytest.raises(CheckpointError, match="malformed"):
        Manifest.from_json(json.dumps(body).encode(), where="x")


@pytest.mark.parametrize(
    ("reader", "allowed"),
    [
        (JobIdentity("a", DIGEST_A), True),  # the job itself
        (JobIdentity("a"), True),  # digest unknown: the name decides
        (JobIdentity("b", "f" * 16), False),  # a copied job with another name
        (JobIdentity("a", "f" * 16), False),  # the same name, another command or total_steps
        (JobIdentity("b", "f" * 16, adopts="a"), True),  # adopted explicitly
        (None, True),  # a script run alone checks nothing
    ],
)
def test_a_store_restores_only_its_own_jobs_checkpoints(
    tmp_path: Path, reader: JobIdentity | None, allowed: bool
) -> None:
    _save(tmp_path, 10, A)
    state = TrainingState(extra={"step_seen": -1}, rng=False)
    with CheckpointStore(tmp_path, owner=reader) as store:
        if allowed:
            info = store.restore_latest(state)
            assert info is not None and info.step == 10
        else:
            with pytest.raises(ForeignCheckpoints) as refused:
                store.restore_latest(state)
            message = str(refused.value)
            assert "\n" not in message
            assert "job 'a'" in message and "step 10" in message
            assert "its own store" in message and "adopt_checkpoints_of: a" in message
            with pytest.raises(ForeignCheckpoints):
                store.load(10)
    if not allowed:
        with pytest.raises(ForeignCheckpoints):
            check_store_owner(str(tmp_path), reader)  # type: ignore[arg-type]
    elif reader is not None:
        check_store_owner(str(tmp_path), reader)


def test_another_jobs_newest_checkpoint_is_not_skipped_for_an_older_own_one(
    tmp_path: Path,
) -> None:
    b = JobIdentity("b", "f" * 16)
    _save(tmp_path, 10, b)
    _save(tmp_path, 20, A)
    with CheckpointStore(tmp_path, owner=b) as store, pytest.raises(ForeignCheckpoints):
        store.restore_latest(TrainingState(extra={"step_seen": -1}, rng=False))


def test_ownerless_checkpoints_belong_to_any_job(tmp_path: Path) -> None:
    _save(tmp_path, 3, None)  # a script run alone, or an older caftm
    b = JobIdentity("b", "f" * 16)
    check_store_owner(str(tmp_path), b)
    with CheckpointStore(tmp_path, owner=b) as store:
        info = store.restore_latest(TrainingState(extra={"step_seen": -1}, rng=False))
        assert info is not None and info.step == 3
        store.save(TrainingState(extra={"step_seen": 4}, rng=False), step=4)
    assert _manifest(tmp_path, 4)["job"] == {"name": "b", "digest": "f" * 16}


def test_the_store_check_reads_every_rank_and_passes_a_missing_store(tmp_path: Path) -> None:
    b = JobIdentity("b", "f" * 16)
    check_store_owner(str(tmp_path / "none"), b)
    _save(tmp_path / rank_dir_name(0), 8, None)
    _save(tmp_path / rank_dir_name(1), 8, A)
    with pytest.raises(ForeignCheckpoints, match="job 'a'"):
        check_store_owner(str(tmp_path), b)
