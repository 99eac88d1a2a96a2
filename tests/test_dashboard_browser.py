"""The live page in headless Chromium against a real run: ``soak run
--dashboard`` against the incident's gateway (``--bug ignore-max-missed``,
one heartbeat dropped per connection, as tests/test_findings_incident.py).
One page stays open for the whole run; the test reads its DOM through the
DevTools protocol: it loads, it updates, and the provoked false timeouts
show as a finding within one interval of the first one."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from soak.childproc import gateway_process, stop
from tests.support.chromium import CHROMIUM

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"
    ),
]

GATEWAY = (
    *("--hb-interval", "1s", "--hb-timeout", "1.5s", "--max-missed", "3"),
    *("--check-every", "100ms", "--bug", "drop-heartbeat 1", "--bug", "ignore-max-missed"),
)
INTERVAL = 2.0
# nobody for the first 8 s (the page opens on a clean run, even when the
# shared machine is slow to start Chromium), then 40 clients
PROFILE = f"""
[run]
label = "live"
duration = "16s"
report_interval = "{INTERVAL:g}s"
[target]
url = "ws://127.0.0.1:9/ws"
protocol = "json"
[target.server_heartbeat]
interval = "1s"
timeout = "1.5s"
max_missed = 3
[[clients.stages]]
kind = "hold"
duration = "8s"
[[clients.stages]]
kind = "ramp"
to = 40
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "7s"
[heartbeat]
interval = "1s"
timeout = "1s"
max_missed = 3
"""
PROBE = """document.getElementById("state") === null ? JSON.stringify({
  href: location.href, version: null, text: document.body && document.body.innerText.slice(0, 300)
}) : JSON.stringify({
  title: document.title,
  version: document.body.getAttribute("data-version"),
  elapsed: document.body.getAttribute("data-elapsed"),
  state: document.getElementById("state").textContent,
  connected: (document.querySelector('[data-key="connected"] .v') || {}).textContent,
  findings: [...document.querySelectorAll("#findings-list li")].map(li => [
    li.getAttribute("data-key"), li.className, li.textContent]),
  closes: [...document.querySelectorAll("#closes tr")].map(tr => tr.getAttribute("data-reason")),
  lines: document.querySelectorAll("#chart polyline").length,
})"""


class DevTools:
    """Just enough of the DevTools protocol to evaluate an expression in
    a page (a blocking socket and wsproto; every read bounded in time)."""

    def __init__(self, ws_url: str) -> None:
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", ws_url)
        assert m is not None, ws_url
        self.sock = socket.create_connection((m.group(1), int(m.group(2))), timeout=10)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"{m.group(1)}:{m.group(2)}", target=m[3])))
        self.buf: list[Any] = []
        assert isinstance(self._next(), AcceptConnection)
        self.id = 0
        self.errors: list[Any] = []
        self.call("Runtime.enable", {})  # else a page attached while loading has no context

    def _next(self) -> Any:
        deadline = time.monotonic() + 10
        while not self.buf:
            assert time.monotonic() < deadline, "DevTools did not answer in 10 s"
            data = self.sock.recv(1 << 16)
            assert data, "DevTools closed the connection"
            self.ws.receive_data(data)
            self.buf.extend(self.ws.events())
        return self.buf.pop(0)

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "error" in answer or "exceptionDetails" in answer.get("result", {}):
            self.errors.append(answer)
        # None while the page has no context yet (loading)
        return answer.get("result", {}).get("result", {}).get("value")

    def call(self, method: str, params: dict[str, Any]) -> Any:
        self.id += 1
        msg = {"id": self.id, "method": method, "params": params}
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps(msg))))
        text = ""
        for _ in range(1000):
            ev = self._next()
            if isinstance(ev, TextMessage):
                text += ev.data
                if ev.message_finished:
                    answer = json.loads(text)
                    text = ""
                    if answer.get("id") == self.id:
                        return answer
        raise AssertionError(f"no answer to {method}")

    def close(self) -> None:
        self.sock.close()


def read_line(proc: subprocess.Popen[str], pattern: str, timeout: float) -> re.Match[str]:
    """The first line of ``proc``'s stderr matching ``pattern`` (bounded).
    Read from the descriptor itself: a buffered readline after select()
    would keep a second line in its buffer while select() waits for more."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        for line in buf.decode(errors="replace").splitlines():
            m = re.search(pattern, line)
            if m is not None:
                return m
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    raise AssertionError(f"no line matching {pattern!r} in {buf!r}")


