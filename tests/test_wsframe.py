"""The hand-framed hot path (soak.wsframe, soak.client._Conn) against wsproto."""

from __future__ import annotations

import os
import random
import re
import socket
import struct
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection, Event, Message, Ping, TextMessage
from wsproto.frame_protocol import FrameProtocol, Opcode, XorMaskerSimple

from soak import wsframe
from soak.client import Client, _Conn, _Pacer
from soak.gateway import Gateway, GatewayConfig
from soak.protocols import json_ping
from soak.protocols.json_ping import JsonPing
from soak.recorder import Recorder, now_wall
from soak.run.runner import Runner
from soak.wsframe import (
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    MaskSource,
    client_frame,
    mask,
    single_text_frame,
    slim,
    wsproto_idle,
)
from tests.support.runs import make_profile

EDGE_LENGTHS = (0, 1, 3, 4, 5, 125, 126, 127, 65535, 65536, 70001)


def text_of(n: int) -> str:
    """Valid UTF-8 of exactly n bytes, multi-byte characters included."""
    return "é" * (n // 2) + "x" * (n % 2)


def server_frame(payload: bytes | str, *, fin: bool = True) -> bytes:
    """What a server (unmasked) sends, serialised by wsproto itself."""
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(payload, fin))


def server_control(opcode: Opcode, payload: bytes = b"") -> bytes:
    return bytes(FrameProtocol(client=False, extensions=[])._serialize_frame(opcode, payload))


def header(first: int, length: int, form: int) -> bytes:
    """A server frame header with the length in a chosen form (1, 2 or 8 bytes)."""
    if form == 1:
        return bytes((first, length))
    if form == 2:
        return bytes((first, 126)) + struct.pack("!H", length)
    return bytes((first, 127)) + struct.pack("!Q", length)


# -- sending -----------------------------------------------------------------------


def test_mask_is_wsproto_xor() -> None:
    rng = random.Random(7)
    for n in (0, 1, 2, 3, 4, 5, 7, 8, 9, 125, 126, 1000, 65537):
        payload = rng.randbytes(n)
        key = rng.randbytes(4)
        assert mask(payload, key) == bytes(XorMaskerSimple(key).process(bytearray(payload)))
        assert mask(mask(payload, key), key) == payload


@pytest.mark.parametrize("n", EDGE_LENGTHS)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_client_frame_parses_as_wsproto_server_sees_it(n: int, opcode: int) -> None:
    payload = text_of(n).encode() if opcode == OP_TEXT else random.Random(n).randbytes(n)
    assert len(payload) == n
    frame = client_frame(opcode, payload)
    # a fresh mask, and the payload on the wire is masked
    assert frame[1] & 0x80
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(frame)
    frames = list(server.received_frames())
    assert len(frames) == 1
    got = frames[0]
    assert got.opcode == Opcode(opcode)
    assert got.message_finished
    assert got.frame_finished
    assert got.payload == (payload.decode() if opcode == OP_TEXT else payload)
    # same header as wsproto's own client frame, apart from the mask and payload
    key = frame[len(frame) - n - 4 : len(frame) - n]
    data: bytes | str = payload.decode() if opcode == OP_TEXT else payload
    theirs = bytes(FrameProtocol(client=True, extensions=[]).send_data(data, True))
    assert frame[: len(frame) - n - 4] == theirs[: len(theirs) - n - 4]
    assert frame[len(frame) - n :] == mask(payload, key)


def test_client_ping_frame_parses_as_ping() -> None:
    frame = client_frame(OP_PING, (12345).to_bytes(8, "big"))
    server = Connection(ConnectionType.SERVER)
    server.receive_data(frame)
    assert list(server.events()) == [Ping(payload=(12345).to_bytes(8, "big"))]


def test_masks_are_fresh_and_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", counting)
    source = MaskSource()
    keys = [source.next() for _ in range(3 * wsframe.MASK_BATCH + 1)]
    assert all(len(k) == 4 for k in keys)
    assert calls == [4 * wsframe.MASK_BATCH] * 4
    # random keys: 3,073 draws of 32 bits are (all but surely) not repeated much
    assert len(set(keys)) > len(keys) - 5
    # consecutive frames of the same payload get different masks
    a, b = client_frame(OP_TEXT, b"same"), client_frame(OP_TEXT, b"same")
    assert a[2:6] != b[2:6] or a[6:] != b[6:]


