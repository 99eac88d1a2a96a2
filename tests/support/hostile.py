"""A hostile WebSocket server for tests: on 127.0.0.1, port 0, each
connection (numbered 1, 2, ... in the order they are accepted) gets the
behaviour at its number in the list it was given, and every connection past
the list is well behaved (it answers the JSON dialect's pings with pongs,
RFC 6455 pings with pongs, and a close with a close).

The behaviours (:data:`BEHAVIOURS`) are what a broken or malicious server
does: in the upgrade (an HTTP 500, a bad ``Sec-WebSocket-Accept``, a
response one byte at a time, 200,000 headers, an extension the client did
not offer, a server that never reads), or after it (garbage bytes, a 25 MiB
text frame, masked frames, invalid UTF-8, a reserved opcode, EOF inside a
frame, close codes RFC 6455 forbids on the wire, a close frame whose
payload is invalid, a flood of pings, unsolicited pongs).

Every wait is bounded (:data:`LINGER`); the server stops when its nursery
is cancelled. :attr:`Hostile.log` says what each connection was given and
how it ended on the server's side.

:func:`hostile_process` runs it in a child process of its own
(``python -m tests.support.hostile``), so that its work (20,000 pings
sent, 25 MiB written, the flood's pongs parsed) is not the tester's: it
prints its port on its first line, appends one JSON line per finished
connection to its log, and is stopped by its PID.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import select
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LINGER = 20.0  # at most this long on one connection after its behaviour
MAX_REQUEST = 64 * 1024
FLOOD = 20_000  # pings of the ping flood
HUGE = 25 << 20  # bytes of the huge text frame

Stream = trio.SocketStream


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = False
) -> bytes:
    """One RFC 6455 frame, built by hand so it can be wrong on purpose."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        key = b"\x11\x22\x33\x44"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(0x8, struct.pack("!H", code) + reason)


async def read_request(stream: Stream) -> bytes:
    """The upgrade request, up to its blank line (or what came before EOF)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


def accept_key(request: bytes) -> str:
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            digest = hashlib.sha1(value.strip() + GUID).digest()
            return base64.b64encode(digest).decode()
    return ""


def switching(key: str, extra: str = "") -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {key}\r\n{extra}\r\n"
    ).encode()


async def upgrade(stream: Stream) -> None:
    request = await read_request(stream)
    await stream.send_all(switching(accept_key(request)))


async def until_closed(stream: Stream) -> str:
    """Read and drop everything until the client goes (at most LINGER)."""
    with trio.move_on_after(LINGER):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            return "reset by the client"
        return "closed by the client"
    return "still open after the linger"


async def well_behaved(stream: Stream, preface: bytes = b"", *, upgraded: bool = False) -> str:
    """A correct server: the upgrade, then pongs for the JSON dialect's
    pings and for RFC 6455 pings, and a close answered. ``preface``: bytes
    sent right after the upgrade (a hostile start). Frames are parsed by
    hand (:func:`client_frames`), cheaply enough that 20,000 pongs to a
    ping flood do not hold up this server's other connections."""
    if not upgraded:
        request = await read_request(stream)
        await stream.send_all(switching(accept_key(request)))
    if preface:
        await stream.send_all(preface)
    buf = bytearray()
    with trio.move_on_after(60):
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return "closed by the client"
            buf += data
            out = b""
            for opcode, payload in client_frames(buf):
                if opcode == 0x1:
                    msg = json.loads(payload)
                    if msg.get("type") == "ping":
                        pong = {"type": "pong", "seq": msg["seq"], "clientId": msg.get("clientId")}
                        out += frame(0x1, json.dumps(pong).encode())
                elif opcode == 0x9:
                    out += frame(0xA, payload)
                elif opcode == 0x8:
                    await stream.send_all(out + frame(0x8, payload[:2]))
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    return f"closed by the client with {code}"
            if out:
                await stream.send_all(out)
    return "still open after 60 s"


