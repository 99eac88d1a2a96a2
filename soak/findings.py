"""Pure: what went wrong in a run, in a few sentences, the worst first.

A reader of a soak run wants the answer before the figures: "359 false
timeouts: the server's heartbeat check closed live connections 3.0-3.3 s
after their last pong, with 1 of 3 allowed heartbeats missed". This module
makes those sentences.

:class:`Facts` is told a run's events (:meth:`Facts.observe`: as they go to
``events.jsonl``, or as they are read back) and its interval records
(:meth:`Facts.interval`). It keeps counters and a few numbers per interval,
so its memory stays small however long the run. :func:`findings` turns what
it holds (with summary.json's storms, intermediaries and workers when there
is a summary) into a ranked list of :class:`Finding`: error before warning,
causes before consequences (a false timeout before the storm it starts).
It can be called at any time: during a run on what has been seen so far
(the live view), at the end for summary.json, or by ``soak report`` and
``soak compare`` on a results directory. A clean run has no finding.

Every finding carries an ``anchor``: the id of its evidence in report.html
(a table or a chart), and ``spans``: when it happened, in seconds since the
run started, which the report draws as bands on its story chart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from soak.facts import (
    ERROR,
    RSS_GROWTH_BYTES,
    RSS_GROWTH_SHARE,
    SEVERITIES,
    WARNING,
    Facts,
    Finding,
    mb,
    number,
    seconds,
    span_text,
    storm_text,
)
from soak.intermediary import find_idle_timeouts
from soak.metrics import TESTER_BOTTLENECK_LAG_MS
from soak.summary import with_findings

# the kinds, in the order a reader needs them: causes before consequences
KINDS = (
    "false_timeouts",
    "zombies",
    "intermediary",
    "workers_lost",
    "permanent_failure",
    "gave_up",
    "storms",
    "missed_heartbeats",
    "handshake_failures",
    "server_count_drift",
    "tester_bottleneck",
    "rss_growth",
    "dropped_samples",
    "events_dropped",
)

# where each kind's evidence is in report.html
ANCHORS = {
    "false_timeouts": "evidence",
    "zombies": "chart-heartbeats",
    "intermediary": "intermediaries",
    "workers_lost": "run",
    "permanent_failure": "handshake-failures",
    "gave_up": "chart-connections",
    "storms": "storms",
    "missed_heartbeats": "chart-heartbeats",
    "handshake_failures": "handshake-failures",
    "server_count_drift": "chart-connections",
    "tester_bottleneck": "chart-tester_lag",
    "rss_growth": "tester-memory",
    "dropped_samples": "summary",
    "events_dropped": "problems",
}

# a false timeout this much sooner than the server's own timeout after the
# last pong was not the timeout running out: the server's state was stale
EARLY = 0.9
# the server's count must differ from ours in the same direction for this
# many polls in a row to be a finding (one poll can catch a reconnect)
DRIFT_POLLS = 3
# heartbeats unanswered within the timeout, as a share of those decided,
# above which they are a finding (below it a run is clean)
MISSED_SHARE = 0.001


def from_record(rec: Any) -> Finding | None:
    """A finding read back from summary.json; None for anything malformed."""
    if not isinstance(rec, Mapping):
        return None
    key, sev, text = rec.get("key"), rec.get("severity"), rec.get("text")
    if not (isinstance(key, str) and isinstance(text, str) and sev in SEVERITIES):
        return None
    count = rec.get("count")
    spans: list[tuple[float, float]] = []
    for s in rec.get("spans") or []:
        if isinstance(s, list | tuple) and len(s) == 2 and all(number(v) is not None for v in s):
            spans.append((float(s[0]), float(s[1])))
    anchor = rec.get("anchor")
    return Finding(
        key,
        str(sev),
        text,
        anchor if isinstance(anchor, str) else ANCHORS.get(key.split(":")[0], "summary"),
        int(count) if isinstance(count, int) and not isinstance(count, bool) else 0,
        tuple(spans),
    )


def findings(facts: Facts, summary: Mapping[str, Any] | None = None) -> list[Finding]:
    """The run's findings, ranked. ``summary``: summary.json (or the part of
    it known so far), whose storms, intermediaries, workers and totals are
    used when present; without it, what ``facts`` saw."""
    s = summary or {}
    out: list[Finding] = []
    makers = (_false_timeouts, _zombies, _gave_up, _missed, _handshakes, _drift, _tester, _rss)
    for make in makers:
        f = make(facts, s)
        if f is not None:
            out.append(f)
    out += _intermediaries(facts, s)
    out += _storms(facts, s)
    out += _workers(s)
    out += _permanent(facts, s)
    out += _dropped(facts, s)
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(
        out, key=lambda f: (SEVERITIES.index(f.severity), order.get(f.kind, 99), -f.count)
    )


def many(n: int, noun: str) -> str:
    """ "1 false timeout", "359 false timeouts", "2,000 clients"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _total(facts: Facts, s: Mapping[str, Any], key: str, fact: str | None = None) -> int:
    tot = s.get("totals")
    v = tot.get(key) if isinstance(tot, Mapping) else None
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return facts.counts[fact or key]


