"""A comparison's files: its charts (in the style of
:mod:`soak.report.figures`), ``compare.html`` (in the style of
:mod:`soak.report.page`) and ``compare.json``, and where they go when
``--out`` is not given."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

from soak.errors import ResultsError
from soak.report import compare_findings, page
from soak.report import figures as fg
from soak.report.compare import Comparison
from soak.report.compare_text import ci_lines, table_cells, to_json, verdict_text

Series = dict[str, tuple[list[float], list[float]]]


def chart_series(c: Comparison) -> dict[str, Series]:
    """What the charts plot, per run name:

    - ``percentiles``: x = 1/(1-q) where q is the fraction of samples below a
      value, y = the value in ms (HdrHistogram's percentile distribution);
    - ``rtt_p99``: x = interval start in seconds, y = that interval's p99 in ms.
    """
    dist: Series = {}
    over_time: Series = {}
    for d in c.datas:
        total = d.merged.total
        xs, ys = [], []
        below = 0
        for v, n in zip(d.merged.values, d.merged.counts, strict=True):
            xs.append(1.0 / (1.0 - below / total))
            ys.append(v / 1000.0)
            below += n
        dist[d.name] = (xs, ys)
        ts, ps = [], []
        for start, iv in zip(d.starts, d.rtt, strict=True):
            p = iv.percentile(99.0)
            if p is not None:
                ts.append(start)
                ps.append(p / 1000.0)
        over_time[d.name] = (ts, ps)
    return {"percentiles": dist, "rtt_p99": over_time}


def render_charts(c: Comparison) -> dict[str, bytes]:
    """PNG bytes by file name."""
    series = chart_series(c)
    return {
        "percentiles.png": _percentiles(series["percentiles"]),
        "rtt_p99.png": _rtt_p99(series["rtt_p99"]),
    }


def _percentiles(dist: Series) -> bytes:
    fig, ax = fg.figure(fg.TALL)
    with fg.closing(fig):
        for i, (name, (xs, ys)) in enumerate(dist.items()):
            ax.step(xs, ys, where="post", label=name, color=fg.run_colour(i))
        tops = [max(xs) for xs, _ in dist.values() if xs]
        fg.percentile_axis(ax, max(tops) if tops else None)
        ax.set_ylabel("heartbeat RTT (ms)")
        ax.set_title("RTT percentile distribution")
        ax.grid(True, which="major", alpha=fg.GRID_ALPHA)
        fg.legend(ax)
        return fg.png(fig)


def _rtt_p99(over_time: Series) -> bytes:
    fig, ax = fg.figure()
    with fg.closing(fig):
        scale = fg.time_axis(ax, [t for ts, _ in over_time.values() for t in ts])
        for i, (name, (ts, ps)) in enumerate(over_time.items()):
            ax.plot([t / scale for t in ts], ps, label=name, lw=1, color=fg.run_colour(i))
        ax.set_ylabel("RTT p99 per interval (ms)")
        ax.set_title("RTT p99 over time")
        ax.grid(True, alpha=fg.GRID_ALPHA)
        fg.legend(ax)
        return fg.png(fig)


def render_html(c: Comparison, charts: dict[str, bytes]) -> str:
    body = [page.banner(w) for w in c.warnings]
    cls = "fail" if c.regression else "pass"
    body.append(f"<p>Verdict: <span class='{cls}'>{escape(verdict_text(c))}</span></p>")
    body.append(compare_findings.html(c.datas))
    runs = [
        [
            d.name,
            str(d.run.path),
            str(d.run.manifest.get("start", "")),
            f"{d.duration_s:g} s",
            str(len(d.rtt)),
            d.run.status,
        ]
        for d in c.datas
    ]
    body.append("<h2>Runs</h2>")
    body.append(
        page.text_table(["run", "directory", "start", "duration", "intervals", "status"], runs)
    )
    body.append("<h2>Metrics (baseline first)</h2>")
    body.append(page.text_table(*table_cells(c)))
    body.append(
        f"<h2>Is the latency difference real?</h2><p>Bootstrap 95% confidence interval of "
        f"the difference, resampling each run's intervals with replacement ({c.resamples} "
        f"resamples, seed {c.seed}). Significant only when the interval excludes 0.</p>"
    )
    body.append(page.text_table(["runs", "metric", "difference", "95% CI", ""], ci_lines(c)))
    body.append("<h2>Thresholds</h2>")
    body.append(
        page.text_table(
            ["metric", "run", "limit", "value", "verdict"],
            [
                [k.name, k.run, k.limit, k.shown, "REGRESSION" if k.regression else "ok"]
                for k in c.checks
            ],
        )
    )
    if c.notes:
        body.append("<h2>Notes</h2>")
        body.append(page.items(c.notes))
    body.append("<h2>Charts</h2>")
    body += [f"<p>{page.image(png, fname)}</p>" for fname, png in charts.items()]
    return page.document("soak compare: " + " vs ".join(d.name for d in c.datas), body)


def default_out_dir(c: Comparison) -> Path:
    """``compare-<baseline label>-vs-<label>[-vs-...]``, labels reduced to
    characters safe in a file name, in the results directory that holds the
    baseline run (the parent of RUN_A), as a report goes into its run's
    directory."""
    names = [re.sub(r"[^A-Za-z0-9._-]+", "_", d.run.label).strip("_") or "run" for d in c.datas]
    return c.datas[0].run.path.parent / f"compare-{'-vs-'.join(names)}"


def write_outputs(c: Comparison, out: Path) -> Path:
    """Charts, compare.html and compare.json into ``out``; returns the page.
    Raises ResultsError (naming ``out``) when it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        charts = render_charts(c)
        for fname, png in charts.items():
            (out / fname).write_bytes(png)
        html_path = out / "compare.html"
        html_path.write_text(render_html(c, charts), encoding="utf-8")
        (out / "compare.json").write_text(json.dumps(to_json(c), indent=2) + "\n", "utf-8")
    except OSError as exc:
        raise ResultsError(f"{out}: cannot write the comparison: {exc.strerror or exc}") from exc
    return html_path
