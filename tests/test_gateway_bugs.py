"""The reference gateway's fault modes (the incident's bugs) and its truth log.

Everything runs on memory streams under the autojump MockClock, so every time
asserted here is an exact virtual time: the checker ticks at exact multiples
of ``check_every``, and a client pings at exact multiples of its period.
"""

from __future__ import annotations

import json
import re
from collections import deque
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from soak.errors import LocalError
from soak.gateway import Gateway, GatewayConfig
from soak.gateway.bugs import (
    Bug,
    DropHeartbeat,
    IgnoreMaxMissed,
    NoPong,
    StaleSession,
    cli_forms,
    parse_bug,
    parse_bugs,
)
from soak.gateway.heartbeat import Expiry, IncidentHeartbeatManager

# timeout (15) < interval * max_missed (30): where the incident's rule and the
# fixed one disagree. The checker runs every second.
TIGHT = GatewayConfig(hb_interval=10.0, hb_timeout=15.0, max_missed=3, check_every=1.0)
# The settings tests/test_gateway_server.py uses: the fixed rule closes a
# silent client at age 30, noticed at the check at 32.
FAST = GatewayConfig(hb_interval=10.0, hb_timeout=25.0, max_missed=3, check_every=4.0)
# The incident's own settings (the defaults).
INCIDENT = GatewayConfig(check_every=5.0)


def with_bugs(config: GatewayConfig, *bugs: str, truth_log: Path | None = None) -> GatewayConfig:
    return GatewayConfig(
        hb_interval=config.hb_interval,
        hb_timeout=config.hb_timeout,
        max_missed=config.max_missed,
        check_every=config.check_every,
        bugs=parse_bugs(bugs),
        truth_log=truth_log,
    )


# ---- a tiny wsproto client ---------------------------------------------------


class Client:
    """Just enough of a WebSocket client: pings on a schedule, reads all the while."""

    def __init__(self, stream: trio.abc.Stream, client_id: str | None) -> None:
        self.stream = stream
        self.client_id = client_id
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Event] = deque()
        self.seq = 0
        self.pongs: list[tuple[float, int]] = []  # (arrival time, seq)
        self.other: list[tuple[float, Event]] = []
        self.close: CloseConnection | None = None
        self.closed_at: float | None = None

    async def handshake(self) -> None:
        await self.send(Request(host="gateway.test", target="/ws"))
        assert isinstance(await self.next_event(), AcceptConnection)

    async def send(self, event: Event) -> None:
        await self.stream.send_all(self.ws.send(event))

    async def ping(self) -> None:
        self.seq += 1
        msg: dict[str, Any] = {"type": "ping", "timestamp": 1000 * self.seq, "seq": self.seq}
        if self.client_id is not None:
            msg["clientId"] = self.client_id
        await self.send(TextMessage(data=json.dumps(msg)))

    async def next_event(self) -> Event:
        while not self.pending:
            data = await self.stream.receive_some()
            self.ws.receive_data(bytes(data) if data else None)
            self.pending.extend(self.ws.events())
        return self.pending.popleft()

    async def answer_within(self, seconds: float) -> Event | None:
        with trio.move_on_after(seconds):
            return await self.next_event()
        return None

    async def run(self, every: float, until: float) -> None:
        """Ping every ``every`` s (first one ``every`` from now) and read
        everything, until ``until`` or until the gateway closes us; a close is
        answered and the stream read to EOF, so the gateway finishes it."""
        next_ping = trio.current_time() + every
        while True:
            event: Event | None = None
            with trio.move_on_at(min(next_ping, until)):
                event = await self.next_event()
            now = trio.current_time()
            if isinstance(event, CloseConnection):
                self.close, self.closed_at = event, now
                await self.send(event.response())
                while await self.stream.receive_some():
                    pass
                return
            if isinstance(event, TextMessage):
                self.pongs.append((now, json.loads(event.data)["seq"]))
            elif event is not None:
                self.other.append((now, event))
            elif now >= until:
                return
            else:
                await self.ping()
                next_ping += every

    async def bye(self) -> None:
        """Close from our side, as a client that churns does."""
        await self.send(CloseConnection(code=1000))
        assert isinstance(await self.next_event(), CloseConnection)
        while await self.stream.receive_some():
            pass


async def connect(gateway: Gateway, nursery: trio.Nursery, client_id: str | None) -> Client:
    client_side, server_side = trio.testing.memory_stream_pair()
    nursery.start_soon(gateway.handle_stream, server_side)
    client = Client(client_side, client_id)
    await client.handshake()
    return client


