"""Shards of a run over several machines (soak.run.shard) and soak merge
(soak.merge_shards, soak.merge_write): two and three shards under MockClock,
merged, equal the unsharded run exactly; a killed shard, a late one, a
mismatched one; the bad input of --shard, --start-at and soak merge."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from click.testing import CliRunner
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from soak.cli import cli
from soak.config.overrides import override
from soak.config.profile import Profile
from soak.config.stages import Ramp, Storm
from soak.errors import ProfileError
from soak.merge_shards import MergeError, plan
from soak.merge_write import merge
from soak.metrics import HISTOGRAMS
from soak.prom import recorded
from soak.recorder import Recorder
from soak.results.hlog import read
from soak.results.problems import Problems
from soak.run.runner import Runner
from soak.run.shard import (
    SHARD_JSON,
    STORM_INPUTS,
    Shard,
    begin,
    late_by,
    missed_planned,
    origin_monotonic,
    shard_profile,
    start_problem,
)
from soak.run.shard_clock import ClockState, clock_state, clock_warning
from soak.schedule import Schedule
from tests.support.runs import WALL0, make_profile, serving

SYNCED = ClockState(True, 0.002, 0.001, 0)

BODY = """
[run]
label = "sharded"
report_interval = "1s"
seed = 3
[clients]
max_connecting = 100
[[clients.stages]]
kind = "ramp"
to = 7
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "5500ms"
[heartbeat]
interval = "1s"
timeout = "2s"
phase = "aligned"
[reconnect]
jitter = "none"
[thresholds]
rtt_p99 = "5ms"
"""


async def seq_server(stream: trio.abc.Stream) -> None:
    """Answers ping ``seq`` after (1 + seq % 7) ms, so the RTTs are spread
    and the same for a client whichever shard runs it."""
    ws = WSConnection(ConnectionType.SERVER)

    async def later(data: bytes, delay: float) -> None:
        await trio.sleep(delay)
        if ws.state is ConnectionState.OPEN:
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                nursery.cancel_scope.cancel()
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    await stream.send_all(ws.send(AcceptConnection()))
                elif isinstance(event, TextMessage):
                    seq = json.loads(event.data)["seq"]
                    reply = ws.send(TextMessage(json.dumps({"type": "pong", "seq": seq})))
                    nursery.start_soon(later, reply, 0.001 * (1 + seq % 7))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    nursery.cancel_scope.cancel()
                    return


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat().replace("+00:00", "Z")


def sharded(profile: Profile, index: int, count: int, start_at: float = WALL0) -> Profile:
    return override(profile, shard=f"{index}/{count}", start_at=iso(start_at))


async def run_one(profile: Profile, tmp_path: Path) -> Path:
    recorder = Recorder(tmp_path / "one", profile.run.label, WALL0)
    async with trio.open_nursery() as servers:
        opener = serving(seq_server)(servers)
        runner = Runner(profile, recorder, open_stream=opener, lag_probe=None, manage_gc=False)
        await runner.run()
        servers.cancel_scope.cancel()
    return recorder.path


async def run_shards(
    profile: Profile,
    count: int,
    root: Path,
    *,
    start_at: float = WALL0,
    only: int | None = None,
) -> list[Path]:
    """The shards of ``profile`` in one event loop, each its own Runner and
    sink, all starting at this virtual instant (wall clock ``wall_now``)."""
    paths: list[Path] = []
    async with trio.open_nursery() as servers:
        opener = serving(seq_server)(servers)
        async with trio.open_nursery() as shards:
            for i in range(count) if only is None else [only]:
                start = begin(
                    override(sharded(profile, i, count, start_at), results_dir=str(root)),
                    wall_now=start_at,
                    mono_now=0.0,
                    clock=SYNCED,
                )
                paths.append(start.recorder.path)
                runner = Runner(
                    start.profile,
                    start.sink,
                    open_stream=opener,
                    storm_inputs=start.storm_inputs,
                    lag_probe=None,
                    manage_gc=False,
                )
                shards.start_soon(runner.run)
        servers.cancel_scope.cancel()
    return paths


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (path / "intervals.jsonl").read_text().splitlines()]


def histograms(path: Path, name: str) -> list[tuple[float, float, list[tuple[int, int]]]]:
    """Each interval's (value, count) pairs: every sub-bucket, every count
    (hdrh's own iterator is pure Python and slow, so soak.prom's numpy one)."""
    out = []
    for iv in read(path / f"{name}.hlog", Problems()):
        highest, _middle, counts = recorded(iv.hist)
        values = [(int(v), int(c)) for v, c in zip(highest, counts, strict=True)]
        out.append((iv.start, iv.length, values))
    return out


VARYING = {"rss_bytes"}


# slow: each run's summary.json takes hdrh ~0.3 s (soak.metrics.percentiles_ms)
@pytest.mark.slow
@pytest.mark.parametrize("count", [2, 3])
async def test_merged_shards_equal_the_unsharded_run_exactly(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, count: int
) -> None:
    profile = make_profile(BODY)
    one = await run_one(profile, tmp_path)
    shards = await run_shards(profile, count, tmp_path / "shards")
    assert len({p.parent for p in shards}) == 1  # one run directory holds them all
    merged = merge(plan([str(shards[0].parent)]), tmp_path / "merged")

    want, got = records(one), records(merged.path)
    assert len(got) == len(want) == 6
    for a, b in zip(want, got, strict=True):
        assert {k: v for k, v in a.items() if k not in VARYING} == {
            k: v for k, v in b.items() if k not in VARYING
        }
    assert sum(r["pongs"] for r in got) == 7 * 6  # pings at 0, 1, ... 5 s
    for name in HISTOGRAMS:
        assert histograms(merged.path, name) == histograms(one, name), name
    rtt = histograms(merged.path, "rtt")
    assert len({v for _s, _l, vals in rtt for v, _n in vals}) == 6  # seq 1..6: 2..7 ms

    s1 = json.loads((one / "summary.json").read_text())
    sm = json.loads((merged.path / "summary.json").read_text())
    for key in ("totals", "latency_ms", "thresholds", "exit_code", "verdict", "storms", "status"):
        assert sm[key] == s1[key], key
    assert sm["exit_code"] == 1  # rtt_p99 <= 5ms fails on the merged data, as unsharded
    assert sm["shards"]["count"] == count
    assert sm["shards"]["lost"] == []
    manifest = json.loads((merged.path / "run.json").read_text())
    assert manifest["label"] == "sharded"
    assert manifest["status"] == "completed"
    assert manifest["profile"]["clients"]["stages"][0]["to"] == 7  # the whole profile
    assert manifest["profile"]["run"]["shard"] is None

    # each shard deferred its verdict and ran its share, with its own ids
    for i, path in enumerate(sorted(shards)):
        summary = json.loads((path / "summary.json").read_text())
        assert summary["verdict"] == "deferred to soak merge"
        assert summary["exit_code"] == 0
        info = json.loads((path / SHARD_JSON).read_text())
        assert info["index"] == i
        assert info["count"] == count
        assert info["planned_clients"] == 7 // count + (1 if i < 7 % count else 0)
        assert (path / STORM_INPUTS).exists()


async def test_a_killed_shard_is_named_and_the_merge_goes_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(BODY)
    shards = await run_shards(profile, 2, tmp_path / "shards")
    killed = sorted(shards)[1]
    (killed / "summary.json").unlink()  # as SIGKILL leaves it
    lines = (killed / "intervals.jsonl").read_text().splitlines()
    (killed / "intervals.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    p = plan([str(killed.parent)])
    assert p.lost() == [f"shard 1: partial (no summary.json (killed?)) in {killed}"]
    merged = merge(p, tmp_path / "merged")
    s = merged.summary
    check = [c for c in s["thresholds"] if c["name"] == "shards_lost"]
    assert check
    assert not check[0]["ok"]
    assert "shard 1: partial" in check[0]["text"]
    assert s["exit_code"] == 1
    assert s["status"] == "partial"
    assert s["partial"]
    got = records(merged.path)
    assert len(got) == 6
    # shard 1 (3 clients) counts in the three intervals it wrote, not after
    assert [r["connected"] for r in got][:3] == [7, 7, 7]
    assert [r["connected"] for r in got][3:5] == [4, 4]
    assert any("intervals.jsonl: line 4" in x for x in merged.problems)


# slow: each run's summary.json takes hdrh ~0.3 s (soak.metrics.percentiles_ms)
@pytest.mark.slow
async def test_a_late_shard_joins_where_the_schedule_is(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(BODY)
    # shard 1 starts 2.5 s after the run's start (a pod scheduled late)
    start = begin(
        override(sharded(profile, 1, 2), results_dir=str(tmp_path)),
        wall_now=WALL0 + 2.5,
        mono_now=100.0,
        clock=SYNCED,
    )
    assert start.origin_monotonic == 97.5
    info = json.loads((start.recorder.path / SHARD_JSON).read_text())
    assert info["late_join_s"] == 2.5
    assert start.how() == " as shard 1 of 2, joining 2.5s late"
    async with trio.open_nursery() as servers:
        opener = serving(seq_server)(servers)
        runner = Runner(
            start.profile,
            start.sink,
            open_stream=opener,
            storm_inputs=start.storm_inputs,
            lag_probe=None,
            manage_gc=False,
            origin_monotonic=None,
        )
        # the run began 2.5 virtual seconds ago
        runner.origin_monotonic = None
        runner._origin = lambda: trio.current_time() - 2.5  # type: ignore[method-assign]
        await runner.run()
        servers.cancel_scope.cancel()
    got = records(start.recorder.path)
    assert [r["i"] for r in got] == [0, 1, 2, 3, 4, 5]  # the same intervals as every shard
    assert [r["connected"] for r in got[:2]] == [0, 0]  # missed, written empty
    assert got[2]["connected"] == 3  # joined at 2.5 s with its share
    assert sum(r["pongs"] for r in got) == 3 * 3  # heartbeats at 3, 4, 5 s
    summary = json.loads((start.recorder.path / "summary.json").read_text())
    assert summary["shard"]["late_join_s"] == 2.5
    assert info["missed_target_s"] == [3.0, 3.0, 1.5]  # its 3 clients, 2.5 s

    # merged with an on-time shard 0, the run planned what an unsharded run
    # plans, and the late shard's missed time counts against availability
    await run_shards(profile, 2, tmp_path, only=0)
    one = await run_one(profile, tmp_path)
    merged = merge(plan([str(start.recorder.path.parent)]), tmp_path / "merged")
    want, got = records(one), records(merged.path)
    assert [r["target_s"] for r in got] == [r["target_s"] for r in want]
    assert got[0]["connected_s"] == 4.0
    assert got[0]["availability"] == pytest.approx(4 / 7)
    assert merged.summary["availability"]["availability"] < 0.9


def test_missed_planned_client_seconds_are_pure() -> None:
    ramp = make_profile(BODY.replace('duration = "0s"', 'duration = "2s"'))
    schedule = Schedule(ramp.clients.stages)
    # 0 -> 7 clients over 2 s, then 7: joined 3.5 s late, intervals of 1 s
    got = missed_planned(schedule, 3.5, 1.0, ramp.duration)
    assert len(got) == 4
    assert got[2] == 7.0
    assert got[3] == 3.5
    assert 0 < got[0] < got[1] < 7.0
    assert missed_planned(schedule, 0.0, 1.0, ramp.duration) == []
    assert len(missed_planned(schedule, 1e9, 1.0, ramp.duration)) == 8  # never past the end


def test_start_times_are_pure() -> None:
    assert origin_monotonic(1000.0, 990.0, 50.0) == 60.0  # 10 s from now
    assert origin_monotonic(1000.0, 1003.0, 50.0) == 47.0  # 3 s ago
    assert late_by(1000.0, 990.0) == 0.0
    assert late_by(1000.0, 1003.5) == 3.5
    assert start_problem(1000.0, 1099.0, 100.0) is None
    problem = start_problem(WALL0, WALL0 + 3600, 60.0)
    assert problem is not None
    assert problem.startswith(f"--start-at {iso(WALL0)[:19]}")
    assert "expected a start less than 1m ago" in problem


def test_shard_profile_splits_and_keeps_the_parents_work_on_shard_0() -> None:
    body = (
        BODY
        + """
