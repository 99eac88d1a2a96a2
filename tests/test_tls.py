"""wss:// targets: the same one-task client on trio.SSLStream, whose
receive_some may be cancelled once the handshake is done."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from soak.gateway import Gateway, GatewayConfig
from soak.recorder import Recorder, now_wall
from soak.run.runner import Outcome, Runner
from tests.support.runs import make_profile

PROFILE = """
[run]
label = "tls"
report_interval = "5s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 3
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "1s"
timeout = "1s"
"""


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


async def test_wss_under_mock_clock(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    ca = trustme.CA()
    server_ctx = server_context(ca)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    gateway = Gateway(GatewayConfig(server_ping_interval=2.0))
    profile = make_profile(
        PROFILE.format(hold="9500ms"), url="wss://127.0.0.1:9/ws", results=tmp_path
    )

    async with trio.open_nursery() as nursery:

        async def open_stream() -> trio.abc.Stream:
            client_side, server_side = trio.testing.memory_stream_pair()
            tls_server = trio.SSLStream(server_side, server_ctx, server_side=True)
            nursery.start_soon(gateway.handle_stream, tls_server)
            tls = trio.SSLStream(client_side, client_ctx, server_hostname="127.0.0.1")
            await tls.do_handshake()
            return tls

        recorder = Recorder(tmp_path, "tls", 1_790_000_000.0)
        runner = Runner(profile, recorder, open_stream=open_stream, lag_probe=None, manage_gc=False)
        outcome = await runner.run()
        nursery.cancel_scope.cancel()

    tot = outcome.summary["totals"]
    # spread phases 0, 1/3 and 2/3 s: slots up to 9.5 s give 10 + 10 + 9 pings
    assert tot["pings"] == tot["pongs"] == 29
    assert tot["server_pings"] == 3 * 4  # at 2, 4, 6 and 8 s on each connection
    assert tot["missed"] == 0
    assert tot["closes"] == {"client_shutdown": 3}
    assert gateway.stats()["closes_by_reason"] == {"client_1001": 3}


async def run_tls_gateway(
    tmp_path: Path, server_ctx: ssl.SSLContext, body: str, target_extra: str = ""
) -> Outcome:
    """Run ``body`` against the reference gateway behind TLS on 127.0.0.1."""
    gateway = Gateway(GatewayConfig())
    results = tmp_path / "results"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            tls_listeners = [trio.SSLListener(x, server_ctx) for x in listeners]
            await nursery.start(trio.serve_listeners, gateway.handle_stream, tls_listeners)
            profile = make_profile(
                body, url=f"wss://127.0.0.1:{port}/ws", results=results, target_extra=target_extra
            )
            recorder = Recorder(results, "tls", now_wall())
            outcome = await Runner(profile, recorder, manage_gc=False).run()
            nursery.cancel_scope.cancel()
    return outcome


@pytest.mark.process
async def test_wss_on_loopback_with_ca_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    outcome = await run_tls_gateway(
        tmp_path, server_context(ca), PROFILE.format(hold="2s"), f'ca_file = "{ca_file}"\n'
    )
    tot = outcome.summary["totals"]
    assert tot["connects"] == 3
    assert tot["pings"] > 0
    # a ping sent just before the end may still be waiting: abandoned, not missed
    assert tot["pongs"] + tot["abandoned"] == tot["pings"]
    assert tot["missed"] == 0
    assert tot["handshake_failure_total"] == 0


@pytest.mark.process
async def test_wss_untrusted_certificate_is_a_tls_failure(tmp_path: Path) -> None:
    server_ctx = server_context(trustme.CA())  # a CA the client does not trust
    body = PROFILE.format(hold="1s").replace("to = 3", "to = 1")
    body += '[reconnect]\nmax_attempts = 1\ninitial_delay = "100ms"\n'
    outcome = await run_tls_gateway(tmp_path, server_ctx, body)
    tot = outcome.summary["totals"]
    assert tot["handshake_failures"] == {"tls": 2}
    assert outcome.exit_code == 3
