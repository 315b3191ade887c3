"""Fixtures: the known ledger, a dashboard served on a free loopback port, headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.dashboard.known import Known, build_known

CHROMIUM = os.environ.get("CAFTM_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def known(tmp_path: Path) -> Known:
    return build_known(tmp_path / "ledger.sqlite")


@pytest.fixture
def server(known: Known) -> Iterator[Any]:
    pytest.importorskip("starlette", reason="the dashboard extra is not installed")
    from caftm.dashboard import DashboardServer, ServeOptions

    with DashboardServer(ServeOptions(db=known.path, port=0, poll_ms=300)) as running:
        yield running


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session (Debian's, driven by Playwright; no browser
    download); its tests share an xdist group, so one worker starts it."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CAFTM_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()
