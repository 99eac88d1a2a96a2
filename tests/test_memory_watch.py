"""The tester's own memory against a budget (issue 24, item 1): crossing
80%, 90% and 95% is each one event and a line in the live view."""

from __future__ import annotations

import io
from pathlib import Path

from soak.live import LiveView
from soak.metrics import Interval
from soak.recorder import Recorder
from soak.run.memory import MemoryWatch, default_budget
from tests.support.runs import WALL0

MIB = 1 << 20


def test_the_default_budget_is_what_the_machine_has_less_a_margin() -> None:
    assert default_budget(100 * MIB, 1000 * MIB) == 100 * MIB + 900 * MIB
    assert default_budget(100 * MIB, None) is None


def test_each_step_is_said_once() -> None:
    w = MemoryWatch(1000 * MIB)
    assert w.observe(700 * MIB, 10.0) is None
    assert w.health() is None
    ev = w.observe(810 * MIB, 20.0)
    assert ev is not None
    assert (ev["event"], ev["t"], ev["share"]) == ("tester_memory_warning", 20.0, 0.81)
    assert ev["text"].startswith("tester memory at 81% of its budget (810 MiB of 1000 MiB)")
    assert w.observe(850 * MIB, 30.0) is None  # the same step
    assert w.observe(990 * MIB, 40.0) is not None  # 90% and 95% at once: one event
    assert w.observe(999 * MIB, 50.0) is None
    assert w.warnings == 2
    assert w.summary() == {
        "memory_budget_bytes": 1000 * MIB,
        "rss_peak_bytes": 999 * MIB,
        "memory_warnings": 2,
    }
    health = w.health()
    assert health is not None
    assert health.startswith("tester memory at 99%")


def test_no_budget_no_watch() -> None:
    w = MemoryWatch(None)
    assert w.observe(10**12, 1.0) is None
    assert w.summary()["rss_peak_bytes"] == 10**12


def test_the_recorder_writes_the_warning_and_the_live_view_shows_it(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "mem", WALL0, memory_budget=100 * MIB)
    iv = Interval(0, 0.0)
    iv.end = 1.0
    iv.rss_bytes = 85 * MIB
    out = io.StringIO()
    view = LiveView(out, tty=False, results=rec.health)
    record = rec.write_interval(iv, {})
    view.interval(record)
    rec.close()
    assert "WARNING tester memory at 85% of its budget" in out.getvalue()
    events = (rec.path / "events.jsonl").read_text()
    assert '"event":"tester_memory_warning"' in events
    summary: dict[str, object] = {"verdict": "passed", "exit_code": 0, "tester": {}}
    rec.write_json("summary.json", summary)
    assert summary["tester"] == {
        "memory_budget_bytes": 100 * MIB,
        "rss_peak_bytes": 85 * MIB,
        "memory_warnings": 1,
    }
