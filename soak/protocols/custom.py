"""``protocol = "custom"``: a dialect described by the profile's
``[target.dialect]`` table instead of code (docs/dialects/custom.md).

The table says what the client sends (a template), how a reply is
recognised (a matcher) and matched (a JSON pointer to the seq, a regex's
group, or FIFO), whether the server pings and what answers it, the
server's one-way beats, a silence rule, the handshake's steps and the
subprotocols to offer. Every shape of the dialect model
(soak.protocols.base) can be said this way; the defaults say the built-in
``json`` dialect.

The table was compiled (and so checked) when the profile loaded; here it is
compiled once more per run (:class:`CustomState`) and each client binds its
id into the templates once, so a heartbeat costs one join of a few strings.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import trio

from soak.classify import CloseInfo, Verdict
from soak.config.dialect import DialectConfig
from soak.config.patterns import (
    NOT_JSON,
    UNPARSED,
    Matcher,
    Template,
    compile_matcher,
    compile_template,
    excerpt,
    parse_json,
    parse_pointer,
    render,
    resolve,
)
from soak.config.target import TargetConfig
from soak.config.units import format_duration
from soak.errors import HandshakeError, ProtocolError
from soak.protocols.base import OLDEST, SERVER_BEAT, SERVER_PING, HandshakeIO, HeartbeatProtocol
from soak.protocols.sniff import SNIFFED, foreign_close, sniff
from soak.wsframe import OP_BINARY, OP_TEXT


@dataclass(frozen=True)
class Step:
    """A compiled handshake step."""

    send: Template | None
    expect: Matcher | None
    refuse: Matcher | None
    timeout: float
    permanent: bool


def _matcher(text: str) -> Matcher | None:
    return compile_matcher(text) if text else None


class CustomState:
    """Run-wide: the dialect table, compiled."""

    def __init__(self, target: TargetConfig) -> None:
        cfg = target.dialect or DialectConfig()
        self.config = cfg
        fmt = cfg.format
        self.opcode = OP_BINARY if cfg.frame == "binary" else OP_TEXT
        self.send = compile_template(cfg.send, fmt) if cfg.send else None
        self.reply = _matcher(cfg.reply)
        self.match = cfg.match
        self.seq_pointer = parse_pointer(cfg.seq_pointer)
        self.seq_regex = re.compile(cfg.seq_regex) if cfg.seq_regex else None
        self.server_ping = _matcher(cfg.server_ping)
        self.answer = compile_template(cfg.answer, fmt, ("client_id",)) if cfg.answer else None
        self.server_beat = _matcher(cfg.server_beat)
        self.steps = tuple(
            Step(
                compile_template(s.send, fmt, ("ts_ms", "client_id")) if s.send else None,
                _matcher(s.expect),
                _matcher(s.refuse),
                s.timeout,
                s.permanent,
            )
            for s in cfg.handshake
        )
        # what a text message is checked against, in order
        self.checks: tuple[tuple[Matcher, int], ...] = tuple(
            (m, role)
            for m, role in ((self.server_ping, SERVER_PING), (self.server_beat, SERVER_BEAT))
            if m is not None
        )


class Custom(HeartbeatProtocol):
    name: ClassVar[str] = "custom"
    has_handshake: ClassVar[bool] = True  # its steps, if any (none: nothing is awaited)
    __slots__ = ("_answer", "_format", "_raw", "_unplaced", "state")

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, CustomState):
            state = CustomState(TargetConfig())
        self.state: CustomState = state
        cfg = state.config
        send = state.send
        self._format = send.format_string(client_id) if send is not None else ""
        self._raw = send.raw if send is not None and send.fmt == "hex" else None
        answer = state.answer
        self._answer = b""
        if answer is not None:
            text = render(answer.bind(client_id), 0, 0)
            self._answer = answer.raw if answer.fmt == "hex" else text.encode()
        self.client_pings = send is not None
        self.expects_reply = state.reply is not None
        fifo = state.match == "fifo"
        self.max_in_flight = cfg.max_in_flight or (1 if fifo and self.expects_reply else None)
        self.server_interval = cfg.server_interval
        self.server_timeout = cfg.server_timeout
        self.silence_timeout = cfg.silence_timeout
        self._unplaced = 0

    @classmethod
    def shared_state(cls, target: Any) -> CustomState:
        return CustomState(target)

    def subprotocols(self) -> tuple[str, ...]:
        return self.state.config.subprotocols

    def opened(self) -> None:
        self._unplaced = SNIFFED

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        # another dialect's close before any reply, unless the table says
        # it is this dialect's own timeout
        if info.code in self.state.config.timeout_close_codes:
            return verdict
        return foreign_close(verdict, info, self.name)

    # -- the handshake -----------------------------------------------------------------

    async def handshake(self, io: HandshakeIO) -> None:
        steps = self.state.steps
        if not steps:
            return  # the first messages are sniffed as they come (pong_text)
        for number, step in enumerate(steps, 1):
            if step.send is not None:
                await self._send(io, step.send)
            if step.expect is not None:
                await self._expect(io, number, step)
        self._unplaced = 0

    async def _send(self, io: HandshakeIO, template: Template) -> None:
        if template.fmt == "hex":
            await io.send_bytes(template.raw)
            return
        ms = int(time.time() * 1000)
        text = render(template.bind(self.client_id), 0, ms)
        if self.state.opcode == OP_BINARY:
            await io.send_bytes(text.encode())
        else:
            await io.send_text(text)

    async def _expect(self, io: HandshakeIO, number: int, step: Step) -> None:
        expect = step.expect
        assert expect is not None
        last: str | bytes | None = None
        with trio.move_on_after(step.timeout):
            while True:
                message = await io.receive()
                if step.refuse is not None and _hit(step.refuse, message):
                    raise HandshakeError(
                        "rejected",
                        f"{io.url}: refused in handshake step {number}: {excerpt(message)}",
                        permanent=step.permanent,
                    )
                if _hit(expect, message):
                    return
                if self._unplaced:
                    self._unplaced -= 1
                    seen = sniff(message)
                    if seen is not None:
                        text = seen.explain(self.name)
                        raise HandshakeError(
                            "protocol", f"{io.url}: handshake step {number}: {text}"
                        )
                last = message
        shown = "" if last is None else f" (the last message: {excerpt(last)})"
        raise HandshakeError(
            "timeout",
            f"{io.url}: handshake step {number}: no message matching {expect.source!r} "
            f"within {format_duration(step.timeout)}{shown}",
        )

    # -- the heartbeat, out ------------------------------------------------------------

    def ping_frame(self, seq: int, now_ms: int) -> tuple[int, bytes] | None:
        raw = self._raw
        if raw is not None:
            return OP_BINARY, raw
        return self.state.opcode, self._format.format(seq, now_ms).encode()

    def answer(self) -> tuple[int, bytes]:
        return self.state.opcode, self._answer

    # -- what comes back ---------------------------------------------------------------

    def pong_text(self, text: str) -> int | None:
        st = self.state
        doc: Any = UNPARSED
        reply = st.reply
        if reply is not None and reply.maybe(text):
            if reply.json:
                doc = parse_json(text)
            if reply.match_text(text, doc):
                return self._seq(text, doc)
        for matcher, role in st.checks:
            if matcher.maybe(text):
                if matcher.json and doc is UNPARSED:
                    doc = parse_json(text)
                if matcher.match_text(text, doc):
                    return role
        if self._unplaced:
            self._first(text)
        return None

    def pong_binary(self, data: bytes) -> int | None:
        st = self.state
        reply = st.reply
        if reply is not None and reply.match_bytes(data):
            if st.match == "fifo":
                return OLDEST
            try:
                return self._seq(data.decode(), UNPARSED)
            except UnicodeDecodeError:
                return None
        for matcher, role in st.checks:
            if matcher.match_bytes(data):
                return role
        if self._unplaced:
            self._first(data)
        return None

    def _seq(self, text: str, doc: Any) -> int | None:
        st = self.state
        if st.match == "fifo":
            return OLDEST
        if st.match == "regex":
            assert st.seq_regex is not None
            m = st.seq_regex.search(text)
            value: Any = int(m.group(1)) if m is not None and m.group(1).isdigit() else None
        else:
            if doc is UNPARSED:
                doc = parse_json(text)
            value = None if doc is NOT_JSON else resolve(doc, st.seq_pointer)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        return None  # a reply without a usable seq: not a heartbeat's

    def _first(self, message: str | bytes) -> None:
        """One of the first messages, unplaced: another dialect's greeting?"""
        self._unplaced -= 1
        seen = sniff(message)
        if seen is not None:
            self._unplaced = 0
            raise ProtocolError(seen.explain(self.name))


def _hit(matcher: Matcher, message: str | bytes) -> bool:
    if isinstance(message, bytes):
        return matcher.match_bytes(message)
    return matcher.maybe(message) and matcher.match_text(message)
