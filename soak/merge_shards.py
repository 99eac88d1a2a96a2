"""``soak merge``: the results directories of a run's shards (``soak run
--shard I/N``) made into one, in exactly the format one run writes, so
``soak report`` and ``soak compare`` read it unchanged.

- Interval by interval (all shards share the start, so interval *k* is the
  same span everywhere): counters, close and failure families and the
  gauges summed, HdrHistograms added (lossless), the run's running total
  kept; memory stays flat for any length of run.
- Events of every shard in time order, each tagged ``"shard": I``; a storm
  stage's own event once.
- Storms detected across shards: each shard's storm inputs
  (``storm_inputs.jsonl``) replayed in time order into one tracker
  (soak.run.merge.StormReplay), so 3 losses on each of 4 shards in one
  second are one storm of 12.
- The server-count gap recomputed against the summed client count (shard 0
  polled the server).
- Thresholds judged once, on the merged data; the exit code is ``soak
  run``'s.

A shard that is missing, partial (no summary.json, e.g. killed) or of
another run (another profile, shard count or start) is named; the merge
goes on with the rest and fails a ``shards_lost == 0`` check. A restarted
shard's directories (``.2``, ...) are all added: each holds the intervals
its attempt ran, the others' are empty.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak.config.heartbeat import HeartbeatConfig, ReconnectConfig, StormConfig
from soak.config.profile import Profile, RunConfig
from soak.config.stages import ClientsConfig, Hold
from soak.config.target import TargetConfig
from soak.config.thresholds import Threshold
from soak.errors import LocalError
from soak.metrics import COUNTERS, FAMILIES, HISTOGRAMS
from soak.results import jsonl
from soak.results.hlog import HlogEntry, read_entries
from soak.results.names import EVENTS, INTERVALS, RUN_JSON, SUMMARY, hlog_name
from soak.results.problems import Problems
from soak.run.shard import SHARD_JSON, STORM_INPUTS
from soak.run.shard_clock import MAX_ERROR_S


class MergeError(LocalError):
    """Nothing that can be merged (bad input: exit code 2)."""


@dataclass
class ShardDir:
    path: Path
    info: dict[str, Any]  # shard.json
    manifest: dict[str, Any]  # run.json
    summary: dict[str, Any] | None  # None: the shard never finished

    @property
    def index(self) -> int:
        return int(self.info["index"])

    @property
    def count(self) -> int:
        return int(self.info["count"])

    @property
    def complete(self) -> bool:
        return self.summary is not None and self.summary.get("status") == "completed"


def find_shards(paths: list[str]) -> list[Path]:
    """Each path is a shard's directory, or a directory of them."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            raise MergeError(f"{p}: not a directory (expected a shard's results, or a run's)")
        if (p / SHARD_JSON).is_file():
            found.append(p)
            continue
        inner = sorted(d for d in p.iterdir() if d.is_dir() and (d / SHARD_JSON).is_file())
        if not inner:
            raise MergeError(
                f"{p}: no shard results here (no {SHARD_JSON} in it or its subdirectories); "
                "expected directories written by soak run --shard"
            )
        found.extend(inner)
    return list(dict.fromkeys(found))


def _json(path: Path, required: bool) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise MergeError(f"{path}: missing (expected a shard's results directory)") from None
        return None
    except (OSError, ValueError) as exc:
        if required:
            raise MergeError(f"{path}: unreadable: {exc}") from None
        return None
    if not isinstance(data, dict):
        if required:
            raise MergeError(f"{path}: expected a JSON object")
        return None
    return data


def load_shard(path: Path) -> ShardDir:
    info = _json(path / SHARD_JSON, True)
    assert info is not None
    for key in ("index", "count", "start_at_epoch", "profile_digest", "whole"):
        if key not in info:
            raise MergeError(f"{path / SHARD_JSON}: no {key!r} (expected soak run --shard's file)")
    manifest = _json(path / RUN_JSON, True)
    assert manifest is not None
    return ShardDir(path, info, manifest, _json(path / SUMMARY, False))


def mismatch(ref: ShardDir, s: ShardDir) -> str | None:
    """Why ``s`` is not a shard of ``ref``'s run, or None."""
    if s.info["profile_digest"] != ref.info["profile_digest"]:
        return (
            f"{s.path}: profile {s.info['profile_digest']} differs from {ref.path}'s "
            f"{ref.info['profile_digest']} (expected shards of one profile)"
        )
    if s.count != ref.count:
        return f"{s.path}: shard of {s.count} (expected {ref.count}, as {ref.path})"
    if s.info["start_at_epoch"] != ref.info["start_at_epoch"]:
        return (
            f"{s.path}: start_at {s.info.get('start_at')} (expected {ref.info.get('start_at')}, "
            f"as {ref.path})"
        )
    return None