def truth(**fields: Any) -> dict[str, Any]:
    record = {"reason": "heartbeat_timeout", "code": 4000, "client_id": "abc123"}
    record.update(fields)
    return record


# ---- parsing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bug", "cli"),
    [
        ("ignore-max-missed", IgnoreMaxMissed(), "ignore-max-missed"),
        ("stale-session", StaleSession(), "stale-session"),
        ("no-pong 0.1", NoPong(0.1), "no-pong 0.1"),
        ("no-pong=1", NoPong(1.0), "no-pong 1.0"),
        ("  no-pong   .25 ", NoPong(0.25), "no-pong 0.25"),
        ("no-pong 1e-3", NoPong(0.001), "no-pong 0.001"),
        ("drop-heartbeat 1", DropHeartbeat(1), "drop-heartbeat 1"),
        ("drop-heartbeat 12", DropHeartbeat(12), "drop-heartbeat 12"),
    ],
)
def test_good_bug_strings_parse_and_print_back(text: str, bug: Bug, cli: str) -> None:
    assert parse_bug(text) == bug
    assert bug.cli == cli
    assert parse_bug(bug.cli) == bug


KNOWN = "ignore-max-missed, stale-session, no-pong RATE, drop-heartbeat N"
RATE = "the fraction of connections to affect, a number in (0, 1]"
N = "which heartbeat of each connection to drop, an integer >= 1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"gateway: bug: expected one of {KNOWN}, got ''"),
        ("  ", f"gateway: bug: expected one of {KNOWN}, got '  '"),
        (
            "nopong 0.1",
            f"gateway: bug 'nopong 0.1': unknown bug 'nopong'; did you mean 'no-pong'? "
            f"(known: {KNOWN})",
        ),
        (
            "ignore_max_missed",
            "gateway: bug 'ignore_max_missed': unknown bug 'ignore_max_missed'; "
            f"did you mean 'ignore-max-missed'? (known: {KNOWN})",
        ),
        (
            "Stale-Session",
            "gateway: bug 'Stale-Session': unknown bug 'Stale-Session'; "
            f"did you mean 'stale-session'? (known: {KNOWN})",
        ),
        (
            "drop-heartbeats 2",
            "gateway: bug 'drop-heartbeats 2': unknown bug 'drop-heartbeats'; "
            f"did you mean 'drop-heartbeat'? (known: {KNOWN})",
        ),
        ("frobnicate", f"gateway: bug 'frobnicate': unknown bug 'frobnicate' (known: {KNOWN})"),
        ("no-pong", f"gateway: bug 'no-pong': no-pong needs RATE, {RATE} (e.g. 'no-pong 0.1')"),
        (
            "drop-heartbeat",
            f"gateway: bug 'drop-heartbeat': drop-heartbeat needs N, {N} (e.g. 'drop-heartbeat 1')",
        ),
        ("no-pong 0", f"gateway: bug 'no-pong 0': RATE: expected {RATE}, got '0'"),
        ("no-pong 1.5", f"gateway: bug 'no-pong 1.5': RATE: expected {RATE}, got '1.5'"),
        ("no-pong -0.1", f"gateway: bug 'no-pong -0.1': RATE: expected {RATE}, got '-0.1'"),
        ("no-pong nan", f"gateway: bug 'no-pong nan': RATE: expected {RATE}, got 'nan'"),
        ("no-pong inf", f"gateway: bug 'no-pong inf': RATE: expected {RATE}, got 'inf'"),
        ("no-pong 10%", f"gateway: bug 'no-pong 10%': RATE: expected {RATE}, got '10%'"),
        (
            "no-pong 0.1 0.2",
            "gateway: bug 'no-pong 0.1 0.2': no-pong takes one argument, RATE, got 2",
        ),
        ("drop-heartbeat 0", f"gateway: bug 'drop-heartbeat 0': N: expected {N}, got '0'"),
        ("drop-heartbeat 1.5", f"gateway: bug 'drop-heartbeat 1.5': N: expected {N}, got '1.5'"),
        ("drop-heartbeat x", f"gateway: bug 'drop-heartbeat x': N: expected {N}, got 'x'"),
        (
            "stale-session 3",
            "gateway: bug 'stale-session 3': stale-session takes no argument, got '3'",
        ),
    ],
)
def test_bad_bug_strings_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(LocalError) as excinfo:
        parse_bug(text)
    assert str(excinfo.value) == message
    with pytest.raises(LocalError) as excinfo:
        parse_bugs(["ignore-max-missed", text])
    assert str(excinfo.value) == message


