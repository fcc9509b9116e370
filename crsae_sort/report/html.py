"""The report page: HTML text around the figures, self-contained (inline CSS and table-sorting script)."""
from __future__ import annotations

import html

import numpy as np

SECTIONS = [("overview", "Overview"), ("dictionary", "Dictionary"), ("units", "Units"), ("fit", "Fit"),
            ("training", "Training"), ("quality", "Quality metrics"), ("ground-truth", "Ground truth")]

_CSS = """body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1240px;padding:0 16px 48px;color:#222}
h1{margin:16px 0 4px}nav a{margin-right:14px}section{margin-top:28px}img{max-width:100%;display:block}
table{border-collapse:collapse;margin:8px 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}td:first-child,th:first-child{text-align:left}table.sortable th{cursor:pointer;
background:#eef}table.sortable th:after{content:" \\2195";color:#999}.unit{margin:12px 0;
border-top:1px solid #eee}.notes{color:#666;font-size:13px}table.kv td{text-align:left}"""

_JS = """document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], dir = th.dataset.dir === "up" ? -1 : 1;
    th.dataset.dir = dir === 1 ? "up" : "down";
    var key = function (row) { var v = parseFloat(row.cells[col].dataset.v);
      return isNaN(v) ? row.cells[col].textContent : v; };
    Array.from(body.rows).sort(function (a, b) { var x = key(a), y = key(b);
      return (x > y ? 1 : x < y ? -1 : 0) * dir; }).forEach(function (r) { body.appendChild(r); });
  });
});"""


def page(title: str, sections: list[str]) -> str:
    """The whole page: a heading, links to the sections present, the sections, the sorting script."""
    nav = " ".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name in SECTIONS
                   if any(f'id="{sid}"' in s for s in sections))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>crsae-sort report: '
            f'{html.escape(title)}</title><style>{_CSS}</style></head><body>\n'
            f'<h1>crsae-sort report: {html.escape(title)}</h1><nav>{nav}</nav>\n' + "\n".join(sections)
            + f"\n<script>{_JS}</script></body></html>\n")


def section(sid: str, heading: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(heading)}</h2>{body}</section>'


def img(name: str, alt: str) -> str:
    return f'<img src="{name}" alt="{html.escape(alt)}">'


def table(headers: list[str], rows, *, sortable: bool, css: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    classes = " ".join(c for c in ("sortable" if sortable else "", css) if c)
    cls = f' class="{classes}"' if classes else ""
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    return f"<table{cls}>{thead}<tbody>{body}</tbody></table>"


def cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        v = float(value)
        shown = "n/a" if not np.isfinite(v) else f"{v:.4g}"
        return f'<td data-v="{v if np.isfinite(v) else "-Infinity"}">{shown}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td data-v="{int(value)}">{int(value)}</td>'
    return f"<td>{html.escape(str(value))}</td>"
