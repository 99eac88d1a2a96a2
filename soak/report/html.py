"""report.html: one self-contained page in the style of
:mod:`soak.report.page` (inline CSS, PNGs as data URIs, no scripts, no
external resources) that opens from disk. Every text that comes from the
results is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from soak.availability import storm_line
from soak.report import page
from soak.report.chain_html import chain_section
from soak.report.lead import (
    findings_section,
    handshake_section,
    story_chart,
    tester_memory,
    verdict_line,
)
from soak.report.report import Report

# the story chart first, on its own; then these
CHART_ORDER = (
    "rtt_over_time",
    "percentile_distribution",
    "connections",
    "heartbeats",
    "closes",
    "tester_lag",
    "storm_timeline",
)


def _e(v: Any) -> str:
    return escape("" if v is None else str(v))


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        text = f"{v:,.3f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v):,}"
    elif isinstance(v, int):
        text = f"{v:,}"
    else:
        text = str(v)
    return escape(text + unit)


def _pct(v: Any) -> str:
    return "–" if not isinstance(v, int | float) else escape(f"{v * 100:.3f}%")


def _rows(rows: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td class='num'>{v}</td></tr>" for k, v in rows)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "–"
    s = float(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{int(h)}h {int(m):02d}m {sec:04.1f}s"
    if m:
        return f"{int(m)}m {sec:04.1f}s"
    return f"{sec:.3f}s"


def identity(report: Report) -> str:
    m = report.run.manifest
    s = report.summary
    rows = [
        ("label", _e(report.run.label)),
        ("target", _e(m.get("target"))),
        ("protocol", _e(m.get("protocol"))),
        ("profile", _e(m.get("profile_path"))),
        ("start", _e(m.get("start"))),
        ("end", _e(m.get("end") or "(not recorded)")),
        ("duration", escape(_duration(s.get("duration_s")))),
        ("intervals", _fmt(len(report.run.intervals))),
        ("tool version", _e(m.get("tool_version"))),
        ("git commit", _e(m.get("git_commit") or "(not known)")),
        ("server version", _e(m.get("server_version") or "(not told)")),
        ("host", _e(m.get("host"))),
        ("Python", _e(m.get("python"))),
        ("OS", _e(m.get("os"))),
        ("command", _e(m.get("command") or "(not recorded)")),
        ("tester processes", _e(_workers(s))),
        ("status", _e(report.run.status)),
        ("exit code", _e(m.get("exit_code", s.get("exit_code")))),
        ("results directory", _e(report.run.path)),
    ]
    return "<table class='identity'>" + _rows(rows) + "</table>"


def _workers(summary: dict[str, Any]) -> str:
    w = summary.get("workers")
    if not isinstance(w, dict):
        return "1"
    lost = w.get("lost") or []
    gone = "; ".join(f"worker {x.get('worker')} lost: {x.get('why')}" for x in lost)
    return f"{w.get('count')} workers" + (f" ({gone})" if gone else "")


# shown beside rtt (from the scheduled slot: what a user's client lives
# through) when they have samples; a threshold names the one it judges
OTHER_LATENCIES = (
    ("rtt_service", "from the real send"),
    ("rtt_wire", "kernel to kernel: the gateway and the network alone"),
    ("rx_delay", "the tester, on the way in"),
    ("tx_delay", "the tester, on the way out"),
    ("read_lag", "the tester: ready, waiting for its read"),
    ("server_gap", "between the server's heartbeats"),
)


def summary_table(report: Report) -> str:
    s = report.summary
    t = s.get("totals") or {}
    rtt = (s.get("latency_ms") or {}).get("rtt") or {}
    conn = (s.get("latency_ms") or {}).get("connect") or {}
    connected = [r.get("connected") for r in report.run.intervals]
    peak = max((c for c in connected if isinstance(c, int | float)), default=None)
    rows: list[tuple[str, str]] = [
        ("heartbeats sent", _fmt(t.get("pings"))),
        ("pongs on time", _fmt(t.get("pongs"))),
        ("missed", _fmt(t.get("missed"))),
        ("late (also counted in missed)", _fmt(t.get("late"))),
        ("heartbeat success", _pct(t.get("heartbeat_success"))),
        ("RTT samples", _fmt(rtt.get("count"))),
    ]
    for k in ("min", "p50", "p90", "p99", "p99.9", "p99.99", "max"):
        rows.append((f"RTT {k}", _fmt(rtt.get(k), " ms")))
    lat = s.get("latency_ms") or {}
    for name, what in OTHER_LATENCIES:
        h = lat.get(name) or {}
        if h.get("count"):  # rtt_wire and its delays only with kernel timestamps
            figures = f"{_fmt(h.get('p50'), ' ms')} / {_fmt(h.get('p99'), ' ms')}"
            rows.append((f"{name} p50 / p99 ({what})", figures))
    rows += [
        ("connect p99", _fmt(conn.get("p99"), " ms")),
        ("peak connected", _fmt(peak)),
        ("planned peak", _fmt(s.get("clients_planned_peak"))),
        ("connects", _fmt(t.get("connects"))),
        ("connect attempts", _fmt(t.get("connect_attempts"))),
        ("reconnects", _fmt(t.get("reconnects"))),
        ("clients that gave up reconnecting", _fmt(t.get("reconnect_failed"))),
        ("handshake failures", _fmt(t.get("handshake_failure_total"))),
        ("zombies", _fmt(t.get("zombies"))),
        ("false timeouts", _fmt(t.get("false_timeouts"))),
        ("justified timeouts", _fmt(t.get("justified_timeouts"))),
        ("dropped samples", _fmt(t.get("dropped_samples_total"))),
        ("tester-bottleneck intervals", _fmt(_bottlenecks(report))),
    ]
    rec = s.get("reconcile")
    if isinstance(rec, dict):
        for k, v in rec.items():
            if not isinstance(v, dict | list):
                rows.append((f"reconcile {k}", _fmt(v)))
    return "<table class='summary'>" + _rows(rows) + "</table>"


def _bottlenecks(report: Report) -> int:
    return sum(1 for r in report.run.intervals if r.get("tester_bottleneck"))


def verdicts(report: Report) -> str:
    checks = report.summary.get("thresholds") or []
    if not checks:
        return "<p class='muted'>The profile set no thresholds.</p>"
    note = (
        "<p class='muted'>The run ended before writing summary.json: these verdicts were "
        "judged by soak report on what it measured until then.</p>"
        if report.computed
        else ""
    )
    rows = []
    for c in checks:
        ok = bool(c.get("ok"))
        rows.append(
            f"<tr><td class='{'pass' if ok else 'fail'}'>{'PASS' if ok else 'FAIL'}</td>"
            f"<td>{_e(c.get('name'))}</td><td>{_e(c.get('limit'))}</td>"
            f"<td class='num'>{_e(c.get('value'))}</td></tr>"
        )
    return note + page.table(("result", "threshold", "limit", "value"), rows, "verdicts")


def close_reasons(report: Report) -> str:
    top = report.top_close_reasons()
    if not top:
        return "<p class='muted'>No connection was closed.</p>"
    total = sum(int(v) for v in ((report.summary.get("totals") or {}).get("closes") or {}).values())
    rows = (
        f"<tr><td>{_e(k)}</td><td class='num'>{_fmt(v)}</td>"
        f"<td class='num'>{escape(f'{v / total * 100:.1f}%') if total else '–'}</td></tr>"
        for k, v in top
    )
    return page.table(("reason", "closes", "share"), rows, "closes")


INTERMEDIARY_COLUMNS = (
    "timeout (s)",
    "after silence",
    "closes",
    "share of abrupt closes",
    "silence min-max (s)",
    "first-last close (s)",
    "heartbeat interval (s)",
    "what it means",
)


def intermediaries_section(report: Report) -> str:
    """The intermediary idle timeouts named from the closes (soak.intermediary)."""
    found = report.intermediaries
    note = (
        "<p class='muted'>Computed by soak report from events.jsonl (summary.json has none).</p>"
        if report.intermediaries_computed and found
        else ""
    )
    if not found:
        return (
            "<p class='muted'>None: no closes without a close frame cluster at one "
            "silence length.</p>"
        )
    rows = []
    for x in found:
        sil = x.get("silence_s") if isinstance(x.get("silence_s"), dict) else {}
        assert isinstance(sil, dict)
        share = x.get("share")
        cells = [
            f"<td class='num'>{_fmt(x.get('timeout_s'))}</td>",
            f"<td>{_e(x.get('direction'))}</td>",
            f"<td class='num'>{_fmt(x.get('closes'))}</td>",
            f"<td class='num'>{_pct(share)}</td>",
            f"<td class='num'>{_fmt(sil.get('min'))}-{_fmt(sil.get('max'))}</td>",
            f"<td class='num'>{_fmt(x.get('first_t_s'))}-{_fmt(x.get('last_t_s'))}</td>",
            f"<td class='num'>{_fmt(x.get('heartbeat_interval_s'))}</td>",
            f"<td>{_e(x.get('text'))}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return note + page.table(INTERMEDIARY_COLUMNS, rows, "intermediaries")


EVIDENCE_FIELDS = (
    "age_s",
    "last_pong_age_s",
    "last_frame_age_s",
    "consecutive_missed",
    "pings_pending",
)


def evidence_table(report: Report) -> str:
    evs = report.false_timeouts
    if not evs:
        return "<p class='muted'>No false timeouts.</p>"
    rows = []
    for ev in evs:
        e = ev.get("evidence") if isinstance(ev.get("evidence"), dict) else {}
        assert isinstance(e, dict)
        cells = [
            f"<td class='num'>{_fmt(ev.get('t'))}</td>",
            f"<td>{_e(ev.get('client'))}</td>",
            f"<td class='num'>{_e(ev.get('code'))}</td>",
            f"<td>{_e(ev.get('why'))}</td>",
            *(f"<td class='num'>{_fmt(e.get(k))}</td>" for k in EVIDENCE_FIELDS),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = ""
    if report.false_timeouts_total > len(evs):
        note = (
            f"<p class='muted'>The first {len(evs)} of {report.false_timeouts_total:,} "
            "false timeouts.</p>"
        )
    head = ("t (s)", "client", "code", "why", *EVIDENCE_FIELDS)
    return note + page.table(head, rows, "evidence")


def charts(report: Report, names: tuple[str, ...] = CHART_ORDER) -> str:
    """The charts ``names`` that were drawn, each under a heading whose id
    (``chart-<name>``) the findings link to."""
    out = []
    by_name = {c.name: c for c in report.charts}
    for name in names:
        path = report.pngs.get(name)
        if path is None:
            continue
        title = by_name[name].title if name in by_name else name
        out.append(
            f"<h3 id='chart-{escape(name)}'>{escape(title)}</h3>"
            + page.image(path.read_bytes(), title)
        )
    return "".join(out)


STORM_COLUMNS = (
    "#",
    "start (s)",
    "end (s)",
    "lost",
    "recovered",
    "gave up",
    "peak attempts / 100 ms",
    "peak at (s after start)",
    "max in flight",
    "recovery p50 (s)",
    "recovery p90 (s)",
    "recovery p99 (s)",
    "recovery p100 (s)",
    "sync index before",
    "sync index after",
    "failures",
)


def _recovery(v: Any) -> str:
    # None: that share of the lost connections never came back
    return _fmt(v) if isinstance(v, int | float) else "<span class='muted'>not reached</span>"


def _sync(v: Any) -> str:
    return escape(f"{v:.4f}") if isinstance(v, int | float) else "–"


def storms_section(report: Report) -> str:
    """The reconnect storms: a table from summary.json's ``storms`` (one row
    per storm). Empty when the run has no storm data at all."""
    storms = report.storms
    if storms is None:
        if report.storm_series:
            return (
                "<h2 id='storms'>Reconnect storms</h2><p class='muted'>storms.jsonl holds "
                f"{len(report.storm_series)} storm(s), but there are no storm summaries "
                "(summary.json is missing or predates them): see the storm timeline chart.</p>"
            )
        return ""
    if not storms:
        return (
            "<h2 id='storms'>Reconnect storms</h2>"
            "<p class='muted'>No reconnect storm was detected.</p>"
        )
    rows = []
    for st in storms:
        rec = st.get("recovery_s") if isinstance(st.get("recovery_s"), dict) else {}
        assert isinstance(rec, dict)
        fails = st.get("failures") if isinstance(st.get("failures"), dict) else {}
        assert isinstance(fails, dict)
        fail_text = ", ".join(f"{k}: {v}" for k, v in fails.items()) or "none"
        cells = [
            _fmt(st.get("index")),
            _fmt(st.get("start_s")),
            _fmt(st.get("end_s")) if st.get("end_s") is not None else "(still going)",
            _fmt(st.get("lost")),
            _fmt(st.get("recovered")),
            _fmt(st.get("gave_up")),
            _fmt(st.get("peak_attempts_per_100ms")),
            _fmt(st.get("peak_at_s")),
            _fmt(st.get("max_in_flight")),
            *(_recovery(rec.get(k)) for k in ("p50", "p90", "p99", "p100")),
            _sync(st.get("sync_index_before")),
            _sync(st.get("sync_index_after")),
        ]
        rows.append(
            "<tr>"
            + "".join(f"<td class='num'>{c}</td>" for c in cells)
            + f"<td>{escape(fail_text)}</td></tr>"
        )
    return (
        f"<h2 id='storms'>Reconnect storms ({len(storms):,})</h2>"
        "<p class='muted'>Times are seconds since the run started (start, end) or since "
        "the storm started (peak, recovery). Recovery pN: when N% of the connections the "
        "storm lost were back. Sync index: 0 = reconnects spread over the heartbeat "
        "interval, 1 = all in phase.</p>" + page.table(STORM_COLUMNS, rows, "storms")
    )


def availability_section(report: Report) -> str:
    """The share of the planned load that was connected, the longest
    stretch below 95%, and each storm's recovery (soak.availability)."""
    av = report.availability
    if av is None:
        return ""
    value = av.get("availability")
    below = av.get("below") or {}
    rows = [
        [
            "availability (connected / planned client-seconds)",
            "no planned load" if value is None else f"{value * 100:.3f}%",
        ],
        [
            "client-seconds connected / planned",
            f"{av.get('connected_client_s', 0):,.0f} / {av.get('target_client_s', 0):,.0f}",
        ],
        [
            f"longest stretch below {below.get('share', 0.95) * 100:g}%",
            f"{below.get('longest_s', 0):g} s"
            + (f" from {below['from_s']:g} s" if below.get("from_s") is not None else ""),
        ],
    ]
    for st in av.get("storms") or []:
        rows.append([f"storm {st.get('index')}", storm_line(st)])
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return (
        "<h2>Availability</h2><p class='muted'>Time-weighted: each interval counts by its "
        "client-seconds; the stretch below 95% is measured at the resolution of the "
        "report interval. The connections chart shows the storms as bands.</p>"
        f"<table class='availability'>{body}</table>"
    )


