"""A full disk loses nothing measured (issue 24): when a results write
fails the load goes on, intervals and events are held in memory (bounded
and counted), every interval tries again, the backlog is written once
space returns, and a run that ends with the disk still full says what is
missing and exits with EXIT_RESULTS. Never a half line on disk."""

from __future__ import annotations

import errno
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from soak.gateway import Gateway, GatewayConfig
from soak.live import LiveView
from soak.metrics import HISTOGRAMS, new_histogram
from soak.recorder import Recorder
from soak.results.backlog import Backlog
from soak.results.reader import load_run
from soak.results.writer import RunWriter
from soak.run.runner import Runner
from soak.summary import EXIT_OK, EXIT_RESULTS
from tests.support.disk import FailingDisk
from tests.support.runs import WALL0, gateway_opener, make_profile, run_in_memory

BODY = """
[run]
label = "disk"
report_interval = "1s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 3
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "20s"
[heartbeat]
interval = "1s"
timeout = "1s"
max_missed = 3
phase = "aligned"
"""


def lines(path: Path) -> list[str]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path.name} ends in a half line"
    return text.splitlines()


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in lines(path)]


def hlog_lines(path: Path) -> list[str]:
    return [x for x in lines(path) if not x.startswith(("#", '"'))]


async def run_with(
    tmp_path: Path,
    disk: FailingDisk,
    during: Any,
    *,
    max_held_bytes: int = 64 << 20,
) -> tuple[Any, Path, Recorder]:
    profile = make_profile(BODY, results=tmp_path)
    recorder = Recorder(tmp_path, "disk", WALL0, disk=disk, max_held_bytes=max_held_bytes)
    gateway = Gateway(GatewayConfig())
    outcome, path = await run_in_memory(
        profile, tmp_path, gateway_opener(gateway), during=during, recorder=recorder
    )
    return outcome, path, recorder


def full_between(disk: FailingDisk, start: float, end: float | None) -> Any:
    async def during(runner: Runner) -> None:
        await trio.sleep(start)
        disk.full()
        if end is not None:
            await trio.sleep(end - start)
            disk.free()

    return during


