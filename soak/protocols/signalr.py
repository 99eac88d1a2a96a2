"""ASP.NET Core SignalR, the JSON hub protocol over WebSockets, as described
in docs/dialects/signalr.md. Built from the protocol's specification
(dotnet/aspnetcore src/SignalR/docs/specs, HubProtocol) and its wire examples; no
SignalR server is installable here, the tests use a faithful fake
(tests/support/fakes/signalr.py).

soak connects straight to the hub's URL, as the JS client does with
``skipNegotiation`` over WebSockets (no ``/negotiate`` request), then::

    -> {"protocol":"json","version":1}\\x1e
    <- {}\\x1e                      # or {"error":"..."}\\x1e: refused for good

Every record ends with 0x1E and one frame may carry several. Pings go both
ways and nobody answers them::

    -> {"type":6}\\x1e             # soak's beat: expects_reply False
    <- {"type":6}\\x1e             # the hub's beat: SERVER_BEAT
    <- {"type":7,"error":"...","allowReconnect":true}\\x1e   # its goodbye

Liveness is judged by silence: no message from the hub for
``server_timeout`` (the JS client's 30 s) closes the connection as a
zombie. The hub drops a client it heard nothing from for its
``client_timeout`` (30 s): :func:`client_timeout_verdict` judges that end.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import trio

from soak.classify import (
    ABRUPT_SLACK,
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    CLIENT,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    CloseInfo,
    Evidence,
    Verdict,
)
from soak.config.signalr import SignalrConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.base import SERVER_BEAT, Frame, HandshakeIO, HeartbeatProtocol
from soak.protocols.sniff import sniff
from soak.wsframe import OP_TEXT

RS = "\x1e"
HANDSHAKE = '{"protocol":"json","version":1}' + RS
PING = '{"type":6}' + RS
PING_BYTES = PING.encode()
# the hub message types (the HubProtocol spec): 1 invocation ... 7 close
PING_TYPE = 6
CLOSE_TYPE = 7


def records(text: str) -> list[Any]:
    """The JSON records of one message (each ends with 0x1E), or
    ValueError saying what is wrong. Pure."""
    if not text.endswith(RS):
        raise ValueError(f"not SignalR records (no 0x1e at the end): {_excerpt(text)}")
    out = []
    for part in text[:-1].split(RS):
        try:
            out.append(json.loads(part))
        except ValueError:
            raise ValueError(f"not a SignalR record (not JSON): {_excerpt(part)}") from None
    return out


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def handshake_answer(text: str) -> tuple[str | None, int]:
    """The hub's handshake response: (its error or None, how many records
    came after it in the same message). ValueError when it is none. Pure."""
    first, *rest = records(text)
    if not isinstance(first, dict) or (first and set(first) - {"error"}):
        raise ValueError(f"not a SignalR handshake response: {_excerpt(text)}")
    error = first.get("error")
    if error is not None:
        return str(error), len(rest)
    return None, len(rest)


def client_timeout_verdict(ev: Evidence, timeout: float) -> Verdict:
    """The hub's client timeout: it heard nothing from the client for
    ``timeout``. A frame the client sent within that window that reached
    it would have reset its timer; soak cannot see what reached it, so
    what decides is how long ago soak last sent one. Pure."""
    slack = ABRUPT_SLACK + 0.02 * timeout
    sent = ev.last_sent_age
    if sent is not None and sent < timeout - slack:
        return Verdict(
            FALSE_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"the client last sent {sent:.3f}s ago < the hub's client timeout {timeout:g}s",
        )
    shown = "the whole connection" if sent is None else f"{sent:.3f}s"
    return Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        f"the client sent nothing for {shown} >= the hub's client timeout {timeout:g}s",
    )


class SignalrState:
    def __init__(self, target: TargetConfig) -> None:
        self.config = target.signalr or SignalrConfig()
        sh = target.server_heartbeat
        self.client_timeout = self.config.client_timeout if sh is None else sh.timeout


class Signalr(HeartbeatProtocol):
    name: ClassVar[str] = "signalr"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("allow_reconnect", "error", "state")

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, SignalrState):
            state = SignalrState(TargetConfig())
        self.state: SignalrState = state
        self.expects_reply = False  # nobody answers a ping
        self.silence_timeout = state.config.server_timeout
        # the hub's close message on this connection: its error and allowReconnect
        self.error: str | None = None
        self.allow_reconnect: bool | None = None

    @classmethod
    def shared_state(cls, target: Any) -> SignalrState:
        return SignalrState(target)

    def opened(self) -> None:
        self.error = None
        self.allow_reconnect = None
        self.farewell = None

    async def handshake(self, io: HandshakeIO) -> None:
        cfg = self.state.config
        await io.send_text(HANDSHAKE)
        with trio.move_on_after(cfg.handshake_timeout):
            text = await io.receive_text()
            try:
                error, _after = handshake_answer(text)
            except ValueError as exc:
                seen = sniff(text, self.name)
                said = seen.explain(self.name) if seen is not None else str(exc)
                raise HandshakeError("protocol", f"{io.url}: {said}") from None
            if error is not None:
                # the hub does not speak our protocol: trying again cannot help
                raise HandshakeError(
                    "handshake_error",
                    f"{io.url}: the hub refused the handshake: {error}",
                    permanent=True,
                )
            return
        raise HandshakeError(
            "handshake_timeout",
            f"{io.url}: no handshake response within {cfg.handshake_timeout:g}s "
            "(target.signalr.handshake_timeout)",
        )

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        if info.initiator == CLIENT:
            return verdict
        ev = info.evidence
        if ev is not None and self.timed_out(info, ev):
            return client_timeout_verdict(ev, self.state.client_timeout)
        if self.farewell is not None:
            how = "allowReconnect" if self.allow_reconnect else "no reconnect"
            why = f"{self.error} ({how})" if self.error else f"({how})"
            key = "server_signalr_close" if self.allow_reconnect else "server_signalr_close_final"
            return Verdict(key, CATEGORY_SERVER, why)
        return verdict

    def timed_out(self, info: CloseInfo, ev: Evidence) -> bool:
        """Does this end carry the hub's client-timeout signature? An error
        or reason that says timeout, or any end of the hub's after the
        client had sent nothing that long. (The hub's abort on its timer
        says only ``{"type":7,"allowReconnect":true}``, as its graceful
        shutdown may: that alone is not taken for the timeout.)"""
        said = (self.error or info.reason).lower()
        if "timeout" in said or "timed out" in said:
            return True
        timeout = self.state.client_timeout
        sent = ev.last_sent_age
        return sent is not None and sent >= timeout - (ABRUPT_SLACK + 0.02 * timeout)

    # -- the heartbeat -----------------------------------------------------------------

    def ping_frame(self, seq: int, now_ms: int) -> Frame | None:
        return OP_TEXT, PING_BYTES

    def pong_text(self, text: str) -> int | None:
        if text == PING:
            return SERVER_BEAT
        if '"type":' not in text and '"type" :' not in text:
            return None
        try:
            docs = records(text)
        except ValueError:
            return None  # the application's business
        beat = False
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            kind = doc.get("type")
            if kind == PING_TYPE:
                beat = True
            elif kind == CLOSE_TYPE:
                error = doc.get("error")
                self.error = str(error) if error is not None else None
                self.allow_reconnect = doc.get("allowReconnect") is True
                self.farewell = (1000, self.error or "")
        # any message is proof of life (the silence rule sees it); the hub's
        # ping, alone or among others, is its beat
        return SERVER_BEAT if beat else None