def chromium(url: str, profile_dir: Path, log: Path) -> subprocess.Popen[str]:
    """Chromium with DevTools on a free port; its (chatty) stderr goes to a
    file: a pipe nobody reads would fill and stall it."""
    with log.open("w") as err:
        return subprocess.Popen(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile_dir}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )


def devtools_url(profile_dir: Path, browser: subprocess.Popen[str], timeout: float) -> str:
    """The browser's DevTools address, from the DevToolsActivePort file
    Chromium writes in its profile directory once it listens."""
    deadline = time.monotonic() + timeout
    port_file = profile_dir / "DevToolsActivePort"
    while time.monotonic() < deadline and browser.poll() is None:
        lines = port_file.read_text().split() if port_file.exists() else []
        if len(lines) >= 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    raise AssertionError(f"Chromium did not start DevTools in {timeout:g} s")


def page_target(devtools: str, url: str) -> str:
    """The webSocketDebuggerUrl of the page showing ``url``."""
    base = devtools.split("/devtools/")[0].replace("ws://", "http://")
    for _ in range(50):
        with urllib.request.urlopen(f"{base}/json/list", timeout=5) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page" and t["url"] == url]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        time.sleep(0.1)
    raise AssertionError(f"no page target for {url}")


def test_the_live_page_shows_the_false_timeouts_as_they_happen(tmp_path: Path) -> None:
    profile = tmp_path / "live.toml"
    profile.write_text(PROFILE)
    samples: list[dict[str, Any]] = []
    # the browser first (on a busy machine it can take seconds to start),
    # then the run, then the page
    browser = chromium("about:blank", tmp_path / "chromium", tmp_path / "chromium.log")
    try:
        devtools = devtools_url(tmp_path / "chromium", browser, 60)
        page = DevTools(page_target(devtools, "about:blank"))
        with gateway_process(*GATEWAY) as gw:
            run = subprocess.Popen(
                [
                    *(sys.executable, "-m", "soak", "run", str(profile), "--quiet"),
                    *("--url", gw.url, "--results-dir", str(tmp_path / "results")),
                    "--dashboard",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                url = read_line(run, r"live dashboard at (http://127\.0\.0\.1:\d+/)", 30)[1]
                page.call("Page.navigate", {"url": url})
                # while the run lasts, then until the page notices its end
                deadline, ended = time.monotonic() + 60, None
                while time.monotonic() < deadline:
                    value = page.evaluate(PROBE)
                    if value:
                        samples.append(json.loads(value))
                    if run.poll() is not None:
                        ended = ended or time.monotonic()
                        if samples and "ended" in samples[-1].get("state", ""):
                            break
                        if time.monotonic() > ended + 5:
                            break
                    time.sleep(0.25)
                run.communicate(timeout=60)
            finally:
                page.close()
                errors = page.errors
                stop(run)
    finally:
        stop(browser)
    drawn = [s for s in samples if s["version"] is not None]
    assert drawn, (samples[:3], errors[:2], errors[-2:], len(errors))
    # it loads: the run's label, the figures, the chart
    assert drawn[0]["title"] == "soak: live"
    # it updates: one page, many versions, and the run's end noticed
    versions = [int(s["version"]) for s in drawn]
    assert versions == sorted(versions)
    assert len(set(versions)) >= 5
    assert drawn[0]["findings"] == [[None, "none", "none so far"]]
    assert any(s["lines"] >= 2 for s in drawn)
    assert "ended or stopped" in samples[-1]["state"]
    # the false timeouts, within one interval of the first one
    (run_dir,) = (tmp_path / "results").iterdir()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    first = min(e["t"] for e in events if e.get("reason") == "false_timeout")
    shown = next(s for s in drawn if s["findings"] and s["findings"][0][0] == "false_timeouts")
    assert shown["findings"][0][1] == "error"
    assert "false timeout" in shown["findings"][0][2]
    assert float(shown["elapsed"]) - first <= INTERVAL, (first, shown)
    assert "false_timeout" in drawn[-1]["closes"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["findings"][0]["key"] == "false_timeouts"