def _false_timeouts(facts: Facts, s: Mapping[str, Any]) -> Finding | None:
    n = max(_total(facts, s, "false_timeouts"), facts.ft_seen)
    if not n:
        return None
    sig = ", ".join(k for k, _ in facts.ft_signatures.most_common(2)) or "its timeout signature"
    if len(facts.ft_signatures) > 2:
        sig += f" and {len(facts.ft_signatures) - 2} more"
    pong, opened = facts.ft_since_pong, facts.ft_since_open
    when = []
    if pong.n:
        when.append(f"{span_text(pong.low, pong.high)} after their last pong")
    if opened.n:
        head = "" if not pong.n else f"{opened.n:,} with no pong yet: "
        when.append(f"{head}{span_text(opened.low, opened.high)} after connecting")
    text = (
        f"{many(n, 'false timeout')}: the server's heartbeat check ({sig}) closed live connections"
    )
    if when:
        text += " " + "; ".join(when)
    st = facts.settings
    quiet_high = max(pong.high, opened.high)
    missed = max(facts.ft_missed) if facts.ft_missed else None
    k, timeout = st.server_max_missed, st.server_timeout
    if timeout is not None and (pong.n or opened.n) and quiet_high < EARLY * timeout:
        text += (
            f", sooner than the server's own {seconds(timeout)} timeout: its heartbeat "
            "state was stale"
        )
        if facts.ft_after_reconnect:
            text += f" ({facts.ft_after_reconnect:,} of them right after a reconnect)"
    elif k is not None and missed is not None and missed < k:
        text += f", with {missed} of {k} allowed heartbeats missed: the server ignores max_missed"
        iv = st.server_interval
        if iv is not None and timeout is not None and timeout < k * iv:
            text += (
                f" (it closes {seconds(timeout)} after the last heartbeat; {k} missed "
                f"at {seconds(iv)} would take {seconds(k * iv)})"
            )
    elif facts.ft_why:
        text += f" ({facts.ft_why})"
    if facts.ft_when.n:
        text += f"; from {seconds(facts.ft_when.low)} to {seconds(facts.ft_when.high)} into the run"
    spans = tuple(facts.false_timeout_spans.items)
    return Finding("false_timeouts", ERROR, text, ANCHORS["false_timeouts"], n, spans)


def _zombies(facts: Facts, s: Mapping[str, Any]) -> Finding | None:
    n = _total(facts, s, "zombies")
    if not n:
        return None
    k = facts.settings.max_missed
    text = (
        f"{many(n, 'zombie')}: connections stayed open while the server stopped answering their "
        f"heartbeats; soak closed each after {k if k is not None else 'max_missed'} "
        "unanswered in a row"
    )
    d = facts.zombie_detect
    if d.n:
        text += f" ({span_text(d.low, d.high)} after the first unanswered one)"
    return Finding("zombies", ERROR, text, ANCHORS["zombies"], n)


def _gave_up(facts: Facts, s: Mapping[str, Any]) -> Finding | None:
    n = _total(facts, s, "reconnect_failed")
    if not n:
        return None
    attempts = facts.settings.max_attempts
    text = f"{many(n, 'client')} gave up reconnecting" + (
        f" after {attempts} attempts" if attempts else ""
    )
    w = facts.gave_up_when
    if w.n:
        text += f" ({'at' if w.low == w.high else 'from'} {seconds(w.low)}"
        text += ")" if w.low == w.high else f" to {seconds(w.high)})"
    text += ": the planned load was not held"
    return Finding("gave_up", ERROR, text, ANCHORS["gave_up"], n)


def _missed(facts: Facts, s: Mapping[str, Any]) -> Finding | None:
    missed, pongs = _total(facts, s, "missed"), _total(facts, s, "pongs")
    decided = missed + pongs
    if not missed or missed / decided <= MISSED_SHARE:
        return None
    late = _total(facts, s, "late")
    hb = facts.settings
    within = f" within the {seconds(hb.heartbeat_timeout)} timeout" if hb.heartbeat_timeout else ""
    text = f"{many(missed, 'heartbeat')} ({missed / decided:.2%}) went unanswered{within}" + (
        f", {late:,} of them answered late" if late else ""
    )
    return Finding("missed_heartbeats", WARNING, text, ANCHORS["missed_heartbeats"], missed)