def client_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """The whole (masked) frames at the start of ``buf``, removed from it:
    (opcode, unmasked payload; empty for a pong, which is not read)."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while len(buf) - i >= 2:
        opcode, n, j = buf[i] & 0x0F, buf[i + 1] & 0x7F, i + 2
        if n == 126:
            if len(buf) < j + 2:
                break
            (n,) = struct.unpack_from("!H", buf, j)
            j += 2
        elif n == 127:
            if len(buf) < j + 8:
                break
            (n,) = struct.unpack_from("!Q", buf, j)
            j += 8
        masked = buf[i + 1] & 0x80
        key = bytes(buf[j : j + 4]) if masked else b"\0\0\0\0"
        j += 4 if masked else 0
        if len(buf) < j + n:
            break
        payload = b""
        if opcode != 0xA:
            mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
            payload = (int.from_bytes(buf[j : j + n], "big") ^ mask).to_bytes(n, "big")
        out.append((opcode, payload))
        i = j + n
    del buf[:i]
    return out


def _after_upgrade(payload: bytes) -> Callable[[Stream], Awaitable[str]]:
    async def behave(stream: Stream) -> str:
        await upgrade(stream)
        await stream.send_all(payload)
        return await until_closed(stream)

    return behave


async def http_500(stream: Stream) -> str:
    await read_request(stream)
    await stream.send_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    return await until_closed(stream)


async def bad_accept(stream: Stream) -> str:
    await read_request(stream)
    await stream.send_all(switching(base64.b64encode(b"not the right key!!!").decode()))
    return await until_closed(stream)


async def slowloris(stream: Stream) -> str:
    """The 101 response, one byte every 200 ms: never complete in time."""
    request = await read_request(stream)
    response = switching(accept_key(request))
    with trio.move_on_after(LINGER):
        try:
            for i in range(len(response) - 2):  # never the final blank line
                await stream.send_all(response[i : i + 1])
                await trio.sleep(0.2)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return "the client gave up"
    return "sent all but the blank line"


async def huge_headers(stream: Stream) -> str:
    """A 101 with 200,000 headers (2.6 MB) before its blank line."""
    request = await read_request(stream)
    head = switching(accept_key(request))[:-2]
    try:
        await stream.send_all(head)
        block = b"".join(b"X-Filler-%06d: x\r\n" % i for i in range(1000))
        for _ in range(200):
            await stream.send_all(block)
        await stream.send_all(b"\r\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return "the client gave up"
    return await until_closed(stream)


async def extension_not_offered(stream: Stream) -> str:
    request = await read_request(stream)
    extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    await stream.send_all(switching(accept_key(request), extra))
    return await until_closed(stream)


async def never_reads(stream: Stream) -> str:
    """Accepts TCP, never reads a byte, never answers."""
    await trio.sleep(LINGER)
    return "never read"


async def huge_text(stream: Stream) -> str:
    """A 25 MiB text message, then pongs as usual."""
    await upgrade(stream)
    try:
        await stream.send_all(frame(0x1, b"a" * HUGE))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return "the client closed during the frame"
    return await well_behaved(stream, upgraded=True)


async def eof_in_frame(stream: Stream) -> str:
    await upgrade(stream)
    await stream.send_all(frame(0x1, b"x" * 100)[:12])
    await stream.aclose()
    return "closed inside a frame"


async def ping_flood(stream: Stream) -> str:
    """FLOOD RFC 6455 pings as fast as the socket takes them, then pongs as
    usual (the client answers each: that must not starve the others)."""
    await upgrade(stream)
    batch = frame(0x9, b"flood") * 1000
    try:
        for _ in range(FLOOD // 1000):
            await stream.send_all(batch)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return "the client closed during the flood"
    return await well_behaved(stream, upgraded=True)


async def unsolicited_pongs(stream: Stream) -> str:
    """Pongs nobody asked for, then pongs as usual."""
    await upgrade(stream)
    return await well_behaved(stream, frame(0xA, b"unasked") * 50, upgraded=True)


BEHAVIOURS: dict[str, Callable[[Stream], Awaitable[str]]] = {
    # in the upgrade
    "http_500": http_500,
    "bad_accept": bad_accept,
    "slowloris": slowloris,
    "huge_headers": huge_headers,
    "extension_not_offered": extension_not_offered,
    "never_reads": never_reads,
    # after it
    "garbage": _after_upgrade(b"GET / HTTP/1.1\r\nHost: nobody\r\n\r\n"),
    "huge_text": huge_text,
    "masked": _after_upgrade(frame(0x1, b'{"type":"hello"}', mask=True)),
    "invalid_utf8": _after_upgrade(frame(0x1, b"\xff\xfe\xfd")),
    "reserved_opcode": _after_upgrade(frame(0x3, b"")),
    "eof_in_frame": eof_in_frame,
    "close_1005": _after_upgrade(close_frame(1005)),
    "close_1006": _after_upgrade(close_frame(1006)),
    "close_invalid_payload": _after_upgrade(frame(0x8, b"\x03")),
    "ping_flood": ping_flood,
    "unsolicited_pongs": unsolicited_pongs,
}


@dataclass
class Hostile:
    """The server. ``behaviours``: names from :data:`BEHAVIOURS`, one per
    connection from the first; the rest are well behaved."""

    behaviours: Sequence[str]
    log: dict[int, tuple[str, str]] = field(default_factory=dict)  # conn -> (behaviour, end)
    port: int = 0
    log_path: Path | None = None  # also appended to, one JSON line per connection
    _count: int = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, stream: Stream) -> None:
        self._count += 1
        n = self._count
        name = self.behaviours[n - 1] if n <= len(self.behaviours) else "well_behaved"
        behave = BEHAVIOURS.get(name, well_behaved)
        try:
            end = await behave(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            end = f"gone: {exc!r}"
        except Exception as exc:
            end = f"server error: {exc!r}"
        self.log[n] = (name, end)
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"conn": n, "behaviour": name, "end": end}) + "\n")
        await trio.aclose_forcefully(stream)


@dataclass
class HostileProcess:
    proc: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def ends(self) -> dict[int, tuple[str, str]]:
        """What the connections finished so far were given, and how they ended."""
        if not self.log.exists():
            return {}
        rows = [json.loads(x) for x in self.log.read_text().splitlines()]
        return {r["conn"]: (r["behaviour"], r["end"]) for r in rows}


@contextmanager
def hostile_process(behaviours: Sequence[str], log: Path) -> Iterator[HostileProcess]:
    """The server in a child process, its port read from its first line
    (within 30 s), stopped by its PID (SIGTERM, then SIGKILL after 10 s)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.hostile", "--log", str(log), ",".join(behaviours)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        line = proc.stdout.readline() if ready else ""
        if "listening on" not in line:
            raise RuntimeError(f"the hostile server did not start: {line!r}")
        yield HostileProcess(proc, int(line.rsplit(":", 1)[1]), log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _main(behaviours: list[str], log: Path) -> None:
    server = Hostile(behaviours, log_path=log)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        print(f"hostile listening on 127.0.0.1:{port}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A hostile WebSocket server on loopback.")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("behaviours", help="comma-separated, one per connection from the first")
    args = parser.parse_args()
    unknown = [b for b in args.behaviours.split(",") if b and b not in BEHAVIOURS]
    if unknown:
        parser.error(f"unknown behaviour(s): {', '.join(unknown)}; known: {', '.join(BEHAVIOURS)}")
    trio.run(_main, [b for b in args.behaviours.split(",") if b], args.log)
