"""Issue 21's bugs, planted one at a time: each must fail its test.

    python .ci/planted_bugs.py

The nine bugs that once passed every test, and the two run-level checks
(the sign of the server-count gap, pings pending at a server close), are
put by hand into a scratch copy of the repository (never into the
checkout), and the test written for each is run there: exit 1 when a bug
passes its test. Re-run after a change to the core moves the code (a
planted line not found is an error: update its text here). See
docs/testing.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = "tests/test_measurement_core.py::test_"

# (what the bug is, the file, the original text, the bug, the test that must fail)
BUGS = [
    (
        "a zombie's miss run timed from the ping's slot",
        "soak/heartbeat.py",
        "self.miss_run_since = ping.sent",
        "self.miss_run_since = ping.scheduled",
        CORE + "a_zombie_late_sender_is_timed_from_its_real_sends",
    ),
    (
        "the abrupt-close signature without its fallback to the connection's age",
        "soak/classify.py",
        "(ev.last_pong_age or ev.age)",
        "(ev.last_pong_age)",
        CORE + "an_abrupt_close_without_any_pong_is_timed_from_the_connection_start",
    ),
    (
        "close codes 1002 and 1003 named the other way round",
        "soak/classify.py",
        '    1002: "protocol_error",\n    1003: "unsupported_data",',
        '    1002: "unsupported_data",\n    1003: "protocol_error",',
        CORE + "every_close_code_has_its_registered_name",
    ),
    (
        "a connection lost before a storm counted as its recovery",
        "soak/storm.py",
        "if storm is None or lost_at is None or lost_at < storm.start:",
        "if storm is None or lost_at is None:",
        CORE + "a_connection_lost_before_a_storm_does_not_count_as_its_recovery",
    ),
    (
        "dropped samples never reaching the totals",
        "soak/metrics.py",
        "        for name in FAMILIES:\n            self.family(name).update(other.family(name))",
        "        for name in FAMILIES:\n            if name != 'dropped_samples':\n"
        "                self.family(name).update(other.family(name))",
        CORE + "a_sample_beyond_the_histogram_is_counted_as_dropped_up_to_the_verdict",
    ),
    (
        "a worker's close categories not merged",
        "soak/metrics.py",
        "        for name in FAMILIES:\n            self.family(name).update(wire[name])",
        "        for name in FAMILIES:\n            if name != 'closes_by_category':\n"
        "                self.family(name).update(wire[name])",
        CORE + "every_field_of_a_workers_interval_survives_the_merge",
    ),
    (
        "intervals.jsonl not flushed at each interval",
        "soak/recorder.py",
        "        self._last_t = iv.end\n        self._flush()\n        return record",
        "        self._last_t = iv.end\n        return record",
        CORE + "each_interval_is_readable_while_the_run_is_alive",
    ),
    (
        "heartbeat success with late pongs subtracted from the misses (intervals)",
        "soak/metrics.py",
        'heartbeat_success(c["pongs"], c["missed"])',
        'heartbeat_success(c["pongs"], c["missed"] - c["late"])',
        CORE + "heartbeat_success_with_pongs_late_pongs_and_misses",
    ),
    (
        "heartbeat success with late pongs subtracted from the misses (totals)",
        "soak/metrics.py",
        'heartbeat_success(t.get("pongs", 0), t.get("missed", 0))',
        'heartbeat_success(t.get("pongs", 0), t.get("missed", 0) - t.get("late", 0))',
        CORE + "heartbeat_success_with_pongs_late_pongs_and_misses",
    ),
    (
        "a threshold with no data passing",
        "soak/summary.py",
        '            ok = False\n            shown = "no data"',
        '            ok = True\n            shown = "no data"',
        CORE + "thresholds_without_data_fail_and_say_no_data",
    ),
    (
        "a threshold with no data passing (a whole run, its exit code)",
        "soak/summary.py",
        '            ok = False\n            shown = "no data"',
        '            ok = True\n            shown = "no data"',
        CORE + "a_run_that_measured_no_rtt_fails_its_rtt_threshold",
    ),
    (
        "the server-count gap with its sign reversed",
        "soak/reconcile.py",
        "gap = server_count - client_count",
        "gap = client_count - server_count",
        CORE + "the_gap_is_the_servers_count_minus_ours",
    ),
    (
        "the pings pending at a close not in its evidence",
        "soak/client/connection.py",
        "pings_pending=hb.pending,",
        "pings_pending=0,",
        CORE + "a_server_close_with_a_ping_pending_is_judged_and_the_ping_abandoned",
    ),
]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="soak-bugs-"))
    failures = 0
    try:
        for name in ("soak", "tests", "profiles", "docs"):
            shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
        for what, path, old, bug, test in BUGS:
            f = work / path
            src = f.read_text()
            if src.count(old) != 1:
                print(f"ERROR {path}: the line of '{what}' is not there (once): update BUGS")
                failures += 1
                continue
            f.write_text(src.replace(old, bug))
            try:
                run = subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test],
                    cwd=work,
                    capture_output=True,
                    text=True,
                )
            finally:
                f.write_text(src)
            caught = run.returncode == 1
            failures += not caught
            print(f"{'caught' if caught else 'NOT CAUGHT'}: {what} ({test.split('::')[1]})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