@dataclass
class Plan:
    """The shards to merge, and what is wrong with the run's set of them."""

    shards: list[ShardDir]
    count: int
    rejected: list[str] = field(default_factory=list)

    @property
    def reference(self) -> ShardDir:
        return self.shards[0]

    def lost(self) -> list[str]:
        """One line per index not fully there."""
        out = []
        for i in range(self.count):
            mine = [s for s in self.shards if s.index == i]
            if not mine:
                out.append(f"shard {i}: missing")
            elif not any(s.complete for s in mine):
                last = mine[-1]
                what = (
                    "no summary.json (killed?)"
                    if last.summary is None
                    else last.summary.get("status", "?")
                )
                out.append(f"shard {i}: partial ({what}) in {last.path}")
        return out

    def record(self) -> dict[str, Any]:
        """summary.json's ``shards``."""
        clocks = [s.info.get("clock") or {} for s in self.shards]
        errors = [float(c["maxerror_s"]) for c in clocks if c.get("maxerror_s") is not None]
        return {
            "count": self.count,
            "directories": [str(s.path) for s in self.shards],
            "planned_clients": {str(s.index): s.info.get("planned_clients") for s in self.shards},
            "attempts": {str(i): sum(s.index == i for s in self.shards) for i in range(self.count)},
            "late_joins": [
                {"shard": s.index, "late_join_s": s.info.get("late_join_s"), "path": str(s.path)}
                for s in self.shards
                if s.info.get("late_join_s")
            ],
            "lost": self.lost(),
            "rejected": self.rejected,
            "clock": {
                "max_error_s": max(errors, default=None),
                "unsynchronised": sorted(
                    {
                        s.index
                        for s, c in zip(self.shards, clocks, strict=True)
                        if not c.get("synchronised")
                    }
                ),
            },
        }

    def warnings(self) -> list[str]:
        out = list(self.rejected)
        for s in self.shards:
            w = s.info.get("clock_warning")
            if w:
                out.append(f"shard {s.index} ({s.info.get('host')}): {w}")
        clocks = [s.info.get("clock") or {} for s in self.shards]
        worst = max((c.get("maxerror_s") or 0.0 for c in clocks), default=0.0)
        if worst > MAX_ERROR_S:
            out.append(
                f"the shards' clocks may be off by up to {worst:g} s: intervals may not line up"
            )
        return out

    def checks(self) -> list[dict[str, Any]]:
        """The run's own checks: shards lost, and workers lost inside them."""
        out = []
        lost = self.lost()
        if lost or self.rejected:
            shown = "; ".join(lost + [f"rejected {r}" for r in self.rejected])
            out.append(_failed("shards_lost", len(lost), shown))
        workers = []
        for s in self.shards:
            for check in (s.summary or {}).get("thresholds") or []:
                if check.get("name") == "workers_lost" and not check.get("ok", True):
                    text = str(check.get("text", "")).removeprefix("FAIL workers_lost == 0: ")
                    workers.append((int(check.get("value") or 1), f"shard {s.index}: {text}"))
        if workers:
            count = sum(n for n, _ in workers)
            out.append(_failed("workers_lost", count, "; ".join(t for _, t in workers)))
        return out


def _failed(name: str, value: int, shown: str) -> dict[str, Any]:
    return {
        "name": name,
        "limit": "0",
        "value": str(value),
        "ok": False,
        "op": "==",
        "text": f"FAIL {name} == 0: {shown}",
    }


def plan(paths: list[str]) -> Plan:
    """The shards under ``paths``, checked against the first (lowest index)."""
    shards = sorted((load_shard(p) for p in find_shards(paths)), key=lambda s: (s.index, s.path))
    ref = shards[0]
    kept, rejected = [], []
    for s in shards:
        why = mismatch(ref, s)
        if why is None:
            kept.append(s)
        else:
            rejected.append(why)
    return Plan(kept, ref.count, rejected)


