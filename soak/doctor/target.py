"""The target checks of ``soak doctor``: one connection to the profile's
target (TCP and TLS, the WebSocket upgrade, one heartbeat in its protocol),
and one read of its stats endpoint; each step under a short timeout."""

from __future__ import annotations

import time
from typing import cast
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from soak.client import url_opener
from soak.config.profile import Profile
from soak.config.target import StatsConfig
from soak.doctor.findings import ERROR, INFO, WARNING, Finding
from soak.doctor.findings import environment_finding as _env
from soak.errors import SoakError
from soak.protocols import PROTOCOLS
from soak.protocols.base import HeartbeatProtocol
from soak.reconcile import extract, fetch_json
from soak.urls import authority, without_userinfo

TARGET_TIMEOUT = 5.0  # each of TCP, handshake and heartbeat


async def check_target(profile: Profile, step_limit: float = TARGET_TIMEOUT) -> list[Finding]:
    """TCP (and TLS), then the WebSocket handshake, then one heartbeat in the
    profile's protocol with its RTT. Stops at the first step that fails."""
    target = profile.target
    url = without_userinfo(target.url)
    parts = urlsplit(target.url)
    out: list[Finding] = []
    t0 = time.perf_counter()
    try:
        with trio.fail_after(step_limit):
            stream = await url_opener(target)()
    except (OSError, trio.BrokenResourceError, trio.TooSlowError, SoakError) as exc:
        why: object = (
            f"no connection within {step_limit:g} s" if isinstance(exc, trio.TooSlowError) else exc
        )
        return [
            _env(
                ERROR,
                "target-tcp-failed",
                f"{url}: cannot connect: {why}",
                "start the gateway, or check the URL, DNS, firewall and TLS settings",
            )
        ]
    out.append(
        _env(
            INFO, "target-tcp-ok", f"{url}: connected in {(time.perf_counter() - t0) * 1000:.1f} ms"
        )
    )
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        headers = [(k.encode(), v.encode()) for k, v in target.headers]
        if target.token is not None:
            value = target.token_prefix + target.token.value
            headers.append((target.token_header.encode(), value.encode()))
        resource_ = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proto_cls = PROTOCOLS[target.protocol]
        # the upgrade as the dialect asks for it (Engine.IO: ?EIO=4&transport=websocket)
        resource_ = proto_cls("soak-doctor", proto_cls.shared_state(target)).resource(resource_)
        host = authority(target.url)
        t0 = time.perf_counter()
        try:
            with trio.fail_after(step_limit):
                await stream.send_all(
                    ws.send(Request(host=host, target=resource_, extra_headers=headers))
                )
                rejected = await _until_accepted(stream, ws)
        except (
            trio.TooSlowError,
            trio.BrokenResourceError,
            RemoteProtocolError,
            OSError,
            EOFError,
        ) as exc:
            why2: object = (
                f"no answer within {step_limit:g} s" if isinstance(exc, trio.TooSlowError) else exc
            )
            out.append(
                _env(
                    ERROR,
                    "target-handshake-failed",
                    f"{url}: the WebSocket handshake failed: {why2 or 'connection closed'}",
                    "check the path, the token and that a proxy passes Upgrade",
                )
            )
            return out
        if rejected is not None:
            out.append(
                _env(
                    ERROR,
                    "target-handshake-failed",
                    f"{url}: the WebSocket handshake was refused: HTTP {rejected}",
                    "check the path and the token (target.token_env)",
                )
            )
            return out
        out.append(
            _env(
                INFO,
                "target-handshake-ok",
                f"{url}: WebSocket handshake in {(time.perf_counter() - t0) * 1000:.1f} ms",
            )
        )
        if getattr(proto_cls, "has_handshake", False):
            # a protocol that speaks first after the upgrade (e.g. a login):
            # not replayed here, so no heartbeat is tried
            out.append(
                _env(
                    INFO,
                    "target-heartbeat-skipped",
                    f"{url}: protocol {target.protocol} has its own handshake after the "
                    "upgrade; soak doctor checked TCP and the upgrade only",
                )
            )
            return out
        proto = proto_cls("soak-doctor")
        t0 = time.perf_counter()
        try:
            with trio.fail_after(step_limit):
                await stream.send_all(ws.send(proto.ping(1, int(time.time() * 1000))))
                await _until_pong(stream, ws, proto)
        except (
            trio.TooSlowError,
            trio.BrokenResourceError,
            RemoteProtocolError,
            LocalProtocolError,
            OSError,
            EOFError,
        ) as exc:
            why3: object = (
                f"no pong within {step_limit:g} s" if isinstance(exc, trio.TooSlowError) else exc
            )
            out.append(
                _env(
                    ERROR,
                    "target-heartbeat-failed",
                    f"{url}: one {target.protocol} heartbeat: {why3 or 'connection closed'}",
                    "check target.protocol: the gateway must answer this heartbeat",
                )
            )
            return out
        rtt = time.perf_counter() - t0
        out.append(
            _env(
                INFO,
                "target-heartbeat-ok",
                f"{url}: one {target.protocol} heartbeat, RTT {rtt * 1000:.2f} ms",
            )
        )
        with trio.move_on_after(1):
            try:
                await stream.send_all(ws.send(CloseConnection(code=1000, reason="soak doctor")))
            except (trio.BrokenResourceError, LocalProtocolError, OSError):
                pass
    return out


async def _receive(stream: trio.abc.Stream, ws: WSConnection) -> None:
    data = await stream.receive_some(65536)
    if not data:
        raise EOFError("connection closed")
    ws.receive_data(cast(bytes, data))


async def _until_accepted(stream: trio.abc.Stream, ws: WSConnection) -> int | None:
    """None when accepted, else the refusal's HTTP status."""
    while True:
        await _receive(stream, ws)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return None
            if isinstance(event, RejectConnection):
                return event.status_code


async def _until_pong(stream: trio.abc.Stream, ws: WSConnection, proto: HeartbeatProtocol) -> None:
    text: list[str] = []
    while True:
        await _receive(stream, ws)
        for event in ws.events():
            if isinstance(event, Ping):
                await stream.send_all(ws.send(event.response()))
            elif isinstance(event, Pong) and proto.pong_control(bytes(event.payload)) == 1:
                return
            elif isinstance(event, TextMessage):
                text.append(event.data)
                if event.message_finished:
                    if proto.pong_text("".join(text)) == 1:
                        return
                    text = []
            elif isinstance(event, CloseConnection):
                raise EOFError(f"the server closed: {event.code} {event.reason}")


async def check_stats(stats: StatsConfig) -> list[Finding]:
    url = without_userinfo(stats.url)
    try:
        with trio.fail_after(stats.timeout):
            doc = await fetch_json(stats.url)
        value = extract(doc, stats.field)
    except trio.TooSlowError:
        why = f"no answer within {stats.timeout:g} s"
    except SoakError as exc:
        why = str(exc)
    else:
        return [_env(INFO, "stats-ok", f"{url}: {stats.field} = {value}")]
    return [
        _env(
            WARNING,
            "stats-unreadable",
            f"target.stats: {why}",
            "check target.stats.url and field; without it the run cannot compare the "
            "server's count with its own",
        )
    ]
