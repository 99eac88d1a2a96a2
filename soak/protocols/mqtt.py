"""MQTT over WebSocket (3.1.1 and 5), as described in docs/dialects/mqtt.md.

The upgrade offers subprotocol ``mqtt`` and the server must choose it. Then,
in binary messages::

    -> CONNECT  (protocol level 4 or 5, keepalive, client id, clean session,
                 user name and password when the profile gives them)
    <- CONNACK  (accepted; or a return / reason code: the refusal's cause)
    -> PINGREQ  c0 00    every heartbeat interval
    <- PINGRESP d0 00    in order, no id: the oldest outstanding heartbeat

PINGRESP has no id, so one heartbeat at most is in flight (``max_in_flight``
1, FIFO). An MQTT 5 broker's DISCONNECT is its farewell: the end of the
connection that follows is the server's close with that reason code. A
broker's keepalive timeout (mosquitto: TCP closed without a close frame
about 1.5 x keepalive after the last packet it received; RabbitMQ: 1000
"MQTT died"; MQTT 5: DISCONNECT 0x8D) is judged by :func:`mqtt_verdict`
against the keepalive the server enforces on that connection: its own
Server Keep Alive when its CONNACK carries one (MQTT 5), else soak's.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, ClassVar

from soak.classify import (
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    CLIENT,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    TRANSPORT,
    CloseInfo,
    Verdict,
)
from soak.config.mqtt import LATE_CLOSE, MQTT_DIED_RE, MqttConfig, mqtt_server_heartbeat
from soak.config.target import TargetConfig
from soak.errors import HandshakeError, ProtocolError
from soak.protocols import mqtt_packets as mp
from soak.protocols.base import OLDEST, Frame, HandshakeIO, HeartbeatProtocol
from soak.wsframe import OP_BINARY

PING: Frame = (OP_BINARY, mp.PINGREQ_BYTES)
# how much earlier than the keepalive a close may come, as the client sees it
# (timers, the network), before the client counts as within its keepalive
SLACK = 0.05


class MqttState:
    """Run-wide: the CONNECT's fixed parts, and what the brokers said:
    CONNACKs, refusals, Server Keep Alive values, DISCONNECT reasons."""

    def __init__(self, target: TargetConfig) -> None:
        cfg = target.mqtt or MqttConfig(keepalive=30.0)
        self.config = cfg
        self.version = cfg.version
        self.keepalive = cfg.declared_keepalive
        self.interval = cfg.heartbeat_interval or 0.0
        # the profile's own [target.server_heartbeat] rules when it has one;
        # else the dialect judges keepalive closes itself
        self.implied = target.server_heartbeat in (None, mqtt_server_heartbeat(self.keepalive))
        self.connacks = 0
        self.sessions_present = 0
        self.refusals: Counter[str] = Counter()
        self.server_keep_alive: Counter[int] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.protocol_errors = 0

    def connect_packet(self, client_id: str) -> bytes:
        cfg = self.config
        return mp.connect(
            version=cfg.version,
            client_id=cfg.client_id_for(client_id),
            keepalive=self.keepalive,
            clean=cfg.clean_session,
            username=cfg.username,
            password=cfg.password,
        )

    def summary(self) -> dict[str, Any]:
        """For summary.json."""
        return {
            "version": "3.1.1" if self.version == 4 else "5",
            "keepalive": f"{self.keepalive}s",  # a setting, not a count to add up
            "connacks": self.connacks,
            "sessions_present": self.sessions_present,
            "refusals": dict(self.refusals),
            # MQTT 5 brokers that imposed their own keepalive: seconds -> connections
            "server_keep_alive_s": {str(k): n for k, n in sorted(self.server_keep_alive.items())},
            "disconnects": dict(self.disconnects),
            "protocol_errors": self.protocol_errors,
        }


class Mqtt(HeartbeatProtocol):
    name: ClassVar[str] = "mqtt"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("keepalive", "reader", "server_keep_alive", "state")

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, MqttState):
            state = MqttState(TargetConfig(protocol="mqtt"))
        self.state: MqttState = state
        self.max_in_flight = 1  # PINGRESP carries no id
        self.reader = mp.PacketReader()
        # what the server enforces on this connection, and whether it said so
        self.keepalive = state.keepalive
        self.server_keep_alive: int | None = None

    @classmethod
    def shared_state(cls, target: Any) -> MqttState:
        return MqttState(target)

    def subprotocols(self) -> tuple[str, ...]:
        return ("mqtt",)

    # -- the handshake -----------------------------------------------------------------

    async def handshake(self, io: HandshakeIO) -> None:
        st = self.state
        url = io.url
        self.reader = mp.PacketReader()
        self.farewell = None
        self.keepalive = st.keepalive
        self.server_keep_alive = None
        await io.send_bytes(st.connect_packet(self.client_id))
        packets: list[mp.Packet] = []
        while not packets:
            message = await io.receive()
            if isinstance(message, str):
                raise HandshakeError(
                    "protocol",
                    f"{url}: a text message instead of CONNACK ({_excerpt(message)}); "
                    "MQTT over WebSocket is binary: is this an MQTT broker?",
                )
            try:
                packets = self.reader.feed(message)
            except mp.MalformedPacket as exc:
                raise HandshakeError(
                    "protocol", f"{url}: {exc} instead of CONNACK (is this an MQTT broker?)"
                ) from None
        try:
            self._connack(packets[0], url)
        except HandshakeError as exc:
            st.refusals[exc.cause] += 1
            raise
        for packet in packets[1:]:  # what came with the CONNACK
            self._packet(packet)

    def _connack(self, first: mp.Packet, url: str) -> None:
        st = self.state
        if first.type == mp.DISCONNECT:
            try:
                code, props = mp.parse_disconnect(first)
            except mp.MalformedPacket as exc:
                raise HandshakeError("protocol", f"{url}: {exc} in the MQTT handshake") from None
            raise _refusal(code, 5, url, props)
        try:
            connack = mp.parse_connack(first, st.version)
        except mp.MalformedPacket as exc:
            raise HandshakeError("protocol", f"{url}: {exc} in the MQTT handshake") from None
        if not connack.accepted:
            raise _refusal(connack.code, st.version, url, connack.properties)
        self._accepted(connack, url)

    def _accepted(self, connack: mp.Connack, url: str) -> None:
        st = self.state
        st.connacks += 1
        st.sessions_present += connack.session_present
        imposed = connack.properties.get("server_keep_alive")
        if not isinstance(imposed, int) or imposed == st.keepalive:
            return
        st.server_keep_alive[imposed] += 1
        if imposed and st.interval > imposed:
            raise HandshakeError(
                "keepalive",
                f"{url}: the broker imposes a keepalive of {imposed}s (MQTT 5 Server Keep "
                f"Alive), shorter than heartbeat.interval {st.interval:g}s: it would drop "
                f"soak between two PINGREQs; set heartbeat.interval to at most {imposed}s",
                permanent=True,
            )
        # from now on the server holds the client to its value, not soak's
        self.keepalive = imposed
        self.server_keep_alive = imposed

    # -- the heartbeat ------------------------------------------------------------------

    def ping_frame(self, seq: int, now_ms: int) -> Frame:
        return PING

    def pong_text(self, text: str) -> int | None:
        # MQTT 6.0: a receiver of a non-binary data frame closes the connection
        self.state.protocol_errors += 1
        raise ProtocolError(
            f"a text message on MQTT over WebSocket ({_excerpt(text)})", close_code=1003
        )

    def pong_binary(self, data: bytes) -> int | None:
        try:
            packets = self.reader.feed(data)
        except mp.MalformedPacket as exc:
            self.state.protocol_errors += 1
            raise ProtocolError(f"malformed MQTT packet: {exc}") from None
        replies = 0
        for packet in packets:
            replies += self._packet(packet)
        if not replies:
            return None
        self.replies = replies
        return OLDEST

    def _packet(self, packet: mp.Packet) -> int:
        """One packet from the server on a live connection: 1 for a PINGRESP."""
        kind = packet.type
        if kind == mp.PINGRESP:
            if packet.flags or packet.body:
                self.state.protocol_errors += 1
                raise ProtocolError("malformed MQTT packet: a PINGRESP with flags or a body")
            return 1
        if kind == mp.DISCONNECT:
            try:
                code, props = mp.parse_disconnect(packet)
            except mp.MalformedPacket as exc:
                self.state.protocol_errors += 1
                raise ProtocolError(f"malformed MQTT packet: {exc}") from None
            name = mp.reason_name(code)
            self.state.disconnects[name] += 1
            self.farewell = (code, _with_properties(name, props))
        elif kind in (mp.CONNACK, mp.CONNECT, mp.PINGREQ):
            self.state.protocol_errors += 1
            raise ProtocolError(f"an MQTT {packet.name} from the server on a live connection")
        # anything else (PUBLISH, AUTH, ...) is not soak's: it subscribes to nothing
        return 0

    # -- closes ------------------------------------------------------------------------

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        # a profile's own [target.server_heartbeat] decides heartbeat timeouts
        keepalive = self.keepalive if self.state.implied else 0
        return mqtt_verdict(verdict, info, keepalive, self.farewell, self.server_keep_alive)


def mqtt_verdict(
    verdict: Verdict,
    info: CloseInfo,
    keepalive: int,
    farewell: tuple[int | None, str] | None,
    imposed: int | None = None,
) -> Verdict:
    """An MQTT broker's close. Its keepalive timeout (DISCONNECT 0x8D,
    "MQTT died", or no close frame between :func:`early` and :func:`late`
    after the last PINGRESP) is a heartbeat timeout: false when a PINGRESP
    came within the keepalive (the server had a packet from the client in
    time), else justified. Another DISCONNECT is counted by its reason.
    ``imposed``: the keepalive came from the server (Server Keep Alive);
    ``keepalive`` 0: no keepalive timeout to judge (none declared, or the
    profile's own ``[target.server_heartbeat]`` judges them)."""
    if info.initiator == CLIENT:
        return verdict
    code = None if farewell is None else farewell[0]
    if code == mp.KEEP_ALIVE_TIMEOUT and keepalive > 0:
        said = "DISCONNECT 0x8D keep alive timeout"
    elif info.initiator == SERVER and MQTT_DIED_RE.search(info.reason):
        said = f'close {info.code} "{info.reason}"'
    elif farewell is not None and code is not None:
        key = "server_mqtt_" + mp.reason_name(code).replace(" ", "_")
        return Verdict(key, CATEGORY_SERVER, f"DISCONNECT {code:#04x} {farewell[1]}")
    else:
        said = ""
    ev = info.evidence
    if ev is None or keepalive <= 0:
        return verdict
    since = ev.last_pong_age if ev.last_pong_age is not None else ev.age
    deadline = 1.5 * keepalive
    if not said:
        if info.initiator != TRANSPORT or not early(keepalive) <= since <= late(keepalive):
            return verdict  # not the keepalive's timing: a restart, a network
        said = "closed without a close frame"
    what = "PINGRESP" if ev.last_pong_age is not None else "packet since the CONNACK"
    whose = " (the server's Server Keep Alive)" if imposed is not None else ""
    if since < keepalive - (SLACK + 0.02 * keepalive):
        return Verdict(
            FALSE_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"{said}, but the last {what} came {since:.3f}s ago < keepalive {keepalive}s{whose}",
        )
    sent = ""
    if ev.last_sent_age is not None:
        sent = f"; the last PINGREQ went {ev.last_sent_age:.3f}s ago"
    return Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        f"{said}: no {what} for {since:.3f}s >= keepalive {keepalive}s{whose} "
        f"(the broker may close at 1.5 x = {deadline:g}s){sent}",
    )


