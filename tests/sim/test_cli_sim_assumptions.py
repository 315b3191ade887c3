"""``caftm simulate`` says what it assumed: the basis (``--basis``; a file stating neither is
named as such), how times were read as UTC, the loader's and the simulator's notes — in the
table, the CSV, the HTML report and the plots; ``--policies default``; a subset without the
optimum; and a job, a start or a span that does not fit, each one clear line.

Real Electricity Maps exports from ../shared/data; the small files written here are SYNTHETIC."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.cli.signals_support import Result, cli, isolated_env
from tests.cli.test_cli_errors import assert_one_error_line
from tests.conftest import shared_file

from caftm.sim.policy_specs import DEFAULT_POLICY

__all__ = ["cli", "isolated_env"]  # fixtures used here

Cli = Callable[..., Result]
EXPORTS = "carbon/electricitymaps_export"
T0 = datetime(2022, 1, 1, tzinfo=UTC)
QUICK = ["--job", "12", "--processes", "1"]


def _export(name: str) -> str:
    return str(shared_file(f"{EXPORTS}/{name}"))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _png_text(path: Path) -> str:
    with Image.open(path) as image:
        return str(image.text["Description"])


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerows(rows)
    return path


def _wave(hours: int, mean: float, phase: int) -> np.ndarray:
    return mean + 0.4 * mean * np.sin(2 * np.pi * (np.arange(hours) + phase) / 24)


def _wide(path: Path, zones: dict[str, np.ndarray], start: datetime = T0) -> Path:
    """A SYNTHETIC wide file that states no basis."""
    hours = len(next(iter(zones.values())))
    body = [
        [(start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         *(f"{zones[z][i]:.1f}" for z in zones)]
        for i in range(hours)
    ]  # fmt: skip
    return _write(path, ["datetime_utc", *zones], body)


def _all_outputs(cli: Cli, tmp_path: Path, *args: str) -> tuple[Result, str, list[dict[str, str]]]:
    """Run with --csv, --plot and --report; the terminal, every output's text, the CSV rows."""
    plots, table, report = tmp_path / "plots", tmp_path / "jobs.csv", tmp_path / "r.html"
    plots.mkdir(exist_ok=True)
    result = cli(*args, "--csv", str(table), "--plot", str(plots), "--report", str(report))
    assert result.code == 0, result.text
    pngs = sorted(plots.glob("*.png"))
    assert len(pngs) == 3
    texts = [result.out, table.read_text(encoding="utf-8"), report.read_text(encoding="utf-8")]
    return result, "\n".join([*texts, *(f"PNG {_png_text(p)}" for p in pngs)]), _rows(table)


def _in_every_output(text: str, tmp_path: Path, fragment: str) -> None:
    """``fragment`` in the terminal, the CSV, the HTML and each of the three PNGs."""
    import html

    plots = sorted((tmp_path / "plots").glob("*.png"))
    outputs = {
        "csv": (tmp_path / "jobs.csv").read_text(encoding="utf-8"),
        "html": html.unescape((tmp_path / "r.html").read_text(encoding="utf-8")),
        **{p.name: _png_text(p) for p in plots},
    }
    assert fragment in text, fragment
    for name, content in outputs.items():
        assert fragment in content, (name, fragment)


# -- basis ---------------------------------------------------------------------------------


def test_basis_direct_and_lifecycle_read_the_exports_two_columns(cli: Cli, tmp_path: Path) -> None:
    args = ["simulate", "--sites", "ES,US-CAL-CISO", "--trace", _export("ES_2022_hourly.csv"),
            "--trace", _export("US-CAL-CISO_2022_hourly.csv"), "--policies", "caftm",
            "--starts", "2022-03-01T00:00Z,2022-07-01T00:00Z", *QUICK]  # fmt: skip
    totals = {}
    for basis, column in (("direct", "(direct)"), ("lifecycle", "(LCA)")):
        folder = tmp_path / basis
        folder.mkdir()
        result, _, rows = _all_outputs(cli, folder, *args, "--basis", basis)
        line = next(ln for ln in result.out.splitlines() if ln.startswith("basis:"))
        assert line.startswith(f"basis: {basis} (stated by column 'Carbon Intensity")
        assert column in line
        _in_every_output(result.out, folder, line.removeprefix("basis: "))
        assert {r["basis"] for r in rows} == {line.removeprefix("basis: ")}
        totals[basis] = sum(float(r["carbon_g"]) for r in rows if r["policy"] == "carbon-agnostic")
    assert totals["direct"] < 0.95 * totals["lifecycle"]  # direct leaves out the life cycle


