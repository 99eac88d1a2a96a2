"""report.html's chain section: summary.json's ``chain`` (soak.chain_summary),
each hop's prediction next to what the run saw. Kept apart from
soak.report.html so that the page's layout and this table change apart."""

from __future__ import annotations

from html import escape
from typing import Any

from soak.report import page
from soak.report.report import Report


def _e(v: Any) -> str:
    return escape("" if v is None else str(v))


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return escape(f"{v:,.3f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v):,}")
    return escape(f"{v:,}" if isinstance(v, int) else str(v))


CHAIN_COLUMNS = (
    "hop",
    "kind",
    "idle timeout (s)",
    "reset by",
    "predicted",
    "closes seen",
    "seen timeout (s)",
    "reload closes",
    "verdict",
    "what it means",
)


def chain_section(report: Report) -> str:
    """summary.json's ``chain``: each hop's prediction next to what the run
    saw (soak.chain_summary); empty when the profile has no hops."""
    chain = report.summary.get("chain")
    if not isinstance(chain, dict):
        return ""
    rows = []
    for h in chain.get("hops") or []:
        pred, seen = h.get("predicted") or {}, h.get("observed") or {}
        cells = [
            f"<td>{_e(h.get('name'))}</td>",
            f"<td>{_e(h.get('kind'))}</td>",
            f"<td class='num'>{_fmt(h.get('idle_timeout_s'))}</td>",
            f"<td>{_e(h.get('resets_on'))}</td>",
            f"<td>{'closes' if pred.get('closes') else 'keeps'}</td>",
            f"<td class='num'>{_fmt(seen.get('closes'))}</td>",
            f"<td class='num'>{_fmt(seen.get('timeout_s'))}</td>",
            f"<td class='num'>{_fmt(seen.get('reload_closes'))}</td>",
            f"<td>{_e(h.get('verdict'))}</td>",
            f"<td>{_e(h.get('text'))}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<h2>The chain: predicted and observed</h2><p>{_e(chain.get('text'))}</p>" + page.table(
        CHAIN_COLUMNS, rows, "chain"
    )
