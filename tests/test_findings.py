"""soak.findings: a run's findings from plain events and interval records,
their ranking and sentences, the verdict they give, [thresholds] strict and
--strict; and a whole run (MockClock, the incident's gateway in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from soak.config.load import parse_profile
from soak.config.overrides import override
from soak.errors import ProfileError
from soak.facts import MAX_SIGNATURES, Facts, Finding, Settings, rss_growth
from soak.findings import findings, from_record, settle
from soak.gateway.bugs import parse_bugs
from soak.gateway.config import GatewayConfig
from soak.gateway.server import Gateway
from soak.run.runner import Runner
from soak.summary import EXIT_OK, EXIT_THRESHOLDS, EXIT_USAGE, with_findings
from tests.support.runs import gateway_opener, make_profile, run_in_memory

SETTINGS = Settings(
    heartbeat_interval=10.0,
    heartbeat_timeout=5.0,
    max_missed=3,
    max_attempts=5,
    server_interval=10.0,
    server_timeout=15.0,
    server_max_missed=3,
)


def interval(i: int, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "t": 10.0 * i,
        "dt": 10.0,
        "connected": 100,
        "target": 100,
        "pings": 100,
        "pongs": 100,
        "missed": 0,
        "late": 0,
        "zombies": 0,
        "false_timeouts": 0,
        "reconnect_failed": 0,
        "handshake_failure_total": 0,
        "handshake_failures": {},
        "dropped_samples": {},
        "events_dropped": 0,
        "skipped": 0,
        "tester_bottleneck": False,
        "lag_p99_ms": 0.4,
        "rss_bytes": 50_000_000,
    }
    rec.update(kw)
    return rec


def false_timeout(t: float, pong: float | None, missed: int, age: float = 100.0) -> dict[str, Any]:
    return {
        "t": t,
        "event": "close",
        "client": "soak-000001",
        "reason": "false_timeout",
        "category": "heartbeat_timeout",
        "initiator": "server",
        "code": 4000,
        "text": "heartbeat_timeout",
        "why": f"{missed} heartbeats missed < server max_missed 3",
        "evidence": {
            "age_s": age,
            "last_pong_age_s": pong,
            "last_frame_age_s": pong,
            "consecutive_missed": missed,
        },
    }


def facts(
    intervals: list[dict[str, Any]], events: Sequence[dict[str, Any]] = (), **settings: Any
) -> Facts:
    f = Facts(Settings(**{**SETTINGS.__dict__, **settings}))
    f.observe_all(events).intervals(intervals)
    return f


def test_a_clean_run_has_no_finding() -> None:
    assert findings(facts([interval(i) for i in range(10)])) == []
    assert findings(Facts()) == []  # nothing seen yet


def test_false_timeouts_say_how_many_which_signature_when_and_why() -> None:
    ivs = [interval(0), interval(1, false_timeouts=2), interval(2, false_timeouts=1)]
    evs = [false_timeout(12.0, 15.2, 1), false_timeout(13.0, 15.4, 0), false_timeout(21.0, 15.1, 1)]
    (f,) = findings(facts(ivs, evs))
    assert f.key == "false_timeouts"
    assert f.severity == "error"
    assert f.count == 3
    assert f.text == (
        "3 false timeouts: the server's heartbeat check (4000 heartbeat_timeout) closed live "
        "connections 15.1-15.4 s after their last pong, with 1 of 3 allowed heartbeats missed: the "
        "server ignores max_missed (it closes 15 s after the last heartbeat; 3 missed at 10 s "
        "would take 30 s); from 12 s to 21 s into the run"
    )
    assert f.anchor == "evidence"
    assert f.spans == ((10.0, 30.0),)  # the intervals that had them, merged


def test_false_timeouts_sooner_than_the_server_timeout_are_stale_state() -> None:
    ev = false_timeout(5.0, 2.0, 0)
    ev["previous_close"] = {"reason": "false_timeout", "ago_s": 3.0}
    (f,) = findings(facts([interval(0, false_timeouts=1)], [ev]))
    assert f.text == (
        "1 false timeout: the server's heartbeat check (4000 heartbeat_timeout) closed live "
        "connections 2.0 s after their last pong, sooner than the server's own 15 s timeout: "
        "its heartbeat state was stale (1 of them right after a reconnect); from 5.0 s to "
        "5.0 s into the run"
    )


def test_false_timeouts_without_a_pong_count_from_the_connect() -> None:
    evs = [false_timeout(1.5, None, 0, age=1.53), false_timeout(1.6, None, 0, age=1.58)]
    (f,) = findings(
        facts([interval(0, false_timeouts=2)], evs, server_timeout=1.5, server_interval=1.0)
    )
    assert "closed live connections 1.5-1.6 s after connecting, with 0 of 3" in f.text


def test_counts_come_from_the_intervals_even_when_events_were_dropped() -> None:
    ivs = [interval(0, false_timeouts=500, events_dropped=480)]
    evs = [false_timeout(1.0, 15.0, 1)] * 20
    found = findings(facts(ivs, evs))
    assert [f.key for f in found] == ["false_timeouts", "events_dropped"]
    assert found[0].text.startswith("500 false timeouts: ")
    assert found[1].text == (
        "480 events were not written (too many in one interval): the evidence tables are "
        "incomplete, the counts are not"
    )


def test_each_kind_of_finding_and_the_ranking() -> None:
    ivs = [
        interval(0, zombies=2, missed=6, pongs=94),
        interval(
            1,
            reconnect_failed=3,
            handshake_failure_total=7,
            handshake_failures={"http_503": 5, "timeout": 2},
            tester_bottleneck=True,
            lag_p99_ms=48.0,
            skipped=12,
            dropped_samples={"rtt": 4},
        ),
        interval(2, tester_bottleneck=True, lag_p99_ms=20.0),
    ]
    evs = [
        {"t": 1.0, "event": "close", "reason": "client_zombie", "detected_after_s": 30.5},
        {"t": 2.0, "event": "close", "reason": "client_zombie", "detected_after_s": 31.0},
        {"t": 12.0, "event": "handshake_failure", "cause": "http_503", "error": "HTTP 503"},
        {"t": 15.0, "event": "reconnect_failed", "client": "c1", "attempts": 5},
        {"t": 16.0, "event": "reconnect_failed", "client": "c2", "attempts": 5},
    ]
    found = findings(facts(ivs, evs))
    assert [(f.key, f.severity) for f in found] == [
        ("zombies", "error"),
        ("gave_up", "error"),
        ("missed_heartbeats", "warning"),
        ("handshake_failures", "warning"),
        ("tester_bottleneck", "warning"),
        ("dropped_samples", "warning"),
    ]
    text = {f.key: f.text for f in found}
    assert text["zombies"] == (
        "2 zombies: connections stayed open while the server stopped answering their "
        "heartbeats; soak closed each after 3 unanswered in a row (30.5-31.0 s after the first "
        "unanswered one)"
    )
    assert text["gave_up"] == (
        "3 clients gave up reconnecting after 5 attempts (from 15 s to 16 s): the planned "
        "load was not held"
    )
    assert (
        text["missed_heartbeats"] == "6 heartbeats (2.00%) went unanswered within the 5.0 s timeout"
    )
    assert text["handshake_failures"] == (
        "7 handshake failures: 5 http_503 (first: HTTP 503), 2 timeout"
    )
    assert text["tester_bottleneck"] == (
        "the tester itself was the bottleneck for 20 s in 1 stretch (first from 10 s): "
        "heartbeats left up to 48.0 ms late at p99, 12 heartbeat slots skipped; RTT in those "
        "intervals measures soak, not the gateway"
    )
    assert {f.anchor for f in found} == {
        "chart-heartbeats",
        "chart-connections",
        "handshake-failures",
        "chart-tester_lag",
        "summary",
    }


def test_a_few_missed_heartbeats_are_not_a_finding() -> None:
    assert findings(facts([interval(0, missed=1, pongs=1000)])) == []
    assert [f.key for f in findings(facts([interval(0, missed=2, pongs=1000)]))] == [
        "missed_heartbeats"
    ]


def test_server_count_drift_needs_three_polls_in_one_direction() -> None:
    gaps = [0, 4, 5, -1, 3, 12, 2, 0]
    ivs = [interval(i, connection_gap=g) for i, g in enumerate(gaps)]
    (f,) = findings(facts(ivs))
    assert f.key == "server_count_drift"
    assert f.severity == "warning"
    assert f.text == (
        "the server counted up to 12 more connections than soak had open: it still counts "
        "connections whose clients are gone (3 polls in a row, from 40 s to 1m10s)"
    )
    assert f.spans == ((40.0, 70.0),)
    # two polls, a failed poll (None) between: no finding
    ivs = [interval(i, connection_gap=g) for i, g in enumerate([0, -3, -4, None, -2, 0])]
    assert findings(facts(ivs)) == []
    ivs = [interval(i, connection_gap=g) for i, g in enumerate([-3, -4, -9, 0])]
    assert findings(facts(ivs))[0].text.startswith(
        "the server counted up to 9 fewer connections than soak had open"
    )


def test_rss_growth_while_the_load_holds() -> None:
    mb = 1_000_000
    ramp = [interval(0, target=50, rss_bytes=30 * mb)]
    held = [interval(i, rss_bytes=(60 + 10 * i) * mb) for i in range(1, 11)]
    (f,) = findings(facts(ramp + held))
    assert f.key == "rss_growth"
    assert f.anchor == "tester-memory"
    assert f.text == (
        "the tester's memory grew by 90 MB while the load held at 100 clients (from 70 MB to "
        "160 MB over 1m30s, 3,600 MB an hour): state piling up in the tester"
    )
    growth = rss_growth([(r["t"] + 10, r["rss_bytes"], r["target"]) for r in held])
    assert growth is not None
    start, end, span = growth
    assert (round(start), round(end), span) == (70 * mb, 160 * mb, 90.0)
    # flat, or noisy around a level, or too short: nothing
    flat = [interval(i, rss_bytes=(100 + (i % 3)) * mb) for i in range(30)]
    assert findings(facts(flat)) == []
    assert findings(facts(held[:4])) == []


def test_storms_from_the_summary_or_the_events() -> None:
    storm = {
        "index": 1,
        "start_s": 30.0,
        "end_s": 40.0,
        "lost": 2000,
        "recovered": 2000,
        "peak_attempts_per_100ms": 850,
        "recovery_s": {"p50": 1.2, "p100": 9.5},
        "sync_index_after": 0.83,
    }
    summary = {"status": "completed", "storms": [storm]}
    (f,) = findings(facts([interval(0)]), summary)
    assert f.key == "storms"
    assert f.severity == "warning"
    assert f.spans == ((30.0, 40.0),)
    assert f.text == (
        "a reconnect storm at 30 s: 2,000 connections lost, peak 850 reconnect attempts per "
        "100 ms, half back in 1.2 s, all in 9.5 s, the clients came back in step (sync index "
        "0.83; 1 = all in phase)"
    )
    short = {"index": 2, "start_s": 50.0, "end_s": None, "lost": 10, "recovered": 7}
    (f,) = findings(facts([interval(i) for i in range(6)]), {**summary, "storms": [storm, short]})
    assert f.severity == "error"
    assert f.text.startswith("2 reconnect storms; the largest at 30 s: 2,000 connections lost")
    assert f.text.endswith("; 1 storm did not get every client back (storm 2: 7 of 10)")
    assert f.spans == ((30.0, 40.0), (50.0, 60.0))  # the open one lasts to the end
    # during a run: from the events; a storm still going is not judged yet
    evs = [
        {"t": 50.0, "event": "storm_start", "storm": 2, "lost": 10},
        {"t": 41.0, "event": "storm_end", **storm},
    ]
    (f,) = findings(facts([interval(i) for i in range(6)], evs))
    assert f.severity == "warning"
    assert f.text.startswith("2 reconnect storms")


def test_intermediaries_workers_and_permanent_failures_from_the_summary() -> None:
    summary = {
        "intermediaries": [
            {"closes": 40, "timeout_s": 7.0, "first_t_s": 7.1, "last_t_s": 60.2, "text": "an idle"}
        ],
        "workers": {"count": 2, "lost": [{"worker": 1, "why": "exited with code -9"}]},
        "totals": {"permanent_failure": {"error": "HTTP 401", "failures": 3}},
    }
    found = findings(facts([interval(0)]), summary)
    assert [(f.key, f.text) for f in found] == [
        ("intermediary:7s", "40 closes by an intermediary: an idle"),
        ("workers_lost", "1 tester worker process lost: worker 1 exited with code -9"),
        ("permanent_failure", "the target refused for good: HTTP 401; no client tries again"),
    ]
    assert found[0].spans == ((7.1, 60.2),)


def test_findings_can_be_asked_every_interval() -> None:
    """The live view's use: the same Facts, asked after each interval."""
    f = Facts(SETTINGS)
    seen = []
    for i in range(4):
        if i == 2:
            f.observe(false_timeout(21.0, 15.0, 1))
        f.interval(interval(i, false_timeouts=1 if i == 2 else 0))
        seen.append([x.key for x in findings(f)])
    assert seen == [[], [], ["false_timeouts"], ["false_timeouts"]]


