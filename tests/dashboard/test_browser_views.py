"""The page in real headless Chromium on a phone (390×844) and on a desktop: one column and no
sideways scroll on the phone, charts with drawn data, gaps, UTC axes, a readable path chart, a
pause shown while it happens, and jobs chosen by keyboard and by the address's #job=NAME."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.dashboard.known import Known
from tests.dashboard.scenes import RESUME, Nap, build_nap, resume_nap

from caftm.ledger import JobBook, JobStatus, Ledger

pytestmark = [pytest.mark.browser, pytest.mark.network, pytest.mark.xdist_group("browser")]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
SIZES = [pytest.param(PHONE, id="phone"), pytest.param(DESKTOP, id="desktop")]

# per chart: its size, its canvas, and for each series how many points it has data for
CHARTS_JS = """() => Object.entries(window.caftm.charts).map(([key, u]) => {
  const box = u.root.getBoundingClientRect();
  return { key, width: u.width, height: u.height, right: box.right,
    canvas: [u.ctx.canvas.width, u.ctx.canvas.height],
    points: u.series.slice(1).map((s, i) => u.data[i + 1].filter(Number.isFinite).length),
    spanGaps: u.series.slice(1).map(s => Boolean(s.spanGaps)),
    xLabel: u.axes[0].label, xTicks: u.axes[0]._values || [],
    yLabelled: u.axes.slice(1).map(a => (a._values || []).filter(Boolean).length) };
})"""


@pytest.fixture
def nap(tmp_path: Path) -> Nap:
    return build_nap(tmp_path, resumed=False)


@pytest.fixture
def nap_server(nap: Nap) -> Iterator[Any]:
    from caftm.dashboard import DashboardServer, ServeOptions

    with DashboardServer(ServeOptions(db=nap.path, port=0, poll_ms=300)) as running:
        yield running


def _page(chromium: Any, size: dict[str, int]) -> tuple[Any, Any, list[str]]:
    context = chromium.new_context(viewport=size)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page, errors


def _rendered(page: Any, name: str) -> None:
    page.wait_for_function(
        f"document.getElementById('name').textContent === 'job {name}'"
        " && Object.keys(window.caftm.charts).length === 4",
        timeout=30_000,
    )


@pytest.mark.parametrize("size", SIZES)
def test_every_chart_draws_and_nothing_scrolls_sideways(
    server: Any, known: Known, chromium: Any, size: dict[str, int], tmp_path: Path
) -> None:
    context, page, errors = _page(chromium, size)
    try:
        page.goto(server.url + "#job=known")
        _rendered(page, "known")
        page.wait_for_timeout(300)  # a resize settles
        assert page.evaluate("document.scrollingElement.scrollWidth") <= size["width"]
        charts = page.evaluate(CHARTS_JS)
        assert sorted(c["key"] for c in charts) == ["carbon", "gpu", "outlook", "path"]
        for c in charts:
            assert 200 < c["width"] <= size["width"] and c["height"] >= 180, c
            assert c["right"] <= size["width"], c
            assert min(c["canvas"]) > 0, c
            assert all(n > 0 for n in c["points"]), c  # every series has drawn points
            assert all(n > 0 for n in c["yLabelled"]), c  # every value axis reads
            # 24 h UTC ticks (no am/pm), the axis says UTC
            assert c["xLabel"] == "time (UTC)", c
            assert c["xTicks"], c
            for tick in c["xTicks"]:
                assert re.fullmatch(r"(\d\d:\d\d(:\d\d)?(\n\d\d-\d\d)?|\d\d-\d\d)?", tick), c
        nav = page.locator("nav").bounding_box()
        job = page.locator("#job").bounding_box()
        if size is PHONE:  # one column: the list above the job
            assert nav["y"] + nav["height"] <= job["y"] and job["width"] >= 350
        else:  # two columns
            assert nav["x"] + nav["width"] <= job["x"] and job["width"] > 800
        # the path chart: no line across the move (a null between the legs) and the intensity
        # line above the site rows, never on them
        path = next(c for c in charts if c["key"] == "path")
        assert path["spanGaps"] == [False, False]
        rows = page.evaluate("""() => {
          const u = window.caftm.charts.path, v = window.caftm.view;
          const ci = v.series.intensity.filter(x => x !== null);
          return { gaps: v.series.intensity.filter(x => x === null).length,
            lowestLine: u.valToPos(Math.min(...ci), 'ci'),
            highestRow: u.valToPos(v.sites.length - 1, 'site'),
            plotBottom: u.bbox.height / devicePixelRatio };
        }""")
        assert rows["gaps"] == 2  # the move KR → FR and the pause at FR
        assert rows["lowestLine"] + 10 < rows["highestRow"], rows  # pixels grow downwards
        assert rows["lowestLine"] >= 0 and rows["highestRow"] <= rows["plotBottom"]
        # the carbon chart joins two series' times: none of this job's line crosses a band
        crossing = page.evaluate("""() => {
          const u = window.caftm.charts.carbon, v = window.caftm.view, bad = [];
          const bands = v.move_marks.map(m => [m.left, m.arrived])
            .concat(v.pause_marks.map(p => [p.start, p.end]));
          u.data[0].forEach((x, i) => {
            if (bands.some(([a, b]) => a < x && x < b) && u.data[1][i] !== null) bad.push(x);
          });
          return { bad, inside: u.data[0].filter(x => bands.some(([a, b]) => a < x && x < b)) };
        }""")
        assert crossing["inside"] and crossing["bad"] == [], crossing
        # the cursor's time reads as the log does
        page.locator("#chart-path .u-over").hover()  # scrolled into view, the middle
        legend = page.locator("#chart-path .u-legend .u-series").first.inner_text()
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", legend), legend
        page.screenshot(path=str(tmp_path / f"known-{size['width']}.png"), full_page=True)
    finally:
        context.close()
    assert errors == []


@pytest.mark.parametrize("size", SIZES)
def test_a_pause_shows_while_it_happens_then_closes(
    nap_server: Any, nap: Nap, chromium: Any, size: dict[str, int], tmp_path: Path
) -> None:
    context, page, errors = _page(chromium, size)
    try:
        page.goto(nap_server.url + "#job=nap")
        _rendered(page, "nap")
        assert page.inner_text("#status") == "paused"
        for c in page.evaluate(CHARTS_JS):  # the outlook: the trace's history, no forecast
            assert c["width"] > 200 and all(n > 0 for n in c["points"]), c
            assert all(n > 0 for n in c["yLabelled"]), c
        assert page.inner_text("#state") == "paused"  # not the ended run's "done"
        assert page.inner_text("#state-note") == "until 2026-06-15 18:00 UTC"
        assert "paused until 2026-06-15 18:00 UTC" in page.inner_text("#message")
        assert "T18:00" not in page.inner_text("body")  # no raw ISO time
        # the GPU card says what the event log's newest row says
        assert page.inner_text("#setting") == "1740 MHz"
        first = page.locator("#events tbody tr").first.locator("td").nth(5).inner_text()
        assert first == "1740"
        # the open pause band is drawn now, up to the planned resume
        bands = page.evaluate("window.caftm.charts.path.drawnBands")
        (band,) = bands
        assert band["open"] and band["b"] == RESUME.timestamp()
        assert band["x1"] - band["x0"] > 20, band
        page.screenshot(path=str(tmp_path / f"paused-{size['width']}.png"), full_page=True)

        with Ledger(nap.path) as ledger:  # the supervisor moves it: a band open to the right
            JobBook(ledger).update("nap", status=JobStatus.MOVING)
        page.wait_for_function(
            "document.getElementById('state').textContent === 'moving'", timeout=10_000
        )
        (band,) = page.evaluate("window.caftm.charts.path.drawnBands")
        right = page.evaluate("(u => (u.bbox.left + u.bbox.width))(window.caftm.charts.path)")
        assert band["open"] and band["b"] is None and band["x1"] == right > band["x0"] + 10

        resume_nap(nap)
        page.wait_for_function(
            "document.getElementById('status').textContent === 'running'", timeout=10_000
        )
        assert page.inner_text("#state") == "tolerance"
        assert page.inner_text("#state-note") == ""
        (band,) = page.evaluate("window.caftm.charts.path.drawnBands")
        assert not band["open"] and band["b"] < RESUME.timestamp() + 1
        # paused at 522, resumed at 265: the estimate credits the pause it says it credits
        saving = page.inner_text("#saving")
        assert saving.startswith("saved 24.6 %") and "credits moves and pauses" in saving
        assert page.evaluate("document.scrollingElement.scrollWidth") <= size["width"]
    finally:
        context.close()
    assert errors == []


@pytest.mark.parametrize("size", SIZES)
def test_jobs_are_chosen_by_keyboard_and_by_the_address(
    nap_server: Any, nap: Nap, chromium: Any, size: dict[str, int]
) -> None:
    context, page, errors = _page(chromium, size)
    try:
        page.goto(nap_server.url)
        _rendered(page, "other")  # the newest job first
        for _ in range(10):  # Tab reaches the list's rows
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.tagName") == "TR":
                break
        assert page.evaluate("document.activeElement.dataset.name") == "other"
        page.keyboard.press("ArrowDown")
        _rendered(page, "nap")
        assert page.evaluate("location.hash") == "#job=nap"
        assert page.evaluate("document.activeElement.dataset.name") == "nap"
        assert page.get_attribute("#jobs tr[data-name='nap']", "aria-selected") == "true"
        page.keyboard.press("ArrowUp")
        _rendered(page, "other")
        page.keyboard.press("Tab")  # away from the list, then back and Enter
        page.focus("#jobs tr[data-name='nap']")
        page.keyboard.press("Enter")
        _rendered(page, "nap")
        page.wait_for_timeout(700)  # polls re-render the list: the focus stays on its row
        assert page.evaluate("document.activeElement.dataset.name") == "nap"
        page.evaluate("location.hash = '#job=other'")
        _rendered(page, "other")
        page.goto(nap_server.url + "#job=nap")
        page.reload()
        _rendered(page, "nap")
    finally:
        context.close()
    assert errors == []
