"""One self-contained HTML file: inline CSS, figures as ``data:`` PNGs, no script, no URL.

It opens offline and can be mailed. Its input, :class:`ReportInput`, is source-neutral: the
ledger builds one (:mod:`caftm.report.build`) and a simulation result can build another, with
every simulated or synthetic input named in ``labels`` and ``inputs``.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from caftm.errors import ConfigError

__all__ = ["ReportFigure", "ReportInput", "ReportTable", "render_html", "write_report"]


@dataclass(frozen=True)
class ReportFigure:
    """One figure: a title, PNG bytes and a caption saying what it shows."""

    title: str
    png: bytes
    caption: str = ""


@dataclass(frozen=True)
class ReportTable:
    """A small table (cells are text)."""

    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class ReportInput:
    """Everything a report shows, whatever produced it.

    Attributes:
        title: e.g. ``job move``.
        source: what produced it (``ledger /path``, ``simulation of ...``).
        labels: badges shown under the title, e.g. ``SIMULATED GPU``, ``SYNTHETIC intensities``.
        summary: (name, value) pairs shown first.
        figures: the figures, in order.
        tables: further tables (legs, transfers, events).
        inputs: (input, where it came from, simulated or synthetic?) — every input is listed,
            and those not measured are marked.
        configuration: the configuration that produced it (shown as JSON).
    """

    title: str
    source: str
    labels: list[str] = field(default_factory=list)
    summary: list[tuple[str, str]] = field(default_factory=list)
    figures: list[ReportFigure] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)
    inputs: list[tuple[str, str, bool]] = field(default_factory=list)
    configuration: dict[str, Any] = field(default_factory=dict)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.label{display:inline-block;padding:.1em .6em;margin:.1em .3em .1em 0;border-radius:4px;
color:#fff;background:#b3261e;font-weight:600;font-size:.85em}
table{border-collapse:collapse;margin:.5em 0}th,td{text-align:left;padding:.2em .7em;
border-bottom:1px solid #eee;vertical-align:top}figure{margin:1em 0}
img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:.9em}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}.muted{color:#777}
td.flag{color:#b3261e;font-weight:600}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cell(value: object) -> str:
    """A cell's text: "—" for a value not recorded (never "None")."""
    return "—" if value is None else _e(value)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_html(report: ReportInput, *, generated_at: datetime | None = None) -> str:
    """The report as one HTML document (UTF-8 text, no external references)."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>caftm report: {_e(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>caftm report: {_e(report.title)}</h1>",
        f"<p class='muted'>from {_e(report.source)}; generated {_e(when)}</p>",
        "<p id='labels'>"
        + "".join(f"<span class='label'>{_e(label)}</span>" for label in report.labels)
        + "</p>",
    ]
    if report.summary:
        parts.append("<h2>Summary</h2>")
        parts.append(_table(("", ""), [(k, v) for k, v in report.summary], "summary"))
    if report.figures:
        parts.append("<h2>Figures</h2>")
    for number, figure in enumerate(report.figures, 1):
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(
            f"<figure><img alt='{_e(figure.title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>Figure {number}: <b>{_e(figure.title)}</b>. "
            f"{_e(figure.caption)}</figcaption></figure>"
        )
    if report.inputs:
        parts.append("<h2>Inputs</h2><table id='inputs'><thead><tr><th>input</th>"
                     "<th>where it came from</th><th></th></tr></thead><tbody>")  # fmt: skip
        for name, origin, made_up in report.inputs:
            flag = "SIMULATED / SYNTHETIC" if made_up else "measured"
            cls = " class='flag'" if made_up else ""
            parts.append(f"<tr><td>{_e(name)}</td><td>{_e(origin)}</td><td{cls}>{flag}</td></tr>")
        parts.append("</tbody></table>")
    for table in report.tables:
        parts.append(f"<h2>{_e(table.title)}</h2>")
        parts.append(_table(table.header, table.rows))
    if report.configuration:
        text = json.dumps(report.configuration, indent=2, sort_keys=True, default=str)
        shown = html.escape(text, quote=False)
        parts.append(f"<h2>Configuration</h2><pre id='configuration'>{shown}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(report: ReportInput, path: str | Path) -> Path:
    """Write the report's HTML to ``path``; returns the path.

    Raises:
        ConfigError: the file cannot be written.
    """
    out = Path(path)
    try:
        out.write_text(render_html(report), encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot write the report {out}: {e.strerror or e}") from e
    return out
