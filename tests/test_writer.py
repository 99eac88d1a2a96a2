"""A run directory's files as soak.results.writer makes them: documents
written whole, line files, and a directory removed under a running run.
Real files under tmp_path; pure otherwise."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from soak.metrics import new_histogram
from soak.results.disk import Disk
from soak.results.names import EVENTS, INTERVALS
from soak.results.writer import RunWriter

WALL0 = 1_800_000_000.0


class Syncs(Disk):
    """The real filesystem, noting which replaced files were synced."""

    def __init__(self) -> None:
        self.synced: dict[str, bool] = {}

    def replace(self, target: Path, text: str, *, sync: bool) -> None:
        self.synced[target.name] = sync
        super().replace(target, text, sync=sync)


def test_a_line_file_holds_one_json_record_a_line_and_is_replaced_whole(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, "lines", WALL0, ["rtt"])
    w.write_lines("storms.jsonl", [{"t": 0.1, "n": 1}, {"t": 0.2, "n": 2}])
    w.write_lines("storms.jsonl", [{"t": 0.3, "n": 3}])
    text = (w.path / "storms.jsonl").read_text()
    assert [json.loads(x) for x in text.splitlines()] == [{"t": 0.3, "n": 3}]
    assert text.endswith("\n")
    assert not list(w.path.glob("*.tmp"))
    w.close()


def test_documents_are_synced_to_disk_line_files_are_not(tmp_path: Path) -> None:
    """summary.json must survive a power cut once written; the storms'
    series is written at the end of the run and read only then."""
    disk = Syncs()
    w = RunWriter(tmp_path, "sync", WALL0, [], disk=disk)
    w.write_document("summary.json", {"ok": True})
    w.write_lines("storms.jsonl", [])
    assert disk.synced == {"summary.json": True, "storms.jsonl": False}
    assert (w.path / "storms.jsonl").read_text() == ""
    w.close()


def test_a_removed_file_is_an_enoent_that_says_so_and_restore_brings_it_back(
    tmp_path: Path,
) -> None:
    w = RunWriter(tmp_path, "gone", WALL0, ["rtt"])
    h = new_histogram()
    h.record_value(1000)
    w.append_interval(0.0, 1.0, {"rtt": h}, ['{"event":"x"}'], {"i": 0})
    (w.path / INTERVALS).unlink()  # only the last of the files
    with pytest.raises(OSError, match="results directory or one of its files was removed") as e:
        w.append_interval(1.0, 2.0, {"rtt": h}, [], {"i": 1})
    assert e.value.errno == errno.ENOENT
    w.restore()
    assert w.intact()
    assert (w.path / INTERVALS).read_text() == '{"i":0}\n'
    shutil.rmtree(w.path)  # the whole directory
    w.restore()
    w.append_interval(1.0, 2.0, {"rtt": h}, [], {"i": 1})
    assert (w.path / INTERVALS).read_text().splitlines() == ['{"i":0}', '{"i":1}']
    assert (w.path / EVENTS).read_text() == '{"event":"x"}\n'
    w.close()