# -- receiving: one whole text frame ---------------------------------------------------


def wsproto_messages(data: bytes) -> list[Event]:
    ws = Connection(ConnectionType.CLIENT)
    ws.receive_data(data)
    return list(ws.events())


@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_single_text_frame_matches_wsproto(n: int) -> None:
    text = text_of(n)
    frame = server_frame(text)
    assert single_text_frame(frame) == text
    assert wsproto_messages(frame) == [TextMessage(data=text, frame_finished=True)]


REFUSED = {
    "empty": b"",
    "one byte": b"\x81",
    "fragment (no FIN)": server_frame("par", fin=False),
    "continuation": bytes((0x80, 3)) + b"abc",
    "binary": server_frame(b"abc"),
    "ping": server_control(Opcode.PING, b"x"),
    "pong": server_control(Opcode.PONG, b"x"),
    "close": server_control(Opcode.CLOSE, struct.pack("!H", 1000)),
    "masked": bytes((0x81, 0x83)) + b"\x01\x02\x03\x04" + mask(b"abc", b"\x01\x02\x03\x04"),
    "rsv1": bytes((0xC1, 3)) + b"abc",
    "rsv3": bytes((0x91, 3)) + b"abc",
    "2-byte length for 100": header(0x81, 100, 2) + b"x" * 100,
    "8-byte length for 1000": header(0x81, 1000, 8) + b"x" * 1000,
    "8-byte length, top bit": bytes((0x81, 127)) + b"\x80" + b"\0" * 6 + b"\x01",
    "truncated": server_frame("abcdef")[:-1],
    "truncated header": header(0x81, 300, 2)[:3],
    "two frames": server_frame("a") + server_frame("b"),
    "frame and a half": server_frame("a") + server_frame("bcd")[:3],
    "invalid utf-8": bytes((0x81, 2)) + b"\xc3\x28",
    "cut utf-8": bytes((0x81, 1)) + "é".encode()[:1],
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_single_text_frame_leaves_the_rest_to_wsproto(name: str) -> None:
    assert single_text_frame(REFUSED[name]) is None


@pytest.mark.parametrize(
    "name", ["masked", "rsv1", "2-byte length for 100", "invalid utf-8", "continuation"]
)
def test_malformed_frames_still_fail_in_wsproto(name: str) -> None:
    # wsproto turns a malformed frame into a close with 1002 or 1007, as before
    events = wsproto_messages(REFUSED[name])
    assert len(events) == 1
    assert isinstance(events[0], CloseConnection)
    assert events[0].code in (1002, 1007)


# -- receiving: the client's decision, chunk by chunk ----------------------------------


def decode_like_the_client(chunks: list[bytes]) -> list[tuple[str, object]]:
    """The client's receive path: the hand parser when wsproto is idle and the
    chunk is one whole text frame, wsproto otherwise (with its partial
    messages joined). Returns what the client would act on."""
    ws = Connection(ConnectionType.CLIENT)
    out: list[tuple[str, object]] = []
    parts: list[str] = []
    fast = 0
    for chunk in chunks:
        if wsproto_idle(ws):
            text = single_text_frame(chunk)
            if text is not None:
                out.append(("text", text))
                fast += 1
                continue
        ws.receive_data(chunk)
        for ev in ws.events():
            if isinstance(ev, TextMessage):
                parts.append(ev.data)
                if ev.message_finished:
                    out.append(("text", "".join(parts)))
                    parts.clear()
            elif isinstance(ev, Message):
                out.append(("bytes", bytes(ev.data)) if ev.message_finished else ("part", b""))
            elif isinstance(ev, Ping):
                out.append(("ping", bytes(ev.payload)))
            elif isinstance(ev, CloseConnection):
                out.append(("close", ev.code))
    out.append(("fast", fast))
    return out


def reference(stream: bytes) -> list[tuple[str, object]]:
    return [e for e in decode_like_the_client([stream]) if e[0] != "fast"]


def test_wsproto_idle_follows_fragments_control_frames_and_splits() -> None:
    rng = random.Random(20261125)
    pong = server_frame('{"type":"pong","seq":1}')
    stream_parts = [
        pong,
        server_frame("frag-1 ", fin=False),
        server_control(Opcode.PING, b"hb"),  # a control frame inside a fragmented message
        bytes(
            FrameProtocol(client=False, extensions=[])._serialize_frame(
                Opcode.CONTINUATION, b"frag-2", fin=True
            )
        ),
        pong,
        server_frame(text_of(126)),
        server_frame(text_of(65536)),
        server_frame(b"\x00\x01"),
        pong,
        server_control(Opcode.CLOSE, struct.pack("!H", 1000) + b"bye"),
    ]
    stream = b"".join(stream_parts)
    want = reference(stream)
    assert ("text", "frag-1 frag-2") in want
    assert ("ping", b"hb") in want
    # frame by frame: whole text frames take the fast path
    framewise = decode_like_the_client(stream_parts)
    assert framewise[:-1] == want
    assert framewise[-1][1] == 5  # pong, pong, 126, 65536, pong; never inside the fragment
    # random splits, including splits inside headers: never a different result
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 12)))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert decode_like_the_client(chunks)[:-1] == want


