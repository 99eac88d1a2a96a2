"""Socket.IO's configuration: its ``[target.socketio]`` table (model and
parser), the checks of the target URL against it, and the server heartbeat
the dialect implies (docs/dialects/socketio.md)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import Toml
from soak.config.validation import Loader, Parser, Section

if TYPE_CHECKING:
    from soak.config.target import TargetConfig

DEFAULT_PATH = "/socket.io/"  # the Engine.IO path of every Socket.IO server
EIO_VERSIONS = (3, 4)  # Engine.IO 3: Socket.IO 2; Engine.IO 4: Socket.IO 3 and 4
DEFAULT_EIO = 4
# CONNECT_ERROR messages that trying again cannot change: a middleware's
# authorization decision, a namespace the server does not have
PERMANENT_ERRORS = r"authori[sz]|forbidden|denied|credential|token|invalid namespace"

NAMESPACE = Toml({"type": "string", "pattern": "^/[^,?]*$"})
AUTH = Toml({"anyOf": [{"type": "object"}, {"type": "string"}]})
EIO = Toml({"enum": list(EIO_VERSIONS)})
PATH = Toml({"type": "string", "pattern": "^/"})

# The Engine.IO server's heartbeat with its defaults (pingInterval 25 s,
# pingTimeout 20 s), used for protocol = "socket.io" when the profile has no
# [target.server_heartbeat]: a client that does not answer a ping within
# pingTimeout gets a close frame without a status code (1005), so it lives
# at most pingInterval + pingTimeout after its last answer (the timeout, in
# the reference gateway's terms). Each connection is judged with the
# timings of its own open packet (soak.protocols.socketio).
SOCKETIO_SERVER_HEARTBEAT = ServerHeartbeat(
    interval=25.0,
    timeout=45.0,
    max_missed=1,
    close_codes=(1005,),
    reason_pattern="ping timeout",
)


@dataclass(frozen=True)
class SocketIOConfig:
    """``[target.socketio]``: the namespace to connect, the CONNECT payload,
    the Engine.IO version and path, and which CONNECT_ERRORs are final."""

    namespace: Annotated[str, NAMESPACE] = "/"
    # the CONNECT packet's auth payload: a JSON object as text (a table in
    # the profile is kept as its JSON); None: none
    auth: Annotated[str | None, AUTH] = None
    eio: Annotated[int | None, EIO] = None  # None: the URL's EIO=, else 4
    path: Annotated[str | None, PATH] = None  # None: the URL's path, else /socket.io/
    # a regular expression (case-insensitive) on CONNECT_ERROR's message
    permanent_errors: str = PERMANENT_ERRORS


def parse_socketio(s: Section) -> SocketIOConfig:
    ld = s.loader
    d = SocketIOConfig()
    namespace = s.get("namespace", ld.string, d.namespace)
    if not re.fullmatch(r"/[^,?]*", namespace):
        ld.fail(s.where("namespace"), 'expected a namespace like "/" or "/admin"', namespace)
    eio = s.get("eio", _eio(ld), d.eio)
    auth = s.get("auth", _auth(ld), d.auth)
    path = s.get("path", _path(ld), d.path)
    pattern = s.get("permanent_errors", ld.string, d.permanent_errors)
    try:
        re.compile(pattern)
    except re.error as exc:
        ld.fail(s.where("permanent_errors"), f"expected a regular expression ({exc})", pattern)
    if auth is not None and eio == 3:
        ld.fail(
            s.where("auth"),
            "is not sent with eio = 3 (a Socket.IO 2 server reads no CONNECT payload; "
            "put credentials in the URL's query)",
            None,
            found=False,
        )
    cfg = SocketIOConfig(
        namespace=namespace, auth=auth, eio=eio, path=path, permanent_errors=pattern
    )
    s.finish()
    return cfg


def _eio(ld: Loader) -> Parser[int]:
    def parse(where: str, raw: Any) -> int:
        if isinstance(raw, bool) or raw not in EIO_VERSIONS:
            ld.fail(where, "expected 4 (Socket.IO 3 and 4) or 3 (Socket.IO 2)", raw)
        return int(raw)

    return parse


def _auth(ld: Loader) -> Parser[str]:
    like = 'expected a table like { token = "..." } or a JSON object as text'

    def parse(where: str, raw: Any) -> str:
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except ValueError as exc:
                ld.fail(where, f"{like} (not JSON: {exc})", raw)
        if not isinstance(value, dict):
            ld.fail(where, like, raw)
        try:
            return json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            return ld.fail(where, f"{like} (it has no JSON form: {exc})", raw)

    return parse


def _path(ld: Loader) -> Parser[str]:
    def parse(where: str, raw: Any) -> str:
        if not isinstance(raw, str) or not raw.startswith("/") or "?" in raw:
            ld.fail(where, 'expected a path like "/socket.io/"', raw)
        return engine_path(raw)

    return parse


def engine_path(path: str) -> str:
    """An Engine.IO path as servers match it: with one trailing slash."""
    return path.rstrip("/") + "/"


@dataclass(frozen=True)
class Resolved:
    """What the URL and the table say together: the Engine.IO version and
    path, and the URL's other query parameters (kept as they are)."""

    eio: int
    path: str
    query: tuple[tuple[str, str], ...]


def resolve(url: str, cfg: SocketIOConfig) -> Resolved:
    """The Engine.IO version and path of a target, or ValueError saying
    which of the URL and the table disagree, and how. Pure."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    url_eio: int | None = None
    kept = []
    for key, value in query:
        if key == "EIO":
            if value not in ("3", "4"):
                raise ValueError(f"the URL's EIO={value}: soak speaks Engine.IO 3 and 4")
            url_eio = int(value)
        elif key == "transport":
            if value != "websocket":
                raise ValueError(
                    f"the URL's transport={value}: soak speaks Engine.IO over the websocket "
                    "transport only (remove it, or write transport=websocket)"
                )
        elif key == "sid":
            raise ValueError(
                "the URL has a sid: that upgrades an existing polling session; "
                "soak opens its own sessions (remove it)"
            )
        else:
            kept.append((key, value))
    if cfg.eio is not None and url_eio is not None and cfg.eio != url_eio:
        raise ValueError(f"eio = {cfg.eio} but the URL says EIO={url_eio}")
    url_path = parts.path if parts.path not in ("", "/") else None
    if cfg.path is not None and url_path is not None and engine_path(url_path) != cfg.path:
        raise ValueError(f'path = "{cfg.path}" but the URL\'s path is "{url_path}"')
    path = cfg.path or (engine_path(url_path) if url_path else DEFAULT_PATH)
    eio = cfg.eio or url_eio or DEFAULT_EIO
    return Resolved(eio, path, tuple(kept))


def check_socketio(ld: Loader, where: str, target: TargetConfig) -> None:
    """The target's URL against its [target.socketio] (or the defaults)."""
    cfg = target.socketio or SocketIOConfig()
    try:
        resolve(target.url, cfg)
    except ValueError as exc:
        ld.fail(where, str(exc), None, found=False)
