"""soak.beats: how often each side sends, by dialect; the chain's
prediction from it; soak doctor's warning against common hops' defaults."""

from __future__ import annotations

import math

from soak.beats import beats, race
from soak.chain import predict
from soak.config.hops import Hop
from soak.config.profile import Profile
from soak.doctor.chain import check_beats
from tests.support.runs import make_profile

BODY = """
[[clients.stages]]
kind = "hold"
duration = "10s"
[heartbeat]
interval = "{interval}"
timeout = "5s"
"""


def profile(protocol: str, interval: str = "30s", target_extra: str = "") -> Profile:
    return make_profile(
        BODY.format(interval=interval), protocol=protocol, target_extra=target_extra
    )


def test_request_response_dialects_send_both_ways_every_interval() -> None:
    b = beats(profile("json", "20s"))
    assert (b.up, b.down) == (20.0, 20.0)
    assert b.why == "json: the client every 20 s"


def test_socket_io_traffic_is_the_servers_ping_and_its_answer() -> None:
    b = beats(profile("socket.io", "20s"))
    # soak's own [heartbeat] sends nothing on Engine.IO 4
    assert (b.up, b.down) == (25.0, 25.0)
    assert "the server every 25 s" in b.why


def test_actioncable_only_the_server_speaks() -> None:
    b = beats(profile("actioncable"))
    assert b.down == 3.0
    assert math.isinf(b.up)
    assert b.gap("client") == math.inf
    assert b.gap("either") == 3.0


def test_a_dialect_table_sets_the_servers_interval() -> None:
    b = beats(profile("graphql-ws", "30s", '[target.graphql_ws]\nkeepalive = "5s"\n'))
    assert b.down == 5.0
    assert b.up == 5.0  # soak answers the server's pings
    assert "[target.graphql_ws] keepalive" in b.why


def test_a_hop_reset_only_by_the_clients_traffic_sees_the_clients_gap() -> None:
    hop = Hop(kind="nat", idle_timeout=10.0, resets_on="client", source="profile")
    (p,) = predict([hop], beats(profile("actioncable")))
    assert p.closes
    assert "no heartbeat resets it" in p.text()
    (q,) = predict([hop], beats(profile("json", "5s")))
    assert not q.closes


def test_doctor_warns_when_a_dialects_gap_reaches_a_common_hops_default() -> None:
    found = check_beats(profile("mqtt", "60s"))  # MQTT.js's keepalive
    names = [f.code for f in found]
    assert names == ["dialect-gap-vs-hop", "dialect-gap-vs-hop"]  # nginx's and AWS's 60 s
    assert "reaches the nginx proxy_read_timeout (default) of 60 s" in found[0].message
    assert check_beats(profile("mqtt", "30s")) == []
    assert [x[0] for x in race(beats(profile("json", "120s")))] == [
        "nginx proxy_read_timeout (default)",
        "AWS ALB/ELB idle timeout (default)",
        "Cloudflare proxy",
    ]


def test_soak_run_help_lists_every_dialect() -> None:
    from click.testing import CliRunner

    from soak.cli import cli
    from soak.protocols import PROTOCOLS

    out = CliRunner().invoke(cli, ["run", "--help"], terminal_width=400).output
    for name in PROTOCOLS:
        assert name in out.split("Dialects ([target] protocol): ")[1]
