"""Rails ActionCable (subprotocol ``actioncable-v1-json``), as described in
docs/dialects/actioncable.md.

The server speaks first and alone::

    <- {"type":"welcome"}
    -> {"command":"subscribe","identifier":"{\\"channel\\":\\"HeartbeatChannel\\"}"}   # optional
    <- {"identifier":"...","type":"confirm_subscription"}     # or reject_subscription
    <- {"type":"ping","message":1790000000}                   # every 3 s, to everyone at once
    <- {"type":"disconnect","reason":"server_restart","reconnect":true}   # its goodbye

There is no client heartbeat and no reply: the pings are one-way server
heartbeats (their gaps recorded), and no ping for ``stale_after`` (6 s, two
missed, as @rails/actioncable's ConnectionMonitor) closes the connection as
a zombie. The server never drops a quiet client, so that zombie is only
ever seen from our side. ``disconnect`` is the dialect's farewell: the
close that follows (1000) is counted by its reason, ``server_disconnect_<reason>``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import trio

from soak.classify import CATEGORY_SERVER, CLIENT, CloseInfo, Verdict
from soak.config.actioncable import ActionCableConfig, identifier_text
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.base import SERVER_BEAT, HandshakeIO, HeartbeatProtocol
from soak.protocols.sniff import sniff

SUBPROTOCOLS = ("actioncable-v1-json", "actioncable-unsupported")
_PING = '{"type":"ping","message":'


def message(text: str) -> dict[str, Any]:
    """An ActionCable message (a JSON object), or ValueError. Pure."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError(f"not an ActionCable message (not JSON): {_excerpt(text)}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"not an ActionCable message (not an object): {_excerpt(text)}")
    return doc


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def disconnect_key(reason: str) -> str:
    """``server_disconnect_server_restart``: what a disconnect is counted by."""
    safe = "".join(c if c.isalnum() else "_" for c in reason.lower()) or "none"
    return f"server_disconnect_{safe}"


def disconnect_verdict(
    verdict: Verdict, info: CloseInfo, farewell: tuple[int | None, str] | None, reconnect: bool
) -> Verdict:
    """A close after the server's ``disconnect`` message: counted by its
    reason, the message in the ``why``. Pure."""
    if farewell is None or info.initiator == CLIENT:
        return verdict
    reason = farewell[1]
    said = f'disconnect "{reason}" (reconnect: {"true" if reconnect else "false"}'
    said += ")" if reconnect else "; the official client would not reconnect)"
    if info.code is not None:
        said += f", then close {info.code}"
    return Verdict(disconnect_key(reason), CATEGORY_SERVER, said)


class ActionCableState:
    """Run-wide: the configuration and the subscribe command (the same for
    every client)."""

    def __init__(self, target: TargetConfig) -> None:
        cfg = target.actioncable or ActionCableConfig()
        self.config = cfg
        self.identifier = None if cfg.identifier is None else identifier_text(cfg.identifier)
        self.subscribe = (
            None
            if self.identifier is None
            else json.dumps(
                {"command": "subscribe", "identifier": self.identifier}, separators=(",", ":")
            )
        )


class ActionCable(HeartbeatProtocol):
    name: ClassVar[str] = "actioncable"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("reconnect", "state")

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, ActionCableState):
            state = ActionCableState(TargetConfig())
        self.state: ActionCableState = state
        cfg = state.config
        self.client_pings = False  # the protocol has no client heartbeat
        self.expects_reply = False
        # stale after stale_after without a ping (interval + timeout)
        self.server_interval = cfg.beat_interval
        self.server_timeout = cfg.stale_after - cfg.beat_interval
        self.reconnect = True

    @classmethod
    def shared_state(cls, target: Any) -> ActionCableState:
        return ActionCableState(target)

    def subprotocols(self) -> tuple[str, ...]:
        return SUBPROTOCOLS

    def opened(self) -> None:
        self.farewell = None
        self.reconnect = True

    async def handshake(self, io: HandshakeIO) -> None:
        cfg = self.state.config
        if io.subprotocol == "actioncable-unsupported":
            raise HandshakeError(
                "subprotocol",
                f"{io.url}: the server chose actioncable-unsupported: it speaks no protocol "
                "version soak offers (actioncable-v1-json)",
                permanent=True,
            )
        with trio.move_on_after(cfg.welcome_timeout):
            await self._until(io, "welcome")
            if self.state.subscribe is None:
                return
            await io.send_text(self.state.subscribe)
            await self._until(io, "confirm_subscription")
            return
        waited = "welcome" if self.state.subscribe is None else "welcome and confirm_subscription"
        raise HandshakeError(
            "welcome_timeout",
            f"{io.url}: no {waited} within {cfg.welcome_timeout:g}s "
            "(target.actioncable.welcome_timeout)",
        )

    async def _until(self, io: HandshakeIO, wanted: str) -> None:
        """Read until a ``wanted`` message; pings are skipped, a disconnect
        or a rejected subscription is a refusal."""
        while True:
            text = await io.receive_text()
            try:
                doc = message(text)
            except ValueError as exc:
                seen = sniff(text, self.name)
                why = seen.explain(self.name) if seen is not None else str(exc)
                raise HandshakeError("protocol", f"{io.url}: {why}; expected {wanted}") from None
            kind = doc.get("type")
            if kind == wanted and (
                wanted == "welcome" or doc.get("identifier") == self.state.identifier
            ):
                return
            if kind == "disconnect":
                reason = str(doc.get("reason"))
                again = doc.get("reconnect") is not False
                raise HandshakeError(
                    disconnect_key(reason).removeprefix("server_"),
                    f'{io.url}: disconnect "{reason}" (reconnect: {str(again).lower()}) '
                    f"instead of {wanted}",
                    permanent=not again,
                )
            if kind == "reject_subscription":
                raise HandshakeError(
                    "reject_subscription",
                    f"{io.url}: the server rejected the subscription {self.state.identifier} "
                    "(target.actioncable.identifier)",
                    permanent=True,
                )

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        return disconnect_verdict(verdict, info, self.farewell, self.reconnect)

    # -- what comes back ---------------------------------------------------------------

    def pong_text(self, text: str) -> int | None:
        if text.startswith(_PING):
            return SERVER_BEAT
        try:
            doc = message(text)
        except ValueError:
            return None  # not the protocol's: the application's business
        kind = doc.get("type")
        if kind == "ping":
            return SERVER_BEAT
        if kind == "disconnect":
            self.farewell = (None, str(doc.get("reason")))
            self.reconnect = doc.get("reconnect") is not False
        return None