def early(keepalive: int) -> float:
    """The earliest end without a close frame, after the last PINGRESP,
    taken for the broker's keepalive timeout: a quarter keepalive before
    1.5 x keepalive, or mosquitto's whole seconds (keepalive 1 s: 1 s)."""
    return min(1.25 * keepalive, float(math.floor(1.5 * keepalive))) - SLACK


def late(keepalive: int) -> float:
    """The latest: 1.5 x keepalive and a broker's check period (LATE_CLOSE)."""
    deadline = 1.5 * keepalive
    return deadline + LATE_CLOSE + 0.02 * deadline


# refusals: MQTT 3.1.1 return codes and MQTT 5 reason codes -> cause
_CAUSES = {
    4: {1: "protocol", 2: "client_id", 3: "unavailable", 4: "auth", 5: "auth"},
    5: {
        0x81: "protocol",
        0x82: "protocol",
        0x84: "protocol",
        0x85: "client_id",
        0x86: "auth",
        0x87: "auth",
        0x8A: "auth",
        0x8C: "auth",
        0x88: "unavailable",
        0x89: "unavailable",
        0x97: "unavailable",
        0x9F: "unavailable",
    },
}
# trying again cannot help: the credentials, the id or the version are wrong
PERMANENT = {4: frozenset({1, 2, 4, 5}), 5: frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})}


