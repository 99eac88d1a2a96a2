"""Totals, percentiles and threshold verdicts for summary.json.

Pure: takes the run's accumulated :class:`~soak.metrics.Metrics` and the
profile, returns plain dicts. ``soak report`` reads the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hdrh.histogram import HdrHistogram

from soak.availability import storm_line
from soak.config.profile import Profile
from soak.config.thresholds import SHARES, Threshold, percentile_of, with_defaults
from soak.config.units import format_duration
from soak.metrics import HISTOGRAMS, Metrics, percentiles_ms

# Exit codes. Only the commands (soak.commands) use them; they are listed here with the verdicts
# that produce them so the README can document one table.
EXIT_OK = 0
EXIT_THRESHOLDS = 1
EXIT_USAGE = 2
EXIT_TARGET = 3  # the target was never reachable, or the run could not proceed
# the run's results are not all on disk (a full disk): soak.recorder says what is missing
EXIT_RESULTS = 4
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def totals(m: Metrics) -> dict[str, Any]:
    t = m.total.totals()
    if m.permanent_failure is not None:
        t["permanent_failure"] = dict(m.permanent_failure)
    return t


def latencies(m: Metrics) -> dict[str, Any]:
    return {name: percentiles_ms(m.total.hist[name]) for name in HISTOGRAMS}


def metric_value(
    th: Threshold,
    tot: dict[str, Any],
    hists: Mapping[str, HdrHistogram],
    availability: Mapping[str, Any] | None = None,
) -> float | None:
    """The run's value for a threshold, in the threshold's unit (seconds for
    latencies, a fraction for success and shares, a count otherwise).
    ``hists``: the run's total histogram by name; ``availability``:
    summary.json's (soak.availability.summarize)."""
    if th.name in SHARES:
        v = (availability or {}).get(th.name)
        return None if v is None else float(v)
    if th.name == "heartbeat_success":
        v = tot["heartbeat_success"]
        return None if v is None else float(v)
    if th.name == "dropped_samples":
        return float(tot["dropped_samples_total"])
    if th.name == "handshake_failures":
        return float(tot["handshake_failure_total"])
    if th.name in tot:
        return float(tot[th.name])
    hist_name, _, which = th.name.rpartition("_")
    h = hists.get(hist_name)
    if h is None or not h.get_total_count():
        return None
    q = percentile_of(which)
    us = h.get_max_value() if q is None else h.get_value_at_percentile(q)
    return float(us) / 1_000_000.0


def verdicts(
    profile: Profile, m: Metrics, tot: dict[str, Any], availability: Mapping[str, Any]
) -> list[dict[str, Any]]:
    return judge(with_defaults(profile.thresholds), tot, m.total.hist, availability)


# what a share threshold says when there is nothing to judge: it holds
_NOTHING = {"availability": "no planned load", "storm_recovery": "no storms"}