def test_config_validates_bugs() -> None:
    config = GatewayConfig(bugs=parse_bugs(["ignore-max-missed", "no-pong 0.1"]))
    assert config.bug_names == ["ignore-max-missed", "no-pong 0.1"]
    assert cli_forms(config.bugs) == config.bug_names
    assert GatewayConfig().bugs == ()
    with pytest.raises(LocalError) as excinfo:
        GatewayConfig(bugs=parse_bugs(["no-pong 0.1", "no-pong 0.2"]))
    assert str(excinfo.value) == (
        "gateway: bugs: no-pong given twice ('no-pong 0.1' and 'no-pong 0.2'); "
        "expected each bug at most once"
    )
    with pytest.raises(LocalError, match="gateway: bugs: expected bug values"):
        GatewayConfig(bugs=("no-pong 0.1",))  # type: ignore[arg-type]
    with pytest.raises(LocalError, match="gateway: bugs: expected a tuple"):
        GatewayConfig(bugs=[NoPong(0.1)])  # type: ignore[arg-type]
    with pytest.raises(LocalError, match="gateway: truth_log: expected a Path"):
        GatewayConfig(truth_log="t.jsonl")  # type: ignore[arg-type]
    with pytest.raises(LocalError, match=re.escape("RATE: expected a number in (0, 1], got 1.5")):
        NoPong(1.5)
    with pytest.raises(LocalError, match="N: expected an integer >= 1, got 0"):
        DropHeartbeat(0)


def test_config_notes_when_ignore_max_missed_cannot_show() -> None:
    # The incident's own settings: 120 s >= 3 * 30 s, so the rules agree.
    assert GatewayConfig(bugs=(IgnoreMaxMissed(),)).bug_notes() == [
        "ignore-max-missed changes nothing unless hb_timeout < hb_interval * max_missed "
        "(here 120s >= 30s * 3)"
    ]
    assert with_bugs(TIGHT, "ignore-max-missed").bug_notes() == []
    assert GatewayConfig().bug_notes() == []


def test_stats_name_the_bugs() -> None:
    gateway = Gateway(with_bugs(FAST, "drop-heartbeat 1", "ignore-max-missed"))
    stats = gateway.stats()
    assert stats["bugs"] == ["drop-heartbeat 1", "ignore-max-missed"]
    assert (stats["false_kills"], stats["truth_records"]) == (0, 0)
    assert Gateway(FAST).stats()["bugs"] == []


