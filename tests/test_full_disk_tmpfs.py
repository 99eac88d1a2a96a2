"""A full disk for real: ``soak demo`` writing its results to a 64 KiB
tmpfs, mounted without root in a user and mount namespace of its own
(``unshare -Urm``). The run fills it, keeps its load, ends with exit code 4
and says what is missing; what is on disk is whole lines and ``soak
report`` reads it. (The same under MockClock, recovery included, is
tests/test_full_disk.py.)"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from soak.summary import EXIT_RESULTS

pytestmark = pytest.mark.process

PROFILE = """
[target]
url = "ws://127.0.0.1:9/ws"
protocol = "json"
[run]
label = "full"
report_interval = "1s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 20
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "8s"
[heartbeat]
interval = "1s"
timeout = "1s"
max_missed = 3
"""


def namespaces_or_skip() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: no tmpfs without root")
    probe = subprocess.run(
        ["unshare", "-Urm", "true"], capture_output=True, text=True, timeout=10, check=False
    )
    if probe.returncode != 0:
        pytest.skip(
            "unprivileged user namespaces are not allowed here (unshare -Urm: "
            f"{probe.stderr.strip()}): no tmpfs without root"
        )


def test_a_real_full_disk(tmp_path: Path) -> None:
    namespaces_or_skip()
    profile = tmp_path / "full.toml"
    profile.write_text(PROFILE)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = tmp_path / "out"
    soak = shlex.join([sys.executable, "-m", "soak", "demo", str(profile), "--quiet"])
    # the tmpfs lives as long as the namespace: copy the results out first
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(mnt))} || exit 99\n"
        f"{soak} --results-dir {shlex.quote(str(mnt / 'results'))}\n"
        "code=$?\n"
        f"cp -r {shlex.quote(str(mnt / 'results'))} {shlex.quote(str(out))}\n"
        "exit $code\n"
    )
    proc = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs in a user namespace: {proc.stderr.strip()}")
    assert proc.returncode == EXIT_RESULTS, proc.stdout + proc.stderr
    missing = [x for x in proc.stderr.splitlines() if x.startswith("soak: missing from ")]
    assert missing, proc.stderr
    assert any("No space left on device (ENOSPC)" in x for x in missing)
    assert "Traceback" not in proc.stderr
    (run_dir,) = out.iterdir()
    for f in run_dir.iterdir():
        text = f.read_text()
        assert text == "" or text.endswith("\n"), f"{f.name} ends in a half line"
        assert not f.name.endswith(".tmp")
    got = [json.loads(x)["i"] for x in (run_dir / "intervals.jsonl").read_text().splitlines()]
    assert got == list(range(len(got)))
    assert 0 < len(got) < 9  # the disk filled before the end
    report = subprocess.run(
        [sys.executable, "-m", "soak", "report", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.returncode == 0, report.stderr
