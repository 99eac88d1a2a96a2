"""SockJS over its native WebSocket transport, as described in
docs/dialects/sockjs.md.

The upgrade goes to ``<prefix>/<server>/<session>/websocket`` (the URL's
path is the prefix; a new random session per connection, as sockjs-client
does). The server frames everything it sends::

    <- o                                   # open: the handshake
    <- h                                   # a heartbeat (Spring; sockjs-node pings instead)
    <- a["message",...]                    # messages
    <- c[3000,"No response from heartbeat"]  # its goodbye, then the WebSocket close

sockjs-node pings with RFC 6455 frames (the client answers them and records
them as server heartbeats) and gives a client whose pong did not come
within 10 s the ``c`` frame above, then close 1000 "Normal closure": the
``c`` frame is the dialect's farewell, and a close after it is judged by
the farewell's code and reason. A Spring server sends ``h`` frames and
judges nothing; soak gives a connection up when no frame came for the
heartbeat delay plus ``heartbeat_timeout``.

sockjs-client sends no heartbeat of its own; neither does soak, unless
``echo = true``: then each heartbeat is a message ``["soak:SEQ:MS"]`` that
an echo endpoint sends back as ``a["soak:SEQ:MS"]`` (an RTT each).
"""

from __future__ import annotations

import json
import random
import re
import string
from typing import Any, ClassVar

import trio

from soak.classify import CLIENT, SERVER, Classifier, CloseInfo, Verdict
from soak.config.heartbeat import ServerHeartbeat
from soak.config.sockjs import ECHO_PREFIX, SockjsConfig, describe
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.base import SERVER_BEAT, Frame, HandshakeIO, HeartbeatProtocol
from soak.protocols.sniff import sniff
from soak.wsframe import OP_TEXT

_ECHO = re.compile(r'a\["' + ECHO_PREFIX + r'([1-9][0-9]*):-?[0-9]+"\]')
_SESSION_CHARS = string.ascii_lowercase + string.digits


def parse_frame(text: str) -> tuple[str, Any]:
    """A SockJS frame's kind and body: ("open", None), ("heartbeat", None),
    ("messages", [..]), ("close", (code, reason)); ValueError saying what is
    wrong otherwise. Pure."""
    if text == "o":
        return "open", None
    if text == "h":
        return "heartbeat", None
    kind = text[:1]
    if kind not in ("a", "c"):
        raise ValueError(f"not a SockJS frame (starts with {kind!r}): {_excerpt(text)}")
    try:
        body = json.loads(text[1:])
    except ValueError:
        why = f"not a SockJS frame (bad JSON after {kind!r}): {_excerpt(text)}"
        raise ValueError(why) from None
    if kind == "a":
        if not isinstance(body, list):
            raise ValueError(f"not a SockJS frame (a without an array): {_excerpt(text)}")
        return "messages", body
    if (
        not isinstance(body, list)
        or len(body) != 2
        or not isinstance(body[0], int)
        or isinstance(body[0], bool)
        or not isinstance(body[1], str)
    ):
        raise ValueError(f'not a SockJS frame (c without [code,"reason"]): {_excerpt(text)}')
    return "close", (body[0], body[1])


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def session_path(resource: str, rng: random.Random) -> str:
    """The request target of a new session: ``/echo`` ->
    ``/echo/123/abcd1234/websocket`` (the query kept). A target that
    already ends in ``/websocket`` is used as it is. Pure but for ``rng``."""
    path, sep, query = resource.partition("?")
    if path.endswith("/websocket"):
        return resource
    server = f"{rng.randrange(1000):03d}"
    session = "".join(rng.choice(_SESSION_CHARS) for _ in range(8))
    return f"{path.rstrip('/')}/{server}/{session}/websocket{sep}{query}"


