"""Phoenix Channels (the V2 JSON serializer, ``vsn=2.0.0``), as described
in docs/dialects/phoenix.md. Built from the protocol's specification and
its wire examples; no Phoenix server is installable here, the tests use a
faithful fake (tests/support/fakes/phoenix.py).

Every message is an array ``[join_ref, ref, topic, event, payload]``. The
heartbeat goes on topic ``phoenix`` with the seq as its ref, and the
endpoint replies on the same ref::

    -> [null,"12","phoenix","heartbeat",{}]
    <- [null,"12","phoenix","phx_reply",{"status":"ok","response":{}}]

A channel join (``[target.phoenix] topic``) is optional::

    -> ["1","1","room:lobby","phx_join",{...}]
    <- ["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}]

The endpoint closes a connection it has received nothing on for its
websocket ``timeout`` (Bandit: 1002, empty reason): :func:`idle_verdict`
judges that close.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import trio

from soak.classify import (
    ABRUPT_SLACK,
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    CloseInfo,
    Evidence,
    Verdict,
    server_key,
)
from soak.config.phoenix import IDLE_CLOSE, PhoenixConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.base import NO_HEARTBEAT, Frame, HandshakeIO, HeartbeatProtocol
from soak.protocols.sniff import sniff
from soak.wsframe import OP_TEXT

VSN = "2.0.0"
JOIN_REF = "1"
# the endpoint's reply to our heartbeat, as Phoenix writes it (either key order)
_REPLY = re.compile(
    r'\[null,"([0-9]+)","phoenix","phx_reply",'
    r'\{(?:"status":"ok","response":\{\}|"response":\{\},"status":"ok")\}\]'
)


def message(text: str) -> list[Any]:
    """A V2 message as its five fields, or ValueError saying what is wrong. Pure."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError(f"not a Phoenix V2 message (not JSON): {_excerpt(text)}") from None
    if not isinstance(doc, list) or len(doc) != 5 or not isinstance(doc[2], str):
        raise ValueError(
            f"not a Phoenix V2 message ([join_ref, ref, topic, event, payload]): {_excerpt(text)}"
        )
    return doc


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def with_vsn(resource: str) -> str:
    """The request target with ``vsn=2.0.0`` in its query (kept as it is
    when the profile's URL already names a vsn)."""
    path, _, query = resource.partition("?")
    if any(k == "vsn" for k, _ in parse_qsl(query, keep_blank_values=True)):
        return resource
    return f"{path}?{query}&vsn={VSN}" if query else f"{path}?vsn={VSN}"


def join_message(topic: str, payload: dict[str, Any] | None) -> str:
    body = [JOIN_REF, JOIN_REF, topic, "phx_join", payload or {}]
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def idle_verdict(ev: Evidence, timeout: float) -> Verdict:
    """The endpoint's idle close (1002, empty reason): it had received
    nothing from the client for ``timeout``. A reply to our heartbeat
    younger than that says our heartbeat had reached it (the false
    timeout); without one the close is justified. Pure."""
    slack = ABRUPT_SLACK + 0.02 * timeout
    if ev.last_pong_age is not None and ev.last_pong_age < timeout - slack:
        return Verdict(
            FALSE_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"last heartbeat reply {ev.last_pong_age:.3f}s ago < the endpoint's idle "
            f"timeout {timeout:g}s: our heartbeats were reaching it",
        )
    last = "the whole connection" if ev.last_pong_age is None else f"{ev.last_pong_age:.3f}s"
    sent = "nothing" if ev.last_sent_age is None else f"the last {ev.last_sent_age:.3f}s ago"
    return Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        f"no heartbeat reply for {last} >= the endpoint's idle timeout {timeout:g}s "
        f"({ev.consecutive_missed} missed; sent: {sent})",
    )


def phoenix_verdict(verdict: Verdict, info: CloseInfo, idle_timeout: float) -> Verdict:
    """1002 with an empty reason is the endpoint's idle timeout, judged
    by :func:`idle_verdict`; a 1002 with a reason is a protocol error, not
    the idle timeout; other closes stay as classified."""
    if info.initiator != SERVER or info.code != IDLE_CLOSE:
        return verdict
    if info.reason:
        return Verdict(server_key(info.code), CATEGORY_SERVER, info.reason)
    if info.evidence is None:
        return verdict
    return idle_verdict(info.evidence, idle_timeout)


class PhoenixState:
    """Run-wide: the configuration and the join message (the same for every client)."""

    def __init__(self, target: TargetConfig) -> None:
        cfg = target.phoenix or PhoenixConfig()
        self.config = cfg
        sh = target.server_heartbeat
        # the profile's own [target.server_heartbeat] wins over the table's
        self.idle_timeout = cfg.idle_timeout if sh is None else sh.timeout
        self.join_text = None if cfg.topic is None else join_message(cfg.topic, cfg.payload)


class Phoenix(HeartbeatProtocol):
    name: ClassVar[str] = "phoenix"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("state",)

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, PhoenixState):
            state = PhoenixState(TargetConfig())
        self.state: PhoenixState = state

    @classmethod
    def shared_state(cls, target: Any) -> PhoenixState:
        return PhoenixState(target)

    def resource(self, resource: str) -> str:
        return with_vsn(resource)

    async def handshake(self, io: HandshakeIO) -> None:
        state = self.state
        if state.join_text is None:
            return  # heartbeats need no join
        cfg = state.config
        await io.send_text(state.join_text)
        with trio.move_on_after(cfg.join_timeout):
            while True:
                text = await io.receive_text()
                try:
                    _join_ref, ref, topic, event, payload = message(text)
                except ValueError as exc:
                    seen = sniff(text, self.name)
                    said = seen.explain(self.name) if seen is not None else str(exc)
                    raise HandshakeError("protocol", f"{io.url}: {said}") from None
                if topic != cfg.topic or ref != JOIN_REF or event != "phx_reply":
                    continue  # a broadcast, a presence diff: not the join's answer
                status = payload.get("status") if isinstance(payload, dict) else None
                if status == "ok":
                    return
                response = payload.get("response") if isinstance(payload, dict) else None
                reason = response.get("reason") if isinstance(response, dict) else None
                shown = f": {reason}" if isinstance(reason, str) and reason else ""
                raise HandshakeError(
                    "join_refused",
                    f"{io.url}: the join of {cfg.topic!r} was refused (status {status!r}){shown}",
                )
        raise HandshakeError(
            "join_timeout",
            f"{io.url}: no reply to the join of {cfg.topic!r} within {cfg.join_timeout:g}s "
            "(target.phoenix.join_timeout)",
        )

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        if verdict.category not in (CATEGORY_SERVER, CATEGORY_HEARTBEAT):
            return verdict
        return phoenix_verdict(verdict, info, self.state.idle_timeout)

    # -- the heartbeat -----------------------------------------------------------------

    def ping_frame(self, seq: int, now_ms: int) -> Frame | None:
        return OP_TEXT, b'[null,"' + str(seq).encode() + b'","phoenix","heartbeat",{}]'

    def pong_text(self, text: str) -> int | None:
        reply = _REPLY.fullmatch(text)
        if reply is not None:
            return int(reply.group(1))
        if '"phoenix"' not in text or '"phx_reply"' not in text:
            return None  # channel traffic
        try:
            _join_ref, ref, topic, event, _payload = message(text)
        except ValueError:
            return None
        if topic != "phoenix" or event != "phx_reply":
            return None
        # phoenix.js takes any reply on the pending ref as the heartbeat's
        if isinstance(ref, str) and ref.isdigit() and int(ref) >= 1:
            return int(ref)
        return NO_HEARTBEAT