def merge_profile(facts: dict[str, Any], path: str) -> Profile:
    """The whole profile, as far as judging it needs (shard.json's ``whole``)."""
    st = facts["storms"]
    return Profile(
        path,
        RunConfig(
            label=facts["label"],
            duration=float(facts["duration"]),
            report_interval=float(facts["report_interval"]),
        ),
        TargetConfig(url=facts["target"], protocol=facts["protocol"]),
        ClientsConfig(stages=(Hold(duration=float(facts["duration"])),)),
        HeartbeatConfig(interval=float(facts["heartbeat_interval"])),
        ReconnectConfig(),
        tuple(Threshold(**th) for th in facts["thresholds"]),
        None,
        StormConfig(
            min_losses=int(st["min_losses"]), window=float(st["window"]), quiet=float(st["quiet"])
        ),
    )


# -- one shard's files, read one interval at a time -----------------------------------------


class ShardStream:
    """A shard's intervals (with their histograms), events and storm inputs,
    read lazily."""

    def __init__(self, shard: ShardDir, problems: Problems) -> None:
        self.shard = shard
        p = shard.path
        self._records = self._read(p / INTERVALS, problems)
        self._hlogs = {h: read_entries(p / hlog_name(h), problems) for h in HISTOGRAMS}
        self._ahead: dict[str, HlogEntry | None] = {}
        self.next: dict[str, Any] | None = next(self._records, None)

    @staticmethod
    def _read(path: Path, problems: Problems) -> Iterator[dict[str, Any]]:
        if not path.exists():
            problems.file_missing(path)
            return iter(())
        return jsonl.read_records(path, problems)

    def take(self, index: int) -> tuple[dict[str, Any], dict[str, str]] | None:
        """The record of interval ``index`` and its histograms' payloads, or
        None when this shard has none for it."""
        while self.next is not None and int(self.next.get("i", -1)) < index:
            self.next = next(self._records, None)  # a duplicate or damaged order
        rec = self.next
        if rec is None or int(rec.get("i", -1)) != index:
            return None
        self.next = next(self._records, None)
        t = float(rec.get("t", 0.0))
        payloads = {}
        for h, entries in self._hlogs.items():
            entry = self._ahead.pop(h, None) or next(entries, None)
            while entry is not None and entry.start < t - 0.0015:
                entry = next(entries, None)
            if entry is not None and entry.start > t + 0.0015:
                self._ahead[h] = entry  # a later interval's: this one's line is missing
                continue
            if entry is not None:
                payloads[h] = entry.payload
        return rec, payloads

    def events(self, problems: Problems) -> Iterator[tuple[float, int, dict[str, Any]]]:
        path = self.shard.path / EVENTS
        if not path.exists():
            return
        for ev in jsonl.read_records(path, problems):
            ev["shard"] = self.shard.index
            yield float(ev.get("t", 0.0)), self.shard.index, ev

    def storm_inputs(
        self, problems: Problems
    ) -> Iterator[tuple[float, int, tuple[int, list[Any]]]]:
        """``(t, n, (shard, input))``: at one instant, the shards' inputs are
        taken in turn (the n-th of each, then the n+1-th), as they happened
        at once: not all of one shard's first."""
        path = self.shard.path / STORM_INPUTS
        if not path.exists():
            problems.file_missing(path)
            return
        for n, op in jsonl.read_lines(path, problems):
            if isinstance(op, list) and len(op) >= 2 and isinstance(op[1], int | float):
                yield float(op[1]), n, (self.shard.index, op)
            else:
                problems.skip(path, n, "not a storm input")


def wire_of(rec: dict[str, Any], payloads: dict[str, str]) -> dict[str, Any]:
    """An intervals.jsonl record and its .hlog payloads in the tally's wire
    form (soak.metrics.Tally.absorb)."""
    wire: dict[str, Any] = {
        "counts": {k: int(rec.get(k) or 0) for k in COUNTERS},
        "hist": dict(payloads),
        "gc_pause_max": float(rec.get("gc_pause_max_ms") or 0.0) / 1000.0,
        "gc_pause_total": float(rec.get("gc_pause_total_ms") or 0.0) / 1000.0,
        "connected_s": float(rec.get("connected_s") or 0.0),
        "target_s": float(rec.get("target_s") or 0.0),
    }
    for name in FAMILIES:
        d = rec.get(name)
        wire[name] = {str(k): int(v) for k, v in d.items()} if isinstance(d, dict) else {}
    return wire


def by_time(
    streams: list[Iterator[tuple[float, int, Any]]],
) -> Iterator[tuple[float, int, Any]]:
    """Several time-ordered streams as one (ties: by the second item)."""
    return heapq.merge(*streams, key=lambda x: (x[0], x[1]))
