"""The HdrHistogram log files (soak.results.hlog): one interval a line,
read back line by line whatever damage a file took. Pure, under tmp_path."""

from __future__ import annotations

from pathlib import Path

from soak.metrics import new_histogram
from soak.results.hlog import line, read_entries
from soak.results.problems import Problems


def test_a_line_gives_the_intervals_max_in_milliseconds(tmp_path: Path) -> None:
    h = new_histogram()
    h.record_value(1_234)  # us
    h.record_value(900)
    text = line(10.0, 1.0, h)
    start, length, max_ms, _payload = text.rstrip("\n").split(",")
    assert (start, length) == ("10.000", "1.000")
    assert max_ms == f"{h.get_max_value() / 1000.0:.3f}"
    assert max_ms.startswith("1.23")
    path = tmp_path / "rtt.hlog"
    path.write_text(text)
    [entry] = read_entries(path, Problems(), decode=True)
    decoded = entry.decode()
    assert decoded is not None
    assert decoded.get_total_count() == 2


def test_lines_are_not_decoded_unless_asked(tmp_path: Path) -> None:
    """A line whose payload does not decode is an interval to a reader that
    does not need its histogram, and skipped (and said) by one that does."""
    path = tmp_path / "rtt.hlog"
    path.write_text("#[header]\n0.000,1.000,2.000,not-a-histogram\n")
    lazy = Problems()
    assert [e.start for e in read_entries(path, lazy)] == [0.0]
    assert lazy.lines == []
    strict = Problems()
    assert list(read_entries(path, strict, decode=True)) == []
    assert strict.lines == [f"{path}: line 2: corrupt histogram, skipped"]


def test_a_missing_or_garbled_file_is_said_not_raised(tmp_path: Path) -> None:
    problems = Problems()
    assert list(read_entries(tmp_path / "gone.hlog", problems)) == []
    assert problems.lines == [f"{tmp_path / 'gone.hlog'}: missing"]
    path = tmp_path / "rtt.hlog"
    h = new_histogram()
    h.record_value(500)
    path.write_bytes(b"\xff\xfe garbage\n" + line(1.0, 1.0, h).encode())
    problems = Problems()
    assert [e.start for e in read_entries(path, problems, decode=True)] == [1.0]
    assert problems.lines == [f"{path}: line 1: corrupt histogram, skipped"]
