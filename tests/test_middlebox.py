"""Real nginx and HAProxy (Debian's packages) between soak and the reference
gateway, on 127.0.0.1: an idle timeout shorter than the heartbeat interval
closes every connection, and soak names it; a longer one closes none.

Skips, naming what is missing, where nginx or haproxy is not installed
(.ci/run installs both)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from soak import middlebox
from soak.childproc import gateway_process
from soak.gateway import Gateway, GatewayConfig
from soak.middlebox import Middlebox
from soak.recorder import Recorder, now_wall
from soak.run.runner import Outcome, Runner
from tests.support.runs import make_profile

pytestmark = [pytest.mark.process, pytest.mark.slow]

PROFILE = """
[run]
label = "{label}"
report_interval = "1s"
seed = 3
[clients]
max_connecting = 20
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "500ms"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "{interval}"
timeout = "{hb_timeout}"
[reconnect]
initial_delay = "100ms"
max_delay = "300ms"
"""

TIMEOUT = 1.5  # the middlebox's idle timeout, seconds
ABRUPT = ("transport_eof", "transport_reset")
NAMED = "intermediary_idle_timeout"

Factory = Callable[[Path, str], AbstractContextManager[Middlebox]]


def need(kind: str) -> None:
    if middlebox.find_binary(kind) is None:
        pytest.skip(middlebox.missing(kind))


def nginx_short(d: Path, upstream: str) -> AbstractContextManager[Middlebox]:
    return middlebox.nginx(d, upstream, read_timeout=f"{int(TIMEOUT * 1000)}ms")


def haproxy_short(d: Path, upstream: str) -> AbstractContextManager[Middlebox]:
    return middlebox.haproxy(d, upstream, tunnel=f"{int(TIMEOUT * 1000)}ms")


def body(label: str, interval: str, *, clients: int = 20, hold: str = "5s") -> str:
    hb_timeout = "1s" if interval != "2s" else "1500ms"
    return PROFILE.format(
        label=label, clients=clients, hold=hold, interval=interval, hb_timeout=hb_timeout
    )


def loopback_only(mb: Middlebox) -> None:
    """``ss -ltnp``: it and its workers listen on 127.0.0.1, on its port, only.

    HAProxy's master binds, forks its worker and closes its own copy: for a
    moment no process of the tree we listed holds the socket, so the tree
    and ``ss`` are read again until one does (every 50 ms, at most 5 s)."""
    deadline = time.monotonic() + 5
    addresses = middlebox.listening(middlebox.children(mb.pid))
    while not addresses and time.monotonic() < deadline:
        time.sleep(0.05)
        addresses = middlebox.listening(middlebox.children(mb.pid))
    assert addresses, f"{mb.kind} (pid {mb.pid}) listens nowhere"
    assert set(addresses) == {f"127.0.0.1:{mb.port}"}, addresses


async def run_through(factory: Factory, profile_body: str, tmp_path: Path) -> Outcome:
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    box = tmp_path / "middlebox"
    box.mkdir()
    results = tmp_path / "results"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            with factory(box, f"127.0.0.1:{port}") as mb:
                loopback_only(mb)
                profile = make_profile(profile_body, url=mb.url(), results=results)
                recorder = Recorder(results, profile.run.label, now_wall())
                outcome = await Runner(profile, recorder, manage_gc=False).run()
            nursery.cancel_scope.cancel()
    return outcome


def assert_named(summary: dict[str, Any], directions: set[str]) -> dict[str, Any]:
    closes = summary["totals"]["closes"]
    abrupt = closes.get(NAMED, 0)
    # every close is the middlebox's, named so, but the clients' own at the end
    assert set(closes) <= {NAMED, "client_shutdown"}, closes
    assert abrupt >= 10, closes
    moved = summary["totals"]["closes_named"][NAMED]
    assert set(moved) <= set(ABRUPT)
    assert sum(moved.values()) == abrupt
    (found,) = summary["intermediaries"]
    assert found["closes"] == abrupt, (found, closes)
    assert abs(found["timeout_s"] - TIMEOUT) <= 0.5, found
    assert found["direction"] in directions, found
    assert found["below_heartbeat"] is True
    assert summary["totals"]["intermediary_closes"] == abrupt
    # the verdict does not say passed
    assert summary["passed"] is False
    assert summary["exit_code"] == 1
    assert "intermediary_closes" in summary["verdict"]
    return dict(found)


def assert_none(summary: dict[str, Any]) -> None:
    closes = summary["totals"]["closes"]
    assert set(closes) <= {"client_shutdown"}, closes
    assert summary["intermediaries"] == []
    assert summary["exit_code"] == 0, summary["verdict"]


async def test_nginx_read_timeout_shorter_than_the_heartbeat_is_named(tmp_path: Path) -> None:
    need(middlebox.NGINX)
    out = await run_through(nginx_short, body("nginx-short", "2s"), tmp_path)
    # nginx counts the upstream's silence only; with request-response
    # heartbeats that is also the silence either way
    assert_named(out.summary, {"server", "server_or_either"})


async def test_nginx_read_timeout_longer_than_the_heartbeat_closes_nothing(
    tmp_path: Path,
) -> None:
    need(middlebox.NGINX)
    out = await run_through(nginx_short, body("nginx-long", "500ms", hold="4s"), tmp_path)
    assert_none(out.summary)


async def test_haproxy_tunnel_timeout_shorter_than_the_heartbeat_is_named(
    tmp_path: Path,
) -> None:
    need(middlebox.HAPROXY)
    out = await run_through(haproxy_short, body("haproxy-short", "2s"), tmp_path)
    assert_named(out.summary, {"either", "server_or_either"})


async def test_haproxy_tunnel_timeout_longer_than_the_heartbeat_closes_nothing(
    tmp_path: Path,
) -> None:
    need(middlebox.HAPROXY)
    out = await run_through(haproxy_short, body("haproxy-long", "500ms", hold="4s"), tmp_path)
    assert_none(out.summary)


def test_soak_run_through_nginx_names_it_in_the_terminal_and_the_report(
    tmp_path: Path,
) -> None:
    """As a user runs it: the reference gateway and nginx as processes,
    ``soak run`` and ``soak report`` from the command line."""
    need(middlebox.NGINX)
    profile = tmp_path / "profile.toml"
    box = tmp_path / "nginx"
    box.mkdir()
    # the chain: the nginx in front, its idle timeout read from its own config
    hop = f'[[target.hops]]\nkind = "nginx"\nconfig = "{box / "nginx.conf"}"\n'
    results = tmp_path / "results"
    with gateway_process() as gw, nginx_short(box, f"127.0.0.1:{gw.port}") as mb:
        loopback_only(mb)
        profile.write_text(f'[target]\nurl = "{mb.url()}"\n' + hop + body("cli", "2s", clients=10))
        doctor = subprocess.run(
            [sys.executable, "-m", "soak", "doctor", "--profile", str(profile)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "[hop-timeout-short]" in doctor.stdout, doctor.stdout + doctor.stderr
        assert (
            "prediction: hop 'nginx' closes idle connections first, 1.5 s after their last frame"
            in doctor.stdout
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "soak",
                "run",
                str(profile),
                "--url",
                mb.url(),
                "--results-dir",
                str(results),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "  intermediary hop 'nginx' (nginx): an idle timeout of 1." in run.stdout, run.stdout
    assert "  closes       intermediary_idle_timeout " in run.stdout
    assert (
        "  chain        predicted: hop 'nginx' closes idle connections first, after 1.5 s; "
        "observed: hop 'nginx' closed them first, after 1.5 s: agrees"
    ) in run.stdout
    assert "FAIL intermediary_closes <= 0 (default)" in run.stdout
    (run_dir,) = results.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    found = assert_named(summary, {"either"})  # the hop's: nginx is reset either way
    assert found["hop"] == "nginx"
    assert summary["chain"]["agrees"] is True
    report = subprocess.run(
        [sys.executable, "-m", "soak", "report", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    html = (run_dir / "report.html").read_text()
    assert "Intermediary idle timeouts (1)" in html
    assert f"closed {found['closes']} connections" in html
    assert "The chain: predicted and observed" in html
    assert "intermediary_idle_timeout" in html  # the top close reasons
    compare = subprocess.run(
        [
            sys.executable,
            "-m",
            "soak",
            "compare",
            str(run_dir),
            str(run_dir),
            "--resamples",
            "100",
            "--out",
            str(tmp_path / "compare"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compare.returncode in (0, 1), compare.stderr
    # the named closes are their own category in the comparison's table
    rows = {line.split("  ")[0]: line.split() for line in compare.stdout.splitlines()}
    assert rows["closes intermediary"][2:4] == [str(found["closes"])] * 2, compare.stdout


async def test_haproxy_without_tunnel_the_server_timeout_cuts_idle_websockets(
    tmp_path: Path,
) -> None:
    """What soak doctor assumes (soak.doctor.haproxy): without ``timeout
    tunnel``, ``timeout server`` cuts an upgraded connection whose server is
    silent that long, though ``timeout client`` is longer."""
    need(middlebox.HAPROXY)

    def factory(d: Path, upstream: str) -> AbstractContextManager[Middlebox]:
        return middlebox.haproxy(d, upstream, tunnel=None, client="30s", server="1500ms")

    out = await run_through(factory, body("haproxy-server", "2s"), tmp_path)
    assert_named(out.summary, {"server", "either", "server_or_either"})


async def test_wss_terminated_at_nginx_plain_ws_behind(tmp_path: Path) -> None:
    """nginx terminates TLS with a certificate from a test CA (trustme), the
    gateway behind it speaks plain ws://; the profile trusts the CA. The
    heartbeats cross, and nginx's idle timeout is still named."""
    need(middlebox.NGINX)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, ca_pem = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_pem))

    def factory(d: Path, upstream: str) -> AbstractContextManager[Middlebox]:
        return middlebox.nginx(
            d, upstream, read_timeout=f"{int(TIMEOUT * 1000)}ms", tls=(chain, key)
        )

    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    box = tmp_path / "middlebox"
    box.mkdir()
    results = tmp_path / "results"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            with factory(box, f"127.0.0.1:{port}") as mb:
                loopback_only(mb)
                profile = make_profile(
                    body("nginx-wss", "2s"),
                    url=mb.url(scheme="wss"),
                    results=results,
                    target_extra=f'ca_file = "{ca_pem}"\n',
                )
                recorder = Recorder(results, profile.run.label, now_wall())
                outcome = await Runner(profile, recorder, manage_gc=False).run()
            nursery.cancel_scope.cancel()
    s = outcome.summary
    assert s["totals"]["pongs"] > 0
    assert s["totals"]["handshake_failure_total"] == 0
    assert_named(s, {"server", "server_or_either"})


