"""What a run says while its results cannot be written (soak.results.backlog):
the live view's line, the sizes in it, the events. Pure."""

from __future__ import annotations

import errno
from typing import Any

from soak.results.backlog import Backlog, describe, mib, plural


def chunk(size: int) -> dict[str, bytes]:
    return {"intervals.jsonl": b"x" * size}


def hold(b: Backlog, index: int, size: int, events: int = 0) -> dict[str, Any]:
    record: dict[str, Any] = {"events_dropped": 0}
    b.hold(index, float(index), index + 1.0, ["e"] * events, record, lambda evs: chunk(size))
    return record


def test_sizes_read_in_kibibytes_below_a_mebibyte_and_in_mebibytes_from_one() -> None:
    assert mib(0) == "0.0 KiB"
    assert mib(1536) == "1.5 KiB"
    assert mib(1_024_000) == "1000.0 KiB"
    assert mib((1 << 20) - 1) == "1024.0 KiB"
    assert mib(1 << 20) == "1.0 MiB"
    assert mib(3 << 19) == "1.5 MiB"
    assert mib(5 << 20) == "5.0 MiB"


def test_an_os_error_is_named_with_its_errno() -> None:
    assert describe(OSError(errno.ENOSPC, "No space left on device")) == (
        "No space left on device (ENOSPC)"
    )
    assert describe(OSError("no errno")) == "no errno"
    assert plural(1, "interval") == "1 interval"
    assert plural(2, "event") == "2 events"
    assert plural(0, "event") == "0 events"


def test_the_live_line_of_a_failure_says_what_is_held_and_how_much() -> None:
    b = Backlog(limit=10 << 20)
    assert b.health() is None
    hold(b, 0, 1536)
    assert b.failed(2.5, "No space left on device (ENOSPC)") == {
        "t": 2.5,
        "event": "results_write_failed",
        "error": "No space left on device (ENOSPC)",
        "held_intervals": 1,
        "action": "the load goes on; intervals are held in memory and retried every interval",
    }
    assert b.health() == (
        "results NOT WRITTEN since 2.5s: No space left on device (ENOSPC); "
        "1 interval (1.5 KiB) held in memory, retried every interval"
    )
    hold(b, 1, 1 << 20)
    assert b.health() == (
        "results NOT WRITTEN since 2.5s: No space left on device (ENOSPC); "
        "2 intervals (1.0 MiB) held in memory, retried every interval"
    )


def test_the_live_line_counts_what_was_dropped_even_after_the_disk_is_back() -> None:
    b = Backlog(limit=2048)
    hold(b, 0, 1024)
    b.failed(1.0, "EIO")
    record = hold(b, 1, 1536, events=3)  # over the limit: its 3 events go, then itself
    assert record["events_dropped"] == 3
    assert (len(b.lost), b.lost_events) == (1, 3)
    b.write(lambda c: None)
    assert b.recovered(3.0) is not None
    # written again, but what was dropped stays said
    assert b.health() == "1 intervals and 3 events dropped at the 2.0 KiB limit of what is held"


def test_events_dropped_alone_are_in_the_live_line() -> None:
    b = Backlog(limit=1500)
    hold(b, 0, 1000)
    b.failed(1.0, "EIO")
    sizes = iter([1000, 400])  # with its events over the limit, without them under

    def chunk_of(evs: list[str]) -> dict[str, bytes]:
        return chunk(next(sizes))

    record: dict[str, Any] = {"events_dropped": 1}
    b.hold(1, 1.0, 2.0, ["e", "e"], record, chunk_of)
    assert record["events_dropped"] == 3  # its own count, plus the two dropped
    assert (len(b.lost), b.lost_events, len(b.held)) == (0, 2, 2)
    health = b.health()
    assert health is not None
    assert health.endswith(
        "; 0 intervals and 2 events dropped at the 1.5 KiB limit of what is held"
    )
    assert b.counts() == {
        "write_failures": 1,
        "held_max_intervals": 1,
        "held_max_bytes": 1000,
        "intervals_lost": 0,
        "events_lost": 2,
    }


def test_the_recovered_event_and_the_missing_lines_give_exact_figures() -> None:
    b = Backlog(limit=1000)
    hold(b, 0, 900)
    assert b.failed(1.5, "EIO") is not None
    for i in (1, 2, 3, 5):  # each over the limit: lost, in two ranges
        hold(b, i, 900)
    assert b.missing() == [
        "interval 0 (0s to 1s into the run), 1 interval with 0 events: held in memory, "
        "never written: EIO",
        "intervals 1-3 (1s to 4s into the run): dropped, the 1.0 KiB held in memory was full",
        "interval 5 (5s to 6s into the run): dropped, the 1.0 KiB held in memory was full",
    ]
    b.write(lambda c: None)
    assert b.recovered(5.25) == {
        "t": 5.25,
        "event": "results_write_recovered",
        "failed_at": 1.5,
        "error": "EIO",
        "attempts": 1,
        "intervals_written": 1,
        "intervals_lost": 4,
        "events_lost": 0,
    }
    assert b.counts() == {
        "write_failures": 1,
        "held_max_intervals": 1,
        "held_max_bytes": 900,
        "intervals_lost": 4,
        "events_lost": 0,
    }