def test_records_read_back_and_damage_is_skipped() -> None:
    f = Finding("storms", "warning", "a storm", "storms", 3, ((1.0, 2.5),))
    assert from_record(f.record()) == f
    assert from_record({**f.record(), "anchor": 7}) == f  # the kind's anchor
    bad: Any
    for bad in (None, [], {"key": "x"}, {**f.record(), "severity": "fatal"}):
        assert from_record(bad) is None
    odd = from_record({**f.record(), "spans": [[1, "x"], [2.0], [3.0, 4.0]], "count": True})
    assert odd is not None
    assert odd.spans == ((3.0, 4.0),)
    assert odd.count == 0


@pytest.mark.parametrize(
    ("code", "verdict", "count", "errors", "set_", "strict", "expected"),
    [
        (EXIT_OK, "passed", 0, [], False, False, (EXIT_OK, "passed")),
        (EXIT_OK, "passed", 0, [], False, True, (EXIT_OK, "passed")),
        (
            EXIT_OK,
            "passed",
            3,
            ["false_timeouts"],
            False,
            False,
            (EXIT_OK, "no thresholds set; 3 findings (1 error)"),
        ),
        (EXIT_OK, "passed", 1, [], True, True, (EXIT_OK, "passed; 1 finding")),
        (
            EXIT_OK,
            "passed",
            2,
            ["false_timeouts", "zombies"],
            True,
            True,
            (EXIT_THRESHOLDS, "strict: 2 findings (2 errors): false_timeouts, zombies"),
        ),
        (
            EXIT_THRESHOLDS,
            "thresholds failed: rtt_p99",
            2,
            ["zombies"],
            True,
            True,
            (EXIT_THRESHOLDS, "thresholds failed: rtt_p99"),
        ),
        (130, "interrupted (SIGINT)", 1, ["zombies"], True, True, (130, "interrupted (SIGINT)")),
    ],
)
def test_the_verdict_says_the_findings(
    code: int,
    verdict: str,
    count: int,
    errors: list[str],
    set_: bool,
    strict: bool,
    expected: tuple[int, str],
) -> None:
    assert with_findings(code, verdict, count, errors, thresholds_set=set_, strict=strict) == (
        expected
    )


