"""Whether the runs compared ran the same experiment: their profiles
flattened and diffed, with what does not change the experiment (a storm
command's text, a URL's port) told apart from what does."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from soak.report.compare_data import RunData
from soak.results.reader import Run


def profile_key(run: Run) -> dict[str, Any]:
    """The profile without what differs between any two runs: path, label,
    results directory and the stats URL; and ``strict``, which judges a run
    without changing what it does."""
    prof = json.loads(json.dumps(run.manifest.get("profile") or {}))
    if not isinstance(prof, dict):
        return {}
    prof.pop("path", None)
    prof.pop("strict", None)
    if isinstance(prof.get("run"), dict):
        prof["run"].pop("label", None)
        prof["run"].pop("results_dir", None)
    target = prof.get("target")
    if isinstance(target, dict) and isinstance(target.get("stats"), dict):
        target["stats"].pop("url", None)
    return prof


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list) and d:
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: d}


# Fields whose text differs between two runs of one experiment: a storm
# stage's command (a PID, a path) and the port of a URL (a gateway on a
# free port).
_COMMAND = re.compile(r"^clients\.stages\[\d+\]\.command$")


_URLS = re.compile(r"^(target\.url|clients\.stages\[\d+\]\.restart_url)$")


def _without_port(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return url
    if host is None:
        return url
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=netloc))


def same_experiment(key: str, a: Any, b: Any) -> bool:
    """A difference that does not change the experiment."""
    if _COMMAND.match(key):
        return isinstance(a, str) and isinstance(b, str)
    if _URLS.match(key) and isinstance(a, str) and isinstance(b, str):
        return _without_port(a) == _without_port(b)
    return False


def _shown(v: Any) -> str:
    return "(none)" if v is None else json.dumps(v) if isinstance(v, str) else str(v)


def _pairs(keys: list[str], a: dict[str, Any], b: dict[str, Any]) -> str:
    shown = [f"{k} {_shown(a.get(k))} vs {_shown(b.get(k))}" for k in keys[:6]]
    return "; ".join(shown) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")


def profile_differences(datas: Sequence[RunData]) -> tuple[list[str], list[str]]:
    """Warnings (a difference in what the runs did: clients, durations,
    heartbeat, reconnect...) and notes (a difference only in a storm
    command's text or a URL's port), each naming the fields and both values."""
    base = _flatten(profile_key(datas[0].run))
    warnings, notes = [], []
    for d in datas[1:]:
        other = _flatten(profile_key(d.run))
        keys = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
        unfair = [k for k in keys if not same_experiment(k, base.get(k), other.get(k))]
        fair = [k for k in keys if k not in unfair]

        if unfair:
            warnings.append(
                f"WARNING: '{d.name}' ran a different profile from the baseline "
                f"'{datas[0].name}' ({_pairs(unfair, base, other)}): the comparison may "
                "not be fair"
            )
        if fair:
            what = "only" if not unfair else "also"
            notes.append(
                f"'{d.name}' differs from the baseline {what} where the experiment is the "
                f"same: {_pairs(fair, base, other)}"
            )
    return warnings, notes


def profile_warnings(datas: Sequence[RunData]) -> list[str]:
    return profile_differences(datas)[0]