def _handshakes(facts: Facts, s: Mapping[str, Any]) -> Finding | None:
    n = _total(facts, s, "handshake_failure_total")
    if not n:
        return None
    tot = s.get("totals")
    causes = tot.get("handshake_failures") if isinstance(tot, Mapping) else None
    by = Counter(
        {
            str(k): int(v)
            for k, v in (causes or facts.handshake_causes).items()
            if isinstance(v, int)
        }
    )
    parts = []
    for cause, c in by.most_common(4):
        first = facts.handshake_first.get(cause)
        parts.append(f"{c:,} {cause}" + (f" (first: {first})" if first else ""))
    if len(by) > 4:
        parts.append(f"{len(by) - 4} more causes")
    text = f"{many(n, 'handshake failure')}" + (": " + ", ".join(parts) if parts else "")
    return Finding("handshake_failures", WARNING, text, ANCHORS["handshake_failures"], n)


def _drift(facts: Facts, s: Mapping[str, Any]) -> Finding | None:
    best = facts.drift.best
    if best is None or best[0] < DRIFT_POLLS:
        return None
    polls, a, b, gap = best
    if gap > 0:
        what = (
            f"the server counted up to {gap:,} more connections than soak had open: it still "
            "counts connections whose clients are gone"
        )
    else:
        what = (
            f"the server counted up to {-gap:,} fewer connections than soak had open: "
            "connections the clients believe open that the server has dropped"
        )
    text = f"{what} ({polls} polls in a row, {span_text(a, b, 'from')})"
    return Finding(
        "server_count_drift", WARNING, text, ANCHORS["server_count_drift"], abs(gap), ((a, b),)
    )


def _tester(facts: Facts, s: Mapping[str, Any]) -> Finding | None:
    spans = facts.bottleneck.items
    if not spans:
        return None
    total = facts.bottleneck.seconds
    n = facts.bottleneck.count
    text = (
        f"the tester itself was the bottleneck for {seconds(total)} in {n:,} "
        f"stretch{'es' if n > 1 else ''} (first from {seconds(spans[0][0])}): "
        f"heartbeats left up to {facts.bottleneck_lag_ms:.1f} ms late at p99"
    )
    if facts.bottleneck_read_lag_ms > TESTER_BOTTLENECK_LAG_MS:
        text += f", answers left unread up to {facts.bottleneck_read_lag_ms:.1f} ms at p99"
    skipped = facts.counts["skipped"]
    if skipped:
        text += f", {skipped:,} heartbeat slots skipped"
    text += "; RTT in those intervals measures soak, not the gateway"
    return Finding(
        "tester_bottleneck", WARNING, text, ANCHORS["tester_bottleneck"], n, tuple(spans)
    )


def _rss(facts: Facts, s: Mapping[str, Any]) -> Finding | None:
    g = facts.rss.growth()
    if g is None:
        return None
    start, end, span = g
    grew = end - start
    if grew < RSS_GROWTH_BYTES or grew < RSS_GROWTH_SHARE * start:
        return None
    per_hour = grew / span * 3600
    text = (
        f"the tester's memory grew by {mb(grew)} while the load held at "
        f"{facts.peak_target:,} clients (from {mb(start)} to {mb(end)} over "
        f"{seconds(span)}, {mb(per_hour)} an hour): state piling up in the tester"
    )
    return Finding("rss_growth", WARNING, text, ANCHORS["rss_growth"], int(grew))


def _intermediaries(facts: Facts, s: Mapping[str, Any]) -> list[Finding]:
    found = s.get("intermediaries")
    if not isinstance(found, list):
        hb = facts.settings.heartbeat_interval
        found = [] if hb is None else [x.record() for x in find_idle_timeouts(facts.closes, hb)]
    out = []
    for x in found:
        if not isinstance(x, Mapping) or not isinstance(x.get("closes"), int):
            continue
        n, timeout = int(x["closes"]), number(x.get("timeout_s")) or 0.0
        a, b = number(x.get("first_t_s")), number(x.get("last_t_s"))
        text = f"{many(n, 'close')} by an intermediary: {x.get('text')}"
        spans = ((a, b),) if a is not None and b is not None else ()
        key = f"intermediary:{round(timeout, 1):g}s"
        out.append(Finding(key, ERROR, text, ANCHORS["intermediary"], n, spans))
    return out


