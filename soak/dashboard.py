"""The live page of a run (``soak run --dashboard [PORT]``).

One self-contained HTML page (``soak/dashboard.html``: plain JavaScript and
inline SVG, no external requests, enforced by its Content-Security-Policy)
that polls ``/status.json`` once a second. Both are served by
:class:`soak.httpd.HttpServer` from the run's own event loop, beside
``/metrics`` when ``--metrics-port`` names the same port.

The figures are the live terminal view's (soak.live): the run calls
:meth:`Dashboard.status` about once a second with the same dict the
terminal view draws (in a ``--workers`` run, the parent's merge of its
workers' statuses) and :meth:`Dashboard.interval` with each interval's
record as written to intervals.jsonl (the parent's merged one). The
findings are ``Runner.findings_so_far()`` (soak.findings), the storms the
run's :class:`soak.facts.Facts`' storms.

What it costs the run: nothing while nobody looks (the callbacks copy a few
numbers); a request for ``/status.json`` builds the document at most once
per update or half-second (then serves the cached bytes to every poller),
and the findings are computed only then.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources
from typing import Any

from soak.facts import Finding
from soak.httpd import HttpServer, Request, Response
from soak.metrics import heartbeat_success
from soak.urls import without_userinfo

PAGE = "dashboard.html"
POLL_S = 1.0  # the page asks this often (the run's status cadence)
MAX_AGE = 0.5  # a document is rebuilt after this long even without an update (seconds)
MAX_POINTS = 600  # chart points kept; beyond, pairs of points are merged
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
SERIES = ("t", "connected", "target", "rtt_p50_ms", "rtt_p99_ms", "missed", "false_timeouts")


def page_bytes() -> bytes:
    """The page as shipped (package data)."""
    return resources.files("soak").joinpath(PAGE).read_bytes()


def csp(page: bytes) -> str:
    """A Content-Security-Policy that lets the page run its own inline
    script and fetch from its own origin, and nothing else: a browser
    refuses any request the page would make elsewhere."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(m).digest()).decode() + "'"
        for m in re.findall(rb"<script>(.*?)</script>", page, re.S)
    ]
    return (
        "default-src 'none'; "
        f"script-src {' '.join(hashes) or chr(39) + 'none' + chr(39)}; "
        "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _merge(a: float | None, b: float | None, pick: Callable[[float, float], float]) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


class Series:
    """The chart's points, one per interval, bounded: when there are
    :data:`MAX_POINTS`, neighbours are merged pairwise (the lower connected,
    the higher target and RTT, missed added up), so a 24-hour run keeps its
    dips and spikes at half the resolution."""

    def __init__(self, limit: int = MAX_POINTS) -> None:
        self.limit = limit
        self.points: list[dict[str, Any]] = []

    def add(self, rec: dict[str, Any]) -> None:
        self.points.append({k: rec.get(k) for k in SERIES})
        self.points[-1]["t"] = round(float(rec.get("t", 0)) + float(rec.get("dt", 0)), 3)
        if len(self.points) >= self.limit:
            pts = self.points
            merged = [self._pair(pts[i], pts[i + 1]) for i in range(0, len(pts) - 1, 2)]
            if len(pts) % 2:
                merged.append(pts[-1])
            self.points = merged

    @staticmethod
    def _pair(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {
            "t": b["t"],
            "connected": _merge(a["connected"], b["connected"], min),
            "target": _merge(a["target"], b["target"], max),
            "rtt_p50_ms": _merge(a["rtt_p50_ms"], b["rtt_p50_ms"], max),
            "rtt_p99_ms": _merge(a["rtt_p99_ms"], b["rtt_p99_ms"], max),
            "missed": (a["missed"] or 0) + (b["missed"] or 0),
            "false_timeouts": (a["false_timeouts"] or 0) + (b["false_timeouts"] or 0),
        }

    def columns(self) -> dict[str, list[Any]]:
        return {k: [p[k] for p in self.points] for k in SERIES}


class Dashboard:
    """The live page's state and its two handlers. ``findings`` and
    ``storms`` are asked when a poller wants a fresh document (the Runner's
    ``findings_so_far`` and ``facts.storms``; set by :meth:`watch`)."""

    def __init__(
        self,
        *,
        label: str,
        target: str,
        run: str,
        duration: float,
        interval: float,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.head: dict[str, Any] = {
            "label": label,
            "target": without_userinfo(target),
            "run": run,
            "duration_s": duration,
            "interval_s": interval,
            "workers": workers,
            "poll_s": POLL_S,
        }
        self.findings: Callable[[], list[Finding]] = list
        self.storms: Callable[[], list[dict[str, Any]]] = list
        self.live: dict[str, Any] = {}
        self.last: dict[str, Any] = {}  # the latest interval's figures
        self.totals: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.categories: Counter[str] = Counter()
        self.series = Series()
        self.intervals = 0
        self.version = 0
        self._cached: tuple[int, float, bytes] = (-1, -math.inf, b"")
        self.page = page_bytes()
        self.policy = csp(self.page)

    def watch(
        self,
        findings: Callable[[], list[Finding]],
        storms: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.findings, self.storms = findings, storms

    # -- fed by the run (cheap: no document is built here) ---------------------------

    def status(self, s: dict[str, Any]) -> None:
        """The live view's status, about once a second."""
        self.live = dict(s)
        self.version += 1

    def interval(self, rec: dict[str, Any]) -> None:
        """One interval's record, as written (a parent's: merged)."""
        self.intervals += 1
        for k in ("pings", "pongs", "missed", "late", "zombies", "false_timeouts", "reconnects"):
            v = rec.get(k)
            if isinstance(v, int):
                self.totals[k] += v
        for counter, key in ((self.closes, "closes"), (self.categories, "closes_by_category")):
            fam = rec.get(key)
            if isinstance(fam, dict):
                counter.update({str(k): int(v) for k, v in fam.items() if isinstance(v, int)})
        self.last = {
            k: rec.get(k)
            for k in (
                "t",
                "dt",
                "connected",
                "target",
                "rtt_p50_ms",
                "rtt_p99_ms",
                "pongs",
                "heartbeat_success",
                "missed",
                "false_timeouts",
                "tester_bottleneck",
                "availability",
                "server_connections",
            )
            if k in rec
        }
        self.series.add(rec)
        self.version += 1

    # -- read by the page --------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """What /status.json says now."""
        t = self.totals
        totals = {
            **{k: t[k] for k in ("pings", "pongs", "missed", "late", "reconnects")},
            "heartbeat_success": heartbeat_success(t["pongs"], t["missed"]),
            "closes": dict(self.closes.most_common()),
            "closes_by_category": dict(self.categories.most_common()),
        }
        return {
            **self.head,
            "version": self.version,
            "intervals": self.intervals,
            "live": self.live,
            "last_interval": self.last,
            "totals": totals,
            "storms": self.storms(),
            "findings": [f.record() for f in self.findings()],
            "series": self.series.columns(),
        }

    def status_bytes(self) -> bytes:
        """The document as JSON, built at most once per update or per
        :data:`MAX_AGE` (the findings come from events, which arrive between
        updates): any number of pollers cost the run about two builds a second."""
        version, built, body = self._cached
        now = self.clock()
        if version != self.version or now - built >= MAX_AGE:
            body = json.dumps(self.document(), separators=(",", ":"), default=str).encode()
            self._cached = (self.version, now, body)
        return body

    def _local(self, request: Request) -> Response | None:
        """A 403 for a Host header that is not this machine's loopback (a
        web page cannot read the run through a rebound DNS name)."""
        host = request.headers.get("host", "127.0.0.1")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.lower() in LOCAL_HOSTS:
            return None
        return Response(403, f"the dashboard answers only 127.0.0.1, not {host!r}\n".encode())

    def page_handler(self, request: Request) -> Response:
        refused = self._local(request)
        if refused is not None:
            return refused
        headers = (("content-security-policy", self.policy), ("x-content-type-options", "nosniff"))
        return Response(200, self.page, "text/html; charset=utf-8", headers)

    def status_handler(self, request: Request) -> Response:
        refused = self._local(request)
        if refused is not None:
            return refused
        return Response(200, self.status_bytes(), "application/json")

    def routes(self, server: HttpServer) -> None:
        server.route("/", self.page_handler)
        server.route("/status.json", self.status_handler)
