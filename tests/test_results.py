"""soak.results: the writer and the tolerant reader of a results directory."""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from soak.errors import ResultsError
from soak.metrics import HISTOGRAMS, new_histogram
from soak.recorder import Recorder
from soak.results import hlog, jsonl
from soak.results.names import EVENTS, INTERVALS, RUN_JSON, hlog_name
from soak.results.problems import MAX_MESSAGES_PER_FILE, Problems
from soak.results.reader import RunError, load_run
from soak.results.writer import RunWriter

WALL0 = 1_795_564_800.0  # 2026-11-25T00:00:00Z


def hist(*values: int) -> HdrHistogram:
    h = new_histogram()
    for v in values:
        assert h.record_value(v)
    return h


def write_run(root: Path, intervals: int = 3) -> Path:
    """A run of ``intervals`` intervals of 10 s, written by the writer: RTT
    samples 1..100 us times the interval's number, one event each."""
    w = RunWriter(root, "rt", WALL0, HISTOGRAMS)
    w.write_document(RUN_JSON, {"tool": "soak", "label": "rt", "status": "completed"})
    for i in range(intervals):
        hists = {h: hist(*(v * (i + 1) for v in range(1, 101))) for h in HISTOGRAMS}
        events = [jsonl.dumps({"t": 10.0 * i + 1, "event": "close", "client": f"c{i}"})]
        w.append_interval(10.0 * i, 10.0 * (i + 1), hists, events, {"i": i, "t": 10.0 * i})
    w.close()
    return w.path


def test_what_the_writer_writes_the_reader_reads(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    assert path.name == "20261125T000000Z-rt"
    run = load_run(path)
    assert run.problems == []
    assert run.intervals == [{"i": i, "t": 10.0 * i} for i in range(3)]
    assert [e["client"] for e in run.events()] == ["c0", "c1", "c2"]
    for name in HISTOGRAMS:
        ivs = run.histograms(name)
        assert [(iv.start, iv.length) for iv in ivs] == [(0.0, 10.0), (10.0, 10.0), (20.0, 10.0)]
        assert [iv.hist.get_max_value() for iv in ivs] == [100, 200, 300]
        assert run.merged(name).get_total_count() == 300
    assert run.problems == []
    assert sum(run.skipped.values()) == 0


def test_the_hlog_is_standard(tmp_path: Path) -> None:
    """hdrh's own reader agrees: absolute start times (StartTime + offset)
    and the same histograms."""
    path = write_run(tmp_path)
    reader = HistogramLogReader(str(path / hlog_name("rtt")), new_histogram())
    starts, maxes = [], []
    while (h := reader.get_next_interval_histogram()) is not None:
        starts.append(h.get_start_time_stamp() / 1000 - WALL0)
        maxes.append(h.get_max_value())
    assert starts == pytest.approx([0.0, 10.0, 20.0])
    assert maxes == [100, 200, 300]
    text = (path / "rtt.hlog").read_text()
    assert text.startswith(
        "#[Histogram log format version 1.3]\n"
        "#[soak histogram 'rtt', values in microseconds]\n"
        "#[StartTime: 1795564800.000 (seconds since epoch), 2026-11-25T00:00:00.000+00:00]\n"
        "#[BaseTime: 1795564800.000 (seconds since epoch)]\n"
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'
        "0.000,10.000,0.100,HISTFAA"
    )


def test_json_files_are_compact_lines_and_indented_documents(tmp_path: Path) -> None:
    path = write_run(tmp_path, intervals=1)
    assert (path / INTERVALS).read_text() == '{"i":0,"t":0.0}\n'
    assert (path / EVENTS).read_text() == '{"t":1.0,"event":"close","client":"c0"}\n'
    assert (path / RUN_JSON).read_text() == json.dumps(
        {"tool": "soak", "label": "rt", "status": "completed"}, indent=2
    ) + "\n"
    assert not list(path.glob("*.tmp"))


def test_a_second_run_in_the_same_second_gets_its_own_directory(tmp_path: Path) -> None:
    one = RunWriter(tmp_path, "rt", WALL0, ("rtt",))
    two = RunWriter(tmp_path, "rt", WALL0, ("rtt",))
    assert two.path.name == one.path.name + ".2"


def test_an_unwritable_results_directory_is_a_results_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsError, match="cannot write results here"):
        Recorder(tmp_path / "file" / "results", "rt", WALL0)


def test_recorder_caps_the_events_of_one_interval(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "rt", WALL0)
    rec.max_events = 2
    for n in range(5):
        rec.event({"t": 1.0, "event": "close", "n": n})
    assert rec.events_dropped == 3
    lines = (rec.path / EVENTS).read_text()
    assert lines == ""  # nothing is written before the interval ends
    rec.close()


# -- the tolerant reader ------------------------------------------------------------


