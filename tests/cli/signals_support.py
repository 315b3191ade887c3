"""Helpers for the signals CLI tests: run the app in-process or the installed script, and a
local server speaking the Electricity Maps v3 format. Test modules import the fixtures they use.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from caftm.cli import app
from caftm.cli._common import console, err_console, run_app

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".venv" / "bin" / "caftm"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEY_ENV_NAMES = (
    "CAFTM_ELECTRICITYMAPS_TOKEN",
    "ELECTRICITYMAPS_TOKEN",
    "ELECTRICITYMAPS_API_KEY",
    "CAFTM_WATTTIME_USERNAME",
    "WATTTIME_USERNAME",
    "WATTTIME_USER",
    "CAFTM_WATTTIME_PASSWORD",
    "WATTTIME_PASSWORD",
)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real keys, credentials file or cache leak into a test."""
    for name in KEY_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CAFTM_CONFIG", str(tmp_path / "no-credentials.toml"))
    monkeypatch.setenv("CAFTM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``caftm ARGS`` in-process on a wide console; return exit code and output."""

    def run(*args: str) -> Result:
        widths = (console.width, err_console.width)
        console.width = err_console.width = 200
        try:
            code = run_app(app, list(args))
        finally:
            console.width, err_console.width = widths
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_script(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60) -> Result:
    """Run the installed ``caftm`` script in a subprocess."""
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} absent; run 'make venv' first")
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    done = subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout_s,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def is_png(path: Path) -> bool:
    """A non-empty PNG whose header (IHDR) gives a positive size."""
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return False
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    return width > 0 and height > 0 and data.rstrip().endswith(b"IEND\xaeB`\x82")


# -- a local server speaking the Electricity Maps v3 format -------------------------------------

GOOD_TOKEN = "test-token-123"


class _ElectricityMapsHandler(BaseHTTPRequestHandler):
    delay_s = 0.0
    html = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests):
            pass  # a traceback here would land in whichever test runs next

    def do_GET(self) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.html:
            self._send(200, "<html><body>maintenance</body></html>", "text/html")
            return
        if self.headers.get("auth-token") != GOOD_TOKEN:
            self._send(401, {"status": "error", "message": "Invalid authentication token"})
            return
        url = urlparse(self.path)
        zone = parse_qs(url.query).get("zone", [""])[0]
        if url.path == "/v3/carbon-intensity/latest":
            self._send(200, _em_entry(zone, "2026-11-26T15:00:00.000Z", 123))
        elif url.path == "/v3/carbon-intensity/forecast":
            entries = [
                {"carbonIntensity": 200 - 10 * h, "datetime": f"2026-11-26T{16 + h:02d}:00:00.000Z"}
                for h in range(6)
            ]
            self._send(200, {"zone": zone, "forecast": entries, "updatedAt": "2026-11-26T15:10Z"})
        else:
            self._send(404, {"status": "error", "message": f"unknown path {url.path}"})


def _em_entry(zone: str, when: str, value: float) -> dict[str, Any]:
    return {
        "zone": zone,
        "carbonIntensity": value,
        "datetime": when,
        "updatedAt": when,
        "createdAt": when,
        "emissionFactorType": "lifecycle",
        "isEstimated": False,
        "estimationMethod": None,
    }


@pytest.fixture
def electricitymaps_server() -> Iterator[Callable[..., str]]:
    """A local Electricity Maps look-alike: ``start(delay_s=0, html=False)`` returns its URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(*, delay_s: float = 0.0, html: bool = False) -> str:
        handler = type("Handler", (_ElectricityMapsHandler,), {"delay_s": delay_s, "html": html})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
