"""The page style shared by report.html and compare.html: one stylesheet,
one HTML skeleton, tables and images.

A page is self-contained (inline CSS, PNGs as data URIs, no scripts, no
external resources) so that it opens from disk and can be mailed as one
file. Every text that comes from the results is escaped: the helpers here
take plain text, except where a parameter says it is HTML.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.banner { background: #fff3cd; border: 2px solid #e0a800; padding: 0.8em 1em; font-weight: bold;
          margin: 1em 0; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
.muted { color: #777; } img.chart { width: 100%; max-width: 1000px; display: block;
          margin: 0.5em 0 1.5em; border: 1px solid #eee; }
.problems li { color: #8a4b00; }
ol.findings { padding-left: 1.4em; font-size: 1.05em; } ol.findings li { margin: 0.35em 0;
          padding-left: 0.5em; border-left: 4px solid #e0a800; }
ol.findings li.error { border-left-color: #c62828; } .sev { font-size: 0.8em; color: #777; }
.when { font-size: 0.85em; color: #555; } .clean { color: #1a7f37; font-weight: bold; }
.verdict { font-size: 1.1em; }
"""


def document(title: str, body: Iterable[str]) -> str:
    """A whole page: ``title`` (text) as its title and first heading, then
    the ``body`` parts (HTML), one per line."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        *body,
        "</body></html>\n",
    ]
    return "\n".join(parts)


def table(header: Sequence[str], rows: Iterable[str], cls: str | None = None) -> str:
    """A table of ``header`` cells (text) and ``rows`` (each an HTML
    ``<tr>``)."""
    attr = f" class='{cls}'" if cls else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return f"<table{attr}><tr>{head}</tr>" + "".join(rows) + "</table>"


def text_table(header: Sequence[str], body: Iterable[Sequence[str]], cls: str | None = None) -> str:
    """A table of text cells: the first column names the row, the others
    are figures (aligned right)."""
    rows = (
        "<tr>"
        + "".join(
            f"<td>{escape(x)}</td>" if i == 0 else f"<td class='num'>{escape(x)}</td>"
            for i, x in enumerate(r)
        )
        + "</tr>"
        for r in body
    )
    return table(header, rows, cls)


def image(png: bytes, alt: str) -> str:
    """A PNG inlined as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f"<img class='chart' alt='{escape(alt, quote=True)}' src='data:image/png;base64,{data}'>"


def banner(text: str) -> str:
    """A warning that must be read first."""
    return f"<div class='banner'>{escape(text)}</div>"


def items(texts: Iterable[str], cls: str | None = None) -> str:
    """A bulleted list of texts."""
    attr = f" class='{cls}'" if cls else ""
    return f"<ul{attr}>" + "".join(f"<li>{escape(t)}</li>" for t in texts) + "</ul>"
