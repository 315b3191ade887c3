"""Fate lines of workers built on the Lightning and Hugging Face integrations, and of DDP ranks
other than 0, reach the ``caftm run`` terminal as the plain worker's do (issue 18, item 4)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tests.jobs.jobs_support import HERE, book_of, caftm_cli, damage_a_checkpoint, write_job

from caftm.jobs.spec import load_job

pytestmark = pytest.mark.slow

STEPS = 40


def _lines(text: str, part: str) -> list[str]:
    return [line for line in text.splitlines() if part in line]


@pytest.mark.parametrize(
    ("worker", "module"), [("lightning_worker.py", "lightning"), ("hf_worker.py", "transformers")]
)
def test_an_integration_workers_fate_lines_reach_the_run_terminal(
    tmp_path: Path, worker: str, module: str
) -> None:
    pytest.importorskip(module)
    command = [sys.executable, str(HERE / worker), "--config", str(tmp_path / "fate.yaml")]
    config = write_job(tmp_path, "fate", policy="carbon-agnostic", steps=STEPS, command=command,
                       step_clock=False)  # fmt: skip
    damage_a_checkpoint(load_job(config), "KR", 20)
    run = caftm_cli("run", "--quiet", str(config), timeout_s=500)
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    [skipped] = _lines(run.stderr, "skipping checkpoint")
    assert "0 bytes" in skipped and "leg 1 at KR" in skipped, run.stderr
    assert len(_lines(run.stderr, "starting from step 0 although")) == 1, run.stderr
    book = book_of(config)
    [leg] = book.legs("fate")
    assert (leg.start_step, leg.end_step) == (0, STEPS)  # the worker's own word, not the 20
    assert book.get("fate").step == STEPS
    book.ledger.close()


def test_a_ddp_rank_other_than_0_has_its_fate_lines_reach_the_run_terminal(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch.distributed.run")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", str(HERE / "ddp_worker.py"), "--config",
               str(tmp_path / "ranks.yaml")]  # fmt: skip
    config = write_job(tmp_path, "ranks", policy="carbon-agnostic", steps=STEPS, command=command)
    damage_a_checkpoint(load_job(config), "KR", 20, rank=1)  # rank 0 has nothing to skip
    run = caftm_cli("run", "--quiet", str(config), timeout_s=500)
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    [skipped] = _lines(run.stderr, "skipping checkpoint")
    assert "leg 1 at KR: rank 1: skipping checkpoint" in skipped and "0 bytes" in skipped
    book = book_of(config)
    [leg] = book.legs("ranks")
    assert (leg.start_step, leg.end_step) == (0, STEPS)
    book.ledger.close()
