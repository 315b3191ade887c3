"""The examples meet bad input as the CLI does: one error line, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("script", "option", "message"),
    [
        ("train_cnn.py", "--config", "must hold a mapping"),
        ("resume_cnn.py", "--store", "cannot list checkpoint directory"),
    ],
)
def test_a_file_where_a_directory_belongs(
    tmp_path: Path, script: str, option: str, message: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), option, str(blocker)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert str(blocker) in lines[0]


README = EXAMPLES.parent / "README.md"
README_LOOP = EXAMPLES / "readme_loop.py"


def readme_use_it_block() -> str:
    """The first fenced Python block of the README's "## Use it" section."""
    section = README.read_text(encoding="utf-8").split("\n## Use it\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```\n", 1)[0]


def example_marked_block() -> str:
    text = README_LOOP.read_text(encoding="utf-8")
    return text.split('# --- README "Use it" begins ---\n', 1)[1].split(
        '# --- README "Use it" ends ---\n', 1
    )[0]


def test_the_readme_use_it_block_is_the_example_verbatim() -> None:
    block = example_marked_block()
    assert "scheduler=scheduler" in block and "scaler=scaler" in block  # the complete loop
    assert readme_use_it_block() == block


@pytest.mark.slow  # two fresh training processes
def test_the_readme_loop_trains_and_a_second_run_resumes_at_its_end(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(
        "sites: [FR]\n"
        "total_steps: 24\n"
        "threshold: {mode: absolute, value_g_per_kwh: 2500}\n"
        'gpu: {control: "off"}\n'
        f"checkpoint: {{url: {tmp_path / 'ckpt'}}}\n"
        f"ledger: {{path: {tmp_path / 'ledger.sqlite'}}}\n"
    )

    def run() -> str:
        done = subprocess.run(
            [sys.executable, str(README_LOOP)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert run() == "completed at step 24 (resumed from step 0)"
    assert run() == "completed at step 24 (resumed from step 24)"  # nothing trained twice


def test_the_readme_explains_the_jobs_accelerated_clock() -> None:
    """Not only examples/job.yaml: the README says how to set the clock and what it holds."""
    from caftm.jobs.spec import JobSection

    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    for key in ("clock_speed", "clock_start"):
        assert f"`job.{key}:" in readme and key in JobSection.model_fields, key
    explained = " ".join(readme.split())  # wrapped lines joined
    assert "while a worker starts or stops and while a checkpoint is written" in explained
    assert "`caftm validate` shows the clock it will use" in explained