def nginx_reloading(d: Path, upstream: str) -> AbstractContextManager[Middlebox]:
    return middlebox.nginx(d, upstream, read_timeout="30s", main="worker_shutdown_timeout 1s;")


def haproxy_reloading(d: Path, upstream: str) -> AbstractContextManager[Middlebox]:
    return middlebox.haproxy(d, upstream, tunnel="30s", global_="    hard-stop-after 1s")


RELOAD_BODY = """
[run]
label = "{label}"
report_interval = "1s"
seed = 3
[clients]
max_connecting = 20
[[clients.stages]]
kind = "ramp"
to = 20
duration = "500ms"
[[clients.stages]]
kind = "hold"
duration = "2s"
[[clients.stages]]
kind = "storm"
duration = "4s"
command = "{command}"
[heartbeat]
interval = "500ms"
timeout = "1s"
[reconnect]
initial_delay = "100ms"
max_delay = "300ms"
"""


@pytest.mark.parametrize(
    ("kind", "factory", "signal_name"),
    [(middlebox.NGINX, nginx_reloading, "HUP"), (middlebox.HAPROXY, haproxy_reloading, "USR2")],
)
async def test_a_reload_closes_the_old_workers_connections_and_is_named(
    tmp_path: Path, kind: str, factory: Factory, signal_name: str
) -> None:
    """``nginx -s reload`` (SIGHUP) with ``worker_shutdown_timeout 1s``, and
    HAProxy's reload (SIGUSR2 to the master) with ``hard-stop-after 1s``,
    sent by a storm stage's command as a user would: the old workers close
    every connection they hold 1 s later, at once and without a close
    frame, and the clients storm back to the new ones. The hop in the
    profile has that shutdown_timeout, so the closes are named its reload
    (``intermediary_reload``), not the gateway's doing and not an idle
    timeout (they came at one moment, not after one silence)."""
    need(kind)
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    box = tmp_path / "middlebox"
    box.mkdir()
    results = tmp_path / "results"
    hop = f'[[target.hops]]\nkind = "{kind}"\nidle_timeout = "30s"\nshutdown_timeout = "1s"\n'
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            with factory(box, f"127.0.0.1:{port}") as mb:
                body = RELOAD_BODY.format(
                    label=f"{kind}-reload", command=f"kill -{signal_name} {mb.pid}"
                )
                profile = make_profile(body, url=mb.url(), results=results, target_extra=hop)
                recorder = Recorder(results, profile.run.label, now_wall())
                outcome = await Runner(profile, recorder, manage_gc=False).run()
                loopback_only(mb)  # the new workers listen on loopback only too
            nursery.cancel_scope.cancel()
    s = outcome.summary
    closes = s["totals"]["closes"]
    assert closes.get("intermediary_reload") == 20, closes
    assert not set(closes) & set(ABRUPT), closes
    assert s["totals"]["closes_by_category"]["intermediary"] == 20
    (reload,) = s["intermediaries"]
    assert (reload["reason"], reload["hop"], reload["closes"]) == ("intermediary_reload", kind, 20)
    assert 0.75 <= reload["after_reload_s"] <= 2.0, reload
    assert f"closed by the {kind}, not by the gateway" in reload["text"]
    (storm,) = s["storms"]
    assert storm["lost"] == 20
    assert storm["recovered"] == 20
    assert reload["storm"] == storm["index"]
    assert s["chain"]["hops"][0]["observed"]["reload_closes"] == 20
    assert s["exit_code"] == 0  # a reload is reported, not judged
    events = [
        json.loads(line) for line in (recorder.path / "events.jsonl").read_text().splitlines()
    ]
    (cmd,) = [e for e in events if e["event"] == "storm_command"]
    assert cmd["exit_code"] == 0


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@contextmanager
def silent_upstream() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that answers one upgrade with 101 and then
    sends nothing, reading until the peer closes; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            )
            with contextlib.suppress(OSError):
                while conn.recv(4096):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()
        thread.join(timeout=35)


