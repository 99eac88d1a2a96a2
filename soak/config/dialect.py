"""``[target.dialect]``: a heartbeat dialect described in the profile
(``protocol = "custom"``; docs/dialects/custom.md). Its templates and
matchers (soak.config.patterns) are compiled, and so checked, when the
profile loads: a JSON template that cannot render valid JSON, an unknown
placeholder or a bad pattern is refused before the run, naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import Duration, Toml, at_least, one_of
from soak.config.patterns import (
    MATCHER_LIKE,
    PLACEHOLDERS,
    compile_matcher,
    compile_template,
    parse_pointer,
)
from soak.config.validation import Section

FORMATS = ("json", "text", "hex")
FRAMES = ("text", "binary")
MATCHES = ("pointer", "regex", "fifo")

# the incident's JSON heartbeat, as the built-in "json" dialect sends it
JSON_PING = '{"type":"ping","timestamp":{ts_ms},"clientId":"{client_id}","seq":{seq}}'


# -- the table ----------------------------------------------------------------------

TEMPLATE = Toml({"type": "string", "description": "a template with {seq}, {ts_ms}, {client_id}"})
MATCHER = Toml({"type": "string", "description": "a matcher: " + MATCHER_LIKE})
SUBPROTOCOLS = Toml({"type": "array", "items": {"type": "string", "minLength": 1}})
CLOSE_CODES = Toml({"type": "array", "items": {"type": "integer", "minimum": 1000}})


@dataclass(frozen=True)
class HandshakeStep:
    """One step of the dialect's handshake: send (optional), then wait for
    a message that matches ``expect`` (optional) within ``timeout``; one
    that matches ``refuse`` first is the server's refusal."""

    send: Annotated[str, TEMPLATE] = ""
    expect: Annotated[str, MATCHER] = ""
    refuse: Annotated[str, MATCHER] = ""
    timeout: Duration = 10.0
    permanent: bool = False  # a refusal means trying again cannot help


@dataclass(frozen=True)
class DialectConfig:
    """``[target.dialect]``: a heartbeat dialect without code (docs/dialects/custom.md).
    The defaults describe the built-in json dialect."""

    send: Annotated[str, TEMPLATE] = JSON_PING  # the client's heartbeat; "": none
    format: Annotated[str, one_of(FORMATS)] = "json"
    frame: Annotated[str, one_of(FRAMES)] = "text"
    reply: Annotated[str, MATCHER] = '/type == "pong"'  # "": one-way beats
    match: Annotated[str, one_of(MATCHES)] = "pointer"
    seq_pointer: str = "/seq"  # match = "pointer": where the reply carries the seq
    seq_regex: str = ""  # match = "regex": group 1 is the seq
    max_in_flight: Annotated[int | None, at_least(1)] = None  # fifo: 1 unless given
    server_ping: Annotated[str, MATCHER] = ""  # the server's ping, answered at once
    answer: Annotated[str, TEMPLATE] = ""  # the answer to it
    server_interval: Duration | None = None  # the server's ping interval ...
    server_timeout: Duration | None = None  # ... and how long it waits for the answer
    server_beat: Annotated[str, MATCHER] = ""  # the server's one-way beat
    silence_timeout: Duration | None = None  # no inbound frame this long: a zombie
    subprotocols: Annotated[tuple[str, ...], SUBPROTOCOLS] = ()
    handshake: tuple[HandshakeStep, ...] = ()
    # the server's heartbeat-timeout close (fills [target.server_heartbeat])
    timeout_close_codes: Annotated[tuple[int, ...], CLOSE_CODES] = ()
    timeout_reason: str = ""  # a regular expression, case-insensitive


def implied_heartbeat(cfg: object) -> ServerHeartbeat | None:
    """The server heartbeat a dialect table implies: its timeout signature."""
    if not isinstance(cfg, DialectConfig):
        return None
    if not cfg.timeout_close_codes and not cfg.timeout_reason:
        return None
    d = ServerHeartbeat()
    return ServerHeartbeat(
        interval=cfg.server_interval or d.interval,
        timeout=cfg.server_timeout or d.timeout,
        max_missed=1 if cfg.server_ping else d.max_missed,
        close_codes=cfg.timeout_close_codes,
        reason_pattern=cfg.timeout_reason or "(?!)",  # (?!) matches nothing
    )


# -- the parser ---------------------------------------------------------------------


def _template(s: Section, key: str, fmt: str, allowed: tuple[str, ...]) -> str:
    ld = s.loader
    text = s.get(key, ld.string, "")
    if key == "send" and key not in s.data:
        text = JSON_PING
    if text:
        try:
            compile_template(text, fmt, allowed)
        except ValueError as exc:
            ld.fail(s.where(key), str(exc), text)
    return text


def _matcher(s: Section, key: str, default: str = "") -> str:
    ld = s.loader
    text = s.get(key, ld.string, default)
    if text:
        try:
            compile_matcher(text)
        except ValueError as exc:
            ld.fail(s.where(key), str(exc), text)
    return text


def _optional_duration(s: Section, key: str) -> float | None:
    ld = s.loader
    return s.get(key, ld.positive_duration, None)


def _step(s: Section, fmt: str) -> HandshakeStep:
    ld = s.loader
    d = HandshakeStep()
    step = HandshakeStep(
        send=_template(s, "send", fmt, ("ts_ms", "client_id")) if "send" in s.data else "",
        expect=_matcher(s, "expect"),
        refuse=_matcher(s, "refuse"),
        timeout=s.get("timeout", ld.positive_duration, d.timeout),
        permanent=s.get("permanent", ld.boolean, d.permanent),
    )
    s.allowed.append("send")
    s.finish()
    if not step.send and not step.expect:
        ld.fail(s.name, "expected send, expect or both in a handshake step", None, found=False)
    if step.refuse and not step.expect:
        ld.fail(s.where("refuse"), "needs expect (what the step waits for)", step.refuse)
    return step