@pytest.mark.parametrize(
    ("rate", "affected"),
    [
        (0.1, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
        (0.25, list(range(4, 101, 4))),
        (1.0, list(range(1, 101))),
        (0.07, [15, 29, 43, 58, 72, 86, 100]),
    ],
)
def test_no_pong_selection_is_exact(rate: float, affected: list[int]) -> None:
    bug = NoPong(rate)
    assert [k for k in range(1, 101) if bug.affects(k)] == affected


def test_no_pong_rate_is_exact_for_decimals_that_floats_get_wrong() -> None:
    # In binary floating point 0.3 * 10 is 3.0000000000000004 but 0.7 * 10 is
    # 7.000000000000001 and 0.1 * 3 is 0.30000000000000004: exact counting
    # keeps "exactly RATE * n of n" true for every n that makes it whole.
    for rate in (0.1, 0.3, 0.7, 0.35, 0.01):
        bug = NoPong(rate)
        for n in (100, 1000):
            assert sum(bug.affects(k) for k in range(1, n + 1)) == round(rate * n)


def test_incident_rule_ignores_the_missed_count() -> None:
    hb = IncidentHeartbeatManager(interval=10.0, timeout=15.0, max_missed=3)
    hb.add(1, now=0.0)
    assert hb.expired(15.0) == []  # "elapsed > timeout": not at the boundary
    assert hb.expired(15.5) == [Expiry(conn_id=1, last_beat_age=15.5, missed=1)]
    assert hb.fixed_rule(15.5) is False  # the fixed rule would have waited
    assert hb.fixed_rule(30.0) is True


# ---- drop-heartbeat and ignore-max-missed --------------------------------------


@pytest.mark.parametrize("config", [TIGHT, FAST, INCIDENT], ids=["tight", "fast", "incident"])
@pytest.mark.slow
async def test_fixed_gateway_survives_a_dropped_heartbeat(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, config: GatewayConfig
) -> None:
    gateway = Gateway(with_bugs(config, "drop-heartbeat 1"))
    nursery.start_soon(gateway.run_checker)
    client = await connect(gateway, nursery, "abc123")
    every = config.hb_interval
    await client.run(every=every, until=6 * 3600.0 + 1.0)
    assert client.close is None
    pings = int(6 * 3600.0 / every)
    assert client.seq == pings
    # Exactly one answer lost, the first; every other pong at its ping's time.
    assert client.pongs == [(seq * every, seq) for seq in range(2, pings + 1)]
    stats = gateway.stats()
    assert stats["heartbeats_dropped"] == 1
    assert (stats["pings_received"], stats["pongs_sent"]) == (pings, pings - 1)
    assert stats["closes_by_reason"] == {}
    assert stats["connections"] == 1
    assert gateway.truth == []


async def test_incident_gateway_kills_a_client_that_missed_one_heartbeat(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(with_bugs(TIGHT, "ignore-max-missed", "drop-heartbeat 1"))
    nursery.start_soon(gateway.run_checker)
    client = await connect(gateway, nursery, "abc123")
    await client.run(every=10.0, until=3600.0)
    # Opened at 0, the ping at 10 dropped: the last beat is the opening. The
    # first check where 0 + 15 < now is the one at 16, four seconds before the
    # ping at 20 would have been answered. The fixed rule would wait for 30.
    assert client.close == CloseConnection(code=4000, reason="heartbeat_timeout")
    assert client.closed_at == 16.0
    assert client.pongs == []
    assert gateway.truth == [
        truth(
            t=16.0,
            conn=1,
            last_beat_age=16.0,
            last_frame_age=6.0,
            missed=1,
            truly_alive=True,
        )
    ]
    stats = gateway.stats()
    assert stats["false_kills"] == 1
    assert stats["closes_by_reason"] == {"heartbeat_timeout": 1}


async def test_incident_gateway_without_a_dropped_heartbeat_keeps_the_client(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    # The bug needs a trigger: a client that beats every 10 s never gets
    # older than 10 s, below the 15 s timeout.
    gateway = Gateway(with_bugs(TIGHT, "ignore-max-missed"))
    nursery.start_soon(gateway.run_checker)
    client = await connect(gateway, nursery, "abc123")
    await client.run(every=10.0, until=3600.0)
    assert client.close is None
    assert len(client.pongs) == 359  # 10 ... 3590
    assert gateway.truth == []


async def test_incident_gateway_kills_a_silent_client_before_max_missed(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(with_bugs(TIGHT, "ignore-max-missed"))
    nursery.start_soon(gateway.run_checker)
    client = await connect(gateway, nursery, None)
    await client.run(every=3600.0, until=3600.0)
    assert client.closed_at == 16.0
    # Silent since it opened, but 16 s is less than 3 intervals: by the fixed
    # rule the client still counted as alive (its own zombie detector would
    # not have fired yet either).
    assert gateway.truth == [
        truth(
            t=16.0,
            conn=1,
            client_id=None,
            last_beat_age=16.0,
            last_frame_age=16.0,
            missed=1,
            truly_alive=True,
        )
    ]


async def test_drop_heartbeat_counts_rfc6455_pings_and_pongs(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(with_bugs(FAST, "drop-heartbeat 3"))
    client = await connect(gateway, nursery, "abc123")
    await client.send(Ping(payload=b"1"))
    assert await client.answer_within(1.0) == Pong(payload=b"1")
    await client.send(Pong(payload=b"unsolicited"))  # heartbeat 2, counted
    await client.send(Ping(payload=b"3"))  # heartbeat 3: dropped
    assert await client.answer_within(1.0) is None
    assert trio.current_time() == 1.0
    await client.ping()  # heartbeat 4
    event = await client.answer_within(1.0)
    assert isinstance(event, TextMessage)
    assert json.loads(event.data)["seq"] == 1
    assert gateway.heartbeats.last_beat(1) == 1.0  # not the dropped ping's time
    stats = gateway.stats()
    assert (stats["ws_pings_received"], stats["ws_pongs_received"]) == (2, 1)
    assert stats["heartbeats_dropped"] == 1


# ---- stale-session ----------------------------------------------------------------


async def test_stale_session_kills_the_reconnect_of_an_expired_client(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(with_bugs(FAST, "stale-session"))
    nursery.start_soon(gateway.run_checker)
    # Connection 1 pings once at 0, then goes silent: a justified expiry at
    # the check at 32 (age 32 >= 30 = 3 intervals, and >= the 25 s timeout).
    first = await connect(gateway, nursery, "abc123")
    await first.ping()
    await first.run(every=3600.0, until=3600.0)
    assert first.closed_at == 32.0
    # The client reconnects a second later and pings every 10 s. Its session,
    # and so its last beat, is connection 1's: 0. The next check (36) kills it.
    await trio.sleep(1.0)
    second = await connect(gateway, nursery, "abc123")
    await second.ping()
    await second.run(every=10.0, until=3600.0)
    assert second.closed_at == 36.0
    assert second.pongs == [(33.0, 1)]  # answered, all the same
    # Every later reconnect inherits the same stale beat: locked out.
    await trio.sleep(1.0)
    third = await connect(gateway, nursery, "abc123")
    await third.ping()
    await third.run(every=10.0, until=3600.0)
    assert third.closed_at == 40.0
    assert gateway.truth == [
        truth(t=32.0, conn=1, last_beat_age=32.0, last_frame_age=32.0, missed=3, truly_alive=False),
        truth(t=36.0, conn=2, last_beat_age=36.0, last_frame_age=3.0, missed=3, truly_alive=True),
        truth(t=40.0, conn=3, last_beat_age=40.0, last_frame_age=3.0, missed=4, truly_alive=True),
    ]
    stats = gateway.stats()
    assert stats["false_kills"] == 2
    assert stats["stale_sessions_inherited"] == 2


async def test_without_the_bug_the_reconnect_lives(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    nursery.start_soon(gateway.run_checker)
    first = await connect(gateway, nursery, "abc123")
    await first.ping()
    await first.run(every=3600.0, until=3600.0)
    assert first.closed_at == 32.0
    await trio.sleep(1.0)
    second = await connect(gateway, nursery, "abc123")
    await second.ping()
    await second.run(every=10.0, until=3600.0)
    assert second.close is None
    assert len(second.pongs) == 1 + 356  # at 33, then 43 ... 3593
    assert [r["conn"] for r in gateway.truth] == [1]
    assert gateway.stats()["false_kills"] == 0


async def test_stale_session_kills_a_churned_client_one_timeout_after_its_old_beat(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(with_bugs(FAST, "stale-session"))
    nursery.start_soon(gateway.run_checker)
    first = await connect(gateway, nursery, "abc123")
    await first.run(every=10.0, until=50.5)  # beats at 10 ... 50
    await first.bye()
    await trio.sleep_until(51.0)
    second = await connect(gateway, nursery, "abc123")
    await second.ping()
    await second.run(every=10.0, until=3600.0)  # beats at 51, 61, 71
    # The old beat (50) plus 30 s (3 intervals; the 25 s timeout is shorter):
    # the check at 80 kills it, 9 s after its last pong.
    assert second.closed_at == 80.0
    assert [t for t, _ in second.pongs] == [51.0, 61.0, 71.0]
    assert gateway.truth == [
        truth(t=80.0, conn=2, last_beat_age=30.0, last_frame_age=9.0, missed=3, truly_alive=True)
    ]
    assert gateway.stats()["closes_by_reason"] == {"client_1000": 1, "heartbeat_timeout": 1}


async def test_stale_session_keeps_the_old_zombie_alive_and_kills_the_live_one(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(with_bugs(FAST, "stale-session"))
    nursery.start_soon(gateway.run_checker)
    old = await connect(gateway, nursery, "abc123")
    await old.ping()  # then silent, but its socket stays open
    nursery.start_soon(old.run, 3600.0, 3600.0)
    await trio.sleep_until(5.0)
    new = await connect(gateway, nursery, "abc123")
    await new.ping()
    # new's beats (5, 15, 25) refresh old; new keeps old's beat at 0.
    await new.run(every=10.0, until=3600.0)
    assert new.closed_at == 32.0
    assert gateway.connection_count == 1  # the silent one: the count drifts
    await trio.sleep_until(60.0)
    assert old.closed_at == 56.0  # 30 s after new's last beat, at 25
    assert gateway.truth == [
        truth(t=32.0, conn=2, last_beat_age=32.0, last_frame_age=7.0, missed=3, truly_alive=True),
        truth(t=56.0, conn=1, last_beat_age=31.0, last_frame_age=56.0, missed=3, truly_alive=False),
    ]


# ---- no-pong ---------------------------------------------------------------------


async def test_no_pong_makes_exactly_a_tenth_of_the_clients_zombies(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(with_bugs(FAST, "no-pong 0.1"))
    nursery.start_soon(gateway.run_checker)
    clients = [await connect(gateway, nursery, f"client-{i}") for i in range(1, 21)]
    async with trio.open_nursery() as running:
        for client in clients:
            running.start_soon(client.run, 10.0, 605.0)
    unanswered = [i for i, c in enumerate(clients, 1) if not c.pongs]
    assert unanswered == [10, 20]  # connections 10 and 20 of 20
    for i, client in enumerate(clients, 1):
        assert client.close is None
        assert client.seq == 60
        if i not in unanswered:
            assert client.pongs == [(10.0 * seq, seq) for seq in range(1, 61)]
    # RFC 6455 pings are not answered either.
    for i, client in enumerate(clients, 1):
        await client.send(Ping(payload=b"x"))
        event = await client.answer_within(1.0)
        assert event == (None if i in unanswered else Pong(payload=b"x"))
    stats = gateway.stats()
    assert stats["connections"] == 20
    assert stats["closes_by_reason"] == {}
    assert stats["pongs_withheld"] == 2 * 61
    assert stats["pongs_sent"] == 18 * 60
    assert gateway.truth == []


# ---- the truth log -----------------------------------------------------------------


async def test_truth_log_file_holds_exactly_the_records(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    path = tmp_path / "truth.jsonl"
    path.write_text('{"earlier":"run"}\n')  # appended to, not truncated
    config = with_bugs(TIGHT, "ignore-max-missed", "drop-heartbeat 1", truth_log=path)
    with Gateway(config) as gateway:
        nursery.start_soon(gateway.run_checker)
        # 1. killed while alive at 16 (see the ignore-max-missed test).
        victim = await connect(gateway, nursery, "victim")
        nursery.start_soon(victim.run, 10.0, 3600.0)
        # 2. a protocol error at 3: a text frame that is not UTF-8.
        await trio.sleep_until(3.0)
        broken = await connect(gateway, nursery, None)
        await broken.stream.send_all(b"\x81\x81\x00\x00\x00\x00\xff")
        event = await broken.next_event()
        assert isinstance(event, CloseConnection)
        assert event.code == 1007
        # 3. a shutdown at 20 of a client that pinged at 12.
        client_side, server_side = trio.testing.memory_stream_pair()
        server_scope = trio.CancelScope()

        async def run_server() -> None:
            with server_scope:
                await gateway.handle_stream(server_side)

        await trio.sleep_until(12.0)
        nursery.start_soon(run_server)
        last = Client(client_side, "last")
        await last.handshake()
        await last.ping()  # its first heartbeat: dropped, so not answered
        await trio.sleep_until(20.0)
        server_scope.cancel()
        assert await last.next_event() == CloseConnection(code=1001, reason="going away")

        expected = [
            truth(
                t=3.0,
                conn=2,
                client_id=None,
                reason="protocol_error",
                code=1007,
                last_beat_age=0.0,
                last_frame_age=0.0,
                missed=0,
                truly_alive=True,
            ),
            truth(
                t=16.0,
                conn=1,
                client_id="victim",
                last_beat_age=16.0,
                last_frame_age=6.0,
                missed=1,
                truly_alive=True,
            ),
            truth(
                t=20.0,
                conn=3,
                client_id="last",
                reason="server_shutdown",
                code=1001,
                # The ping at 12 was this connection's first heartbeat: dropped.
                last_beat_age=8.0,
                last_frame_age=8.0,
                missed=0,
                truly_alive=True,
            ),
        ]
        assert gateway.truth == expected
        # Flushed per record: readable while the gateway still runs.
        lines = path.read_text().splitlines()
        assert lines[0] == '{"earlier":"run"}'
        assert [json.loads(line) for line in lines[1:]] == expected
        stats = gateway.stats()
        assert (stats["false_kills"], stats["truth_records"]) == (1, 3)
    assert [json.loads(line) for line in path.read_text().splitlines()[1:]] == gateway.truth


def test_truth_log_that_cannot_be_opened_is_a_local_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "truth.jsonl"
    with pytest.raises(LocalError) as excinfo:
        Gateway(GatewayConfig(truth_log=missing))
    assert str(excinfo.value) == (
        f"gateway: truth_log: cannot open {str(missing)!r} for appending: No such file or directory"
    )