async def test_the_backlog_is_written_once_space_returns(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    disk = FailingDisk()
    outcome, path, recorder = await run_with(tmp_path, disk, full_between(disk, 4.5, 12.5))
    assert disk.failures >= 8  # every interval from 5 s to 12 s tried and failed
    assert outcome.exit_code == EXIT_OK, outcome.summary["verdict"]
    ivs = records(path / "intervals.jsonl")
    # every interval, once each, in order
    assert [r["i"] for r in ivs] == list(range(len(ivs)))
    assert len(ivs) == outcome.summary["intervals"] >= 20
    assert sum(r["pongs"] for r in ivs) == outcome.summary["totals"]["pongs"] > 50
    for h in HISTOGRAMS:
        assert len(hlog_lines(path / f"{h}.hlog")) == len(ivs)
    evs = records(path / "events.jsonl")
    failed = [e for e in evs if e["event"] == "results_write_failed"]
    back = [e for e in evs if e["event"] == "results_write_recovered"]
    assert len(failed) == len(back) == 1
    assert failed[0]["t"] == 5.0
    assert "ENOSPC" in failed[0]["error"]
    assert back[0]["t"] == 13.0
    assert back[0]["failed_at"] == 5.0
    assert back[0]["intervals_written"] == 9  # intervals 4..12 (5 s to 13 s)
    assert back[0]["attempts"] >= 8
    results = outcome.summary["results"]
    assert results["complete"] is True
    assert results["missing"] == []
    assert results["held_max_intervals"] == 8
    assert results["intervals_lost"] == 0
    assert recorder.missing() == []
    assert recorder.health() is None
    summary = json.loads((path / "summary.json").read_text())
    assert summary["results"]["complete"] is True
    assert len(load_run(path).intervals) == len(ivs)


async def test_a_run_that_ends_with_the_disk_full_says_what_is_missing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    disk = FailingDisk()
    outcome, path, recorder = await run_with(tmp_path, disk, full_between(disk, 6.5, None))
    assert outcome.exit_code == EXIT_RESULTS
    assert outcome.summary["verdict"].startswith("results incomplete: intervals 6-19 (6s to 20s")
    assert outcome.summary["verdict"].endswith("; the run: passed")
    missing = recorder.missing()
    assert missing[0].startswith("intervals 6-19 (6s to 20s into the run), 14 intervals")
    assert "held in memory, never written: No space left on device (ENOSPC)" in missing[0]
    assert any(m.startswith("summary.json: its last version is not written") for m in missing)
    assert any(m.startswith("run.json: its last version is not written") for m in missing)
    # what is on disk is whole: six intervals, whole lines, no summary
    ivs = records(path / "intervals.jsonl")
    assert [r["i"] for r in ivs] == [0, 1, 2, 3, 4, 5]
    for h in HISTOGRAMS:
        assert len(hlog_lines(path / f"{h}.hlog")) == 6
    records(path / "events.jsonl")
    assert not (path / "summary.json").exists()
    assert sorted(p.name for p in path.iterdir() if p.suffix == ".tmp") == []
    assert json.loads((path / "run.json").read_text())["status"] == "running"
    # soak report reads what is there
    run = load_run(path)
    assert len(run.intervals) == 6


async def test_the_held_backlog_is_bounded_and_what_it_dropped_is_counted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    disk = FailingDisk()
    # room for about three intervals
    outcome, path, _recorder = await run_with(
        tmp_path, disk, full_between(disk, 4.5, 12.5), max_held_bytes=3_000
    )
    results = outcome.summary["results"]
    assert results["intervals_lost"] >= 3
    assert outcome.exit_code == EXIT_RESULTS
    missing = results["missing"]
    assert any("dropped, the 2.9 KiB held in memory was full" in m for m in missing)
    ivs = records(path / "intervals.jsonl")
    got = [r["i"] for r in ivs]
    assert got == sorted(got)
    assert len(set(got)) == len(got)
    assert len(got) + results["intervals_lost"] == outcome.summary["intervals"]
    summary = json.loads((path / "summary.json").read_text())
    assert summary["exit_code"] == EXIT_RESULTS
    assert summary["results"]["complete"] is False
    back = [e for e in records(path / "events.jsonl") if e["event"] == "results_write_recovered"]
    assert back[0]["intervals_lost"] == results["intervals_lost"]


async def test_a_removed_results_directory_is_made_again_with_everything(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def during(runner: Runner) -> None:
        await trio.sleep(5.5)
        (run_dir,) = tmp_path.iterdir()
        shutil.rmtree(run_dir)

    outcome, path, _recorder = await run_with(tmp_path, FailingDisk(), during)
    assert outcome.exit_code == EXIT_OK, outcome.summary["verdict"]
    ivs = records(path / "intervals.jsonl")
    assert [r["i"] for r in ivs] == list(range(outcome.summary["intervals"]))
    for h in HISTOGRAMS:
        text = (path / f"{h}.hlog").read_text()
        assert text.startswith("#[Histogram log format version 1.3]")
        assert len(hlog_lines(path / f"{h}.hlog")) == len(ivs)
    assert json.loads((path / "run.json").read_text())["status"] == "completed"
    evs = records(path / "events.jsonl")
    (restored,) = [e for e in evs if e["event"].startswith("results_")]
    assert restored["event"] == "results_restored"
    assert restored["t"] == 6.0
    assert "removed" in restored["why"]


@pytest.mark.parametrize(
    ("error", "says"), [(errno.ENOSPC, "No space left"), (errno.EIO, "Input/output error")]
)
def test_an_interval_is_written_to_every_file_or_to_none(
    tmp_path: Path, error: int, says: str
) -> None:
    disk = FailingDisk()
    w = RunWriter(tmp_path, "x", WALL0, ("rtt", "lag"), disk)
    h = new_histogram()
    h.record_value(1500)
    hists = {"rtt": h, "lag": h}
    w.append_interval(0.0, 1.0, hists, ['{"event":"a"}'], {"i": 0})
    before = {p.name: p.read_bytes() for p in w.path.iterdir()}
    disk.error = error
    for _ in range(3):  # the first write lands half its bytes, the next fails
        with pytest.raises(OSError, match=says) as caught:
            w.append_interval(1.0, 2.0, hists, ['{"event":"b"}'], {"i": 1})
        assert caught.value.errno == error
        assert {p.name: p.read_bytes() for p in w.path.iterdir()} == before
    disk.free()
    w.append_interval(1.0, 2.0, hists, ['{"event":"b"}'], {"i": 1})
    assert [json.loads(x)["i"] for x in lines(w.path / "intervals.jsonl")] == [0, 1]
    assert len(hlog_lines(w.path / "rtt.hlog")) == 2
    w.close()


def test_a_document_that_cannot_be_written_leaves_the_old_one_and_no_temp_file(
    tmp_path: Path,
) -> None:
    disk = FailingDisk()
    w = RunWriter(tmp_path, "x", WALL0, ("rtt",), disk)
    w.write_document("run.json", {"status": "running"})
    disk.full()
    with pytest.raises(OSError, match="No space left"):
        w.write_document("run.json", {"status": "completed", "pad": "x" * 10_000})
    assert json.loads((w.path / "run.json").read_text()) == {"status": "running"}
    assert not list(w.path.glob("*.tmp"))
    w.close()


def chunk_of(record: dict[str, Any]) -> Any:
    """A stand-in for RunWriter.chunk: 100 bytes per event plus the record."""

    def make(events: list[str]) -> dict[str, bytes]:
        return {"events": b"e" * 100 * len(events), "intervals": json.dumps(record).encode()}

    return make


def test_the_backlog_drops_events_first_then_intervals_and_counts_both() -> None:
    b = Backlog(limit=1_000)
    rec0: dict[str, Any] = {"events_dropped": 0}
    b.hold(0, 0.0, 1.0, ["x"] * 5, rec0, chunk_of(rec0))  # nothing held: always taken
    assert b.failed(1.0, "No space left on device (ENOSPC)") is not None
    assert b.failed(2.0, "No space left on device (ENOSPC)") is None  # the same failure
    rec1: dict[str, Any] = {"events_dropped": 2}
    b.hold(1, 1.0, 2.0, ["x"] * 6, rec1, chunk_of(rec1))  # over: its events go
    assert rec1["events_dropped"] == 8
    assert b.lost_events == 6
    assert len(b.held) == 2
    rec2: dict[str, Any] = {"events_dropped": 0, "pad": "p" * 1_000}
    b.hold(2, 2.0, 3.0, [], rec2, chunk_of(rec2))  # over even without events: dropped
    rec3: dict[str, Any] = {"events_dropped": 0, "pad": "p" * 1_000}
    b.hold(3, 3.0, 4.0, [], rec3, chunk_of(rec3))
    assert [h.index for h in b.lost] == [2, 3]
    assert b.missing() == [
        "intervals 0-1 (0s to 2s into the run), 2 intervals with 5 events: held in memory, "
        "never written: No space left on device (ENOSPC)",
        "intervals 2-3 (2s to 4s into the run): dropped, the 1.0 KiB held in memory was full",
        "6 events: dropped, the 1.0 KiB held in memory was full",
    ]
    health = b.health()
    assert health is not None
    assert health.startswith("results NOT WRITTEN since 1s")
    written: list[dict[str, bytes]] = []
    b.write(written.append)
    assert len(written) == 2
    assert b.bytes == 0
    ev = b.recovered(5.0)
    assert ev is not None
    assert (ev["failed_at"], ev["attempts"], ev["intervals_written"]) == (1.0, 2, 2)
    assert (ev["intervals_lost"], ev["events_lost"]) == (2, 6)
    assert b.recovered(6.0) is None  # once
    assert b.counts()["write_failures"] == 2


def test_the_live_view_shows_the_failure(tmp_path: Path) -> None:
    disk = FailingDisk()
    rec = Recorder(tmp_path, "live", WALL0, disk=disk)
    out = io.StringIO()
    view = LiveView(out, tty=False, results=rec.health)
    record = {
        "t": 0.0, "dt": 1.0, "connected": 1, "target": 1, "pings": 1, "pongs": 1,
        "missed": 0, "late": 0, "zombies": 0, "false_timeouts": 0, "closes": {},
        "reconnects": 0, "handshake_failures": {},
    }  # fmt: skip
    view.interval(record)
    assert "WARNING" not in out.getvalue()
    disk.full()
    rec.write_json("run.json", {"status": "running"})
    view.interval(record)
    assert "WARNING results NOT WRITTEN since 0s: No space left on device (ENOSPC)" in (
        out.getvalue()
    )
    rec.close()
