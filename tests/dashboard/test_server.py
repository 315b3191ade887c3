"""The served dashboard: /metrics in the Prometheus format, the token gate, the page's files,
and bad input at the command line (one error line, exit code 2)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.cli.signals_support import Result, cli, isolated_env
from tests.dashboard.known import Known, ledger_totals
from tests.dashboard.scenes import build_nap, write_other

__all__ = ["cli", "isolated_env"]  # fixtures used here

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytestmark = pytest.mark.network

from caftm.dashboard import (  # noqa: E402
    DashboardServer,
    ServeOptions,
    is_loopback,
    read_token_file,
    resolve_token,
)
from caftm.dashboard.app import TOKEN_COOKIE  # noqa: E402
from caftm.dashboard.server import allowed_hosts  # noqa: E402
from caftm.errors import ConfigError  # noqa: E402
from caftm.ledger import JobBook, Ledger  # noqa: E402


def test_metrics_parse_with_prometheus_clients_own_parser(server: Any, known: Known) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(server.url + "metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    carbon, energy, _, site, status, moves, pauses = ledger_totals(known.path)
    job = (("job_name", "known"),)
    info = (("job_name", "known"), ("site", site), ("state", "tolerance"), ("status", status))
    assert samples[("caftm_job_info", info)] == 1.0
    assert samples[("caftm_job_carbon_grams_total", job)] == pytest.approx(carbon)
    assert samples[("caftm_job_energy_joules_total", job)] == pytest.approx(energy)
    assert samples[("caftm_job_moves_total", job)] == moves == 1
    assert samples[("caftm_job_pauses_total", job)] == pauses == 1
    at_site = (("job_name", "known"), ("site", "FR"))
    assert samples[("caftm_job_power_watts", at_site)] == pytest.approx(300.0)
    assert samples[("caftm_job_intensity_g_per_kwh", at_site)] == 40.0
    assert samples[("caftm_job_agnostic_carbon_grams", job)] > carbon


def test_the_page_and_its_files_are_served_locally(server: Any) -> None:
    page = httpx.get(server.url, timeout=30)
    assert page.status_code == 200 and "<title>caftm dashboard</title>" in page.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(not s.startswith(("http:", "https:", "//")) for s in sources)
    for source in sources:
        assert httpx.get(server.url + source, timeout=30).status_code == 200, source
    answer = httpx.get(server.url + "api/view", params={"job": "known"}, timeout=30)
    view = answer.json()
    assert answer.headers["etag"] == f'"{view["mark"]}"'
    again = httpx.get(
        server.url + "api/view", params={"job": "known"},
        headers={"If-None-Match": answer.headers["etag"]}, timeout=30,
    )  # fmt: skip
    assert view["view"]["site"] == "FR" and again.status_code == 304
    missing = httpx.get(server.url + "api/view", params={"job": "nope"}, timeout=30)
    assert missing.status_code == 404 and "no job 'nope'" in missing.json()["error"]


def test_a_token_guards_every_route(known: Known) -> None:
    token = "s3cret-token-123"
    with DashboardServer(ServeOptions(db=known.path, port=0, token=token)) as running:
        for path in ("", "metrics", "api/jobs", "static/dashboard.js"):
            assert httpx.get(running.url + path, timeout=30).status_code == 401, path
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(running.url + "metrics", headers=bearer, timeout=30).status_code == 200
        wrong = {"Authorization": "Bearer s3cret-token-124"}
        assert httpx.get(running.url + "metrics", headers=wrong, timeout=30).status_code == 401
        with httpx.Client(timeout=30) as client:  # a wrong ?token= sets no cookie
            assert client.get(running.url, params={"token": token + "x"}).status_code == 401
            assert not client.cookies and client.get(running.url + "api/jobs").status_code == 401
        with httpx.Client(timeout=30) as client:  # ?token= once, then the cookie carries it
            swapped = client.get(running.url + "api/view", params={"job": "known", "token": token})
            assert swapped.status_code == 303 and token not in swapped.text
            assert swapped.headers["location"] == "/api/view?job=known"  # the token stripped
            cookie = swapped.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=lax" in cookie, cookie
            assert client.cookies.get(TOKEN_COOKIE) == token
            assert client.get(running.url, params={"token": token}).headers["location"] == "/"
            page = client.get(running.url, params={"token": token}, follow_redirects=True)
            assert page.status_code == 200 and str(page.url) == running.url
            assert page.headers["referrer-policy"] == "no-referrer"
            assert client.get(running.url + "api/jobs").status_code == 200
        for cookie, status in ((token[:-1] + "4", 401), ("", 401), (token, 200)):
            with httpx.Client(timeout=30, cookies={TOKEN_COOKIE: cookie}) as client:
                assert client.get(running.url + "api/jobs").status_code == status, cookie


def test_on_loopback_only_loopback_host_names_are_answered(server: Any, known: Known) -> None:
    port = server.port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LocalHost"):
        answer = httpx.get(server.url + "api/jobs", headers={"Host": host}, timeout=30)
        assert answer.status_code == 200, host
    for host in (f"rebound.example:{port}", "localhost.example", f"127.0.0.2:{port}", "[::2]"):
        answer = httpx.get(server.url + "api/jobs", headers={"Host": host}, timeout=30)
        assert answer.status_code == 400 and "jobs" not in answer.text, host
    page = httpx.get(server.url, headers={"Host": f"localhost:{port}"}, timeout=30)
    assert page.headers["referrer-policy"] == "no-referrer"
    token = {"Authorization": "Bearer s3cret-token-123"}  # off loopback the token guards it
    with DashboardServer(
        ServeOptions(db=known.path, host="0.0.0.0", port=0, token=token["Authorization"][7:])
    ) as anywhere:
        url = f"http://127.0.0.1:{anywhere.port}/api/jobs"
        headers = {**token, "Host": "dash.example"}
        assert httpx.get(url, headers=headers, timeout=30).status_code == 200
        assert httpx.get(url, headers={"Host": "dash.example"}, timeout=30).status_code == 401


def test_addresses_and_tokens(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert resolve_token("127.0.0.1", None, env={}) is None
    assert resolve_token("0.0.0.0", None, env={"CAFTM_DASHBOARD_TOKEN": "from-env-123"}) == (
        "from-env-123"
    )
    with pytest.raises(ConfigError, match="needs a token"):
        resolve_token("0.0.0.0", None, env={})
    with pytest.raises(ConfigError, match="at least 8"):
        resolve_token("127.0.0.1", "short", env={})
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "[::1]", "localhost"]
    assert allowed_hosts("::1") == allowed_hosts("[::1]") == ["127.0.0.1", "[::1]", "localhost"]
    assert allowed_hosts("127.0.0.5") == ["127.0.0.1", "127.0.0.5", "[::1]", "localhost"]
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("10.1.2.3") is None
    (tmp_path / "token").write_text("  from-file-123\n")
    assert read_token_file(tmp_path / "token") == "from-file-123"
    (tmp_path / "blank").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_token_file(tmp_path / "blank")
    with pytest.raises(ConfigError, match="cannot read the token file"):
        read_token_file(tmp_path / "absent")
    shown = repr(ServeOptions(db=tmp_path, token="from-file-123"))
    assert "from-file-123" not in shown


def _one_error(result: Result, *fragments: str) -> None:
    assert result.code == 2, (result.code, result.text)
    lines = [ln for ln in result.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.text
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_bad_input_is_one_line_and_exit_2(
    cli: Callable[..., Result], known: Known, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAFTM_DASHBOARD_TOKEN", raising=False)
    db = str(known.path)
    _one_error(cli("dashboard", "--db", str(tmp_path / "absent.sqlite")), "no ledger at")
    _one_error(cli("dashboard", "--db", db, "--port", "70000"), "--port", "65535")
    _one_error(cli("dashboard", "--db", db, "--host", "0.0.0.0", "--port", "0"), "needs a token")
    (tmp_path / "short").write_text("short\n")
    _one_error(
        cli("dashboard", "--db", db, "--token-file", str(tmp_path / "short"), "--port", "0"),
        "at least 8",
    )
    _one_error(
        cli("dashboard", "--db", db, "--token-file", str(tmp_path / "none"), "--port", "0"),
        "cannot read the token file",
    )
    monkeypatch.setenv("CAFTM_DASHBOARD_TOKEN", "short")
    _one_error(cli("dashboard", "--db", db, "--port", "0"), "at least 8")
    monkeypatch.delenv("CAFTM_DASHBOARD_TOKEN")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        _one_error(cli("dashboard", "--db", db, "--port", port), "cannot listen on", port)
    _one_error(
        cli("report", "nope", "--db", db, "--out", str(tmp_path / "r.html")), "no job or run 'nope'"
    )
    _one_error(cli("report", "known", "--db", str(tmp_path / "absent.sqlite")), "no ledger at")
    _one_error(
        cli("report", "known", "--db", db, "--out", str(tmp_path / "no" / "r.html")),
        "cannot write the report",
    )


@contextmanager
def _served(known: Known, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``caftm dashboard`` in a subprocess on a free loopback port: yields its printed URL,
    then stops it with Ctrl-C and checks it exits cleanly, having printed no token."""
    process = subprocess.Popen(
        [sys.executable, "-m", "caftm.cli", "dashboard", "--db", str(known.path), "--port", "0",
         *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out = ""
    try:
        assert process.stdout is not None
        out = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", out)
        assert url, out
        yield url.group(0)
    finally:
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=30)
    assert process.returncode in (0, 130), err
    assert "s3cret" not in out + rest + err


def test_the_command_serves_until_interrupted(known: Known) -> None:
    with _served(known) as url:
        response = httpx.get(url + "api/jobs", timeout=60)
        assert [j["name"] for j in response.json()["jobs"]] == ["known"]


@pytest.mark.parametrize("source", ["env", "file"])
def test_the_command_reads_its_token_from_the_environment_or_a_file(
    known: Known, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    token = f"s3cret-from-{source}"
    monkeypatch.delenv("CAFTM_DASHBOARD_TOKEN", raising=False)
    (tmp_path / "token").write_text(token + "\n")
    args = ("--token-file", str(tmp_path / "token")) if source == "file" else ()
    env = {"CAFTM_DASHBOARD_TOKEN": token} if source == "env" else {}
    with _served(known, *args, env=env) as url:
        assert httpx.get(url + "api/jobs", timeout=60).status_code == 401
        wrong = {"Authorization": f"Bearer {token}x"}
        assert httpx.get(url + "api/jobs", headers=wrong, timeout=60).status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        response = httpx.get(url + "api/jobs", headers=bearer, timeout=60)
        assert [j["name"] for j in response.json()["jobs"]] == ["known"]


def test_an_unchanged_view_is_not_sent_again(tmp_path: Path) -> None:
    """A finished job's view: 304 while another job writes, the new view once it changes."""
    nap = build_nap(tmp_path, resumed=True)
    with DashboardServer(ServeOptions(db=nap.path, port=0)) as running:
        url = running.url + "api/view?job=nap"
        first = httpx.get(url, timeout=30)
        assert first.status_code == 200 and first.json()["view"]["name"] == "nap"
        tag = first.headers["etag"]
        jobs = httpx.get(running.url + "api/jobs", timeout=30)
        for k in range(3):
            write_other(nap, k)
            again = httpx.get(url, headers={"If-None-Match": tag}, timeout=30)
            assert again.status_code == 304 and again.content == b""
            assert again.headers["etag"] == tag
            # the list changed (other's carbon), so it is sent again
            listed = httpx.get(
                running.url + "api/jobs", headers={"If-None-Match": jobs.headers["etag"]}
            )
            assert listed.status_code == 200 and listed.headers["etag"] != jobs.headers["etag"]
            jobs = listed
        same = httpx.get(running.url + "api/jobs", headers={"If-None-Match": jobs.headers["etag"]})
        assert same.status_code == 304
        other = httpx.get(running.url + "api/view?job=other", headers={"If-None-Match": tag})
        assert other.status_code == 200  # another view's tag is not this one's
        with Ledger(nap.path) as ledger:
            JobBook(ledger).update("nap", message="looked at again")
        changed = httpx.get(url, headers={"If-None-Match": tag}, timeout=30)
        assert changed.status_code == 200 and changed.headers["etag"] != tag
        assert changed.json()["view"]["message"] == "looked at again"