def test_the_installed_wsproto_can_be_peeked() -> None:
    # otherwise every chunk would silently take the slow path
    assert wsframe.CAN_PEEK
    ws = Connection(ConnectionType.CLIENT)
    assert wsproto_idle(ws)
    ws.receive_data(server_frame("abc")[:3])
    assert not wsproto_idle(ws)


# -- the descriptor path of _Conn ----------------------------------------------------------


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    assert isinstance(server, trio.SocketStream)
    return client, server


@pytest.mark.process
async def test_conn_writes_and_reads_its_descriptor() -> None:
    client, server = await tcp_pair()
    conn = _Conn(client, Connection(ConnectionType.CLIENT), 0.0)
    assert conn.fd == client.socket.fileno()
    # far more than a socket buffer holds: the kernel takes part, send_all the rest
    blob = random.Random(1).randbytes(8 * 1024 * 1024)
    got = bytearray()

    async def drain() -> None:
        while len(got) < len(blob):
            data = await server.receive_some(1 << 20)
            assert data
            got.extend(data)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await conn.write(blob)
    assert bytes(got) == blob
    with trio.fail_after(10):
        await server.send_all(b"hello")
        data = None
        for _ in range(100):
            data = await conn.receive()
            if data is not None:
                break
        assert data == b"hello"
        await server.aclose()
        assert await conn.receive() == b""
    await client.aclose()


@pytest.mark.process
async def test_conn_reset_is_a_broken_resource() -> None:
    client, server = await tcp_pair()
    conn = _Conn(client, Connection(ConnectionType.CLIENT), 0.0)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await server.aclose()  # an RST

    async def until_broken() -> None:
        for _ in range(100):
            await conn.receive()

    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
        await until_broken()
    await client.aclose()


def test_memory_streams_keep_the_stream_path() -> None:
    a, _b = trio.testing.memory_stream_pair()
    assert _Conn(a, Connection(ConnectionType.CLIENT), 0.0).fd == -1


# -- the JSON pong shortcut -------------------------------------------------------------

PONGS = [
    '{"type":"pong","timestamp":1790000000123,"clientId":"soak-000001","seq":12,"serverTime":1}',
    '{"type":"pong","timestamp":0,"clientId":"","seq":0,"serverTime":0}',
    '{"type":"pong","timestamp":-5,"clientId":"é✓","seq":99999999999999999999,"serverTime":-1}',
    '{"type":"pong","timestamp":1,"clientId":"a\\"b","seq":3,"serverTime":1}',  # escape
    '{"type":"pong","timestamp":1,"clientId":"a\\u0041","seq":3,"serverTime":1}',
    '{"type":"pong","timestamp":1,"clientId":"x","seq":012,"serverTime":1}',  # not JSON
    '{"type":"pong","timestamp":1,"clientId":"x","seq":-3,"serverTime":1}',
    '{"type":"pong","timestamp":1,"clientId":"x","seq":3.0,"serverTime":1}',
    '{"type":"pong","timestamp":1,"clientId":"x","seq":true,"serverTime":1}',
    '{"type":"pong","timestamp":null,"clientId":null,"seq":4,"serverTime":1}',
    '{"type":"pong","timestamp":1,"clientId":"x","seq":5,"serverTime":1,"seq":6}',  # duplicate
    '{"type":"pong","timestamp":1,"clientId":"x","seq":5,"serverTime":1}  ',
    '{"type": "pong", "seq": 7}',
    '{"seq":8,"type":"pong"}',
    '{"type":"ping","timestamp":1,"clientId":"x","seq":9,"serverTime":1}',
    '{"type":"pong","timestamp":1,"clientId":"x\x01","seq":10,"serverTime":1}',  # control char
    '{"type":"pong","timestamp":1,"clientId":"x","seq":11,"serverTime":1',  # cut
    '["pong"]',
    '"pong"',
]


