"""``caftm gpu info`` and ``caftm gpu profile`` on the simulated and replay backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import SHARED_DATA

from caftm.cli import app
from caftm.cli._common import run_app


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run_app(app, ["gpu", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_on_the_simulated_backend_shows_everything_and_says_simulated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(capsys, "info", "--backend", "simulated")
    assert code == 0, err
    assert "SIMULATED" in out
    for expected in (
        "345–1980 MHz (110 values)",
        "200–700 W (default 700 W)",
        "energy counter",
        "can change settings",
        "unlocked",
    ):
        assert expected in out


def test_profile_sweeps_prints_a_table_and_draws_a_png(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    png = tmp_path / "sweep.png"
    code, out, err = _run(
        capsys,
        "profile",
        "--backend",
        "simulated",
        "--knob",
        "clock",
        "--steps",
        "20",
        "--settings",
        "1980,1410,990,600",
        "--eta",
        "1.0",
        "--intensity",
        "700",
        "--plot",
        str(png),
    )
    assert code == 0, err
    assert "SIMULATED" in out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["600", "990", "1410", "1980"]
    best_rows = [row for row in rows if "best" in row]
    assert len(best_rows) == 1
    assert best_rows[0].split("│")[1].strip() in {"990", "1410"}  # η=1: energy-optimal, interior
    assert "80 profiling steps" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "--gpu", "7"], "unknown GPU index 7"),
        (["info", "--backend", "simulated", "--gpu", "7"], "unknown GPU index 7"),
        (["profile", "--settings", "1234"], "--settings 1234: GPU 0 has no clock setting 1234 MHz"),
        (["profile", "--eta", "1.5"], "eta must be in [0, 1]"),
        (["profile", "--eta", "-0.1"], "eta must be in [0, 1]"),
        (["profile", "--knob", "voltage"], "unknown --knob 'voltage'"),
        (["info", "--backend", "quantum"], "unknown GPU backend 'quantum'"),
        pytest.param(
            ["profile", "--backend", "replay", "--knob", "clock"],
            "power limits only",
            marks=pytest.mark.skipif(
                not (SHARED_DATA / "gpu" / "zeus_power_limit_traces").is_dir(),
                reason=f"Zeus replay traces absent from {SHARED_DATA}",
            ),
        ),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_replay_profile_uses_the_measured_power_limits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.conftest import shared_file

    shared_file("gpu/zeus_power_limit_traces/power_v100.csv")
    code, out, err = _run(
        capsys, "profile", "--backend", "replay", "--knob", "power", "--steps", "5"
    )
    assert code == 0, err
    assert "SIMULATED" in out and "replay" in out
    assert "best power limit" not in out  # the summary names the knob kind
    assert "best power:" in out


def test_profile_without_a_knob_sweeps_what_the_gpu_offers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.conftest import shared_file

    shared_file("gpu/zeus_power_limit_traces/power_v100.csv")
    code, out, err = _run(capsys, "profile", "--backend", "replay", "--steps", "5")
    assert code == 0, err
    assert "power sweep" in out and "best power:" in out  # replay: power limits only
    code, out, err = _run(capsys, "profile", "--backend", "simulated", "--steps", "2",
                          "--settings", "1980,990")  # fmt: skip
    assert code == 0, err
    assert "clock sweep" in out and "best clock:" in out


def test_the_installed_command_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("caftm")
    if not script.exists():
        pytest.skip(f"no installed caftm script next to {sys.executable}")
    done = subprocess.run(
        [str(script), "gpu", "info", "--backend", "simulated"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "SIMULATED" in done.stdout


@pytest.mark.parametrize("name", ["sweep.txt", "sweep", "sweep.pdf"])
def test_plot_must_name_a_png_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    code, out, err = _run(
        capsys, "profile", "--settings", "1980", "--steps", "2", "--plot", str(tmp_path / name)
    )
    assert code == 2
    assert "--plot must name a .png file" in err and len(err.strip().splitlines()) == 1
    assert "best clock" not in out  # refused before sweeping
    assert list(tmp_path.iterdir()) == []  # nothing written, not even with a suffix added


def test_plot_to_a_directory_or_an_unwritable_place_is_one_error_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "taken.png"
    folder.mkdir()
    code, out, err = _run(capsys, "profile", "--settings", "1980", "--steps", "2",
                          "--plot", str(folder))  # fmt: skip
    assert code == 2 and "is a directory" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out, err = _run(capsys, "profile", "--settings", "1980", "--steps", "2",
                          "--plot", str(blocker / "x.png"))  # fmt: skip
    assert code == 2
    assert "cannot create its folder" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err
    assert "best clock" not in out  # refused before sweeping


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "--steps", "1" + "0" * 400], "--steps must be in [1, 1000000]"),
        (["profile", "--settings", "inf"], "inf is not a valid clock setting"),
        (["profile", "--settings", "nan"], "nan is not a valid clock setting"),
    ],
)
def test_absurd_steps_and_non_finite_settings_are_one_error_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out
