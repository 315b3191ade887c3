"""``caftm report``: one self-contained HTML file with the figures, the configuration and every
simulated or synthetic input labelled; opened in headless Chromium with no network."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.cli.signals_support import Result, cli, isolated_env
from tests.dashboard.known import ENERGY_J, SPEC, START, Known, ledger_totals
from tests.dashboard.scenes import build_nap

from caftm.ledger import JobBook, Ledger
from caftm.ledger.feed import Feed, Scope
from caftm.report.build import ledger_report
from caftm.report.html import ReportFigure, ReportInput, render_html, write_report

__all__ = ["cli", "isolated_env"]  # fixtures used here

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c63f8cfc0f01f0005000201a5d4f3a70000000049454e44ae426082"
)


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)


def _write(known: Known, tmp_path: Path, cli: Callable[..., Result]) -> str:
    out = tmp_path / "report.html"
    result = cli("report", "known", "--db", str(known.path), "--out", str(out))
    assert result.code == 0, result.text
    assert "SIMULATED GPU" in result.out
    return out.read_text(encoding="utf-8")


def test_the_report_is_self_contained_and_labelled(
    known: Known, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    html = _write(known, tmp_path, cli)
    refs = _references(html)
    assert len(refs) == 4 and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "<script" not in html and "<link" not in html and "url(" not in html
    assert "SIMULATED GPU" in html and "SYNTHETIC intensities" in html
    assert "ESTIMATED carbon-agnostic baseline" in html
    carbon, *_ = ledger_totals(known.path)
    assert f"{carbon:.4g} gCO2eq" in html
    assert "<td>moves / pauses</td><td>1 / 1</td>" in html
    assert '"value_g_per_kwh": 400.0' in html  # the configuration that produced it
    assert "run ended: moved" in html  # the event log


def test_a_twin_is_the_measured_baseline_and_a_run_can_be_reported(known: Known) -> None:
    with Ledger(known.path) as ledger:
        book = JobBook(ledger)
        book.create("known-agnostic", site="KR", store_url="x", executor="local", spec=SPEC)
        run = ledger.start_run(
            name="twin",
            policy="carbon-agnostic",
            site="KR",
            started_at=START,
            simulated=True,
            job="known-agnostic",
            leg=1,
        )
        for i in range(13):
            ledger.record_window(
                run,
                time=START + timedelta(minutes=10 * (i + 1)),
                duration_s=600,
                steps=50,
                setting=None,
                knob=None,
                energy_j=ENERGY_J,
                intensity_g_per_kwh=500.0,
                site="KR",
                phase="train",
            )
    with Ledger(known.path, read_only=True) as ledger:
        report = ledger_report(ledger, "known")
        summary = dict(report.summary)
        assert summary["carbon-agnostic run"].startswith(f"{13 * 25:.4g} gCO2eq (measured")
        assert "known-agnostic" in summary["carbon-agnostic run"]
        by_run = ledger_report(ledger, known.run_ids[0][:6])
        assert by_run.title == f"run {known.run_ids[0]}"
        assert dict(by_run.summary)["windows"] == "6"
        assert len(by_run.figures) == 4


def test_any_source_can_fill_a_report(tmp_path: Path) -> None:
    """The seam a simulation result uses: a ReportInput of its own."""
    report = ReportInput(
        title="simulation of a week",
        source="caftm simulate",
        labels=["SIMULATED GPU"],
        summary=[("carbon", "12 g")],
        figures=[ReportFigure("a figure", PNG_1PX, "1 px")],
        inputs=[("trace", "2022 hourly", False), ("GPU", "model", True)],
        configuration={"policy": "caftm"},
    )
    html = render_html(report)
    assert "caftm report: simulation of a week" in html and "SIMULATED / SYNTHETIC" in html
    assert _references(html) == [
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf"
        "FcSJAAAADUlEQVR4nGP4z8DwHwAFAAIBpdTzpwAAAABJRU5ErkJggg=="
    ]
    assert write_report(report, tmp_path / "s.html").read_text(encoding="utf-8") != ""


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_the_report_opens_offline_in_chromium_with_its_figures(
    known: Known, tmp_path: Path, cli: Callable[..., Result], chromium: Any
) -> None:
    _write(known, tmp_path, cli)
    context = chromium.new_context(offline=True, viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    context.route(
        "**/*",
        lambda route: (
            route.abort()
            if not route.request.url.startswith(("file:", "data:"))
            else route.continue_()
        ),
    )
    page = context.new_page()
    try:
        page.goto((tmp_path / "report.html").as_uri())
        page.wait_for_load_state("load")
        figures = page.eval_on_selector_all(
            "figure img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        assert len(figures) == 4
        assert all(done and w > 300 and h > 100 for done, w, h in figures), figures
        labels = page.inner_text("#labels")
        assert "SIMULATED GPU" in labels and "SYNTHETIC intensities" in labels
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    finally:
        context.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_the_timeline_png_still_draws_moves_and_pauses(known: Known, tmp_path: Path) -> None:
    from caftm.report.timeline import job_timeline, plot_timeline

    with Ledger(known.path, read_only=True) as ledger:
        book = JobBook(ledger)
        timeline = job_timeline(book, "known")
        assert [(m[2], m[3]) for m in timeline.moves] == [("KR", "FR")]
        assert len(timeline.pauses) == 1 and timeline.simulated
        assert timeline.threshold_g_per_kwh == 400.0
        png = plot_timeline(book, ["known"], tmp_path / "t.png")
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000


def _visible_text(html: str) -> str:
    """The report's text as a reader sees it (tags and the figures' data URIs left out)."""
    from html.parser import HTMLParser

    parts: list[str] = []

    class Text(HTMLParser):
        def handle_data(self, data: str) -> None:
            parts.append(data)

    Text().feed(html)
    return " ".join(parts)


def test_the_report_says_no_none_and_credits_the_pause(tmp_path: Path) -> None:
    """Leg 1 recorded no start step (the worker did not say): "—", never "None→200"."""
    nap = build_nap(tmp_path, resumed=True)
    with Ledger(nap.path, read_only=True) as ledger:
        report = ledger_report(ledger, "nap")
    text = _visible_text(render_html(report))
    assert "None" not in text
    legs = next(t for t in report.tables if t.title == "Legs")
    assert [row[5] for row in legs.rows] == ["— → 200", "200 → —"]
    summary = dict(report.summary)
    assert summary["saving"] == "24.6 %"  # paused at 522, resumed at 265


def _overlaps(fig: Any) -> list[str]:
    """Every (legend, axes) pair whose boxes overlap once drawn."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends, "a figure without a legend"
    return [
        f"{legend.get_texts()[0].get_text()!r} over {ax.get_title(loc='left')!r}"
        for legend in legends
        for ax in fig.axes
        if legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    ]


def test_no_legend_covers_data(known: Known, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from caftm.report.carbon import signal_setup, site_outlooks
    from caftm.report.figures import carbon_figure, gpu_figure, outlook_figure
    from caftm.report.timeline import timeline_figure

    with Ledger(known.path, read_only=True) as ledger:
        book = JobBook(ledger)
        windows = Feed(ledger).windows(Scope.of_job("known"))
        times = [w.time for w in windows]
        setup = signal_setup(book.get("known").spec)
        figures = [
            timeline_figure(book, ["known"]),
            outlook_figure(site_outlooks(setup, times[-1]), 400.0, span=(times[0], times[-1])),
            gpu_figure(times, [w.setting for w in windows], [300.0] * len(times), "MHz"),
            carbon_figure(
                times,
                [float(i) for i in range(len(times))],
                (times, [2.0 * i for i in range(len(times))]),
            ),
        ]
    try:
        for fig in figures:
            assert _overlaps(fig) == []
            for ax in fig.axes:
                if ax.get_xlabel():
                    assert "UTC" in ax.get_xlabel()
    finally:
        for fig in figures:
            plt.close(fig)
