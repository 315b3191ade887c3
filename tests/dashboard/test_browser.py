"""The live page in real headless Chromium: values match the ledger, and it follows new rows."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.dashboard.known import ENERGY_J, SPEC, Known, append_window, ledger_totals

from caftm.ledger import JobBook, Ledger

pytestmark = [pytest.mark.browser, pytest.mark.network, pytest.mark.xdist_group("browser")]


def test_the_dashboard_shows_the_ledger_and_follows_it(
    server: Any, known: Known, chromium: Any, tmp_path: Path
) -> None:
    context = chromium.new_context(viewport={"width": 1300, "height": 1000})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    context.route(
        "**/*",
        lambda route: (
            route.continue_() if route.request.url.startswith(server.url) else route.abort()
        ),
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server.url + "#job=known")
        page.wait_for_selector("body[data-mark]", timeout=30_000)
        carbon, energy, n, site, status, moves, pauses = ledger_totals(known.path)
        assert page.inner_text("#name") == "job known"
        assert page.inner_text("#site") == site == "FR"
        assert page.inner_text("#status") == status == "running"
        assert page.inner_text("#state") == "tolerance"
        assert page.inner_text("#moves") == str(moves) == "1"
        assert page.inner_text("#pauses") == str(pauses) == "1"
        assert float(page.get_attribute("#carbon", "data-value") or "nan") == pytest.approx(carbon)
        assert page.inner_text("#carbon") == f"{carbon:.1f}"  # 168.0 g
        assert float(page.get_attribute("#energy", "data-value") or "nan") == pytest.approx(energy)
        assert page.inner_text("#setting") == "1800 MHz"
        assert page.inner_text("#windows") == str(n)
        assert "SIMULATED GPU" in page.inner_text("#labels")
        assert page.locator(".chart canvas").count() >= 4
        assert page.locator("#events tbody tr").count() == 10
        assert page.inner_text("#jobs tbody tr.selected td:first-child") == "known"

        append_window(known.path, known.run_ids[2], known.next_time + timedelta(minutes=10))
        appended = time.monotonic()
        page.wait_for_function(
            "document.getElementById('windows').textContent === '14'", timeout=10_000
        )
        latency = time.monotonic() - appended
        assert latency < 5.0
        new_carbon = carbon + ENERGY_J / 3.6e6 * 35.0
        assert float(page.get_attribute("#carbon", "data-value") or "nan") == pytest.approx(
            new_carbon
        )
        assert page.inner_text("#setting") == "1815 MHz"
        assert page.inner_text("#state") == "scaling"
        first = page.locator("#events tbody tr").first.inner_text()
        assert "intensity moved: re-optimise" in first
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        # a job with nothing measured yet shows too, and the page keeps updating
        with Ledger(known.path) as ledger:
            JobBook(ledger).create("fresh", site="KR", store_url="x", executor="local", spec=SPEC)
        page.wait_for_selector("#jobs tr[data-name='fresh']", timeout=10_000)
        page.click("#jobs tr[data-name='fresh']")
        page.wait_for_function("document.getElementById('name').textContent === 'job fresh'")
        assert page.inner_text("#status") == "pending"
        assert page.inner_text("#windows") == "0"
        page.wait_for_timeout(700)
        assert "failed" not in page.inner_text("#updated")
    finally:
        context.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000
    assert requests and all(u.startswith(server.url) for u in requests), requests
    assert errors == []


def test_a_token_in_the_address_is_swapped_for_a_cookie(known: Known, chromium: Any) -> None:
    from caftm.dashboard import DashboardServer, ServeOptions

    token = "s3cret-token-123"
    with DashboardServer(ServeOptions(db=known.path, port=0, poll_ms=300, token=token)) as running:
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(f"{running.url}?token={token}#job=known")
            page.wait_for_selector("body[data-mark]", timeout=30_000)
            assert page.url == running.url + "#job=known"  # the token left the address bar
            assert page.inner_text("#name") == "job known"  # and the page's requests got in
            assert page.inner_text("#site") == "FR"
            (cookie,) = context.cookies()
            assert cookie["value"] == token and cookie["httpOnly"], cookie
            assert cookie["sameSite"] == "Lax", cookie
            assert page.evaluate("document.cookie") == ""  # no script can read it
        finally:
            context.close()