def test_settle_writes_findings_and_fails_a_strict_run() -> None:
    f = facts([interval(0, false_timeouts=1)], [false_timeout(1.0, 15.0, 1)])
    summary: dict[str, Any] = {"exit_code": 0, "verdict": "passed", "passed": True}
    settle(summary, f, thresholds_set=False, strict=False)
    assert summary["findings"][0]["key"] == "false_timeouts"
    assert (summary["exit_code"], summary["passed"]) == (0, True)
    assert summary["verdict"] == "no thresholds set; 1 finding (1 error)"
    summary = {"exit_code": 0, "verdict": "passed", "passed": True}
    settle(summary, f, thresholds_set=False, strict=True)
    assert (summary["exit_code"], summary["passed"]) == (1, False)
    assert summary["verdict"] == "strict: 1 finding (1 error): false_timeouts"


BODY = """
[run]
label = "strict"
[[clients.stages]]
kind = "hold"
duration = "1m"
"""


def test_strict_in_the_profile_and_on_the_command_line() -> None:
    head = '[target]\nurl = "ws://127.0.0.1:9/ws"\n'
    assert not parse_profile(head + BODY, "p.toml", {}).strict
    p = parse_profile(head + BODY + "[thresholds]\nstrict = true\n", "p.toml", {})
    assert p.strict
    assert p.thresholds == ()
    assert override(parse_profile(head + BODY, "p.toml", {}), strict=True).strict
    with pytest.raises(ProfileError) as info:
        parse_profile(head + BODY + '[thresholds]\nstrict = "yes"\n', "p.toml", {})
    assert str(info.value) == 'p.toml: thresholds.strict: expected true or false, got "yes"'
    with pytest.raises(ProfileError) as info:
        parse_profile(head + BODY + "[thresholds]\nstrikt = true\n", "p.toml", {})
    assert "thresholds.strikt: unknown" in str(info.value)
    assert EXIT_USAGE == 2


