"""Known answer for rtt_wire, from an independent instrument: tcpdump
captures the loopback traffic of a short run against the reference
gateway, tests/support/pcap.py matches each ping to its pong by
(connection, seq) in the capture, and soak's rtt_wire must agree with the
capture: the same count, p50 and p99 within 50 us. Skipped, naming what is
missing, without tcpdump (Debian: apt-get install -y tcpdump; .ci/run
installs it) or without the root it needs to capture."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from soak.childproc import gateway_process
from soak.metrics import new_histogram
from soak.recorder import Recorder
from soak.run.runner import Runner
from tests.support.pcap import json_rtts
from tests.support.runs import WALL0, make_profile

pytestmark = pytest.mark.process

PROFILE = """
[run]
label = "wire"
report_interval = "2s"
[clients]
max_connecting = 50
[[clients.stages]]
kind = "ramp"
to = 40
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "6s"
[heartbeat]
interval = "500ms"
timeout = "1s"
phase = "spread"
kernel_timestamps = true
"""

TOLERANCE_US = 50


def _tcpdump() -> str:
    if sys.platform != "linux":
        pytest.skip("kernel timestamps (SO_TIMESTAMPNS) are Linux only")
    found = shutil.which("tcpdump") or (
        "/usr/sbin/tcpdump" if os.path.exists("/usr/sbin/tcpdump") else None
    )
    if found is None:
        pytest.skip("tcpdump is not installed (Debian: apt-get install -y tcpdump)")
    if os.geteuid() != 0:
        pytest.skip("capturing on loopback with tcpdump needs root")
    return found


def _start_capture(tcpdump: str, port: int, out: Path, log: Path) -> subprocess.Popen[bytes]:
    err = open(log, "wb")  # noqa: SIM115 - closed with the process below
    proc = subprocess.Popen(
        [
            tcpdump,
            "-i",
            "lo",
            "-n",
            "-U",
            "--immediate-mode",
            "-B",
            "65536",
            "-s",
            "0",
            "--time-stamp-precision",
            "nano",
            "-w",
            str(out),
            f"tcp port {port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    deadline = time.monotonic() + 10
    while b"listening on" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            pytest.fail(f"tcpdump did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _percentiles_us(samples_s: list[float]) -> tuple[int, int, int]:
    h = new_histogram()
    for s in samples_s:
        h.record_value(max(0, int(s * 1_000_000 + 0.5)))
    p = h.get_percentile_to_value_dict([50.0, 99.0])
    return h.get_total_count(), p[50.0], p[99.0]


async def test_rtt_wire_agrees_with_tcpdump(tmp_path: Path) -> None:
    tcpdump = _tcpdump()
    with gateway_process() as gw:
        capture = _start_capture(tcpdump, gw.port, tmp_path / "lo.pcap", tmp_path / "tcpdump.log")
        try:
            profile = make_profile(PROFILE, url=gw.url, results=tmp_path / "results")
            recorder = Recorder(tmp_path / "results", profile.run.label, WALL0)
            with trio.fail_after(60):
                outcome = await Runner(profile, recorder, manage_gc=False).run()
        finally:
            _stop(capture)
    summary = outcome.summary
    wire = summary["latency_ms"]["rtt_wire"]
    assert summary["wire"]["connections_timestamped"] == summary["totals"]["connects"] == 40
    count, p50, p99 = _percentiles_us(json_rtts(tmp_path / "lo.pcap", gw.port))
    # the capture may also hold the pong of a ping soak abandoned (its
    # connection was closing when it came)
    abandoned = summary["totals"]["abandoned"]
    assert wire["count"] <= count <= wire["count"] + abandoned
    assert wire["count"] > 400
    assert abs(wire["p50"] * 1000 - p50) <= TOLERANCE_US, (wire, p50, p99)
    assert abs(wire["p99"] * 1000 - p99) <= TOLERANCE_US, (wire, p50, p99)
    # rtt_service - rtt_wire is the tester's own delay: rx_delay on the way
    # in, tx_delay on the way out (per sample; so the means add up too)
    lat = summary["latency_ms"]
    # every ping has the kernel's transmit time, but one written as its
    # connection closed may not have been read back from the error queue
    stamped = summary["wire"]["pings_tx_timestamped"]
    pings = summary["totals"]["pings"]
    assert pings - summary["totals"]["abandoned"] <= stamped <= pings
    assert lat["tx_delay"]["count"] == stamped
    gap_ms = (
        lat["rtt_service"]["mean"]
        - lat["rtt_wire"]["mean"]
        - lat["rx_delay"]["mean"]
        - lat["tx_delay"]["mean"]
    )
    assert -TOLERANCE_US / 1000 <= gap_ms <= TOLERANCE_US / 1000, lat