def test_a_torn_last_line_is_skipped_and_said(tmp_path: Path) -> None:
    """A run killed while writing: the last line of intervals.jsonl and of
    rtt.hlog are cut short, without their newline."""
    path = write_run(tmp_path)
    for name in (INTERVALS, hlog_name("rtt")):
        text = (path / name).read_text()
        last = text.splitlines()[-1]
        (path / name).write_text(text + last[: len(last) // 2])
    run = load_run(path)
    assert len(run.intervals) == 3
    assert len(run.histograms("rtt")) == 3
    torn = "(the last line, cut short: the run stopped while writing it), skipped"
    assert run.problems == [
        f"{path / INTERVALS}: line 4: not JSON {torn}",
        f"{path / 'rtt.hlog'}: line 9: corrupt histogram {torn}",
    ]
    assert run.skipped == {INTERVALS: 1, "rtt.hlog": 1}


def test_garbage_hlog_lines_are_counted_and_reported(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    hl = path / hlog_name("lag")
    lines = hl.read_text().splitlines(keepends=True)
    lines[5] = "garbage\n"  # interval 0: not a line at all
    lines[6] = lines[6][:30] + "!!!\n"  # interval 1: a torn payload
    lines.insert(7, "1.0,x,2.0,HISTFAA\n")  # a start that is not a number
    hl.write_text("".join(lines))
    run = load_run(path)
    kept = run.histograms("lag")
    assert [iv.start for iv in kept] == [20.0]
    assert run.skipped["lag.hlog"] == 3
    assert run.problems == [f"{hl}: line {n}: corrupt histogram, skipped" for n in (6, 7, 8)]
    # the other histograms are whole
    assert len(run.histograms("rtt")) == 3


def test_missing_files_are_said(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    for name in (INTERVALS, EVENTS, hlog_name("connect")):
        (path / name).unlink()
    run = load_run(path)
    assert run.intervals == []
    assert list(run.events()) == []
    assert run.histograms("connect") == []
    assert run.merged("connect").get_total_count() == 0
    assert run.problems[:3] == [
        f"{path / INTERVALS}: missing",
        f"{path / EVENTS}: missing",
        f"{path / 'connect.hlog'}: missing",
    ]
    assert run.damage.missing[:3] == [INTERVALS, EVENTS, "connect.hlog"]
    assert run.partial  # no summary.json


def test_a_corrupt_summary_is_ignored_and_said(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    (path / "summary.json").write_text('{"status": "compl')
    run = load_run(path)
    assert run.summary is None
    assert run.problems == [f"{path / 'summary.json'}: unreadable, ignored"]


def test_bytes_that_are_not_utf8_are_a_skipped_line(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    with open(path / INTERVALS, "ab") as f:
        f.write(b"\xff\xfe{}\n")
        f.write(b'{"i": 9}\n')
    run = load_run(path)
    assert [r["i"] for r in run.intervals] == [0, 1, 2, 9]
    assert run.problems == [f"{path / INTERVALS}: line 4: not JSON, skipped"]


def test_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a directory"):
        load_run(tmp_path / "nothing")
    with pytest.raises(RunError, match=r"no run\.json"):
        load_run(tmp_path)


def test_an_hlog_entry_decodes_through_the_acyclic_path(tmp_path: Path) -> None:
    """The reader decodes with soak.metrics.decode_histogram: the encoder's
    reference back to its histogram is weak (see metrics._acyclic)."""
    path = write_run(tmp_path, intervals=1)
    problems = Problems()
    (entry,) = hlog.read_entries(path / "rtt.hlog", problems)
    assert entry.max_ms == 0.1
    h = entry.decode()
    assert h is not None
    assert isinstance(h.encoder.histogram, weakref.ProxyType)
    (iv,) = hlog.read(path / "rtt.hlog", problems)
    assert isinstance(iv.hist.encoder.histogram, weakref.ProxyType)
    assert problems.lines == []


def test_parse_entry() -> None:
    assert hlog.parse_entry("Tag=a,1.5,10.000,2.000,HIST") == hlog.HlogEntry(1.5, 10.0, 2.0, "HIST")
    assert hlog.parse_entry("1.5,10.000,?,HIST") == hlog.HlogEntry(1.5, 10.0, None, "HIST")
    assert hlog.parse_entry("1.5,10.000,HIST") is None
    assert hlog.parse_entry("a,10.000,1,HIST") is None


def test_a_file_of_garbage_is_counted_not_listed_line_by_line(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    with open(path / INTERVALS, "a") as f:
        f.write("garbage\n" * (MAX_MESSAGES_PER_FILE + 30))
    run = load_run(path)
    assert len(run.intervals) == 3
    assert run.skipped[INTERVALS] == MAX_MESSAGES_PER_FILE + 30
    assert len(run.problems) == MAX_MESSAGES_PER_FILE + 1
    assert run.problems[0] == f"{path / INTERVALS}: line 4: not JSON, skipped"
    last = 3 + MAX_MESSAGES_PER_FILE + 30
    assert run.problems[-1] == (
        f"{path / INTERVALS}: 30 more damaged line(s) skipped, the last: line {last}"
    )
