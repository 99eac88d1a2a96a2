"""The issue's acceptance, end to end with real processes: the incident's
gateway (``--bug ignore-max-missed``, one heartbeat dropped per connection)
and the fixed one, 100 clients for 20 s each through ``soak run``; the
false timeouts lead the terminal summary and report.html (checked in
headless Chromium), and ``soak compare`` names them as a finding the fixed
gateway does not have."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from soak.childproc import gateway_process, stop
from tests.support.chromium import CHROMIUM, open_in_chromium

pytestmark = pytest.mark.process

GATEWAY = (
    *("--hb-interval", "1s", "--hb-timeout", "1.5s", "--max-missed", "3"),
    *("--check-every", "100ms", "--bug", "drop-heartbeat 1"),
)

PROFILE = """
[run]
label = "incident"
duration = "20s"
report_interval = "1s"
[target]
url = "ws://127.0.0.1:9/ws"
protocol = "json"
[target.server_heartbeat]
interval = "1s"
timeout = "1.5s"
max_missed = 3
[[clients.stages]]
kind = "ramp"
to = 100
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "19s"
[heartbeat]
interval = "1s"
timeout = "1s"
max_missed = 3
"""


def soak(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soak", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def run_dir(root: Path) -> Path:
    (d,) = root.iterdir()
    return d


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"
)
def test_the_incident_leads_with_its_false_timeouts(tmp_path: Path) -> None:
    profile = tmp_path / "incident.toml"
    profile.write_text(PROFILE)
    with (
        gateway_process(*GATEWAY, "--bug", "ignore-max-missed") as buggy,
        gateway_process(*GATEWAY) as fixed,
    ):
        # both runs at once: 20 s of wall time, not 40
        runs = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "soak",
                    "run",
                    str(profile),
                    "--quiet",
                    "--url",
                    gw.url,
                    "--label",
                    name,
                    "--results-dir",
                    str(tmp_path / name),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, gw in (("incident", buggy), ("fixed", fixed))
        }
        try:
            out = {name: p.communicate(timeout=120) for name, p in runs.items()}
        finally:
            for p in runs.values():
                stop(p)
    a, b = run_dir(tmp_path / "incident"), run_dir(tmp_path / "fixed")
    summary = json.loads((a / "summary.json").read_text())
    n = summary["totals"]["false_timeouts"]
    assert n > 50  # every connection's first heartbeat is dropped
    lead = f"{n} false timeouts: the server's heartbeat check (4000 heartbeat_timeout) closed"

    # the terminal summary: the heading, then the false timeouts first
    lines = out["incident"][0].splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("soak run 'incident'"))
    assert lines[head + 1].startswith(f"  {lead} live connections ")
    assert lines[head + 1].endswith("[error]")
    assert "the server ignores max_missed" in lines[head + 1]
    code = runs["incident"].returncode
    verdict = next(line for line in lines if line.startswith("  verdict"))
    if code == 0:  # the default storm_recovery threshold can fail a storm cut off by the end
        assert verdict.startswith("  verdict      no thresholds set; ")
    fixed_summary = json.loads((b / "summary.json").read_text())
    assert fixed_summary["totals"]["false_timeouts"] == 0
    assert all(f["key"] != "false_timeouts" for f in fixed_summary["findings"])

    # report.html, as Chromium shows it: the findings right under the title
    rep = soak("report", str(a), cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    dom = open_in_chromium(a / "report.html")
    assert 'data-bad="0"' in dom
    after_title = dom.split("</h1>", 1)[1].lstrip()
    m = re.match(r'<ol class="findings" id="findings"><li class="error">([^<]*)<', after_title)
    assert m is not None, after_title[:300]
    assert html.unescape(m.group(1)).startswith(lead)
    # its evidence link goes to the false-timeout evidence table
    first = after_title.split("</li>", 1)[0]
    assert '<a href="#evidence">evidence</a>' in first
    assert '<h2 id="evidence">False-timeout evidence' in dom

    # soak compare: a finding the fixed gateway does not have, and back
    cmp = soak("compare", str(a), str(b), "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert cmp.returncode in (0, 1), cmp.stderr
    assert f"  gone in fixed (the baseline incident had it): {lead}" in cmp.stdout
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert "false_timeouts" in data["findings"]["against_baseline"]["fixed"]["gone"]
    back = soak("compare", str(b), str(a), "--out", str(tmp_path / "cmp2"), cwd=tmp_path)
    assert f"  new in incident: {lead}" in back.stdout