def _refusal(code: int, version: int, url: str, props: dict[str, object]) -> HandshakeError:
    """The HandshakeError for a CONNACK (or DISCONNECT) that refuses."""
    if version == 5 and code in mp.RETURN_CODES:
        version = 4  # a 3.1.1 broker's answer to an MQTT 5 CONNECT
    if version == 4:
        name = mp.RETURN_CODES.get(code, f"return code {code}")
        text = f"{url}: the broker refused the connection: CONNACK return code {code} ({name})"
    else:
        name = mp.reason_name(code)
        text = f"{url}: the broker refused the connection: reason code {code:#04x} ({name})"
        text = _with_properties(text, props)
    cause = _CAUSES[version].get(code, "rejected")
    if cause == "protocol" and code in (1, 0x84):
        text += "; try [target.mqtt] version = 4 (MQTT 3.1.1)"
    elif cause == "auth":
        text += " (user name from [target.mqtt] username, password from password_env)"
    return HandshakeError(cause, text, permanent=code in PERMANENT[version])


def _with_properties(text: str, props: dict[str, object]) -> str:
    reason = props.get("reason_string")
    if isinstance(reason, str) and reason:
        text += f': "{reason}"'
    reference = props.get("server_reference")
    if isinstance(reference, str) and reference:
        text += f" (server reference {reference})"
    return text


def _excerpt(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))
