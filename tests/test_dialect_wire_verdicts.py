"""The dialects' own heartbeat-timeout verdicts, pure, as a user reads
them in the close events: Centrifugo's 3012 "no pong" against its pong
timeout, and graphql-ws's ws adapter terminating a client whose pong had
not come (its keepAlive). Plain numbers, no clock."""

from __future__ import annotations

import dataclasses

import pytest

from soak.classify import Evidence
from soak.protocols.centrifugo import no_pong_verdict
from soak.protocols.graphql_ws import keepalive_verdict

EV = Evidence(
    age=40.0,
    last_pong_age=None,
    last_frame_age=1.0,
    last_sent_age=None,
    consecutive_missed=2,
    pings_pending=0,
)


def ev(**kw: object) -> Evidence:
    return dataclasses.replace(EV, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("evidence", "key", "why"),
    [
        (
            ev(server_beat_age=9.0, answered=False),
            "false_timeout",
            "last server ping 9.000s ago < its pong timeout 10s (one was unanswered)",
        ),
        (
            ev(server_beat_age=9.749, answered=True),
            "false_timeout",
            "last server ping 9.749s ago < its pong timeout 10s",
        ),
        # 10 s less 0.05 s and 2% of it: 9.75 s
        (
            ev(server_beat_age=9.75, answered=True, last_sent_age=3.0),
            "justified_timeout",
            "no server ping for 9.750s >= its pong timeout 10s; its pings answered by the "
            "client, the last answer sent 3.000s ago",
        ),
        (
            ev(server_beat_age=30.0, answered=False, last_sent_age=None),
            "justified_timeout",
            "no server ping for 30.000s >= its pong timeout 10s; its pings not all answered by "
            "the client, the last answer sent never",
        ),
        # no ping at all: timed from the open
        (
            ev(age=5.0, answered=True),
            "false_timeout",
            "last server ping 5.000s after the connection opened < its pong timeout 10s",
        ),
        (
            ev(age=40.0),
            "justified_timeout",
            "no server ping reached the client in the 40.000s the connection lived (>= its pong "
            "timeout 10s): none could be answered",
        ),
    ],
)
def test_centrifugos_no_pong(evidence: Evidence, key: str, why: str) -> None:
    v = no_pong_verdict(evidence, 10.0)
    assert (v.key, v.category, v.why) == (key, "heartbeat_timeout", why)


@pytest.mark.parametrize(
    ("evidence", "key", "why"),
    [
        (
            ev(last_pong_age=5.0),
            "false_timeout",
            "last pong 5.000s ago < the server's pong wait 12s: our frames, the answers to its "
            "pings among them, were reaching it",
        ),
        # 12 s less 0.05 s and 2% of it: 11.71 s
        (
            ev(last_pong_age=11.709),
            "false_timeout",
            "last pong 11.709s ago < the server's pong wait 12s: our frames, the answers to its "
            "pings among them, were reaching it",
        ),
        (
            ev(last_pong_age=11.71),
            "justified_timeout",
            "no pong to our heartbeats for 11.710s >= the server's pong wait 12s (2 missed); no "
            "ping of the server reached the client",
        ),
        (
            ev(server_beat_age=4.0),
            "justified_timeout",
            "no pong to our heartbeats for the whole connection >= the server's pong wait 12s "
            "(2 missed); its last ping came 4.000s before and was answered",
        ),
    ],
)
def test_graphql_ws_adapters_pong_wait(evidence: Evidence, key: str, why: str) -> None:
    v = keepalive_verdict(evidence, 12.0)
    assert (v.key, v.category, v.why) == (key, "heartbeat_timeout", why)
