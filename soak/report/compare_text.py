"""A comparison as text (what ``soak compare`` prints) and as JSON
(``compare.json``). The side-by-side table's cells are shared with the
page (:mod:`soak.report.compare_page`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soak.report import compare_findings
from soak.report.compare import Comparison, ci_ms, significance


def _fmt(v: float | None, unit: str, sign: str = "") -> str:
    """A value in its unit; ``sign="+"`` formats a delta (pp for percentages)."""
    if v is None:
        return "-"
    if unit in ("ms", "s"):
        return f"{v:{sign}.3f}"
    if unit == "%":
        return f"{v:{sign}.3f}" + ("pp" if sign else "%")
    if unit == "/h":
        return f"{v:{sign}.1f}"
    return f"{v:{sign}g}"


def _fmt_delta(v: float | None, unit: str) -> str:
    return _fmt(v, unit, "+")


def _fmt_rel(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f}%"


def table_cells(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the side-by-side table (shared by text and HTML)."""
    header = ["metric", f"{c.datas[0].name} (baseline)"]
    for d in c.datas[1:]:
        header += [d.name, "delta", "delta %"]
    body = []
    for row in c.rows:
        title = f"{row.title} ({row.unit})" if row.unit in ("ms", "s", "/h") else row.title
        cells = [title, _fmt(row.values[0], row.unit)]
        for j in range(1, len(c.datas)):
            cells += [
                _fmt(row.values[j], row.unit),
                _fmt_delta(row.delta(j), row.unit),
                _fmt_rel(row.relative(j)),
            ]
        body.append(cells)
    return header, body


def ci_lines(c: Comparison) -> list[list[str]]:
    out = []
    for d in c.datas[1:]:
        for ci in c.cis[d.name]:
            state = significance(ci)
            out.append(
                [
                    f"{d.name} - {c.datas[0].name}",
                    f"RTT p{ci.q:g}",
                    f"{ci.diff / 1000:+.3f} ms",
                    ci_ms(ci),
                    state,
                ]
            )
    return out


def _align(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            s.rjust(w) for s, w in zip(r[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    return out


def verdict_text(c: Comparison) -> str:
    if c.regression:
        bad = sorted({f"{k.name} ({k.run})" for k in c.checks if k.regression})
        return "REGRESSION: " + ", ".join(bad) + " (exit code 1)"
    return "no regression (exit code 0)"


def render_text(c: Comparison) -> str:
    lines = list(c.warnings)
    if lines:
        lines.append("")
    # what went wrong, per side, before the figures
    lines += [*compare_findings.text_lines(c.datas), ""]
    header, body = table_cells(c)
    lines += _align([header, *body])
    lines += [
        "",
        f"bootstrap 95% CI of the difference (intervals resampled with replacement, "
        f"{c.resamples} resamples, seed {c.seed}):",
    ]
    lines += ["  " + s for s in _align(ci_lines(c))]
    lines += ["", "thresholds:"]
    for k in c.checks:
        state = "REGRESSION" if k.regression else "ok"
        limit = f" {k.limit}" if k.limit else ""
        lines.append(f"  {k.name}{limit}: {k.run} {k.shown} {state}")
    for n in c.notes:
        lines.append(f"note: {n}")
    lines += ["", f"verdict: {verdict_text(c)}"]
    return "\n".join(lines) + "\n"


def to_json(c: Comparison) -> dict[str, Any]:
    return {
        "runs": [{"name": d.name, "path": str(d.run.path)} for d in c.datas],
        "warnings": c.warnings,
        "table": [{"metric": r.key, "unit": r.unit, "values": r.values} for r in c.rows],
        "bootstrap": {
            name: [
                {
                    "q": ci.q,
                    "diff_ms": ci.diff / 1000,
                    "ci_ms": [ci.low / 1000, ci.high / 1000],
                    "significant": ci.significant,
                    "enough_data": ci.enough_data,
                }
                for ci in cis
            ]
            for name, cis in c.cis.items()
        },
        "checks": [k.__dict__ for k in c.checks],
        "findings": compare_findings.to_json(c.datas),
        "regression": c.regression,
        "exit_code": c.exit_code,
    }