def problems(report: Report) -> str:
    probs = report.run.problems
    if not probs:
        return "<p class='muted'>None: every file was read whole.</p>"
    return page.items(probs, "problems")


def banner(report: Report) -> str:
    if not report.partial:
        return ""
    if report.computed:
        why = (
            "summary.json is missing: the run was killed or is still running. The figures "
            "below are computed from the intervals and histograms written so far."
        )
    else:
        why = f"the run ended early (status: {report.run.status})."
    return page.banner(f"PARTIAL RUN: {why}")


def render(report: Report) -> str:
    """The page, in a reader's order: what went wrong and the verdict, the
    chart that tells the run, the figures and the other charts, the
    evidence, and the run's metadata last."""
    return page.document(
        f"soak report: {report.run.label}",
        [
            banner(report),
            findings_section(report),
            verdict_line(report),
            story_chart(report),
            "<h2 id='summary'>Summary</h2>",
            summary_table(report),
            tester_memory(report),
            "<h2>Thresholds</h2>",
            verdicts(report),
            "<h2>Charts</h2>",
            availability_section(report),
            charts(report),
            storms_section(report),
            "<h2>Top close reasons</h2>",
            close_reasons(report),
            handshake_section(report),
            f"<h2 id='intermediaries'>Intermediary idle timeouts "
            f"({len(report.intermediaries):,})</h2>",
            intermediaries_section(report),
            chain_section(report),
            f"<h2 id='evidence'>False-timeout evidence ({report.false_timeouts_total:,})</h2>",
            evidence_table(report),
            "<h2 id='problems'>Problems reading the results</h2>",
            problems(report),
            "<h2 id='run'>Run</h2>",
            identity(report),
        ],
    )