INCIDENT = """
[run]
label = "incident"
report_interval = "10s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 20
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "2m"
[heartbeat]
interval = "10s"
timeout = "5s"
"""
SERVER = 'server_heartbeat = { interval = "10s", timeout = "15s", max_missed = 3 }\n'


@pytest.mark.parametrize("strict", [False, True])
async def test_the_incidents_gateway_leads_with_false_timeouts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, strict: bool
) -> None:
    """The incident's gateway (ignore-max-missed, one heartbeat dropped per
    connection), in memory: summary.json's first finding is the false
    timeouts, the verdict says there are findings, and only --strict fails."""
    gateway = Gateway(
        GatewayConfig(
            hb_interval=10.0,
            hb_timeout=15.0,
            max_missed=3,
            check_every=1.0,
            bugs=parse_bugs(["ignore-max-missed", "drop-heartbeat 1"]),
        )
    )
    profile = override(make_profile(INCIDENT, results=tmp_path, target_extra=SERVER), strict=strict)
    outcome, _ = await run_in_memory(profile, tmp_path, gateway_opener(gateway))
    s = outcome.summary
    n = s["totals"]["false_timeouts"]
    assert n >= 5
    first = s["findings"][0]
    assert first["key"] == "false_timeouts"
    assert first["severity"] == "error"
    assert first["text"].startswith(
        f"{n} false timeouts: the server's heartbeat check (4000 heartbeat_timeout) closed live "
        "connections "
    )
    assert "the server ignores max_missed" in first["text"]
    count = len(s["findings"])
    errors = sum(1 for f in s["findings"] if f["severity"] == "error")
    found = f"{count} finding{'s' if count > 1 else ''} ({errors} error{'s' if errors > 1 else ''})"
    if strict:
        assert outcome.exit_code == s["exit_code"] == EXIT_THRESHOLDS
        assert s["verdict"].startswith(f"strict: {found}: false_timeouts")
        assert s["passed"] is False
    else:
        assert outcome.exit_code == s["exit_code"] == EXIT_OK
        assert s["verdict"] == f"no thresholds set; {found}"


