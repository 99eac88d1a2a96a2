"""The live view: a status block that refreshes on a terminal, or one plain
log line per interval when the output is not a terminal (CI, ``| tee``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from soak.availability import describe
from soak.config.units import format_duration


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}ms"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


class LiveView:
    """``results``: asked each refresh; a line while the results are not
    being written or the tester's memory is near its budget
    (soak.recorder.Recorder.health), else None."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        tty: bool | None = None,
        results: Callable[[], str | None] | None = None,
    ) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.results = results
        self._lines = 0

    def _results(self) -> str | None:
        return None if self.results is None else self.results()

    def status(self, s: dict[str, Any]) -> None:
        """Called about once a second; draws only on a terminal."""
        if not self.tty:
            return
        rate = s["pongs"] / s["interval_elapsed"]
        lines = [
            f"soak  {format_duration(round(s['elapsed']))} elapsed, "
            f"{format_duration(round(s['remaining']))} left",
            f"  clients    {s['connected']:>7} connected / {s['target']} target"
            f"   ({s['connecting']} connecting, {s['gave_up']} gave up)   "
            f"availability {_pct(s.get('availability'))} so far",
            f"  heartbeat  {rate:>7.0f}/s   rtt p50 {_ms(s['rtt_p50_ms'])}  "
            f"p99 {_ms(s['rtt_p99_ms'])}   missed {s['missed']}   zombies {s['zombies']}   "
            f"false timeouts {s['false_timeouts']}",
            f"  reconnect  {s['reconnects']:>7}     handshake failures {s['handshake_failures']}",
            f"  tester     loop lag max {s['loop_lag_max_ms']:.1f}ms (this interval)",
        ]
        trouble = self._results()
        if trouble is not None:
            lines.append(f"  WARNING    {trouble}")
        up = f"\x1b[{self._lines}F" if self._lines else ""
        self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self._lines = len(lines)

    def interval(self, r: dict[str, Any]) -> None:
        """Called once per interval; one line when not on a terminal."""
        if self.tty:
            return
        closes = sum(r["closes"].values())
        server = ""
        if "server_connections" in r:
            server = (
                f"server={r['server_connections'] if r['server_connections'] is not None else '?'} "
            )
        failures = sum(r["handshake_failures"].values())
        self.out.write(
            f"[{r['t'] + r['dt']:9.1f}s] connected={r['connected']}/{r['target']} {server}"
            f"pings={r['pings']} pongs={r['pongs']} missed={r['missed']} late={r['late']} "
            f"zombies={r['zombies']} false_timeouts={r['false_timeouts']} "
            f"rtt_p50={_ms(r.get('rtt_p50_ms'))} rtt_p99={_ms(r.get('rtt_p99_ms'))} "
            f"closes={closes} reconnects={r['reconnects']} handshake_failures={failures} "
            f"lag_p99={_ms(r.get('lag_p99_ms'))} loop_lag_max={_ms(r.get('loop_lag_max_ms'))} "
            f"availability={_pct(r.get('availability'))}\n"
        )
        trouble = self._results()
        if trouble is not None:
            self.out.write(f"[{r['t'] + r['dt']:9.1f}s] WARNING {trouble}\n")
        self.out.flush()


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def print_summary(summary: dict[str, Any], path: str, out: TextIO) -> None:
    t = summary["totals"]
    lat = summary["latency_ms"]
    success = t["heartbeat_success"]
    w = out.write
    w(
        f"\nsoak run '{summary['label']}' {summary['status']} after "
        f"{format_duration(round(summary['duration_s']))}: {summary['target']}\n"
    )
    # what went wrong, before the figures (soak.findings)
    for f in summary.get("findings") or []:
        w(f"  {f['text']} [{f['severity']}]\n")
    if summary.get("findings"):
        w("\n")
    w(
        f"  heartbeats   sent {t['pings']}, pongs {t['pongs']}, missed {t['missed']} "
        f"(late {t['late']}), success "
        f"{'-' if success is None else f'{success * 100:.3f}%'}\n"
    )
    if t.get("server_pings"):  # the server's own heartbeats (answered where the dialect asks)
        w(f"  server pings {t['server_pings']}, missed {t.get('server_missed', 0)}\n")
    for name in ("rtt", "rtt_service", "lag", "connect", "server_gap"):
        h = lat[name]
        if h.get("count"):
            w(
                f"  {name:<12} p50 {h['p50']:.2f}ms  p90 {h['p90']:.2f}ms  p99 {h['p99']:.2f}ms  "
                f"p99.9 {h['p99.9']:.2f}ms  max {h['max']:.2f}ms  (n={h['count']})\n"
            )
    w(
        f"  connections  {t['connects']} opened, {t['reconnects']} reconnects, "
        f"{t['handshake_failure_total']} handshake failures, zombies {t['zombies']}, "
        f"gave up {t['reconnect_failed']}\n"
    )
    if t["handshake_failures"]:
        causes = ", ".join(f"{k} {v}" for k, v in t["handshake_failures"].items())
        w(f"  failures     {causes}\n")
    if t["closes"]:
        closes = ", ".join(f"{k} {v}" for k, v in sorted(t["closes"].items(), key=lambda x: -x[1]))
        w(f"  closes       {closes}\n")
    for x in summary.get("intermediaries", []):
        # an intermediary idle timeout named from the closes (soak.intermediary)
        w(f"  intermediary {x['text']}\n")
    if isinstance(summary.get("chain"), dict):
        # the hops' prediction next to what the run saw (soak.chain_summary)
        w(f"  chain        {summary['chain']['text']}\n")
    if t["dropped_samples_total"] or t["skipped"]:
        w(
            f"  tester       {t['dropped_samples_total']} samples out of range, "
            f"{t['skipped']} heartbeat slots skipped (tester too slow)\n"
        )
    av = summary.get("availability")
    if isinstance(av, dict):
        w(f"  availability {describe(av)}\n")
    for st in summary.get("storms", []):
        rec_s = st["recovery_s"]
        w(
            f"  storm {st['index']}      at {st['start_s']}s: lost {st['lost']}, back "
            f"{st['recovered']} (50% in {_s(rec_s['p50'])}, all in {_s(rec_s['p100'])}), "
            f"gave up {st['gave_up']}, peak {st['peak_attempts_per_100ms']} attempts/100ms "
            f"at +{st['peak_at_s']}s\n"
        )
    workers = summary.get("workers")
    if workers is not None:
        lost = ", ".join(f"worker {x['worker']} {x['why']}" for x in workers["lost"]) or "none"
        w(
            f"  workers      {workers['count']} processes, lost: {lost}, "
            f"late reports {workers['late_reports']}\n"
        )
    rec = summary.get("reconcile")
    if rec is not None:
        w(
            f"  server count {rec['polls']} polls ({rec['failed_polls']} failed), "
            f"largest gap {rec['max_gap']} (server - client), "
            f"longest gap {rec['longest_gap_s']}s\n"
        )
    for v in summary["thresholds"]:
        w(f"  threshold    {v['text']}\n")
    w(f"  verdict      {summary['verdict']} (exit code {summary['exit_code']})\n")
    w(f"  results      {path}\n")
    out.flush()