def farewell_verdict(
    verdict: Verdict,
    info: CloseInfo,
    farewell: tuple[int | None, str] | None,
    classifier: Classifier,
) -> Verdict:
    """A close after the server's ``c[code,reason]`` frame: judged by the
    frame's code and reason (sockjs-node's heartbeat timeout is
    ``c[3000,"No response from heartbeat"]`` then close 1000), the frame
    named in the verdict's ``why``. Pure."""
    if farewell is None or info.initiator == CLIENT:
        return verdict
    code, reason = farewell
    said = f'c[{code},"{reason}"]'
    if info.initiator == SERVER and info.code != code:
        said += f" then close {info.code}"
    again = classifier.classify(
        CloseInfo(SERVER, code, reason, info.transport, evidence=info.evidence)
    )
    return Verdict(again.key, again.category, f"{said}: {again.why}" if again.why else said)


class SockjsState:
    """Run-wide: the configuration, the server heartbeat the ``c`` frames
    are judged by, and the random source of session ids."""

    def __init__(self, target: TargetConfig) -> None:
        self.config: SockjsConfig = target.sockjs or SockjsConfig()
        self.server: ServerHeartbeat | None = target.server_heartbeat
        self.classifier = Classifier(self.server)
        self.rng = random.Random()


class Sockjs(HeartbeatProtocol):
    name: ClassVar[str] = "sockjs"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("state",)

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, SockjsState):
            state = SockjsState(TargetConfig())
        self.state: SockjsState = state
        cfg = state.config
        # sockjs-client sends no heartbeat; echo mode sends ours as messages
        self.client_pings = cfg.echo
        self.expects_reply = cfg.echo
        if cfg.heartbeats == "ws-ping":
            # no ping for its delay + its pong wait: it would have closed us
            self.server_interval = cfg.heartbeat_delay
            self.server_timeout = cfg.heartbeat_timeout
        else:
            self.silence_timeout = cfg.heartbeat_delay + cfg.heartbeat_timeout

    @classmethod
    def shared_state(cls, target: Any) -> SockjsState:
        return SockjsState(target)

    def resource(self, resource: str) -> str:
        return session_path(resource, self.state.rng)

    def opened(self) -> None:
        self.farewell = None

    async def handshake(self, io: HandshakeIO) -> None:
        cfg = self.state.config
        with trio.move_on_after(cfg.open_timeout):
            while True:
                text = await io.receive_text()
                try:
                    kind, body = parse_frame(text)
                except ValueError as exc:
                    seen = sniff(text, self.name)
                    why = seen.explain(self.name) if seen is not None else str(exc)
                    raise HandshakeError(
                        "protocol", f"{io.url}: {why}; expected the open frame o"
                    ) from None
                if kind == "open":
                    return
                if kind == "close":
                    code, reason = body
                    said = f'{io.url}: c[{code},"{reason}"] instead of the open frame o'
                    raise HandshakeError(f"close_{code}", said)
                # h or messages before o: not a SockJS session; keep waiting for o
        raise HandshakeError(
            "open_timeout",
            f"{io.url}: no open frame o within {cfg.open_timeout:g}s of the upgrade "
            f"(target.sockjs.open_timeout; expected {describe(cfg)})",
        )

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        return farewell_verdict(verdict, info, self.farewell, self.state.classifier)

    # -- the heartbeat -----------------------------------------------------------------

    def ping_frame(self, seq: int, now_ms: int) -> Frame | None:
        return OP_TEXT, f'["{ECHO_PREFIX}{seq}:{now_ms}"]'.encode()

    def pong_text(self, text: str) -> int | None:
        if text == "h":
            return SERVER_BEAT
        first = text[:1]
        if first == "a" and self.client_pings:
            echo = _ECHO.fullmatch(text)
            return int(echo.group(1)) if echo is not None else _echoed(text)
        if first == "c":
            try:
                _kind, body = parse_frame(text)
            except ValueError:
                return None
            self.farewell = body
            return None
        return None  # o, messages of the application, or what sockjs-client ignores too


def _echoed(text: str) -> int | None:
    """The first of our heartbeats among the messages of an ``a`` frame
    (the server may batch several), or None."""
    try:
        _kind, body = parse_frame(text)
    except ValueError:
        return None
    for message in body:
        if isinstance(message, str) and message.startswith(ECHO_PREFIX):
            seq = message[len(ECHO_PREFIX) :].split(":", 1)[0]
            if seq.isdigit() and int(seq) >= 1:
                return int(seq)
    return None
