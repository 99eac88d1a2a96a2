"""Pure: which dialect a message belongs to, from the well-known greetings.

A server that speaks another dialect than the profile says usually tells
at once: an Engine.IO server opens with ``0{"sid":...``, an OpenClaw
Gateway with a ``connect.challenge`` event, a graphql-ws server answers
with ``connection_ack``, an MQTT broker with a CONNACK. A dialect that gets
a message it cannot place in its first exchange asks :func:`sniff`; when it
recognises the message, the handshake failure (or the close) says what was
seen and which ``protocol`` would speak it, instead of a bare timeout.

Only the first messages of a connection are sniffed: never on the hot path.
A close of the server before any heartbeat was answered is compared with
the close signatures of well-known servers too (:func:`foreign_close`, for
the verdict's ``why``): graphql-ws closes 4406 "Subprotocol not acceptable"
at once when its subprotocol was not offered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from soak.classify import SERVER, CloseInfo, Verdict
from soak.config.patterns import excerpt

# how many first messages of a connection a dialect without a handshake
# sniffs when it cannot place them (later ones are the application's)
SNIFFED = 3


@dataclass(frozen=True)
class Sniffed:
    """A message recognised as another dialect's."""

    dialect: str  # what the server speaks, as people call it
    what: str  # what the message is
    protocol: str | None  # the soak protocol that speaks it, if there is one
    message: str  # an excerpt of the message

    def explain(self, protocol: str) -> str:
        """One line: what was seen, and what to do."""
        text = (
            f"the server sent {self.what} ({self.message}): it speaks {self.dialect}, "
            f'not protocol = "{protocol}"'
        )
        if self.protocol is not None and self.protocol != protocol:
            text += f' (try protocol = "{self.protocol}")'
        return text


_EIO_OPEN = re.compile(r'0\{"sid":')
_EIO_OPEN_LOOSE = re.compile(r"0\{.*\"pingInterval\"\s*:", re.S)
_SIO_PACKET = re.compile(r"4[0-6](/[^,]*,)?[\[{]")
_SOCKJS = re.compile(r'(o|h|a\[.*\]|c\[[0-9]+,".*"\])', re.S)
_STOMP = re.compile(r"(CONNECTED|ERROR|MESSAGE|RECEIPT)\r?\n")
_NATS = re.compile(r"(INFO \{|-ERR ')")


def sniff(message: str | bytes, speaking: str | None = None) -> Sniffed | None:
    """The dialect ``message`` is a greeting (or a first answer) of, or None.
    ``speaking``: the soak protocol asking; a message of its own dialect
    that it could not read is no other dialect's (None), whatever its
    shape says."""
    seen = _sniff(message)
    if seen is not None and speaking is not None and seen.protocol == speaking:
        return None
    return seen


def _sniff(message: str | bytes) -> Sniffed | None:
    if isinstance(message, bytes):
        return _binary(message)
    shown = excerpt(message)
    if _EIO_OPEN.match(message) or _EIO_OPEN_LOOSE.match(message):
        return Sniffed("Socket.IO (Engine.IO)", "an Engine.IO open packet", "socket.io", shown)
    if _SIO_PACKET.match(message):
        return Sniffed("Socket.IO", "a Socket.IO packet", "socket.io", shown)
    if _NATS.match(message):
        return Sniffed("NATS", "a NATS greeting", "nats", shown)
    if _STOMP.match(message):
        return Sniffed("STOMP", "a STOMP frame", "stomp", shown)
    if message.endswith("\x1e") and message.startswith("{"):
        return Sniffed("SignalR", "a SignalR message (ends with 0x1e)", "signalr", shown)
    if _SOCKJS.fullmatch(message):
        return Sniffed("SockJS", "a SockJS frame", "sockjs", shown)
    doc = _json(message)
    if isinstance(doc, dict):
        return _json_object(doc, shown)
    if isinstance(doc, list) and len(doc) == 5 and doc[2] == "phoenix":
        return Sniffed("Phoenix Channels", "a Phoenix message", "phoenix", shown)
    return None


def _json(text: str) -> Any:
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