@pytest.mark.parametrize("text", PONGS)
def test_gateway_pong_shortcut_agrees_with_json(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    proto = JsonPing("soak-000001")
    fast = proto.pong_text(text)
    monkeypatch.setattr(json_ping, "_GATEWAY_PONG", re.compile(r"(?!)"))  # never matches
    assert proto.pong_text(text) == fast


def test_gateway_pong_shortcut_is_taken_for_the_reference_gateway() -> None:
    from soak.gateway.pump import _encode_json

    text = _encode_json(
        {"type": "pong", "timestamp": 17, "clientId": "soak-000042", "seq": 5, "serverTime": 18}
    )
    match = json_ping._GATEWAY_PONG.fullmatch(text)
    assert match is not None
    assert match.group(1) == "5"


# -- the pacer ----------------------------------------------------------------------------


class FakeClient:
    """What the pacer sees of a client: its current connection and its turn."""

    def __init__(self, pacer: _Pacer, conn: object, every: float | None = None) -> None:
        self.pacer = pacer
        self.conn = conn
        self.every = every
        self.turns: list[float] = []

    def _paced(self, conn: object, now: float) -> None:
        self.turns.append(now)
        if self.every is not None and len(self.turns) < 3:
            self.pacer.add(now + self.every, cast(Client, self), cast(_Conn, conn))


async def test_pacer_runs_each_turn_on_time(autojump_clock: trio.testing.MockClock) -> None:
    pacer = _Pacer()
    t0 = trio.current_time()
    a = FakeClient(pacer, "conn-a", every=1.0)
    b = FakeClient(pacer, "conn-b")
    gone = FakeClient(pacer, "conn-new")
    pacer.add(t0 + 0.5, cast(Client, a), cast(_Conn, "conn-a"))
    pacer.add(t0 + 0.5, cast(Client, b), cast(_Conn, "conn-b"))
    pacer.add(t0 + 0.2, cast(Client, gone), cast(_Conn, "conn-old"))  # a closed connection
    await trio.sleep(0.1)
    # an earlier turn added while the pacer sleeps wakes it sooner
    pacer.add(t0 + 0.3, cast(Client, b), cast(_Conn, "conn-b"))
    await trio.sleep(5)
    assert [round(t - t0, 6) for t in a.turns] == [0.5, 1.5, 2.5]
    assert [round(t - t0, 6) for t in b.turns] == [0.3, 0.5]
    assert gone.turns == []


@pytest.mark.process
async def test_write_now_leaves_the_rest_for_the_task() -> None:
    client, server = await tcp_pair()
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn = _Conn(client, Connection(ConnectionType.CLIENT), 0.0)
    chunk = random.Random(2).randbytes(65536)
    sent = bytearray()
    for _ in range(1000):  # the peer does not read: the buffers fill up
        whole = conn.write_now(chunk)
        sent.extend(chunk)
        if not whole:
            break
    assert conn.pending
    # later pings queue behind, in order
    assert not conn.write_now(b"ping")
    sent.extend(b"ping")
    got = bytearray()
    total = len(sent) + 4

    async def drain() -> None:
        while len(got) < total:
            data = await server.receive_some(1 << 20)
            assert data
            got.extend(data)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await conn.write(b"tail")  # the task's next write sends the rest first
    assert conn.pending is None
    assert bytes(got) == bytes(sent) + b"tail"
    await client.aclose()
    await server.aclose()


@pytest.mark.process
async def test_real_run_pings_through_the_pacer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns: list[int] = []
    real = Client._paced

    def counting(self: Client, conn: _Conn, now: float) -> None:
        assert self.hb is not None
        before = self.hb.next_seq
        real(self, conn, now)
        turns.append(self.hb.next_seq - before)  # 1 when the pacer sent a ping

    monkeypatch.setattr(Client, "_paced", counting)
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    body = """
[run]
label = "paced"
report_interval = "1s"
[[clients.stages]]
kind = "ramp"
to = 20
duration = "200ms"
[[clients.stages]]
kind = "hold"
duration = "2s"
[heartbeat]
interval = "200ms"
timeout = "2s"
"""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            profile = make_profile(body, url=f"ws://127.0.0.1:{port}/ws", results=tmp_path)
            runner = Runner(profile, Recorder(tmp_path, "paced", now_wall()), manage_gc=False)
            outcome = await runner.run()
            nursery.cancel_scope.cancel()
    tot = outcome.summary["totals"]
    assert tot["connects"] == 20
    assert tot["missed"] == 0
    assert tot["pongs"] >= 20
    assert gateway.stats()["pings_received"] == tot["pings"]
    # the pacer sent the pings; a client's task sends one only when it is
    # awake anyway (at connect, or just after a pong) as its slot comes due
    assert sum(turns) > tot["pings"] // 2


@pytest.mark.process
async def test_write_now_on_a_reset_socket_leaves_the_error_to_the_task() -> None:
    client, server = await tcp_pair()
    conn = _Conn(client, Connection(ConnectionType.CLIENT), 0.0)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await server.aclose()  # an RST
    with trio.fail_after(10):
        await trio.lowlevel.wait_readable(conn.fd)  # the reset has arrived
    assert not conn.write_now(b"ping")
    assert conn.pending == b"ping"
    with pytest.raises(trio.BrokenResourceError):
        await conn.write(b"")
    await client.aclose()


def test_slim_connection_keeps_its_queued_events_in_order() -> None:
    """The event queue swapped for a list (56 bytes, not a deque's 760) hands
    out what wsproto queues exactly as the deque did: the same events in the
    same order, here the 1006 close queued when the stream ends and a text
    message parsed from bytes."""
    import sys

    def events(slimmed: bool) -> list[str]:
        c = Connection(ConnectionType.CLIENT)
        if slimmed:
            before = sys.getsizeof(c._events)
            slim(c)
            assert sys.getsizeof(c._events) < before / 5
            assert wsproto_idle(c)
        c.receive_data(bytes([0x81, 2]) + b"hi")
        c.receive_data(None)
        out = [repr(e) for e in c.events()]
        assert not c._events
        return out

    assert events(True) == events(False)
    assert len(events(True)) == 2


# -- a close frame with a code RFC 6455 keeps off the wire --------------------------


def server_close(payload: bytes) -> bytes:
    return bytes((0x88, len(payload))) + payload


def closes_seen(data: bytes, slimmed: bool = True) -> list[Event]:
    ws = Connection(ConnectionType.CLIENT)
    if slimmed:
        wsframe.slim(ws)
    ws.receive_data(data)
    return list(ws.events())


@pytest.mark.parametrize(
    ("code", "reason"), [(1006, "Stale Connection"), (1005, ""), (1015, "tls")]
)
def test_a_reserved_close_code_is_read_as_the_server_sent_it(code: int, reason: str) -> None:
    """nats-server closes with 1006 "Stale Connection"; wsproto alone would
    report a 1002 of its own and lose the server's code and reason."""
    frame = server_close(code.to_bytes(2, "big") + reason.encode())
    [alone] = closes_seen(frame, slimmed=False)
    assert isinstance(alone, CloseConnection)
    assert alone.code == 1002
    [ev] = closes_seen(frame)
    assert isinstance(ev, CloseConnection)
    assert (ev.code, ev.reason) == (code, reason)


def test_other_close_frames_are_read_by_wsproto_as_before() -> None:
    [ev] = closes_seen(server_close((1000).to_bytes(2, "big") + b"bye"))
    assert isinstance(ev, CloseConnection)
    assert (ev.code, ev.reason) == (1000, "bye")
    [empty] = closes_seen(server_close(b""))  # no code at all: 1005, as RFC 6455 says
    assert isinstance(empty, CloseConnection)
    assert (empty.code, empty.reason) == (1005, "")


def test_a_reserved_close_with_a_reason_that_is_not_utf8_keeps_its_code() -> None:
    assert wsframe.reserved_close((1006).to_bytes(2, "big") + b"\xffok") == (1006, "\ufffdok")
    assert wsframe.reserved_close((1006).to_bytes(2, "big")) == (1006, "")
    assert wsframe.reserved_close(b"\x03") is None  # too short for a code
    assert wsframe.reserved_close((1001).to_bytes(2, "big")) is None
