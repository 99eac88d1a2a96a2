"""A small reader of what tcpdump captured on loopback: the WebSocket
heartbeats of each TCP connection with the capture's timestamps, as an
instrument independent of soak (tests/test_wire_tcpdump.py).

pcap (not pcapng: tcpdump's ``-w`` default), link types Ethernet (``-i lo``
on Linux) and Linux cooked (``-i any``), IPv4 TCP. Each direction of each
connection is reassembled by sequence number (a retransmitted segment is
taken once), the HTTP upgrade skipped, and the RFC 6455 frames after it
parsed (client frames unmasked). A frame's time is that of the packet that
carried its last byte."""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LINK_ETHERNET = 1
LINK_LINUX_SLL = 113


@dataclass
class _Direction:
    next_seq: int | None = None
    buffer: bytearray = field(default_factory=bytearray)
    upgraded: bool = False
    frames: list[tuple[float, int, bytes]] = field(default_factory=list)  # (t, opcode, payload)


def packets(path: Path) -> Iterator[tuple[float, bytes]]:
    """(timestamp, IPv4 packet) of each captured packet."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    else:
        endian = ">"
        magic = struct.unpack_from(">I", data)[0]
    nano = magic == 0xA1B23C4D
    link = struct.unpack_from(endian + "I", data, 20)[0]
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, pos)
        pos += 16
        frame = data[pos : pos + incl]
        pos += incl
        t = sec + frac * (1e-9 if nano else 1e-6)
        if link == LINK_ETHERNET:
            if len(frame) < 14 or frame[12:14] != b"\x08\x00":
                continue
            yield t, frame[14:]
        elif link == LINK_LINUX_SLL:
            if len(frame) < 16 or frame[14:16] != b"\x08\x00":
                continue
            yield t, frame[16:]


def heartbeats(
    path: Path, server_port: int
) -> dict[tuple[int, str], list[tuple[float, int, bytes]]]:
    """The frames of every connection to ``server_port``: by (client port,
    "up" or "down"), each (time, opcode, payload)."""
    dirs: dict[tuple[int, str], _Direction] = defaultdict(_Direction)
    for t, ip in packets(path):
        if len(ip) < 20 or ip[9] != 6:  # TCP only
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        if len(ip) < total:
            raise ValueError(f"{path}: a packet truncated by the snap length (capture with -s 0)")
        tcp = ip[ihl:total]
        sport, dport, seq = struct.unpack_from(">HHI", tcp)
        flags = tcp[13]
        offset = (tcp[12] >> 4) * 4
        payload = tcp[offset:]
        if dport == server_port:
            key = (sport, "up")
        elif sport == server_port:
            key = (dport, "down")
        else:
            continue
        d = dirs[key]
        if flags & 0x02:  # SYN: the stream starts after it
            d.next_seq = (seq + 1) & 0xFFFFFFFF
            continue
        if not payload or d.next_seq is None:
            continue
        if seq != d.next_seq:
            continue  # a retransmission (loopback loses nothing)
        d.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        d.buffer += payload
        _parse(d, t)
    return {k: d.frames for k, d in dirs.items()}


def _parse(d: _Direction, t: float) -> None:
    buf = d.buffer
    if not d.upgraded:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        del buf[: end + 4]
        d.upgraded = True
    while len(buf) >= 2:
        opcode = buf[0] & 0x0F
        masked = buf[1] & 0x80
        length = buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return
            length, pos = struct.unpack_from(">H", buf, 2)[0], 4
        elif length == 127:
            if len(buf) < 10:
                return
            length, pos = struct.unpack_from(">Q", buf, 2)[0], 10
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return
            key, pos = bytes(buf[pos : pos + 4]), pos + 4
        if len(buf) < pos + length:
            return
        payload = bytes(buf[pos : pos + length])
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        del buf[: pos + length]
        d.frames.append((t, opcode, payload))


def json_rtts(path: Path, server_port: int) -> list[float]:
    """The wire RTT (seconds) of every JSON ping answered by its pong, by
    (connection, seq), as the capture saw them."""
    frames = heartbeats(path, server_port)
    rtts = []
    for (port, direction), items in frames.items():
        if direction != "up":
            continue
        sent: dict[int, float] = {}
        for t, opcode, payload in items:
            seq = _seq(opcode, payload, "ping")
            if seq is not None:
                sent[seq] = t
        for t, opcode, payload in frames.get((port, "down"), []):
            seq = _seq(opcode, payload, "pong")
            if seq is not None and seq in sent:
                rtts.append(t - sent.pop(seq))
    return rtts


def _seq(opcode: int, payload: bytes, kind: str) -> int | None:
    if opcode != 0x1:
        return None
    try:
        msg = json.loads(payload)
    except ValueError:
        return None
    if isinstance(msg, dict) and msg.get("type") == kind and isinstance(msg.get("seq"), int):
        return int(msg["seq"])
    return None
