"""What the files of a results directory are called.

Layout of ``results/<UTC stamp>-<label>/`` (docs: "Results directory"):

- ``run.json``         manifest; rewritten atomically (temp file + rename)
- ``intervals.jsonl``  one line per interval, appended and flushed
- ``<name>.hlog``      HdrHistogram V2 interval logs, one per histogram
- ``events.jsonl``     rare events with their evidence
- ``storms.jsonl``     one 100 ms series per reconnect storm, at the end
- ``summary.json``     totals, percentiles, verdicts; written at the end
"""

from __future__ import annotations

from datetime import UTC, datetime

RESULTS_FORMAT = 1

RUN_JSON = "run.json"
INTERVALS = "intervals.jsonl"
EVENTS = "events.jsonl"
STORMS = "storms.jsonl"
SUMMARY = "summary.json"


def hlog_name(histogram: str) -> str:
    """The interval log of one histogram: ``rtt`` -> ``rtt.hlog``."""
    return f"{histogram}.hlog"


def run_dir_name(label: str, wall: float) -> str:
    stamp = datetime.fromtimestamp(wall, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{label}"


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
