"""``caftm zones|regions|intensity|demo`` end to end: tables, numbers, plots, exit codes."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.cli.signals_support import (
    GOOD_TOKEN,
    Result,
    cli,
    electricitymaps_server,
    is_png,
    isolated_env,
    run_script,
)
from tests.conftest import shared_file

from caftm.regions import Catalog
from caftm.signals.profiles import ProfileSource, profile_mean, shipped_zones

__all__ = ["cli", "electricitymaps_server", "isolated_env"]  # fixtures used here

Cli = Callable[..., Result]
ROW_TIME = re.compile(r"^\S\s(\d{4}-\d\d-\d\d \d\d:\d\d)\s\S\s+(\d+)\s\S\s(\w+)", re.MULTILINE)
DEMO_ZONES = ["KR", "JP-TK", "DE", "FR", "CA-ON"]


def rows(out: str) -> list[tuple[str, int, str]]:
    """(time, g/kWh, kind) of each table row in ``out``."""
    return [(t, int(v), k) for t, v, k in ROW_TIME.findall(out)]


def test_zones_lists_profile_zones_with_their_mean_and_regions(cli: Cli) -> None:
    result = cli("zones")
    assert result.code == 0, result.err
    catalog = Catalog.load_default()
    for zone in shipped_zones():
        line = next(
            ln for ln in result.out.splitlines() if re.search(rf"\s{re.escape(zone)}\s", ln)
        )
        assert f" {profile_mean(zone):.0f} " in line, (zone, line)
        gpu_keys = [r.key for r in catalog.by_zone(zone) if r.has_gpu]
        if gpu_keys:
            assert gpu_keys[0] + "*" in result.out
    assert "aws:eu-west-3*" in result.out and "Tokyo" in result.out
    assert "synthetic typical-year" in result.out and "ODbL" in result.out


def test_zones_all_adds_hosted_zones_without_profile(cli: Cli) -> None:
    result = cli("zones", "--all")
    assert result.code == 0, result.err
    ae = next(ln for ln in result.out.splitlines() if " AE " in ln)
    assert " — " in ae and "aws:me-central-1*" in ae and "no embedded profile" in result.out
    assert len(result.out.splitlines()) > len(cli("zones").out.splitlines())


def test_regions_filters(cli: Cli, tmp_path: Path) -> None:
    result = cli("regions", "--provider", "gcp", "--gpu")
    assert result.code == 0, result.err
    gpu_ids = [r.region_id for r in Catalog.load_default().regions("gcp", gpu_only=True)]
    assert f"{len(gpu_ids)} regions" in result.out
    assert all(f" {rid} " in result.out for rid in gpu_ids)
    assert " aws " not in result.out and "europe-west10" not in result.out

    paris = cli("regions", "--zone", "aws:eu-west-3")
    assert paris.code == 0, paris.err
    assert {"eu-west-3", "europe-west9", "francecentral"} <= set(paris.out.split())
    assert "eu-west-2" not in paris.out

    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  - {name: lab-seoul, zone: KR, lat: 37.46, lon: 126.95}\n")
    custom = cli("regions", "--zone", "KR", "--sites", str(sites))
    assert custom.code == 0, custom.err
    assert "lab-seoul" in custom.out and "custom" in custom.out and "ap-northeast-2" in custom.out


def test_now_resolves_a_cloud_region_and_says_synthetic(cli: Cli) -> None:
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    result = cli("intensity", "now", "--zone", "aws:eu-west-3", "--at", "2024-05-01T21:00+09:00")
    assert result.code == 0, result.err
    expected = ProfileSource().intensity("FR", at).intensity_g_per_kwh
    assert rows(result.out) == [("2024-05-01 12:00", round(expected), "synthetic")]
    assert "FR (aws:eu-west-3)" in result.out and "provider profile" in result.out
    assert "synthetic typical-year profiles" in result.out


def test_history_table_summary_and_plot(cli: Cli, tmp_path: Path) -> None:
    plot = tmp_path / "de.png"
    result = cli(
        "intensity", "history", "--zone", "DE", "--start", "2024-05-01T00:00Z",
        "--end", "2024-05-03T00:00Z", "--plot", str(plot), "--max-rows", "0",
    )  # fmt: skip
    assert result.code == 0, result.err
    start = datetime(2024, 5, 1, tzinfo=UTC)
    expected = ProfileSource().history("DE", start, start + timedelta(days=2))
    got = rows(result.out)
    assert len(got) == 48
    assert [v for _, v, _ in got] == [round(r.intensity_g_per_kwh) for r in expected]
    values = [r.intensity_g_per_kwh for r in expected]
    assert (
        f"min {min(values):.0f}, mean {sum(values) / 48:.0f}, max {max(values):.0f}" in result.out
    )
    assert is_png(plot) and plot.stat().st_size > 5_000
    assert "synthetic" in result.out


def test_history_truncates_long_tables(cli: Cli) -> None:
    result = cli(
        "intensity", "history", "-z", "KR", "--start", "2024-01-01T00:00Z",
        "--end", "2024-01-08T00:00Z", "--max-rows", "10",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert len(rows(result.out)) == 10 and "158 rows left out" in result.out
    assert "168 readings" in result.out


def test_forecast_hours_and_plot(cli: Cli, tmp_path: Path) -> None:
    plot = tmp_path / "be.png"
    result = cli(
        "intensity", "forecast", "--zone", "gcp:europe-west1", "--hours", "6",
        "--at", "2024-05-01T00:00Z", "--plot", str(plot),
    )  # fmt: skip
    assert result.code == 0, result.err
    expected = ProfileSource().forecast("BE", datetime(2024, 5, 1, tzinfo=UTC), timedelta(hours=6))
    got = rows(result.out)
    assert [(v, k) for _, v, k in got] == [
        (round(r.intensity_g_per_kwh), "forecast") for r in expected
    ]
    cleanest = min(expected, key=lambda r: r.intensity_g_per_kwh)
    assert f"cleanest at {cleanest.time:%Y-%m-%d %H:%M} UTC" in result.out
    assert is_png(plot)
    assert "BE (gcp:europe-west1)" in result.out and "synthetic" in result.out


def test_trace_provider_reads_a_wide_csv(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["datetime", "FR", "DE"])
        for hour in range(72):
            writer.writerow(
                [f"2023-03-{1 + hour // 24:02d}T{hour % 24:02d}:00:00Z", 50 + hour, 400 - hour]
            )
    result = cli(
        "intensity", "history", "--provider", "trace", "--trace", str(path), "--zone", "DE",
        "--start", "2023-03-02T00:00Z", "--end", "2023-03-02T06:00Z",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert [v for _, v, _ in rows(result.out)] == [376, 375, 374, 373, 372, 371]
    assert {k for _, _, k in rows(result.out)} == {"measured"}
    assert "synthetic" not in result.out
    now = cli("intensity", "now", "--trace", str(path), "--provider", "trace", "-z", "FR",
              "--at", "2023-03-03T23:59Z")  # fmt: skip
    assert now.code == 0, now.err
    assert rows(now.out) == [("2023-03-03 23:00", 50 + 71, "measured")]


def test_live_provider_through_a_local_server(
    cli: Cli, electricitymaps_server: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = electricitymaps_server()
    monkeypatch.setenv("CAFTM_ELECTRICITYMAPS_TOKEN", GOOD_TOKEN)
    now = cli("intensity", "now", "-z", "azure:germanywestcentral", "--provider",
              "electricitymaps", "--base-url", url)  # fmt: skip
    assert now.code == 0, now.err
    assert rows(now.out) == [("2026-11-26 15:00", 123, "measured")]
    assert "DE (azure:germanywestcentral)" in now.out and "synthetic" not in now.out
    forecast = cli("intensity", "forecast", "-z", "DE", "--hours", "6", "--provider",
                   "electricitymaps", "--base-url", url, "--at", "2026-11-26T16:00Z")  # fmt: skip
    assert forecast.code == 0, forecast.err
    assert [v for _, v, _ in rows(forecast.out)] == [200, 190, 180, 170, 160, 150]
    assert GOOD_TOKEN not in now.text + forecast.text


def test_fallback_answers_from_the_profile_when_the_provider_is_down(cli: Cli) -> None:
    result = cli(
        "intensity", "now", "-z", "GB", "--provider", "ukgrid", "--base-url",
        "http://127.0.0.1:9", "--retries", "0", "--timeout", "1", "--fallback",
        "--at", "2024-05-01T12:00Z",
    )  # fmt: skip
    assert result.code == 0, result.err
    expected = ProfileSource().intensity("GB", datetime(2024, 5, 1, 12, tzinfo=UTC))
    assert [v for _, v, _ in rows(result.out)] == [round(expected.intensity_g_per_kwh)]
    assert "synthetic" in result.out


def test_real_trace_file_through_the_installed_script() -> None:
    path = shared_file("carbon/ci_2022_hourly_lca_123zones.csv")
    with path.open() as f:
        reader = csv.DictReader(f)
        row = next(r for i, r in enumerate(reader) if i == 24 * 151 + 12)  # 2022-06-01 12:00
    result = run_script("intensity", "now", "--provider", "trace", "--trace", str(path),
                        "--zone", "aws:ap-northeast-2", "--at", "2022-06-01T12:30Z")  # fmt: skip
    assert result.code == 0, result.err
    assert rows(result.out) == [("2022-06-01 12:00", round(float(row["KR"])), "measured")]


def test_demo_through_the_installed_script() -> None:
    result = run_script("demo", "--no-train")  # the intensities (the jobs: tests/jobs/test_demo)
    assert result.code == 0, result.err
    assert "Traceback" not in result.text
    assert "SYNTHETIC" in result.out and "Electricity Maps" in result.out
    source = ProfileSource()
    for zone in DEMO_ZONES:
        line = next(ln for ln in result.out.splitlines() if f" {zone} " in ln)
        numbers = [int(n) for n in re.findall(r"\s(\d+)\s", line)]
        now, low, mean, high = numbers[:4]
        assert low <= mean <= high, line
        # "now" is this hour's synthetic value: within the zone's generated yearly range.
        year = source.year_values(zone, datetime.now(UTC).year)
        assert year.min() - 1 <= now <= year.max() + 1, line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["now", "-z", "FR", "--at", "0001-01-01T00:00+01:00"],
            "--at 0001-01-01T00:00:00+01:00 is outside the years 1..9999",
        ),
        (
            ["forecast", "-z", "FR", "--at", "9999-12-31T20:00Z"],
            "--at 9999-12-31T20:00Z plus 24 h runs past the year 9999",
        ),
        (
            ["history", "-z", "FR", "--start", "0022-01-01T00:00Z", "--end", "2022-01-01T00:00Z"],
            "ask for at most 36525 days at once",
        ),
        (
            ["now", "-z", "FR", "-p", "electricitymaps", "--timeout", "nan"],
            "--timeout must be > 0 and <= 3600 seconds",
        ),
        (
            ["now", "-z", "FR", "-p", "electricitymaps", "--timeout", "inf", "--fallback"],
            "--timeout must be > 0 and <= 3600 seconds",
        ),
        (["now", "-z", "FR", "--at", "2022-01-01"], "(e.g. 2022-01-01T00:00Z)"),
    ],
)
def test_absurd_times_and_timeouts_are_one_error_line(
    cli: Cli, args: list[str], message: str
) -> None:
    result = cli("intensity", *args)
    assert result.code == 2
    assert result.err.count("error:") == 1 and message in result.err, result.err
    assert "Traceback" not in result.text


def test_bad_trace_files_are_one_error_line(cli: Cli, tmp_path: Path) -> None:
    header_only = tmp_path / "header.csv"
    header_only.write_text("datetime_utc,FR\n")
    for trace, message in ((header_only, "header.csv: no data rows"), (tmp_path, "directory")):
        result = cli("intensity", "now", "-z", "FR", "-p", "trace", "--trace", str(trace))
        assert result.code == 2 and message in result.err, result.err
        assert "Traceback" not in result.text


def test_fallback_without_a_key_says_which_source_answered(cli: Cli) -> None:
    result = cli("intensity", "now", "-z", "FR", "--provider", "electricitymaps", "--fallback",
                 "--at", "2024-05-01T12:00Z")  # fmt: skip
    assert result.code == 0, result.err
    text = " ".join(result.out.split())
    assert "Carbon intensity of FR, provider electricitymaps, answered by typical-year profile" in (
        text
    )
    assert "lifecycle basis" in text
    assert "missing key for electricitymaps" in text and "CAFTM_ELECTRICITYMAPS_TOKEN" in text