def _steps(s: Section, fmt: str) -> tuple[HandshakeStep, ...]:
    ld = s.loader
    raw: Any = s.get("handshake", lambda w, v: v, [])
    if not isinstance(raw, list):
        ld.fail(s.where("handshake"), "expected [[target.dialect.handshake]] tables", raw)
    where = s.where("handshake")
    return tuple(_step(ld.section(f"{where}[{i}]", item), fmt) for i, item in enumerate(raw))


def _codes(s: Section) -> tuple[int, ...]:
    ld = s.loader
    codes: Any = s.get("timeout_close_codes", lambda w, v: v, [])
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 1000 <= c <= 4999 for c in codes
    ):
        ld.fail(s.where("timeout_close_codes"), "expected a list of close codes 1000-4999", codes)
    return tuple(codes)


def _names(s: Section) -> tuple[str, ...]:
    ld = s.loader
    names: Any = s.get("subprotocols", lambda w, v: v, [])
    token = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
    if not isinstance(names, list) or not all(
        isinstance(n, str) and token.fullmatch(n) for n in names
    ):
        ld.fail(
            s.where("subprotocols"), 'expected a list of subprotocol names like ["mqtt"]', names
        )
    return tuple(names)


def parse_dialect(s: Section) -> DialectConfig:
    """``[target.dialect]``, every template and matcher compiled (checked)."""
    ld = s.loader
    d = DialectConfig()
    fmt = s.get("format", ld.choice(FORMATS), d.format)
    frame = s.get("frame", ld.choice(FRAMES), d.frame)
    if fmt == "hex" and frame != "binary":
        ld.fail(s.where("format"), 'format = "hex" needs frame = "binary"', fmt)
    send = _template(s, "send", fmt, PLACEHOLDERS)
    match = s.get("match", ld.choice(MATCHES), d.match)
    seq_pointer = s.get("seq_pointer", ld.string, d.seq_pointer)
    try:
        parse_pointer(seq_pointer)
    except ValueError as exc:
        ld.fail(s.where("seq_pointer"), str(exc), seq_pointer)
    seq_regex = s.get("seq_regex", ld.string, d.seq_regex)
    if seq_regex:
        try:
            groups = re.compile(seq_regex).groups
        except re.error as exc:
            ld.fail(s.where("seq_regex"), f"expected a regular expression ({exc})", seq_regex)
        if groups < 1:
            ld.fail(
                s.where("seq_regex"),
                r'expected a group around the seq, like "seq=(\d+)"',
                seq_regex,
            )
    reason = s.get("timeout_reason", ld.string, d.timeout_reason)
    try:
        re.compile(reason)
    except re.error as exc:
        ld.fail(s.where("timeout_reason"), f"expected a regular expression ({exc})", reason)
    cfg = DialectConfig(
        send=send,
        format=fmt,
        frame=frame,
        reply=_matcher(s, "reply", d.reply),
        match=match,
        seq_pointer=seq_pointer,
        seq_regex=seq_regex,
        max_in_flight=s.get("max_in_flight", ld.at_least(1), None),
        server_ping=_matcher(s, "server_ping"),
        answer=_template(s, "answer", fmt, ("client_id",)),
        server_interval=_optional_duration(s, "server_interval"),
        server_timeout=_optional_duration(s, "server_timeout"),
        server_beat=_matcher(s, "server_beat"),
        silence_timeout=_optional_duration(s, "silence_timeout"),
        subprotocols=_names(s),
        handshake=_steps(s, fmt),
        timeout_close_codes=_codes(s),
        timeout_reason=reason,
    )
    s.finish()
    _check(s, cfg)
    return cfg


def _check(s: Section, cfg: DialectConfig) -> None:
    """What the fields say together."""
    ld = s.loader
    if cfg.reply and not cfg.send:
        ld.fail(
            s.where("reply"),
            'needs send (a reply answers the client\'s heartbeat); use reply = ""',
            cfg.reply,
        )
    if not (cfg.send or cfg.server_ping or cfg.server_beat or cfg.silence_timeout):
        ld.fail(
            s.name,
            "expected something to measure: send, server_ping, server_beat or silence_timeout",
            None,
            found=False,
        )
    if cfg.send and cfg.reply and cfg.match != "fifo" and "{seq}" not in cfg.send:
        ld.fail(
            s.where("send"),
            f'has no {{seq}} for the reply to echo (match = "{cfg.match}"); '
            'add it, or use match = "fifo"',
            cfg.send,
        )
    if cfg.match == "regex" and cfg.reply and not cfg.seq_regex:
        ld.fail(s.where("seq_regex"), 'is required with match = "regex"', None, found=False)
    if cfg.server_ping and not cfg.answer:
        ld.fail(
            s.where("answer"),
            "is required with server_ping (a server message that needs no answer is a server_beat)",
            None,
            found=False,
        )
    if cfg.answer and not cfg.server_ping:
        ld.fail(s.where("answer"), "needs server_ping (what it answers)", cfg.answer)
    if (cfg.server_interval is None) != (cfg.server_timeout is None):
        ld.fail(
            s.where("server_timeout"),
            "expected server_interval and server_timeout together",
            None,
            found=False,
        )
