"""CLI output that says what it is: plot units and legends, up-front --plot checks, command-line
advice, regions the default provider cannot serve, the profiles' year, user-built profile sets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.cli.signals_support import Result, cli, isolated_env
from tests.conftest import shared_file

from caftm.cli import app
from caftm.cli._common import run_app
from caftm.signals.profiles import profile_year

__all__ = ["cli", "isolated_env"]  # fixtures used here

Cli = Callable[..., Result]
READ_ONLY_PLACE = Path("/proc/caftm-plot.png")  # /proc takes no new files, even from root


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every matplotlib figure saved during the test (the file is still written)."""
    from matplotlib.figure import Figure

    saved: list[Any] = []
    original = Figure.savefig

    def spy(self: Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    yield saved


def test_gpu_profile_plot_uses_the_tables_unit_and_a_legend_for_best(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, figures: list[Any]
) -> None:
    plot = tmp_path / "sweep.png"
    code = run_app(app, ["gpu", "profile", "--steps", "2", "--settings", "1980,1410,990",
                         "--plot", str(plot)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "(mgCO2eq)" in out  # the table's cost column
    (figure,) = figures
    labels = [ax.get_ylabel() for ax in figure.axes]
    assert "cost per step (mgCO2eq)" in labels and "cost per step (gCO2eq)" not in labels
    legends = [t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().texts]
    best = next(line for line in out.splitlines() if line.startswith("best clock"))
    assert any(t.startswith("best (least cost): ") and t.split(": ")[1] in best for t in legends)


def test_gpu_settings_error_gives_command_line_advice(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_app(app, ["gpu", "profile", "--settings", "99999"])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "snap=True" not in err
    assert "--settings 99999" in err and "the nearest is 1980" in err


def test_gpu_plot_to_a_read_only_place_fails_before_sweeping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_app(app, ["gpu", "profile", "--steps", "2", "--plot", str(READ_ONLY_PLACE)])
    out, err = capsys.readouterr()
    assert code == 2 and f"--plot {READ_ONLY_PLACE}: cannot write there" in err
    assert "best clock" not in out


def test_intensity_plot_to_a_read_only_place_fails_up_front_without_blaming_the_folder(
    cli: Cli,
) -> None:
    result = cli("intensity", "history", "-z", "FR", "--start", "2024-01-01T00:00Z",
                 "--end", "2024-01-02T00:00Z", "--plot", str(READ_ONLY_PLACE))  # fmt: skip
    assert result.code == 2 and "Traceback" not in result.text
    assert f"--plot {READ_ONLY_PLACE}: cannot write there" in result.err
    assert "does not exist" not in result.err and "check the folder" not in result.err
    assert result.out == ""  # refused before the work


def test_intensity_plot_marks_now_and_the_configs_threshold(
    cli: Cli, tmp_path: Path, figures: list[Any]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("sites: [FR]\nthreshold: {mode: absolute, value_g_per_kwh: 123}\n")
    result = cli("intensity", "forecast", "-z", "FR", "--hours", "6", "--plot",
                 str(tmp_path / "f.png"), "--config", str(config))  # fmt: skip
    assert result.code == 0, result.err
    (figure,) = figures
    texts = [t.get_text() for t in figure.axes[0].get_legend().texts]
    assert any(t.startswith("now (") for t in texts)
    assert "threshold θ 123 g/kWh" in texts
    relative = tmp_path / "r.yaml"
    relative.write_text("sites: [FR]\nthreshold: {mode: relative}\n")
    result = cli("intensity", "forecast", "-z", "FR", "--hours", "6", "--plot",
                 str(tmp_path / "g.png"), "--config", str(relative))  # fmt: skip
    assert result.code == 0 and "threshold mode relative is set from the data" in result.out


def test_regions_mark_zones_the_default_provider_cannot_serve(cli: Cli) -> None:
    result = cli("regions", "--gpu", "--provider", "aws")
    assert result.code == 0, result.err
    row = next(line for line in result.out.splitlines() if "me-central-1" in line)
    assert "live only*" in row
    served = next(line for line in result.out.splitlines() if "eu-west-3" in line)
    assert f"profile {profile_year()}" in served
    text = " ".join(result.out.split())
    assert "no embedded profile for zone(s) AE" in text and "--provider electricitymaps" in text


def test_zones_say_the_profiles_year_and_basis(cli: Cli) -> None:
    result = cli("zones")
    assert result.code == 0, result.err
    text = " ".join(result.out.split())
    assert f"embedded profiles from Electricity Maps {profile_year()} hourly data" in text
    assert "lifecycle basis" in text


def test_profiles_build_then_use_the_set(cli: Cli, tmp_path: Path) -> None:
    start = datetime(2021, 1, 1, tzinfo=UTC)
    hours = 366 * 24  # all of 2021 (8,760 h) and a day more for XA; XB stops short
    lines = ["datetime_utc,XA,XB"] + [
        f"{(start + timedelta(hours=h)).strftime('%Y-%m-%d %H:%M:%S')},"
        f"{100 + h % 24 + (h // 24) % 7},{'' if h > 400 else 50}"
        for h in range(hours)
    ]
    trace = tmp_path / "mine.csv"
    trace.write_text("\n".join(lines) + "\n")
    out = tmp_path / "set.json"
    result = cli("profiles", "build", "--from", str(trace), "--out", str(out))
    assert result.code == 0, result.err
    document = json.loads(out.read_text())
    assert document["year"] == 2021 and document["basis"] == "lifecycle"
    assert list(document["zones"]) == ["XA"]
    text = " ".join(result.out.split())
    assert "zone XB: no complete any UTC year of hourly values" in text
    now = cli("intensity", "now", "-z", "XA", "--provider", f"profile:{out}", "--at",
              "2024-05-01T12:00Z")  # fmt: skip
    assert now.code == 0, now.err
    assert "2021 statistics of" in " ".join(now.out.split())
    assert "Electricity Maps 2022" not in now.out
    missing = cli("intensity", "now", "-z", "FR", "--provider", f"profile:{out}")
    assert missing.code == 2 and "no profile in" in missing.err and "it has XA" in missing.err


def test_profiles_build_bad_input_is_one_error_line(cli: Cli, tmp_path: Path) -> None:
    result = cli("profiles", "build", "--from", str(tmp_path / "nope.csv"), "--out",
                 str(tmp_path / "o.json"))  # fmt: skip
    assert result.code == 2 and "does not exist" in result.err
    short = tmp_path / "short.csv"
    short.write_text("datetime_utc,XA\n2021-01-01 00:00:00,1\n2021-01-01 01:00:00,2\n")
    result = cli("profiles", "build", "--from", str(short), "--out", str(tmp_path / "o.json"))
    assert result.code == 2 and "no zone has a complete UTC year" in result.err
    result = cli("profiles", "build", "--from", str(short), "--out", str(tmp_path / "o.txt"))
    assert result.code == 2 and "ending in .json" in result.err
    assert "Traceback" not in result.text


def test_profiles_build_from_real_exports(cli: Cli, tmp_path: Path) -> None:
    export = shared_file("carbon/electricitymaps_export/ES_2022_hourly.csv")
    out = tmp_path / "es.json"
    result = cli("profiles", "build", "--from", str(export), "--out", str(out))
    assert result.code == 0, result.err
    document = json.loads(out.read_text())
    assert document["year"] == 2022 and list(document["zones"]) == ["ES"]
    assert 100 < document["zones"]["ES"]["yearly_mean"] < 400
