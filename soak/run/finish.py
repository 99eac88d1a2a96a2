"""Pure: run.json's manifest and summary.json, assembled from what a run
measured. The Runner writes them (soak.run.runner)."""

from __future__ import annotations

import platform
import shlex
import socket
import sys
from typing import Any

import trio

from soak import __version__, availability
from soak.beats import beats
from soak.chain import ChainCloses
from soak.chain_summary import summarize as chain_summary
from soak.config.profile import Profile
from soak.intermediary import intermediary_checks
from soak.metrics import Metrics
from soak.provenance import git_commit, os_version, redact_argv
from soak.recorder import iso
from soak.summary import EXIT_OK, exit_code, latencies, totals, verdicts
from soak.urls import without_userinfo


def manifest(profile: Profile, argv: list[str] | None, wall0: float) -> dict[str, Any]:
    """run.json as the run starts (``end``, ``status`` and ``exit_code``
    are filled in when it ends)."""
    p = profile
    return {
        "results_format": 1,
        "tool": "soak",
        "tool_version": __version__,
        "git_commit": git_commit(),
        "label": p.run.label,
        "target": without_userinfo(p.target.url),
        "protocol": p.target.protocol,
        "profile_path": p.path,
        "profile": p.redacted(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "os": os_version(),
        "trio": trio.__version__,
        # the command line, credentials redacted (soak.provenance.redact_argv)
        "argv": None if argv is None else redact_argv(argv),
        "command": None if argv is None else shlex.join(["soak", *redact_argv(argv)]),
        # the server's version, filled in when a handshake told it
        "server_version": None,
        "kernel_timestamps": kernel_timestamps(p),
        "start": iso(wall0),
        "end": None,
        "status": "running",
        "exit_code": None,
    }


def summary(
    profile: Profile,
    metrics: Metrics,
    *,
    status: str,
    duration: float,
    peak: int,
    extra_checks: list[dict[str, Any]],
    storms: list[dict[str, Any]],
    closes: ChainCloses | None = None,
) -> dict[str, Any]:
    """summary.json's common part: totals, latencies, verdicts, exit code.
    The caller adds ``protocol``, the source's own keys and ``reconcile``.
    ``closes``: the run's closes without a close frame, judged against the
    profile's hops and searched for idle timeouts (soak.chain_summary)."""
    tot = totals(metrics)
    avail = availability.summarize(metrics.availability, storms)
    found, chain = chain_summary(
        closes or ChainCloses(profile.target.hops),
        profile.heartbeat.interval,
        tot,
        duration=duration,
        storms=storms,
        beats=beats(profile),
    )
    checks = verdicts(profile, metrics, tot, avail) + extra_checks
    checks += intermediary_checks(found, profile.thresholds)
    code, verdict = exit_code(status, tot, checks, profile)
    return {
        "label": profile.run.label,
        "target": without_userinfo(profile.target.url),
        "status": status,
        "partial": status != "completed",
        "exit_code": code,
        "verdict": verdict,
        "duration_s": round(duration, 3),
        "intervals": metrics.intervals_done,
        "clients_planned_peak": peak,
        "totals": tot,
        "latency_ms": latencies(metrics),
        "tester": {
            "gc_pause_max_ms": round(metrics.total.gc_pause_max * 1000, 3),
            "gc_pause_total_ms": round(metrics.total.gc_pause_total * 1000, 3),
            "skipped_sends": tot["skipped"],
        },
        "thresholds": checks,
        "passed": all(v["ok"] for v in checks) and code == EXIT_OK,
        "storms": storms,
        "availability": avail,
        "intermediaries": found,
        "wire": wire_summary(profile, tot),
        **({"chain": chain} if chain is not None else {}),
    }


def kernel_timestamps(profile: Profile) -> dict[str, Any]:
    """What run.json says about rtt_wire (soak.wire) before the run: asked
    for or not, and whether this platform and target can give it."""
    asked = profile.heartbeat.kernel_timestamps
    why = None
    if not asked:
        why = "[heartbeat] kernel_timestamps is off"
    elif sys.platform != "linux":
        why = f"SO_TIMESTAMPNS is Linux only (this is {sys.platform})"
    elif profile.target.secure:
        why = "wss:// (TLS): the kernel's times are of TLS records, not of messages"
    return {"requested": asked, "available": asked and why is None, "why_not": why}


def wire_summary(profile: Profile, tot: dict[str, Any]) -> dict[str, Any]:
    """How far rtt_wire covers the run: the connections read with kernel
    timestamps (those without give rtt_wire no sample: TLS, the in-memory
    streams of tests), wall-clock steps, samples they kept from rtt_wire."""
    return {
        "requested": profile.heartbeat.kernel_timestamps,
        "connections_timestamped": tot.get("kernel_timestamped", 0),
        "connections": tot.get("connects", 0),
        # pings whose send time is the kernel's (the others: the send call's start)
        "pings_tx_timestamped": tot.get("tx_timestamped", 0),
        "pings": tot.get("pings", 0),
        "clock_steps": tot.get("clock_steps", 0),
        "unrecorded": tot.get("dropped_samples", {}).get("rtt_wire", 0),
    }