def judge(
    thresholds: Iterable[Threshold],
    tot: dict[str, Any],
    hists: Mapping[str, HdrHistogram],
    availability: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One verdict per threshold, from the run's totals, histograms and
    availability (soak.availability.summarize)."""
    out = []
    for th in thresholds:
        value = metric_value(th, tot, hists, availability)
        detail = None
        if value is None and th.name in SHARES and availability is not None:
            ok, shown = True, _NOTHING[th.name]
        elif value is None:
            ok = False
            shown = "no data"
        else:
            ok = th.holds(value)
            shown = _show(th, value)
            if th.name in SHARES and availability is not None:
                detail = _share_detail(th.name, availability)
        text = f"{'PASS' if ok else 'FAIL'} {th.name} {th.op} {th.text}: {shown}"
        verdict: dict[str, Any] = {
            "name": th.name,
            "limit": th.text,
            "value": shown,
            "ok": ok,
            "op": th.op,
            "text": text + (f" ({detail})" if detail else ""),
        }
        if detail:
            verdict["detail"] = detail
        out.append(verdict)
    return out


def _share_detail(name: str, av: Mapping[str, Any]) -> str:
    """What a share threshold's value is made of, for its verdict line."""
    if name == "availability":
        below = av.get("below") or {}
        text = (
            f"{av.get('connected_client_s', 0):,.0f} of {av.get('target_client_s', 0):,.0f} "
            "planned client-seconds connected"
        )
        if below.get("longest_s"):
            text += (
                f"; below {below['share'] * 100:g}% for {below['longest_s']:g} s "
                f"from {below['from_s']:g} s"
            )
        return text
    storms = [s for s in av.get("storms") or [] if s.get("recovered_share") is not None]
    worst = min(storms, key=lambda s: s["recovered_share"], default=None)
    return "" if worst is None else "worst: " + storm_line(worst)


def _show(th: Threshold, value: float) -> str:
    if th.name in SHARES:
        return f"{value * 100:.2f}%"
    if th.name == "heartbeat_success":
        return f"{value * 100:.3f}%"
    if th.name.endswith(("_max",)) or "_p" in th.name:
        return format_duration(value) if value >= 1 else f"{value * 1000:.3f}ms"
    return f"{value:g}"


def exit_code(
    status: str, tot: dict[str, Any], checks: list[dict[str, Any]], profile: Profile
) -> tuple[int, str]:
    """The run's exit code and the one-line reason for it."""
    if status == "interrupted":
        return EXIT_SIGINT, "interrupted (SIGINT)"
    if status == "aborted":
        return EXIT_SIGINT, "aborted by a second SIGINT"
    if status == "terminated":
        return EXIT_SIGTERM, "terminated (SIGTERM)"
    permanent = tot.get("permanent_failure")
    if permanent is not None:
        # a refusal that trying again cannot help (a wrong token): say which
        what = (
            "the target refused every connection" if tot["connects"] == 0 else "reconnects stopped"
        )
        return EXIT_TARGET, (
            f"{what}: {permanent['error']} (permanent: refused {permanent['failures']} times "
            "in a row, so no client tries again)"
        )
    if tot["connects"] == 0 and tot["connect_attempts"] > 0:
        return EXIT_TARGET, "the target was never reachable"
    gave_up = tot["reconnect_failed"]
    judged = {th.name for th in profile.thresholds}
    if gave_up and "reconnect_failed" not in judged:
        # The planned load was not held. A profile that expects clients to
        # give up says so with a reconnect_failed threshold, which then decides.
        return EXIT_TARGET, f"{gave_up} clients gave up reconnecting: the planned load was not held"
    # a threshold the run has no data for fails, and says so: a run that
    # measured nothing must not pass CI (docs/profiles.md, [thresholds])
    failed = [
        v["name"] + (" (no data)" if v["value"] == "no data" else "") for v in checks if not v["ok"]
    ]
    if failed:
        held = [v for v in checks if not v["ok"] and v["name"] in SHARES]
        if held:
            # the load was not held: say so in words, with the figures
            why = "; ".join(f"{v['name']} {v['value']} (at least {v['limit']})" for v in held)
            details = "; ".join(v["detail"] for v in held if v.get("detail"))
            others = [n for n in failed if n not in SHARES]
            return EXIT_THRESHOLDS, (
                f"the planned load was not held: {why}"
                + (f"; {details}" if details else "")
                + (f"; thresholds failed: {', '.join(others)}" if others else "")
            )
        return EXIT_THRESHOLDS, "thresholds failed: " + ", ".join(failed)
    return EXIT_OK, "passed"


def with_findings(
    code: int,
    verdict: str,
    count: int,
    error_keys: list[str],
    *,
    thresholds_set: bool,
    strict: bool,
) -> tuple[int, str]:
    """The exit code and verdict once the run's findings (soak.findings) are
    known: ``count`` of them, ``error_keys`` the kinds of those of error
    severity. A run that passed says how many findings it has ("no
    thresholds set; 3 findings (1 error)"), so its verdict never looks clean
    when it is not; with ``strict`` an error finding fails it (exit 1). A
    run that did not pass keeps its verdict and exit code."""
    if code != EXIT_OK or not count:
        return code, verdict
    errors = len(error_keys)
    found = f"{count} finding{'s' if count != 1 else ''}"
    if errors:
        found += f" ({errors} error{'s' if errors != 1 else ''})"
    if strict and errors:
        kinds = ", ".join(dict.fromkeys(error_keys))
        return EXIT_THRESHOLDS, f"strict: {found}: {kinds}"
    return EXIT_OK, f"{'passed' if thresholds_set else 'no thresholds set'}; {found}"