@pytest.mark.parametrize(
    ("kind", "factory"),
    [
        (middlebox.NGINX, lambda d, up: middlebox.nginx(d, up, read_timeout="1s")),
        (middlebox.HAPROXY, lambda d, up: middlebox.haproxy(d, up, tunnel="1s")),
    ],
)
def test_frames_from_the_client_alone_reset_the_idle_timeout(
    tmp_path: Path, kind: str, factory: Factory
) -> None:
    """Why hops of kind nginx and haproxy default to resets_on = "either":
    with a 1 s idle timeout (nginx proxy_read_timeout, HAProxy timeout
    tunnel) and an upstream that never sends a byte after the upgrade, a
    client that sends a frame every 200 ms keeps its connection for 3 s;
    once it stops, the connection is closed."""
    need(kind)
    box = tmp_path / "box"
    box.mkdir()
    with (
        silent_upstream() as port,
        factory(box, f"127.0.0.1:{port}") as mb,
        socket.create_connection(("127.0.0.1", mb.port), timeout=5) as c,
    ):
        c.sendall(UPGRADE)
        assert c.recv(4096).startswith(b"HTTP/1.1 101")
        c.settimeout(0.2)
        for _ in range(15):  # 3 s of frames from the client only
            c.sendall(b"\x81\x80\x00\x00\x00\x00")  # a masked, empty text frame
            try:
                data = c.recv(4096)
            except TimeoutError:
                continue
            raise AssertionError(f"{kind} sent {data!r}: closed while the client talked")
        c.settimeout(10)  # silence now: the idle timeout closes it
        assert c.recv(4096) == b""
