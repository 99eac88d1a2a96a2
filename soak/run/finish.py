"""Pure: run.json's manifest and summary.json, assembled from what a run
measured. The Runner writes them (soak.run.runner)."""

from __future__ import annotations

import platform
import shlex
import socket
from typing import Any

import trio

from soak import __version__, availability
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
        **({"chain": chain} if chain is not None else {}),
    }
