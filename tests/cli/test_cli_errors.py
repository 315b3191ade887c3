"""Bad input at the CLI: one clear error line naming what and where, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.cli.signals_support import (
    GOOD_TOKEN,
    Result,
    cli,
    electricitymaps_server,
    isolated_env,
    run_script,
)

__all__ = ["cli", "electricitymaps_server", "isolated_env"]  # fixtures used here

Cli = Callable[..., Result]
NOW = ("intensity", "now")
HISTORY = ("intensity", "history")
FORECAST = ("intensity", "forecast")


def assert_one_error_line(result: Result, *fragments: str) -> None:
    """Exit code 2, one 'error:' line on stderr holding every fragment, no traceback."""
    assert result.code == 2, (result.code, result.text)
    assert "Traceback" not in result.text
    lines = [ln for ln in result.err.splitlines() if ln.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def bad_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("datetime,FR\n2022-01-01T00:00Z,50\n2022-01-01T01:00Z,abc\n")
    return path


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ((*NOW, "-z", "FRR"), ["'FRR'", "did you mean FR", "caftm zones"]),
        ((*NOW, "-z", "frr"), ["'frr'", "did you mean FR", "caftm zones"]),
        ((*NOW, "-z", "AE"), ["no embedded profile", "'AE'", "live provider"]),
        ((*NOW, "-z", "aws:eu-west-33"), ["aws region 'eu-west-33'", "eu-west-3"]),
        ((*NOW, "-z", "awz:eu-west-3"), ["unknown provider 'awz'", "aws"]),
        ((*NOW, "-z", "FR", "--at", "2024-05-01T12:00"), ["--at", "no timezone", "Z"]),
        ((*NOW, "-z", "FR", "--at", "yesterday"), ["--at 'yesterday'", "ISO 8601"]),
        (
            (*HISTORY, "-z", "FR", "--start", "2024-05-02T00:00", "--end", "2024-05-03T00:00Z"),
            ["--start", "no timezone"],
        ),
        (
            (*HISTORY, "-z", "FR", "--start", "2024-05-02T00:00Z", "--end", "2024-05-01T00:00Z"),
            ["--start 2024-05-02 00:00 is not before --end 2024-05-01 00:00"],
        ),
        ((*FORECAST, "-z", "FR", "--hours", "0"), ["--hours 0", "1..240"]),
        ((*FORECAST, "-z", "FR", "--hours", "-5"), ["--hours -5", "1..240"]),
        ((*FORECAST, "-z", "FR", "--hours", "241"), ["--hours 241", "1..240"]),
        ((*FORECAST, "-z", "FR", "--plot", "out.txt"), ["--plot out.txt", ".png"]),
        ((*FORECAST, "-z", "FR", "--plot", "/no/such/dir/f.png"), ["/no/such/dir", "exist"]),
        ((*NOW, "-z", "FR", "--provider", "nope"), ["'nope'", "electricitymaps", "profile"]),
        ((*NOW, "-z", "FR", "--provider", "trace"), ["--trace PATH"]),
        ((*NOW, "-z", "FR", "--trace", "x.csv"), ["--trace", "--provider trace"]),
        ((*NOW, "-z", "FR", "--base-url", "http://127.0.0.1:9"), ["--base-url", "live"]),
        (
            (*NOW, "-z", "FR", "--provider", "electricitymaps"),
            ["missing key for electricitymaps", "CAFTM_ELECTRICITYMAPS_TOKEN", "[electricitymaps]"],
        ),
        ((*NOW, "-z", "FR", "--provider", "watttime"), ["missing key for watttime"]),
        (("regions", "--provider", "oracle"), ["'oracle'", "aws, azure, gcp"]),
        (("regions", "--zone", "JP-TKK"), ["'JP-TKK'", "JP-TK"]),
    ],
)
def test_bad_input_gives_one_error_line(
    cli: Cli, args: tuple[str, ...], fragments: list[str]
) -> None:
    assert_one_error_line(cli(*args), *fragments)


def test_malformed_trace_csv_names_file_and_line(cli: Cli, bad_csv: Path) -> None:
    result = cli(*NOW, "-z", "FR", "--provider", "trace", "--trace", str(bad_csv))
    assert_one_error_line(result, str(bad_csv), "line 3", "'abc'")


def test_missing_trace_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "absent.csv"
    assert_one_error_line(
        cli(*NOW, "-z", "FR", "--provider", "trace", "--trace", str(missing)), str(missing)
    )


def test_trace_without_the_zone_lists_what_it_has(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("datetime,ES\n2022-01-01T00:00Z,50\n2022-01-01T01:00Z,60\n")
    result = cli(*NOW, "-z", "aws:eu-west-3", "--provider", "trace", "--trace", str(path))
    assert_one_error_line(result, "no trace for zone 'FR'", "ES")


def test_trace_time_outside_the_file(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("datetime,ES\n2022-01-01T00:00Z,50\n2022-01-01T01:00Z,60\n")
    result = cli(*NOW, "-z", "ES", "--provider", "trace", "--trace", str(path),
                 "--at", "2023-01-01T00:00Z")  # fmt: skip
    assert_one_error_line(result, "outside", "t.csv")


def test_unreachable_provider(cli: Cli) -> None:
    result = cli(*NOW, "-z", "GB", "--provider", "ukgrid", "--base-url", "http://127.0.0.1:9",
                 "--retries", "0", "--timeout", "1")  # fmt: skip
    assert_one_error_line(result, "ukgrid", "127.0.0.1:9")


def test_rejected_key_is_named_but_never_shown(
    cli: Cli, electricitymaps_server: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = electricitymaps_server()
    monkeypatch.setenv("CAFTM_ELECTRICITYMAPS_TOKEN", "expired-key-987")
    result = cli(*NOW, "-z", "DE", "--provider", "electricitymaps", "--base-url", url,
                 "--retries", "0")  # fmt: skip
    assert_one_error_line(result, "electricitymaps", "401")
    assert "expired-key-987" not in result.text


def test_slow_provider_times_out(
    cli: Cli, electricitymaps_server: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = electricitymaps_server(delay_s=2.0)
    monkeypatch.setenv("CAFTM_ELECTRICITYMAPS_TOKEN", GOOD_TOKEN)
    result = cli(*NOW, "-z", "DE", "--provider", "electricitymaps", "--base-url", url,
                 "--retries", "0", "--timeout", "0.3")  # fmt: skip
    assert_one_error_line(result, "electricitymaps")
    assert "time" in result.err.lower()


def test_html_instead_of_json(
    cli: Cli, electricitymaps_server: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = electricitymaps_server(html=True)
    monkeypatch.setenv("CAFTM_ELECTRICITYMAPS_TOKEN", GOOD_TOKEN)
    result = cli(*NOW, "-z", "DE", "--provider", "electricitymaps", "--base-url", url,
                 "--retries", "0")  # fmt: skip
    assert_one_error_line(result, "electricitymaps")


def test_bad_sites_file(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text("sites:\n  - {name: lab, zone: KRR, lat: 1, lon: 2}\n")
    assert_one_error_line(cli("regions", "--sites", str(path)), str(path), "KRR", "KR")


# A few cases through the real installed script, as a user would meet them.


def test_script_unknown_region(tmp_path: Path) -> None:
    result = run_script(*NOW, "--zone", "gcp:europe-wset1")
    assert_one_error_line(result, "gcp region 'europe-wset1'", "europe-west1")


def test_script_malformed_csv(bad_csv: Path) -> None:
    result = run_script(*HISTORY, "--zone", "FR", "--provider", "trace", "--trace", str(bad_csv),
                        "--start", "2022-01-01T00:00Z", "--end", "2022-01-02T00:00Z")  # fmt: skip
    assert_one_error_line(result, str(bad_csv), "line 3")


def test_script_naive_time() -> None:
    assert_one_error_line(run_script(*NOW, "-z", "KR", "--at", "2024-05-01 12:00"), "no timezone")


def test_script_missing_key(tmp_path: Path) -> None:
    env = {"CAFTM_CONFIG": str(tmp_path / "none.toml")}
    result = run_script(*NOW, "-z", "FR", "--provider", "electricitymaps", env=env)
    assert_one_error_line(result, "missing key for electricitymaps")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("signals",), ["No such command 'signals'", "caftm --help"]),
        (("intensity", "XX"), ["No such command 'XX'", "caftm intensity --help"]),
        (("regions", "show", "nowhere"), ["unexpected extra argument", "caftm regions --help"]),
        (("gpu", "info", "--bogus"), ["No such option: --bogus", "caftm gpu info --help"]),
        ((*NOW, "-z"), ["'-z' requires an argument"]),
    ],
)
def test_usage_errors_give_one_error_line(
    cli: Cli, args: tuple[str, ...], fragments: list[str]
) -> None:
    assert_one_error_line(cli(*args), *fragments)


@pytest.mark.parametrize("args", [(), ("intensity",)])
def test_a_bare_group_shows_its_help(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.code == 2
    assert "Usage: caftm" in result.out and "Traceback" not in result.text


def test_script_usage_error_has_no_traceback() -> None:
    assert_one_error_line(run_script("signals"), "No such command 'signals'")


def test_cli_needs_no_click_package() -> None:
    """typer carries its own click; the CLI must not import the separate package (not a dep)."""
    code = (
        "import sys; sys.modules['click'] = None\n"
        "from caftm.cli import app\n"
        "from caftm.cli._common import run_app\n"
        "sys.exit(run_app(app, ['nosuchcommand']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "No such command" in done.stderr and "Traceback" not in done.stderr