_GRAPHQL_WS = {
    "connection_ack": "graphql-ws",
    "connection_error": "subscriptions-transport-ws (legacy graphql-ws)",
    "ka": "subscriptions-transport-ws (legacy graphql-ws)",
    "next": "graphql-ws",
    "complete": "graphql-ws",
}


def _json_object(doc: dict[str, Any], shown: str) -> Sniffed | None:
    kind = doc.get("type")
    event = doc.get("event")
    if kind == "event" and event == "connect.challenge":
        return Sniffed("the OpenClaw Gateway protocol", "a connect.challenge", "openclaw", shown)
    if isinstance(kind, str) and kind in _GRAPHQL_WS:
        dialect = _GRAPHQL_WS[kind]
        protocol = "graphql-ws" if dialect == "graphql-ws" else None
        return Sniffed(dialect, f"a {kind} message", protocol, shown)
    if kind in ("welcome", "confirm_subscription", "disconnect") or (
        kind == "ping" and "message" in doc
    ):
        return Sniffed("ActionCable", f"an ActionCable {kind}", "actioncable", shown)
    if isinstance(event, str) and event.startswith("pusher:"):
        return Sniffed("Pusher Channels", f"a {event} event", "pusher", shown)
    if event == "phx_reply" and doc.get("topic") == "phoenix":
        return Sniffed("Phoenix Channels", "a Phoenix reply", "phoenix", shown)
    if "connect" in doc and isinstance(doc.get("id"), int) and isinstance(doc["connect"], dict):
        return Sniffed("Centrifugo", "a Centrifugo connect reply", "centrifugo", shown)
    return None


# MQTT control packets a broker sends first: CONNACK, PINGRESP, DISCONNECT
_MQTT = {0x20: "an MQTT CONNACK", 0xD0: "an MQTT PINGRESP", 0xE0: "an MQTT DISCONNECT"}


def _binary(data: bytes) -> Sniffed | None:
    if len(data) >= 2 and data[0] in _MQTT and data[1] == len(data) - 2:
        return Sniffed("MQTT", _MQTT[data[0]], "mqtt", excerpt(data))
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    return _sniff(text)


# Close signatures of well-known servers, seen when a client speaks another
# dialect to them: (code, reason pattern, dialect, soak protocol).
_CLOSES: tuple[tuple[int, re.Pattern[str], str, str | None], ...] = (
    (4406, re.compile(r"subprotocol not acceptable", re.I), "graphql-ws", "graphql-ws"),
    (4408, re.compile(r"connection initiali[sz]ation timeout", re.I), "graphql-ws", "graphql-ws"),
    (4400, re.compile(r"invalid message", re.I), "graphql-ws", "graphql-ws"),
    (4429, re.compile(r"too many initiali[sz]ation requests", re.I), "graphql-ws", "graphql-ws"),
    (3012, re.compile(r"no pong", re.I), "Centrifugo", "centrifugo"),
    (1000, re.compile(r"^MQTT died$"), "MQTT (RabbitMQ web-mqtt)", "mqtt"),
    (1000, re.compile(r"^STOMP died$"), "STOMP (RabbitMQ web-stomp)", "stomp"),
    (1006, re.compile(r"^Stale Connection$"), "NATS", "nats"),
)


def sniff_close(code: int | None, reason: str) -> Sniffed | None:
    """The dialect whose server closes with this code and reason, or None."""
    for known, pattern, dialect, protocol in _CLOSES:
        if code == known and pattern.search(reason):
            shown = f'close {code} "{reason}"'
            return Sniffed(dialect, f"a close of {dialect}'s", protocol, shown)
    return None


def foreign_close(verdict: Verdict, info: CloseInfo, protocol: str) -> Verdict:
    """A server close before any heartbeat was answered, with the signature
    of another dialect's server: the verdict says so (its ``why``)."""
    if verdict.why or info.initiator != SERVER:
        return verdict
    evidence = info.evidence
    if evidence is not None and evidence.last_pong_age is not None:
        return verdict  # heartbeats were answered: the dialect is right
    seen = sniff_close(info.code, info.reason)
    if seen is None or seen.protocol == protocol:
        return verdict
    return Verdict(verdict.key, verdict.category, seen.explain(protocol))
