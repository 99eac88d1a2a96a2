"""Runs of the MQTT dialect under MockClock against an in-memory broker
that follows the spec's wire examples: CONNECT/CONNACK, PINGREQ/PINGRESP
in order, the keepalive enforced at 1.5 x (no close frame, as mosquitto),
MQTT 5 DISCONNECT with a reason code."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

from soak.protocols import mqtt_packets as mp
from tests.support.runs import events, make_profile, run_in_memory, serving

BODY = """
[run]
label = "mqtt"
report_interval = "10s"
[clients]
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "1s"
timeout = "500ms"
max_missed = {max_missed}
phase = "spread"
[reconnect]
jitter = "none"
initial_delay = "1s"
max_attempts = {attempts}
"""


@dataclass
class FakeBroker:
    """One broker for every connection of a run (times are trio's)."""

    version: int = 4
    connack: bytes | None = None  # None: accepted (3.1.1 or 5 form by the CONNECT)
    subprotocol: str | None = "mqtt"
    # PINGREQs after this are lost on the way: never received
    deaf_after: float = math.inf
    # PINGREQ number k (from 1, per connection) answered this much later
    delay: dict[int, float] = field(default_factory=dict)
    # (seconds after CONNACK, reason code): an MQTT 5 DISCONNECT, then TCP closed
    disconnect: tuple[float, int] | None = None
    server_keep_alive: int | None = None  # put into an MQTT 5 CONNACK
    connects: list[tuple[int, int, str]] = field(default_factory=list)  # level, K, id
    kills: list[float] = field(default_factory=list)  # keepalive timeouts, when

    async def serve(self, stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            async with trio.open_nursery() as nursery:
                await self._serve(stream, ws, nursery)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _serve(self, stream: trio.abc.Stream, ws: WSConnection, nursery: Any) -> None:
        reader = mp.PacketReader()
        last = [trio.current_time()]  # when the last packet came
        pings = 0
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    if self.subprotocol is not None:
                        assert event.subprotocols == ["mqtt"]
                    await stream.send_all(ws.send(AcceptConnection(subprotocol=self.subprotocol)))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    return
                elif isinstance(event, TextMessage):
                    raise AssertionError("MQTT over WebSocket is binary")
                elif isinstance(event, BytesMessage):
                    for packet in reader.feed(bytes(event.data)):
                        now = trio.current_time()
                        if packet.type == mp.CONNECT:
                            keepalive = self._connect(packet)
                            last[0] = now
                            if not await self._connack(stream, ws):
                                return
                            nursery.start_soon(self._keepalive, stream, keepalive, last)
                            if self.disconnect is not None:
                                nursery.start_soon(self._disconnect, stream, ws)
                        elif packet.type == mp.PINGREQ:
                            assert packet.flags == 0
                            assert packet.body == b""
                            if now >= self.deaf_after:
                                continue
                            pings += 1
                            last[0] = now
                            nursery.start_soon(self._pingresp, stream, ws, self.delay.get(pings))

    def _connect(self, packet: mp.Packet) -> int:
        body = packet.body
        assert body[:6] == b"\x00\x04MQTT"
        level, flags = body[6], body[7]
        assert flags & 0x02  # clean session
        keepalive = int.from_bytes(body[8:10], "big")
        pos = 10
        if level == 5:
            assert body[pos] == 0  # no properties
            pos += 1
        n = int.from_bytes(body[pos : pos + 2], "big")
        self.connects.append((level, keepalive, body[pos + 2 : pos + 2 + n].decode()))
        return keepalive

    async def _connack(self, stream: trio.abc.Stream, ws: WSConnection) -> bool:
        level = self.connects[-1][0]
        answer = self.connack
        if answer is None:
            if level == 4:
                answer = b"\x20\x02\x00\x00"
            else:
                props = b""
                if self.server_keep_alive is not None:
                    props = b"\x13" + self.server_keep_alive.to_bytes(2, "big")
                answer = b"\x20" + bytes([3 + len(props), 0, 0, len(props)]) + props
        await stream.send_all(ws.send(BytesMessage(answer)))
        if answer[3] != 0:  # refused: the broker closes the network connection
            await stream.aclose()
            return False
        return True

    async def _keepalive(self, stream: trio.abc.Stream, keepalive: int, last: list[float]) -> None:
        """[MQTT-3.1.2-24], as mosquitto does it: TCP closed, no close frame."""
        if self.server_keep_alive is not None:
            keepalive = self.server_keep_alive
        if not keepalive:
            return
        while True:
            await trio.sleep_until(last[0] + 1.5 * keepalive)
            if trio.current_time() >= last[0] + 1.5 * keepalive:
                self.kills.append(trio.current_time())
                await stream.aclose()
                return

    async def _pingresp(
        self, stream: trio.abc.Stream, ws: WSConnection, delay: float | None
    ) -> None:
        if delay is not None:
            await trio.sleep(delay)
        await stream.send_all(ws.send(BytesMessage(mp.PINGRESP_BYTES)))

    async def _disconnect(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        assert self.disconnect is not None
        after, code = self.disconnect
        await trio.sleep(after)
        await stream.send_all(ws.send(BytesMessage(b"\xe0\x02" + bytes([code, 0]))))
        await stream.aclose()


async def run_mqtt(
    broker: FakeBroker,
    tmp_path: Path,
    *,
    table: str = "",
    clients: int = 1,
    hold: str = "20s",
    max_missed: int = 3,
    attempts: int = 5,
    environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    body = BODY.format(clients=clients, hold=hold, max_missed=max_missed, attempts=attempts)
    profile = make_profile(
        body,
        results=tmp_path,
        protocol="mqtt",
        url="ws://127.0.0.1:9/",
        environ=environ,
        target_extra=table,
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(broker.serve))
    summary: dict[str, Any] = outcome.summary
    return summary


def closes(tmp_path: Path) -> list[dict[str, Any]]:
    return [e for e in events(tmp_path) if e.get("event") == "close"]


@pytest.mark.parametrize("version", [4, 5])
async def test_clients_are_held_with_no_miss_and_no_close(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, version: int
) -> None:
    broker = FakeBroker()
    table = f'[target.mqtt]\nversion = {version}\nkeepalive = "1s"\n'
    summary = await run_mqtt(broker, tmp_path, table=table, clients=10, hold="15s")
    tot = summary["totals"]
    assert tot["connects"] == 10
    assert tot["missed"] == 0
    assert tot["late"] == 0
    assert tot["held"] == 0
    assert tot["pings"] == tot["pongs"] >= 10 * 14
    assert tot["closes"] == {"client_shutdown": 10}
    assert broker.kills == []  # a PINGREQ every 1 s keeps a 1 s keepalive
    assert {c[:2] for c in broker.connects} == {(version, 1)}
    assert sorted(c[2] for c in broker.connects) == [f"soak-{i:06d}" for i in range(10)]
    proto = summary["protocol"]
    assert proto["name"] == "mqtt"
    assert proto["connacks"] == 10
    assert proto["version"] == ("3.1.1" if version == 4 else "5")


async def test_two_pingresps_in_one_message_answer_two_heartbeats(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # the first PINGREQ (at 0 s) is answered 1 s late: it is missed at
    # 0.5 s, the second goes at 1 s, and both answers come together at 1 s
    broker = FakeBroker(delay={1: 1.0})
    answered = [0]

    async def together(stream: trio.abc.Stream, ws: WSConnection, delay: float | None) -> None:
        answered[0] += 1
        if answered[0] == 2:
            return  # the second answer rides with the first
        answers = mp.PINGRESP_BYTES
        if delay is not None:
            await trio.sleep(delay + 0.001)
            answers += mp.PINGRESP_BYTES
        await stream.send_all(ws.send(BytesMessage(answers)))

    broker._pingresp = together  # type: ignore[method-assign]
    summary = await run_mqtt(broker, tmp_path, hold="2500ms")
    tot = summary["totals"]
    assert tot["pings"] == 3
    assert tot["missed"] == 1
    assert tot["late"] == 1  # the first, with its 1 s RTT
    assert tot["pongs"] == 2  # the second on time (the message held both), the third
    assert tot["unknown_pongs"] == 0


async def test_a_silent_client_is_dropped_and_the_timeout_is_justified(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # from 5 s the PINGREQs are lost: the broker closes TCP 1.5 x 2 s after
    # the last one it got (at 5 s, soak's 5th heartbeat at 4.x s)
    broker = FakeBroker(deaf_after=5.0)
    table = '[target.mqtt]\nkeepalive = "2s"\n'
    summary = await run_mqtt(broker, tmp_path, table=table, hold="9s", max_missed=50)
    assert len(broker.kills) == 1
    tot = summary["totals"]
    assert tot["closes"]["justified_timeout"] == 1
    (close, *_) = closes(tmp_path)
    assert close["reason"] == "justified_timeout"
    assert close["initiator"] == "transport"
    assert close["why"].startswith("closed without a close frame: no PINGRESP for 3.0")
    assert ">= keepalive 2s (the broker may close at 1.5 x = 3s)" in close["why"]


async def test_a_keep_alive_timeout_despite_pingresps_is_false(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # an MQTT 5 broker that says 0x8D keep alive timeout 2.25 s after the
    # CONNACK, its keepalive 3 s (its own Server Keep Alive): soak's PINGREQs
    # went every second and were answered
    broker = FakeBroker(disconnect=(2.25, 0x8D), server_keep_alive=3)
    table = '[target.mqtt]\nversion = 5\nkeepalive = "10s"\n'
    summary = await run_mqtt(broker, tmp_path, table=table, hold="2500ms", attempts=0)
    (close, *_) = closes(tmp_path)
    assert close["reason"] == "false_timeout"
    assert close["code"] == 0x8D
    assert close["text"] == "keep alive timeout"
    assert close["why"].startswith("DISCONNECT 0x8D keep alive timeout, but the last PINGRESP")
    assert close["why"].endswith("< keepalive 3s (the server's Server Keep Alive)")
    assert summary["protocol"]["server_keep_alive_s"] == {"3": 1}
    assert summary["protocol"]["disconnects"] == {"keep alive timeout": 1}


async def test_a_disconnect_is_the_servers_close_with_its_reason(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    broker = FakeBroker(disconnect=(1.7, 0x8B))
    table = "[target.mqtt]\nversion = 5\n"
    summary = await run_mqtt(broker, tmp_path, table=table, hold="3s", attempts=0)
    (close, *_) = closes(tmp_path)
    assert close["reason"] == "server_mqtt_server_shutting_down"
    assert close["initiator"] == "server"
    assert close["code"] == 0x8B
    assert summary["totals"]["closes"]["server_mqtt_server_shutting_down"] >= 1


async def test_bad_credentials_are_refused_for_good(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    broker = FakeBroker(connack=b"\x20\x02\x00\x04")
    table = '[target.mqtt]\nusername = "u"\npassword_env = "PW"\n'
    summary = await run_mqtt(
        broker, tmp_path, table=table, clients=10, hold="30s", environ={"PW": "wrong"}
    )
    tot = summary["totals"]
    assert tot["connects"] == 0
    assert tot["handshake_failures"] == {"auth": tot["handshake_failure_total"]}
    # a few refusals make it permanent; then nobody tries again (no storm)
    assert tot["handshake_failure_total"] <= 12
    assert len(broker.connects) == tot["handshake_failure_total"]
    assert summary["protocol"]["refusals"] == {"auth": tot["handshake_failure_total"]}
    error = (
        "ws://127.0.0.1:9/: the broker refused the connection: CONNACK return code 4 "
        "(bad user name or password) (user name from [target.mqtt] username, password "
        "from password_env)"
    )
    assert tot["permanent_failure"]["error"] == error
    assert summary["exit_code"] == 3
    assert summary["duration_s"] == 10.0  # it ends at the next boundary, not after 30 s


async def test_a_server_without_the_subprotocol_fails_the_handshake(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    broker = FakeBroker(subprotocol=None)
    summary = await run_mqtt(broker, tmp_path, hold="3s", attempts=1)
    tot = summary["totals"]
    assert tot["connects"] == 0
    assert set(tot["handshake_failures"]) == {"subprotocol"}
    assert broker.connects == []  # no CONNECT on a connection that is not MQTT's