[target.stats]
url = "http://127.0.0.1:9/api/stats"
"""
    )
    body = body.replace(
        "[heartbeat]",
        '[[clients.stages]]\nkind = "storm"\ndrop = "50%"\ncommand = "true"\nduration = "1s"\n'
        "[heartbeat]",
    )
    whole = make_profile(body)
    parts = [shard_profile(whole, Shard(i, 3)) for i in range(3)]
    ramps = [p.clients.stages[0] for p in parts]
    assert [r.to for r in ramps if isinstance(r, Ramp)] == [3, 2, 2]
    assert [p.clients.client_id_prefix for p in parts] == ["soak-s0", "soak-s1", "soak-s2"]
    assert [p.run.seed for p in parts] == [3000, 3001, 3002]
    assert parts[0].target.stats is not None
    assert parts[1].target.stats is None
    storms = [p.clients.stages[2] for p in parts]
    assert [st.command for st in storms if isinstance(st, Storm)] == ["true", None, None]
    assert all(p.thresholds == () for p in parts)


def test_clock_state_and_warning() -> None:
    assert clock_state(0, 0, 5000, 100) == ClockState(True, 0.005, 0.0001, 0)
    unsynced = clock_state(5, 0x0040 | 0x0001, 16_000_000, 16_000_000)
    assert unsynced.synchronised is False
    warning = clock_warning(unsynced)
    assert warning is not None
    assert "not synchronised" in warning
    assert "16 s" in warning
    assert clock_warning(clock_state(0, 0, 5000, 100)) is None
    assert "max error is 0.5 s" in (clock_warning(clock_state(0, 0, 500_000, 0)) or "")
    assert "unknown" in (clock_warning(ClockState(None, error="no libc")) or "")


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--shard", "4/4", 'expected "I/N": shard I of N, I from 0 to N-1'),
        ("--shard", "x", 'expected "I/N"'),
        ("--shard", "0/0", 'expected "I/N"'),
        ("--start-at", "tomorrow", "expected a UTC instant with its offset"),
        ("--start-at", "2026-12-03T12:05:00", "expected a UTC instant with its offset"),
        ("--metrics-port", "70000", "expected a TCP port from 0 to 65535"),
    ],
)
def test_bad_shard_options_are_one_line(option: str, value: str, expected: str) -> None:
    profile = make_profile(BODY)
    with pytest.raises(ProfileError) as err:
        override(profile, **{option[2:].replace("-", "_"): value})  # type: ignore[arg-type]
    text = str(err.value)
    assert text.startswith(f"{option}: {expected}")
    assert value in text
    assert "\n" not in text


def test_cli_shard_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[target]\nurl = "ws://127.0.0.1:9/ws"\n' + BODY)
    runner = CliRunner()
    res = runner.invoke(cli, ["run", str(path), "--shard", "4/4", "--results-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        'Error: --shard: expected "I/N": shard I of N, I from 0 to N-1, N from 1 to 10000 '
        '(e.g. "0/4"), got "4/4"'
    ]
    res = runner.invoke(cli, ["run", str(path), "--shard", "1/2", "--results-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "expected --start-at TIME too" in res.output
    res = runner.invoke(
        cli,
        [
            "run",
            str(path),
            "--shard=0/2",
            "--start-at=2020-01-01T00:00:00Z",
            "--results-dir",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 2
    assert "--start-at 2020-01-01T00:00:00.000+00:00: a run of 5.5s from then ended" in res.output
    assert "Traceback" not in res.output
    assert not list(tmp_path.glob("*/"))


# slow: each run's summary.json takes hdrh ~0.3 s (soak.metrics.percentiles_ms)
@pytest.mark.slow
async def test_merge_bad_input(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(MergeError, match="not a directory"):
        plan([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MergeError, match="no shard results here"):
        plan([str(tmp_path / "empty")])
    profile = make_profile(BODY)
    a = await run_shards(profile, 2, tmp_path / "a")
    # a shard of another profile, and one of another start, in one merge
    other = make_profile(BODY.replace("to = 7", "to = 9"))
    b = await run_shards(other, 2, tmp_path / "b", only=1)
    c = await run_shards(profile, 2, tmp_path / "c", start_at=WALL0 + 60, only=1)
    p = plan([str(a[0]), str(c[0])])
    assert p.rejected == [
        f"{c[0]}: start_at {iso(WALL0 + 60)[:19]}.000+00:00 (expected "
        f"{iso(WALL0)[:19]}.000+00:00, as {a[0]})"
    ]
    p = plan([str(a[0]), str(b[0])])
    assert len(p.rejected) == 1
    assert p.rejected[0].startswith(f"{b[0]}: profile ")
    assert "(expected shards of one profile)" in p.rejected[0]
    assert p.lost() == ["shard 1: missing"]
    runner = CliRunner()
    res = runner.invoke(cli, ["merge", str(a[0]), str(b[0]), "--results-dir", str(tmp_path / "m")])
    assert res.exit_code == 1, res.output
    assert "expected shards of one profile" in res.output
    assert "FAIL shards_lost == 0: shard 1: missing" in res.output
    res = runner.invoke(cli, ["merge", str(tmp_path / "empty")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: {tmp_path / 'empty'}: no shard results here (no shard.json in it or its "
        "subdirectories); expected directories written by soak run --shard"
    ]
    broken = tmp_path / "broken"
    shutil.copytree(a[0], broken)
    (broken / SHARD_JSON).write_text("{")
    res = runner.invoke(cli, ["merge", str(broken)])
    assert res.exit_code == 2
    assert "shard.json: unreadable" in res.output


STORM = """
[run]
label = "storm"
report_interval = "1s"
seed = 5
[clients]
max_connecting = 100
[[clients.stages]]
kind = "ramp"
to = 12
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "2s"
[[clients.stages]]
kind = "storm"
drop = "100%"
duration = "4s"
[heartbeat]
interval = "1s"
timeout = "2s"
phase = "aligned"
[reconnect]
jitter = "none"
initial_delay = "200ms"
[storms]
min_losses = 10
window = "1s"
"""


# slow: each run's summary.json takes hdrh ~0.3 s (soak.metrics.percentiles_ms)
@pytest.mark.slow
async def test_a_storm_of_three_losses_per_shard_on_four_shards_is_one_storm(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(STORM)
    one = await run_one(profile, tmp_path)
    shards = await run_shards(profile, 4, tmp_path / "shards")
    for path in shards:
        inputs = (path / STORM_INPUTS).read_text().splitlines()
        assert sum(json.loads(x)[0] == "lost" for x in inputs) == 3  # each below min_losses
    merged = merge(plan([str(shards[0].parent)]), tmp_path / "merged")
    (storm,) = merged.summary["storms"]
    (want,) = json.loads((one / "summary.json").read_text())["storms"]
    assert want["lost"] == 12
    # detected and measured as the unsharded run's (times to float rounding)
    assert storm.pop("recovery_s") == pytest.approx(want.pop("recovery_s"))
    assert storm == want
    events = [json.loads(x) for x in (merged.path / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("storm_start") == 1
    assert [e["event"] for e in events].count("storm_stage") == 1  # once, not per shard
    assert (merged.path / "storms.jsonl").exists()


# slow: each run's summary.json takes hdrh ~0.3 s (soak.metrics.percentiles_ms)
@pytest.mark.slow
async def test_a_worker_lost_inside_a_shard_fails_the_merged_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(BODY.replace('rtt_p99 = "5ms"', 'rtt_p99 = "1s"'))
    shards = await run_shards(profile, 2, tmp_path / "shards")
    path = sorted(shards)[1]
    summary = json.loads((path / "summary.json").read_text())
    assert summary["exit_code"] == 0  # a shard defers its verdict
    summary["thresholds"].append(
        {
            "name": "workers_lost",
            "limit": "0",
            "value": "1",
            "ok": False,
            "op": "==",
            "text": "FAIL workers_lost == 0: worker 1 exited with code -9 before its last report",
        }
    )
    (path / "summary.json").write_text(json.dumps(summary))
    merged = merge(plan([str(path.parent)]), tmp_path / "merged")
    failed = [c for c in merged.summary["thresholds"] if not c["ok"]]
    assert [c["text"] for c in failed] == [
        "FAIL workers_lost == 0: shard 1: worker 1 exited with code -9 before its last report"
    ]
    assert merged.summary["exit_code"] == 1


# slow: each run's summary.json takes hdrh ~0.3 s (soak.metrics.percentiles_ms)
@pytest.mark.slow
async def test_the_server_count_gap_is_against_every_shards_clients(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(BODY)
    shards = sorted(await run_shards(profile, 2, tmp_path / "shards"))
    # as if shard 0 had polled a server that counts 7 (shard 0: 4 clients, shard 1: 3)
    path = shards[0] / "intervals.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    for r in recs:
        r.update(
            server_connections=7,
            client_connections=r["connected"],
            connection_gap=7 - r["connected"],
            stats_warning=None,
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    merged = merge(plan([str(shards[0].parent)]), tmp_path / "merged")
    got = records(merged.path)
    assert [r["client_connections"] for r in got[:5]] == [7] * 5
    assert [r["connection_gap"] for r in got[:5]] == [0] * 5  # not 3: shard 1's count too
    assert got[5]["connection_gap"] == 7  # the end: every client closed, the server says 7
    assert merged.summary["reconcile"]["max_gap"] == 7


def test_shard_and_start_at_in_the_profile() -> None:
    p = make_profile(
        BODY.replace("[run]\n", '[run]\nshard = "1/3"\nstart_at = 2026-12-03T12:05:00Z\n')
    )
    assert p.run.shard == "1/3"
    assert p.run.start_at == 1796299500.0
    same = make_profile(BODY.replace("[run]\n", '[run]\nstart_at = "2026-12-03T13:05:00+01:00"\n'))
    assert same.run.start_at == 1796299500.0
    with pytest.raises(ProfileError) as err:
        make_profile(BODY.replace("[run]\n", "[run]\nstart_at = 2026-12-03T12:05:00\n"))
    assert str(err.value) == (
        "test.toml: run.start_at: expected a UTC instant with its offset, like "
        '2026-12-03T12:05:00Z, got "2026-12-03 12:05:00"'
    )
    with pytest.raises(ProfileError, match=r'run\.shard: expected "I/N"'):
        make_profile(BODY.replace("[run]\n", "[run]\nshard = 3\n"))


# slow: each run's summary.json takes hdrh ~0.3 s (soak.metrics.percentiles_ms)
@pytest.mark.slow
async def test_a_replacement_shard_adds_to_the_first_attempt_without_planning_twice(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(BODY)
    root = tmp_path / "shards"
    await run_shards(profile, 2, root, only=0)
    (first,) = await run_shards(profile, 2, root, only=1)
    # the first attempt of shard 1 died after 3 intervals
    (first / "summary.json").unlink()
    lines = (first / "intervals.jsonl").read_text().splitlines()
    (first / "intervals.jsonl").write_text("\n".join(lines[:3]) + "\n")
    # its replacement starts 3.5 s into the run, in a directory of its own
    start = begin(
        override(sharded(profile, 1, 2), results_dir=str(root)),
        wall_now=WALL0 + 3.5,
        mono_now=0.0,
        clock=SYNCED,
    )
    assert start.recorder.path.name == first.name + ".2"
    async with trio.open_nursery() as servers:
        runner = Runner(
            start.profile,
            start.sink,
            open_stream=serving(seq_server)(servers),
            storm_inputs=start.storm_inputs,
            lag_probe=None,
            manage_gc=False,
        )
        runner._origin = lambda: trio.current_time() - 3.5  # type: ignore[method-assign]
        await runner.run()
        servers.cancel_scope.cancel()
    one = await run_one(profile, tmp_path)
    p = plan([str(root / first.parent.name)])
    assert p.lost() == []  # the replacement completed shard 1
    assert p.record()["attempts"] == {"0": 1, "1": 2}
    merged = merge(p, tmp_path / "merged")
    want, got = records(one), records(merged.path)
    assert [r["target_s"] for r in got] == [r["target_s"] for r in want]
    # shard 1 was gone from 3 s to 3.5 s: half of its 3 clients' planned second
    assert [r["connected_s"] for r in got][:5] == [7.0, 7.0, 7.0, 5.5, 7.0]
    assert merged.summary["status"] == "completed"
