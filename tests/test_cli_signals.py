"""Ctrl-C and SIGTERM against a real `soak demo` process: the clients close
with 1001, the results directory is complete, and the exit code says why.

A second Ctrl-C (abort) is tested in-process in test_client.py: the kernel
coalesces two signals sent back to back, so a real-process test of it would
be a race."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parent.parent


def start_demo(results: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "soak",
            "demo",
            str(ROOT / "profiles" / "smoke.toml"),
            "--duration",
            "1h",
            "--results-dir",
            str(results),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_all_connected(proc: subprocess.Popen[str]) -> None:
    """Block until an interval reports all 20 clients connected (bounded:
    the smoke profile ramps in 1 s and reports every second, so 50 lines is
    far more than the banner and a few intervals need)."""
    assert proc.stderr is not None
    for _ in range(50):
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith("[") and "connected=20/20" in line:
            return
    proc.kill()
    pytest.fail("the demo never reported all clients connected")


@pytest.mark.parametrize(
    ("signals", "code", "status"),
    [
        ([signal.SIGINT], 130, "interrupted"),
        ([signal.SIGTERM], 143, "terminated"),
    ],
)
def test_signal_leaves_readable_results(
    tmp_path: Path, signals: list[signal.Signals], code: int, status: str
) -> None:
    proc = start_demo(tmp_path)
    try:
        wait_until_all_connected(proc)
        for sig in signals:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    (run_dir,) = tmp_path.iterdir()
    manifest = json.loads((run_dir / "run.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert manifest["status"] == summary["status"] == status
    assert summary["partial"] is True
    lines = (run_dir / "intervals.jsonl").read_text().splitlines()
    assert len(lines) >= 2
    assert all(json.loads(line)["i"] == i for i, line in enumerate(lines))
    # a clean stop closes every client with 1001 "going away"
    assert summary["totals"]["closes"] == {"client_shutdown": 20}
    assert f"results      {run_dir}" in out


def test_threshold_option_fails_the_run(tmp_path: Path) -> None:
    """--threshold on the command line decides the exit code, printed as PASS/FAIL."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "soak",
            "demo",
            str(ROOT / "profiles" / "smoke.toml"),
            "--duration",
            "2s",
            "--results-dir",
            str(tmp_path),
            "--quiet",
            "--threshold",
            "rtt_p99<1us",
            "--threshold",
            "false_timeouts==0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "FAIL rtt_p99 < 1us:" in result.stdout
    assert "PASS false_timeouts == 0: 0" in result.stdout
    assert "PASS heartbeat_success >= 99%" in result.stdout  # the profile's own
    assert "verdict      thresholds failed: rtt_p99 (exit code 1)" in result.stdout