async def test_a_live_view_sees_the_false_timeouts_during_the_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Runner.findings_so_far, asked every interval as a live page would:
    nothing before the first false timeout, then the false timeouts first."""
    gateway = Gateway(
        GatewayConfig(
            hb_interval=10.0,
            hb_timeout=15.0,
            max_missed=3,
            check_every=1.0,
            bugs=parse_bugs(["ignore-max-missed", "drop-heartbeat 1"]),
        )
    )
    profile = make_profile(INCIDENT, results=tmp_path, target_extra=SERVER)
    seen: list[list[str]] = []

    async def watch(runner: Runner) -> None:
        # half-way through each interval (at a boundary, which task runs
        # first is trio's choice)
        await trio.sleep(5.0)
        for _ in range(12):
            seen.append([f.key for f in runner.findings_so_far()])
            await trio.sleep(10.0)

    outcome, _ = await run_in_memory(profile, tmp_path, gateway_opener(gateway), during=watch)
    assert seen[0] == []  # 5 s in: no interval has ended
    assert seen[-1][0] == "false_timeouts"
    first = next(i for i, keys in enumerate(seen) if "false_timeouts" in keys)
    assert first <= 3  # within an interval of the first ones (15 s after connecting)
    assert all(keys[0] == "false_timeouts" for keys in seen[first:])
    assert outcome.summary["findings"][0]["key"] == "false_timeouts"


async def test_the_fixed_gateway_has_no_finding(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gateway = Gateway(GatewayConfig(hb_interval=10.0, hb_timeout=15.0, check_every=1.0))
    profile = make_profile(INCIDENT, results=tmp_path, target_extra=SERVER)
    outcome, _ = await run_in_memory(profile, tmp_path, gateway_opener(gateway))
    assert outcome.summary["findings"] == []
    assert outcome.summary["verdict"] == "passed"


def test_close_signatures_stay_bounded() -> None:
    """A server whose close text varies per connection: the first
    MAX_SIGNATURES are kept apart, the rest counted together."""
    f = Facts(SETTINGS)
    for i in range(MAX_SIGNATURES + 30):
        ev = false_timeout(float(i), 15.0, 1)
        ev["text"] = f"timeout after {i}s" if i else "heartbeat_timeout"
        f.observe(ev)
        f.observe(false_timeout(float(i), 15.0, 1))
    assert len(f.ft_signatures) == MAX_SIGNATURES + 1
    assert f.ft_signatures["other signatures"] == 30
    (found,) = findings(f)
    assert found.text.startswith(
        f"{2 * MAX_SIGNATURES + 60} false timeouts: the server's heartbeat check "
        f"(4000 heartbeat_timeout, other signatures and {MAX_SIGNATURES - 1} more) closed"
    )