def _storms(facts: Facts, s: Mapping[str, Any]) -> list[Finding]:
    raw = s.get("storms")
    storms = [x for x in raw if isinstance(x, Mapping)] if isinstance(raw, list) else facts.storms()
    if not storms:
        return []
    end = facts.end_s

    def lost(st: Mapping[str, Any]) -> int:
        v = st.get("lost")
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    spans = []
    for st in storms:
        a = number(st.get("start_s"))
        if a is not None:
            spans.append((a, number(st.get("end_s")) or max(end, a)))
    biggest = max(storms, key=lost)
    head = (
        "a reconnect storm"
        if len(storms) == 1
        else f"{len(storms):,} reconnect storms; the largest"
    )
    text = f"{head} at {seconds(number(biggest.get('start_s')) or 0.0)}: {storm_text(biggest)}"
    final = isinstance(s.get("status"), str) and s.get("status") != "running"
    short = [st for st in storms if _unrecovered(st, final)]
    severity = WARNING
    if short:
        severity = ERROR
        worst = short[0]
        back = worst.get("recovered", 0)
        text += (
            f"; {len(short):,} storm{'s' if len(short) > 1 else ''} did not get every client "
            f"back (storm {worst.get('index')}: {back} of {lost(worst)})"
        )
    return [Finding("storms", severity, text, ANCHORS["storms"], lost(biggest), tuple(spans))]


def _unrecovered(st: Mapping[str, Any], final: bool) -> bool:
    """Did a storm that is over (or a run that is) leave clients not back?"""
    lost, back = st.get("lost"), st.get("recovered")
    ended = final or st.get("end_s") is not None
    return isinstance(lost, int) and isinstance(back, int) and ended and back < lost


def _workers(s: Mapping[str, Any]) -> list[Finding]:
    w = s.get("workers")
    lost = w.get("lost") if isinstance(w, Mapping) else None
    if not isinstance(lost, list) or not lost:
        return []
    what = "; ".join(
        f"worker {x.get('worker')} {x.get('why')}" for x in lost if isinstance(x, Mapping)
    )
    text = f"{len(lost)} tester worker process{'es' if len(lost) > 1 else ''} lost: {what}"
    return [Finding("workers_lost", ERROR, text, ANCHORS["workers_lost"], len(lost))]


def _permanent(facts: Facts, s: Mapping[str, Any]) -> list[Finding]:
    tot = s.get("totals")
    p = tot.get("permanent_failure") if isinstance(tot, Mapping) else None
    if not isinstance(p, Mapping):
        p = facts.permanent
    if not isinstance(p, Mapping):
        return []
    text = f"the target refused for good: {p.get('error')}; no client tries again"
    return [Finding("permanent_failure", ERROR, text, ANCHORS["permanent_failure"], 1)]


def _dropped(facts: Facts, s: Mapping[str, Any]) -> list[Finding]:
    out = []
    n = _total(facts, s, "dropped_samples_total", "dropped_samples")
    if n:
        text = (
            f"{many(n, 'sample')} {'was' if n == 1 else 'were'} out of the histograms' range "
            "and not in the percentiles"
        )
        out.append(Finding("dropped_samples", WARNING, text, ANCHORS["dropped_samples"], n))
    e = facts.counts["events_dropped"]
    if e:
        text = (
            f"{many(e, 'event')} {'was' if e == 1 else 'were'} not written (too many in one "
            "interval): the evidence tables are incomplete, the counts are not"
        )
        out.append(Finding("events_dropped", WARNING, text, ANCHORS["events_dropped"], e))
    return out


def records(found: Iterable[Finding]) -> list[dict[str, Any]]:
    return [f.record() for f in found]


def errors(found: Iterable[Finding]) -> list[Finding]:
    return [f for f in found if f.severity == ERROR]


def settle(
    summary: dict[str, Any], facts: Facts, *, thresholds_set: bool, strict: bool
) -> list[Finding]:
    """Add the findings to a finished summary.json (``findings``) and let
    them speak in its verdict and exit code (soak.summary.with_findings)."""
    found = findings(facts, summary)
    summary["findings"] = records(found)
    code, verdict = with_findings(
        int(summary["exit_code"]),
        str(summary["verdict"]),
        len(found),
        [f.kind for f in errors(found)],
        thresholds_set=thresholds_set,
        strict=strict,
    )
    if code != summary["exit_code"]:
        summary["passed"] = False
    summary["exit_code"], summary["verdict"] = code, verdict
    return found
