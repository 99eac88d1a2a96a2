"""soak.childproc: soak's own commands in child processes, for benchmarks and tests."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from soak.childproc import gateway_process, listening_port, soak_child, stop


def test_listening_port_reads_the_first_line() -> None:
    assert listening_port("soak gateway listening on 127.0.0.1:43211\n") == 43211
    assert listening_port("soak gateway listening on [::1]:8765") == 8765
    with pytest.raises(ValueError, match=r"^$"):
        listening_port("")
    with pytest.raises(ValueError, match="no such option"):
        listening_port("Error: no such option: --nope")


@pytest.mark.process
def test_a_gateway_process_serves_on_its_port_and_stops() -> None:
    with gateway_process("--hb-interval", "30s") as gw:
        assert gw.url == f"ws://127.0.0.1:{gw.port}/ws"
        assert gw.line.startswith("soak gateway listening on 127.0.0.1:")
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/api/stats", timeout=10) as r:
            assert json.loads(r.read())["connections"] == 0
    assert gw.proc.returncode == 0  # SIGTERM: a clean exit
    assert not gw.killed


@pytest.mark.process
def test_a_child_that_does_not_start_is_an_error() -> None:
    with (
        pytest.raises(RuntimeError, match="soak gateway did not start: ''"),
        soak_child(["gateway", "--port", "not-a-port"], stderr=subprocess.DEVNULL),
    ):
        pass


@pytest.mark.process
def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    assert stop(proc, timeout=0.5) is True
    assert proc.returncode == -9