def test_a_file_that_states_no_basis_is_named_never_called_lifecycle(
    cli: Cli, tmp_path: Path
) -> None:
    hours = 24 * 4
    trace = _wide(tmp_path / "grid.csv", {"A": _wave(hours, 450, 0), "B": _wave(hours, 200, 9)})
    result, text, rows = _all_outputs(
        cli, tmp_path, "simulate", "--sites", "A,B", "--trace", str(trace), *QUICK,
        "--every-h", "24",
    )  # fmt: skip
    assert "basis: not stated by grid.csv\n" in result.out
    _in_every_output(text, tmp_path, "not stated by grid.csv")
    assert {r["basis"] for r in rows} == {"not stated by grid.csv"}
    for called in ("basis: lifecycle", "taken as lifecycle", "(lifecycle)", ",lifecycle,"):
        assert called not in text, called
    asked = cli("simulate", "--sites", "A,B", "--trace", str(trace), *QUICK, "--basis", "direct")
    assert "basis: not stated by grid.csv, taken as direct as asked" in asked.out


def test_a_basis_the_files_do_not_have_is_one_error_line(cli: Cli, tmp_path: Path) -> None:
    lca_only = shared_file("carbon/ci_2022_hourly_lca_123zones.csv")
    result = cli("simulate", "--sites", "FR,DE", "--trace", str(lca_only), "--basis", "direct")
    assert_one_error_line(
        result, "--basis direct", "ci_2022_hourly_lca_123zones.csv states lifecycle", "file name"
    )
    assert_one_error_line(
        cli("simulate", "--sites", "FR", "--trace", str(lca_only), "--basis", "operational"),
        "--basis 'operational'", "lifecycle or direct",
    )  # fmt: skip


# -- times of date + hour files --------------------------------------------------------------


def test_a_date_hour_file_with_calendar_columns_is_read_and_its_utc_assumption_said(
    cli: Cli, tmp_path: Path
) -> None:
    days = 4
    body = []
    for i in range(24 * days):
        when = T0 + timedelta(hours=i)
        body.append([when.date().isoformat(), f"{when.hour:02d}:00", when.day, when.month,
                     when.strftime("%a"), f"{_wave(24 * days, 300, 0)[i]:.1f}",
                     f"{_wave(24 * days, 120, 7)[i]:.1f}"])  # fmt: skip
    trace = _write(
        tmp_path / "two.csv", ["date", "hour", "day", "month", "weekday", "X", "Y"], body
    )
    result, text, rows = _all_outputs(
        cli, tmp_path, "simulate", "--sites", "X,Y", "--trace", str(trace), *QUICK,
        "--every-h", "24",
    )  # fmt: skip
    said = "times: UTC (two.csv: 'date' + 'hour' carry no timezone: taken as UTC)"
    assert said in result.out
    _in_every_output(text, tmp_path, said.removeprefix("times: "))
    assert {r["times"] for r in rows} == {said.removeprefix("times: ")}
    helpers = "'day', 'month', 'weekday' read as calendar helper column(s)"
    _in_every_output(text, tmp_path, helpers)
    starts = sorted({r["start_utc"] for r in rows})
    assert starts[0] == T0.isoformat() and len(starts) == days  # 18 h windows, one a day


# -- policies ------------------------------------------------------------------------------


