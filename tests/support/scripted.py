"""A scripted HandshakeIO for the dialects' handshakes, pure: the server's
side is a list of messages said in order, what the client sends is kept.

An exception in the script is raised where it comes (a close during the
handshake is a HandshakeError with cause ``close_<code>``, as the client's
HandshakeIO raises it); at the end of the script the server says nothing
more: the read waits forever (under trio's MockClock, a dialect's timeout
fires at once) or, with ``eof=True``, raises as a closed stream does.
"""

from __future__ import annotations

import trio

from soak.errors import HandshakeError

URL = "ws://127.0.0.1:9/ws"


class ScriptedIO:
    """A HandshakeIO whose server says ``incoming`` in order."""

    def __init__(
        self,
        *incoming: str | bytes | BaseException,
        url: str = URL,
        subprotocol: str | None = None,
        eof: bool = False,
    ) -> None:
        self.url = url
        self.subprotocol = subprotocol
        self.incoming = list(incoming)
        self.eof = eof
        self.sent: list[str | bytes] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def receive(self) -> str | bytes:
        if not self.incoming:
            if self.eof:
                raise HandshakeError("eof", f"{self.url}: connection closed during the handshake")
            await trio.sleep_forever()
        item = self.incoming.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def receive_text(self) -> str:
        while True:
            item = await self.receive()
            if isinstance(item, str):
                return item
            # binary frames are skipped by the real HandshakeIO's receive_text


def close(code: int, reason: str = "") -> HandshakeError:
    """What the client's HandshakeIO raises for a close frame mid-handshake."""
    said = f' "{reason}"' if reason else ""
    return HandshakeError(f"close_{code}", f"{URL}: closed with {code}{said} during the handshake")
