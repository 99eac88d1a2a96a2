from __future__ import annotations

import io
from typing import Any

from soak.live import LiveView

STATUS: dict[str, Any] = {
    "elapsed": 65.0,
    "remaining": 3535.0,
    "connected": 980,
    "connecting": 20,
    "target": 1000,
    "pongs": 500,
    "interval_elapsed": 5.0,
    "rtt_p50_ms": 1.25,
    "rtt_p99_ms": None,
    "missed": 3,
    "zombies": 1,
    "false_timeouts": 2,
    "reconnects": 7,
    "handshake_failures": 2,
    "loop_lag_max_ms": 4.5,
    "gave_up": 1,
}


def test_terminal_status_redraws_in_place() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=True)
    view.status(STATUS)
    first = out.getvalue()
    assert "1m5s elapsed, 58m55s left" in first
    assert "980 connected / 1000 target" in first
    assert "100/s" in first  # 500 pongs in 5 s
    assert "p50 1.2ms" in first
    assert "zombies 1   false timeouts 2" in first
    assert "p99 -" in first
    assert first.startswith("\x1b[2Ksoak")  # nothing to move up over the first time
    view.status(STATUS)
    assert out.getvalue()[len(first) :].startswith("\x1b[5F")  # back over the 5 lines
    view.interval({"t": 0.0})  # a terminal gets no interval lines
    assert out.getvalue().count("soak ") == 2


def test_plain_output_is_one_line_per_interval() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=False)
    view.status(STATUS)
    assert out.getvalue() == ""
    record: dict[str, Any] = {
        "t": 10.0,
        "dt": 10.0,
        "connected": 5,
        "target": 5,
        "pings": 50,
        "pongs": 49,
        "missed": 1,
        "late": 0,
        "zombies": 0,
        "false_timeouts": 4,
        "rtt_p50_ms": 0.5,
        "rtt_p99_ms": 2.0,
        "closes": {"a": 2},
        "reconnects": 1,
        "handshake_failures": {"refused": 3},
        "lag_p99_ms": None,
        "loop_lag_max_ms": 0.25,
    }
    view.interval(record)
    line = out.getvalue()
    assert line.count("\n") == 1
    assert "[     20.0s] connected=5/5 pings=50 pongs=49 missed=1" in line
    assert "zombies=0 false_timeouts=4" in line
    assert "closes=2" in line
    assert "handshake_failures=3" in line
    assert "lag_p99=-" in line