def test_default_in_policies_is_the_default_policy_marked_in_table_and_csv(
    cli: Cli, tmp_path: Path
) -> None:
    args = ["simulate", "--sites", "ES,US-CAL-CISO", "--trace", _export("ES_2022_hourly.csv"),
            "--trace", _export("US-CAL-CISO_2022_hourly.csv"),
            "--starts", "2022-05-01T00:00Z,2022-05-02T06:00Z", *QUICK]  # fmt: skip
    out_csv = tmp_path / "a.csv"
    alone = cli(*args, "--policies", "default,caftm", "--csv", str(out_csv))
    assert alone.code == 0, alone.text
    assert f"{DEFAULT_POLICY} (default)" in alone.out
    rows = _rows(out_csv)
    assert {r["policy"] for r in rows} == {"carbon-agnostic", DEFAULT_POLICY, "caftm"}
    assert all((r["default"] == "true") == (r["policy"] == DEFAULT_POLICY) for r in rows)
    assert {r["optimum_g"] for r in rows} == {""}

    # without the optimum: no capture column computed, every other figure as with it
    assert "capt% needs the optimum" in alone.out
    with_optimum = cli(*args, "--policies", "default,caftm,optimum")
    assert with_optimum.code == 0, with_optimum.text
    assert "optimum*" in with_optimum.out and "capt% needs the optimum" not in with_optimum.out

    def figures(out: str, name: str) -> list[str]:
        rows = [ln.split() for ln in out.splitlines() if ln.split()[:1] == [name]]
        (row,) = [r for r in rows if r[-1][0].isdigit()]  # the table's row, not its title
        return [c for c in row if c[0].isdigit() or c in ("—", "nan")]

    for name in ("carbon-agnostic", "caftm", DEFAULT_POLICY):
        a, b = figures(alone.out, name), figures(with_optimum.out, name)
        assert "nan" not in a and a[3] == "—" and b[3] != "—", (name, a, b)
        assert a[:3] + a[4:] == b[:3] + b[4:], (name, a, b)


# -- what does not fit: one line each ---------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "gpus", "fragments"),
    [("0.5", "1", ["--job 0.5", "runs 0.5 h", "shorter than the trace's 1 h step"]),
     ("4", "8", ["--job 4", "on 8 GPU(s)", "at least 8 GPU-h"])],
)  # fmt: skip
def test_a_job_shorter_than_the_trace_step_is_one_error_line(
    cli: Cli, job: str, gpus: str, fragments: list[str]
) -> None:
    result = cli("simulate", "--sites", "ES", "--trace", _export("ES_2022_hourly.csv"),
                 "--job", job, "--gpus", gpus, "--starts", "2022-03-01T00:00Z")  # fmt: skip
    assert_one_error_line(result, *fragments)


def test_starts_that_do_not_fit_and_a_trimmed_span_are_notes_in_every_output(
    cli: Cli, tmp_path: Path
) -> None:
    hours = 24 * 4
    a = _wide(tmp_path / "a.csv", {"A": _wave(hours, 450, 0)})
    b = _wide(tmp_path / "b.csv", {"B": _wave(hours, 200, 5)}, start=T0 + timedelta(days=1))
    starts = "2022-01-01T12:00Z,2022-01-02T06:00Z,2022-01-04T12:00Z"
    result, text, rows = _all_outputs(
        cli, tmp_path, "simulate", "--sites", "A,B", "--trace", str(a), "--trace", str(b),
        "--starts", starts, *QUICK,
    )  # fmt: skip
    span = "[2022-01-02T00:00Z, 2022-01-05T00:00Z)"
    trimmed = f"sites trimmed to their common span {span}: A has [2022-01-01T00:00Z, "
    before = f"--starts 2022-01-01T12:00Z: before the sites' common span {span}: left out"
    late = "--starts 2022-01-04T12:00Z: a 12 GPU-h job (deadline window 18 h) would run past"
    for fragment in (trimmed, before, late):
        assert f"note: {fragment}" in result.out
        _in_every_output(text, tmp_path, fragment)
    assert {r["start_utc"] for r in rows} == {"2022-01-02T06:00:00+00:00"}
    assert "Traceback" not in result.text

    none_fit = cli("simulate", "--sites", "A,B", "--trace", str(a), "--trace", str(b),
                   "--starts", "2022-01-01T06:00Z,2022-01-04T18:00Z", *QUICK)  # fmt: skip
    assert_one_error_line(none_fit, "--starts: none leaves room for a 12 GPU-h job", span)
    apart = _wide(tmp_path / "c.csv", {"C": _wave(24, 90, 0)}, start=T0 + timedelta(days=10))
    disjoint = cli("simulate", "--sites", "A,C", "--trace", str(a), "--trace", str(apart))
    assert_one_error_line(disjoint, "no hour where every site has a value", "C has [2022-01-11")
