"""``soak merge``'s writing half: the checked shards (soak.merge_shards)
streamed interval by interval into one new results directory, written by
the same Recorder a run writes with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soak.chain import ChainCloses
from soak.facts import Facts, Settings
from soak.findings import settle
from soak.merge_shards import Plan, ShardStream, by_time, merge_profile, wire_of
from soak.metrics import Metrics
from soak.provenance import redact_argv
from soak.reconcile import Drift
from soak.recorder import MAX_EVENTS_PER_INTERVAL, Recorder, iso
from soak.results.problems import Problems
from soak.run import finish
from soak.run.merge import StormReplay
from soak.run.observe import ObservedSink
from soak.storm import StormInputs, StormTracker

MERGED_LABEL = "merged"


class StormEvents:
    """What :class:`~soak.run.merge.StormReplay` replays into here: one
    tracker, its events kept for the interval being written."""

    def __init__(self, tracker: StormTracker) -> None:
        self.storms: StormInputs = tracker
        self.tracker = tracker
        self.pending: list[dict[str, Any]] = []
        self.emit = self.pending.append

    def storm_tick(self, now: float) -> None:
        storm = self.tracker.tick(now)
        if storm is not None:
            self.emit({"t": round(now, 6), "event": "storm_end", **self.tracker.summary_of(storm)})


@dataclass
class Merged:
    path: Path
    summary: dict[str, Any]
    problems: list[str]


def merge(plan: Plan, root: Path, argv: list[str] | None = None) -> Merged:
    """Write the merge of ``plan``'s shards under ``root``. Raises
    ResultsError when the directory cannot be written."""
    ref = plan.reference
    facts = ref.info["whole"]
    profile = merge_profile(facts, str(ref.info.get("profile", {}).get("path") or ref.path))
    start_at = float(ref.info["start_at_epoch"])
    recorder = Recorder(root, MERGED_LABEL, start_at)
    # every shard could fill its own cap in one interval
    recorder.max_events = MAX_EVENTS_PER_INTERVAL * max(1, len(plan.shards))
    # as soak run does: closes judged against the profile's hops, and the
    # facts the merged run's findings are made of
    closes = ChainCloses(profile.target.hops)
    facts_seen = Facts(
        Settings.from_profile_record(profile.redacted()),
        closes=closes.silences,
        feed_closes=False,
    )

    def observe(ev: dict[str, Any]) -> None:
        closes.observe(ev)
        facts_seen.observe(ev)

    sink = ObservedSink(recorder, observe)
    manifest = _manifest(plan, argv)
    sink.write_json("run.json", manifest)

    problems = Problems()
    streams = [ShardStream(s, problems) for s in plan.shards]
    events = by_time([s.events(problems) for s in streams])
    inputs = by_time([s.storm_inputs(problems) for s in streams])
    st = profile.storms
    tracker = StormTracker(
        heartbeat_interval=profile.heartbeat.interval,
        origin=0.0,
        min_losses=st.min_losses,
        window=st.window,
        quiet=st.quiet,
    )
    storm_events = StormEvents(tracker)
    replay = StormReplay(storm_events, 0.0)
    metrics = Metrics()
    drift = Drift()
    reconciled = False
    first = min(s.index for s in plan.shards)
    pending_event: tuple[float, int, dict[str, Any]] | None = next(events, None)
    pending_input: tuple[float, int, tuple[int, list[Any]]] | None = next(inputs, None)
    end = 0.0
    index = 0
    while any(s.next is not None for s in streams):
        k = index
        parts = [(s, got) for s in streams if (got := s.take(k)) is not None]
        index += 1
        if not parts:
            continue
        cur = metrics.current
        extra: dict[str, Any] = {"gave_up": 0}
        dropped = 0
        connected = 0
        cur.target_s += _missed(plan, k, parts)
        for _s, (rec, payloads) in parts:
            cur.absorb(wire_of(rec, payloads))
            cur.connected += int(rec.get("connected") or 0)
            cur.connecting += int(rec.get("connecting") or 0)
            cur.target += int(rec.get("target") or 0)
            cur.rss_bytes += int(rec.get("rss_bytes") or 0)
            extra["gave_up"] += int(rec.get("gave_up") or 0)
            dropped += int(rec.get("events_dropped") or 0)
            end = max(end, float(rec.get("t", 0.0)) + float(rec.get("dt", 0.0)))
            if "server_connections" not in rec:
                connected += int(rec.get("connected") or 0)
        last = all(s.next is None for s in streams)
        # the storm inputs and events of this interval, in time order
        while pending_input is not None and (last or pending_input[0] <= end):
            _t, _n, (shard, op) = pending_input
            replay.add(shard, [op])
            pending_input = next(inputs, None)
        replay.replay(end if not last else float("inf"))
        storm_events.storm_tick(end)
        batch: list[tuple[float, int, dict[str, Any]]] = []
        while pending_event is not None and (last or pending_event[0] < end):
            _t, shard, ev = pending_event
            if ev.get("event") != "storm_stage" or shard == first:
                batch.append(pending_event)
            pending_event = next(events, None)
        batch.extend((float(ev["t"]), -1, ev) for ev in storm_events.pending)
        storm_events.pending.clear()
        for _t, _i, ev in sorted(batch, key=lambda x: x[0]):
            sink.event(ev)
        for _s, (rec, _p) in parts:
            if "server_connections" in rec:
                # shard 0 polled the server: the gap against every shard's clients
                reconciled = True
                client = int(rec.get("client_connections") or 0) + connected
                server = rec.get("server_connections")
                extra.update(
                    {
                        "server_connections": server,
                        "client_connections": client,
                        "connection_gap": drift.observe(end, client, server),
                        "stats_warning": rec.get("stats_warning"),
                    }
                )
        done = metrics.rotate(end)
        recorder.events_dropped = dropped
        facts_seen.interval(sink.write_interval(done, extra))
    storm_events.storm_tick(float("inf"))
    for sd in plan.shards:
        pf = ((sd.summary or {}).get("totals") or {}).get("permanent_failure")
        if pf is not None and metrics.permanent_failure is None:
            metrics.permanent_failure = pf
    sink.close()
    lost = plan.lost()
    status = "completed" if not lost else "partial"
    summary = finish.summary(
        profile,
        metrics,
        status=status,
        duration=end,
        peak=int(facts["peak"]),
        extra_checks=plan.checks(),
        storms=tracker.summaries(),
        closes=closes,
    )
    summary["shards"] = plan.record()
    if reconciled:
        polled = [sd.summary for sd in plan.shards if sd.summary and "reconcile" in sd.summary]
        rc = polled[0]["reconcile"] if polled else {}
        summary["reconcile"] = {"url": rc.get("url"), "field": rc.get("field"), **drift.summary()}
    series = tracker.series()
    if series:
        sink.write_lines("storms.jsonl", series)
    settle(summary, facts_seen, thresholds_set=bool(profile.thresholds), strict=profile.strict)
    sink.write_json("summary.json", summary)
    manifest.update(
        {
            "end": iso(start_at + end),
            "status": status,
            "exit_code": summary["exit_code"],
        }
    )
    sink.write_json("run.json", manifest)
    return Merged(recorder.path, summary, problems.lines)


Part = tuple[ShardStream, tuple[dict[str, Any], dict[str, str]]]


def _missed(plan: Plan, k: int, parts: list[Part]) -> float:
    """Planned client-seconds of interval ``k`` that a shard joined too late
    for (shard.json's ``missed_target_s``). Per shard: the most any one
    attempt planned (what it ran plus what it missed), less what all its
    attempts ran, so a replacement that joins late does not plan again the
    time its first attempt ran."""
    ran = {id(s.shard): float(rec.get("target_s") or 0.0) for s, (rec, _p) in parts}
    planned: dict[int, float] = {}
    ran_total: dict[int, float] = {}
    for sd in plan.shards:
        missed = sd.info.get("missed_target_s") or []
        mine = ran.get(id(sd), 0.0)
        here = mine + (float(missed[k]) if k < len(missed) else 0.0)
        planned[sd.index] = max(planned.get(sd.index, 0.0), here)
        ran_total[sd.index] = ran_total.get(sd.index, 0.0) + mine
    return sum(max(0.0, planned[i] - ran_total[i]) for i in planned)


def _manifest(plan: Plan, argv: list[str] | None) -> dict[str, Any]:
    """run.json of the merge: the first shard's, with the whole profile."""
    ref = plan.reference
    m = dict(ref.manifest)
    m.pop("shard", None)
    profile = ref.info.get("profile")
    if isinstance(profile, dict) and isinstance(profile.get("run"), dict):
        profile = {**profile, "run": {**profile["run"], "shard": None}}  # the whole run's
    m.update(
        {
            "label": ref.info["whole"]["label"],
            "profile": profile or m.get("profile"),
            "hosts": sorted({str(s.info.get("host")) for s in plan.shards}),
            "shards": {
                "count": plan.count,
                "start_at": ref.info.get("start_at"),
                "directories": [str(s.path) for s in plan.shards],
            },
            "merged_by": None if argv is None else redact_argv(argv),
            "start": ref.info.get("start_at"),
            "end": None,
            "status": "running",
            "exit_code": None,
        }
    )
    return m
