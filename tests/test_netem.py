"""Real kernel impairment with ``tc netem``, inside two network namespaces
that the test creates and always deletes (see docs/netem.md): the reference
gateway in one, ``soak run`` in the other, joined by a veth pair.

It needs root, the ``ip`` and ``tc`` commands and a kernel with the netem
qdisc; without them it skips and says which is missing. Traffic goes only
between the two namespaces (addresses on the veth pair, nowhere else).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from soak.childproc import gateway_process
from soak.results.reader import load_run

pytestmark = pytest.mark.process

GW_ADDR, CL_ADDR = "10.201.0.1", "10.201.0.2"  # on the veth pair, inside the namespaces only


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip() or result.returncode}")
    return result


def unique() -> str:
    # interface names have at most 15 characters: sk + 5 + 4 + g
    return f"{os.getpid() % 100_000}{secrets.token_hex(2)}"


def missing_rights() -> str | None:
    """What this machine lacks to run the recipe, or None."""
    if os.geteuid() != 0:
        return f"needs root to create network namespaces (euid {os.geteuid()})"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs the '{tool}' command (iproute2)"
    probe = f"soak-probe-{unique()}"
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        netem = sh(
            "ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
            "delay", "1ms", check=False,
        )  # fmt: skip
    finally:
        sh("ip", "netns", "del", probe, check=False)
    if netem.returncode != 0:
        return (
            "the kernel has no netem qdisc (module sch_netem, CONFIG_NET_SCH_NETEM): "
            f"tc said: {netem.stderr.strip()}"
        )
    return None


@pytest.fixture(scope="module")
def rights() -> str | None:
    return missing_rights()


@dataclass(frozen=True)
class Pair:
    gw_ns: str
    cl_ns: str
    gw_if: str
    cl_if: str


@contextmanager
def namespaces() -> Iterator[Pair]:
    """Two fresh namespaces joined by a veth pair, deleted in any case
    (deleting a namespace deletes its end of the pair, and so the pair)."""
    tag = unique()
    pair = Pair(f"soak-gw-{tag}", f"soak-cl-{tag}", f"sk{tag}g", f"sk{tag}c")
    made: list[str] = []
    try:
        for ns in (pair.gw_ns, pair.cl_ns):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh(
            "ip", "link", "add", pair.gw_if, "netns", pair.gw_ns, "type", "veth",
            "peer", "name", pair.cl_if, "netns", pair.cl_ns,
        )  # fmt: skip
        for ns, dev, addr in ((pair.gw_ns, pair.gw_if, GW_ADDR), (pair.cl_ns, pair.cl_if, CL_ADDR)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield pair
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


@contextmanager
def gateway_in(ns: str) -> Iterator[int]:
    """``soak gateway`` on the gateway's veth address inside ``ns``; its port."""
    with gateway_process(
        "--hb-interval",
        "1s",
        "--hb-timeout",
        "30s",
        host=GW_ADDR,
        prefix=("ip", "netns", "exec", ns),
        start_timeout=30.0,
        stop_timeout=15.0,
    ) as gw:
        yield gw.port


PROFILE = """
[run]
label = "netem"
report_interval = "5s"
[target]
url = "ws://{addr}:{port}/ws"
protocol = "json"
[clients]
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "{interval}"
timeout = "2s"
"""


def soak_run_in(ns: str, port: int, tmp_path: Path, clients: int, hold: str) -> HdrHistogram:
    """``soak run`` inside ``ns``; the RTT histogram of the whole run (us)."""
    profile = tmp_path / "netem.toml"
    interval = "500ms"
    text = PROFILE.format(addr=GW_ADDR, port=port, clients=clients, hold=hold, interval=interval)
    profile.write_text(text, encoding="utf-8")
    results = tmp_path / "results"
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "soak", "run", str(profile)]
    done = subprocess.run(
        [*cmd, "--results-dir", str(results), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = results.iterdir()
    run = load_run(run_dir)
    h = run.merged("rtt")
    assert run.problems == []
    return h


def ms_at(h: HdrHistogram, q: float) -> float:
    return float(h.get_value_at_percentile(q)) / 1000.0


def test_namespaces_and_veth_carry_a_run(rights: str | None, tmp_path: Path) -> None:
    """The recipe's plumbing without netem: sub-millisecond-ish RTTs, so
    what the netem test measures is netem's doing."""
    if rights is not None and not rights.startswith("the kernel has no netem"):
        pytest.skip(rights)
    with namespaces() as pair, gateway_in(pair.gw_ns) as port:
        h = soak_run_in(pair.cl_ns, port, tmp_path, clients=10, hold="2s")
    assert h.get_total_count() >= 30
    assert ms_at(h, 90.0) < 20.0


def test_netem_delay_is_measured(rights: str | None, tmp_path: Path) -> None:
    """Known answer: ``netem delay 100ms 50ms`` (uniform) on the gateway's
    side of the veth (server to client); the RTT distribution matches it."""
    if rights is not None:
        pytest.skip(rights)
    with namespaces() as pair:
        sh(
            "ip", "netns", "exec", pair.gw_ns, "tc", "qdisc", "add", "dev", pair.gw_if,
            "root", "netem", "delay", "100ms", "50ms",
        )  # fmt: skip
        with gateway_in(pair.gw_ns) as port:
            h = soak_run_in(pair.cl_ns, port, tmp_path, clients=50, hold="20s")
    assert h.get_total_count() >= 1500
    # uniform on [50, 150] ms: p10 60, p50 100, p90 140 (plus the plumbing's
    # fraction of a millisecond)
    assert ms_at(h, 50.0) == pytest.approx(100.0, abs=5.0)
    assert ms_at(h, 10.0) == pytest.approx(60.0, abs=10.0)
    assert ms_at(h, 90.0) == pytest.approx(140.0, abs=10.0)
    assert ms_at(h, 0.1) >= 49.0
