"""What a loaded trace says it assumed: the basis (stated by a column, by the file's name, or not
at all), how its times were read as UTC, and date + hour files written as people write them
(``HH:MM`` hours, calendar helper columns). Real files from ../shared/data where they exist."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import shared_file

from caftm.errors import DataError
from caftm.signals.base import Basis
from caftm.signals.traces import load_trace

EXPORT = "carbon/electricitymaps_export/ES_2022_hourly.csv"
WIDE_LCA = "carbon/ci_2022_hourly_lca_123zones.csv"


def _export_rows(days: int) -> list[dict[str, str]]:
    with shared_file(EXPORT).open(encoding="utf-8") as handle:
        return [row for _, row in zip(range(24 * days), csv.DictReader(handle), strict=False)]


def _column(rows: list[dict[str, str]], word: str) -> list[float]:
    name = next(k for k in rows[0] if k.startswith("Carbon Intensity") and word in k)
    return [float(r[name]) for r in rows]


def test_an_export_states_its_basis_by_column_and_direct_is_read_on_request() -> None:
    path = shared_file(EXPORT)
    lifecycle, direct = load_trace(path), load_trace(path, basis=Basis.DIRECT)
    rows = _export_rows(2)
    assert lifecycle.series("ES")[:48].tolist() == _column(rows, "(LCA)")
    assert direct.series("ES")[:48].tolist() == _column(rows, "(direct)")
    assert lifecycle.provenance is not None and direct.provenance is not None
    assert lifecycle.provenance.basis_line() == (
        "basis: lifecycle (stated by column 'Carbon Intensity gCO₂eq/kWh (LCA)' of "
        "ES_2022_hourly.csv)"
    )
    assert direct.provenance.basis_line().startswith("basis: direct (stated by column ")
    assert lifecycle.provenance.timezone_line() == (
        "times: UTC (ES_2022_hourly.csv: column 'Datetime (UTC)' says UTC)"
    )


def test_a_wide_file_states_its_basis_by_its_name_and_keeps_every_zone() -> None:
    trace = load_trace(shared_file(WIDE_LCA), zones=["FR", "HR"])  # HR (Croatia): not an hour
    assert trace.provenance is not None
    assert trace.provenance.stated_by == {"ci_2022_hourly_lca_123zones.csv": "the file name"}
    assert trace.provenance.basis_line() == (
        "basis: lifecycle (stated by the file name of ci_2022_hourly_lca_123zones.csv)"
    )
    assert not any("calendar" in n for n in trace.provenance.notes)


def test_a_file_stating_neither_basis_is_said_to_be_unstated(tmp_path: Path) -> None:
    path = tmp_path / "grid.csv"
    path.write_text("datetime_utc,A\n2022-01-01T00:00Z,100\n2022-01-01T01:00Z,110\n")
    unasked = load_trace(path).provenance
    asked = load_trace(path, basis=Basis.DIRECT).provenance
    assert unasked is not None and asked is not None
    assert unasked.basis_line() == "basis: not stated by grid.csv"
    assert "lifecycle" not in unasked.basis_line()
    assert asked.basis_line() == "basis: not stated by grid.csv, taken as direct as asked"
    assert unasked.timezone_line() == "times: UTC (grid.csv: UTC offsets written in the file)"


def test_a_stated_and_an_unstated_file_are_both_named(tmp_path: Path) -> None:
    lca = tmp_path / "a.csv"
    lca.write_text("datetime_utc,ci_lca\n2022-01-01T00:00Z,100\n")
    plain = tmp_path / "B.csv"
    plain.write_text("datetime_utc,intensity\n2022-01-01T00:00Z,100\n")
    provenance = load_trace([lca, plain]).provenance
    assert provenance is not None
    assert provenance.basis_line() == (
        "basis: lifecycle (stated by column 'ci_lca' of a.csv); not stated by B.csv"
    )


def _date_hour_copy(path: Path, rows: list[dict[str, str]], *, ending: bool = False) -> Path:
    """The real export's rows rewritten as a date + HH:MM file with calendar helper columns."""
    lca = _column(rows, "(LCA)")
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["date", "hour", "day", "month", "weekday", "carbon_intensity"])
        for row, value in zip(rows, lca, strict=True):
            when = datetime.fromisoformat(row["Datetime (UTC)"]).replace(tzinfo=UTC)
            hour = when.hour + 1 if ending else when.hour
            out.writerow(
                [when.date().isoformat(), f"{hour:02d}:00", when.day, when.month,
                 when.strftime("%A"), value]
            )  # fmt: skip
    return path


@pytest.mark.parametrize("ending", [False, True])
def test_date_and_hh_mm_hours_with_calendar_columns_read_as_they_are(
    tmp_path: Path, ending: bool
) -> None:
    rows = _export_rows(3)
    trace = load_trace(_date_hour_copy(tmp_path / "ES.csv", rows, ending=ending))
    export = load_trace(shared_file(EXPORT))
    assert trace.zones() == ["ES"] and trace.start == export.start and trace.n_steps == 72
    np.testing.assert_array_equal(trace.series("ES"), export.series("ES")[:72])
    provenance = trace.provenance
    assert provenance is not None
    assert provenance.timezone_line() == (
        "times: UTC (ES.csv: 'date' + 'hour' carry no timezone: taken as UTC)"
    )
    notes = " | ".join(provenance.notes)
    assert "'day', 'month', 'weekday' read as calendar helper column(s)" in notes
    assert ("hour ending" in notes) is ending


@pytest.mark.parametrize(
    ("cell", "fragment"),
    [("7:75", "'7:75' is not an hour"), ("ab:00", "'ab:00' is not an hour"), ("25:00", "hour 25")],
)
def test_a_bad_hh_mm_hour_names_file_line_and_cell(
    tmp_path: Path, cell: str, fragment: str
) -> None:
    path = tmp_path / "Z.csv"
    path.write_text(f"date,hour,carbon_intensity\n2022-01-01,00:00,1\n2022-01-01,{cell},2\n")
    with pytest.raises(DataError, match=r"Z\.csv line 3: column 'hour': ") as caught:
        load_trace(path)
    assert fragment in str(caught.value)
