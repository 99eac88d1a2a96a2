"""The whole path under MockClock, no sockets: clients -> an in-memory
middlebox -> the reference gateway, through the real Runner, to
summary.json's ``intermediaries``, the default check and the exit code.

The middlebox here is a relay that ends a connection (EOF to the client,
no close frame) when the gateway has sent nothing for ``idle`` seconds,
like nginx's proxy_read_timeout; or one that ends each connection at a
random moment, like a gateway that drops connections for no reason."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from soak.gateway import Gateway, GatewayConfig
from tests.support.runs import Opener, make_profile, run_in_memory

pytestmark = pytest.mark.slow  # 1-2 s each: 30 s runs of 20 clients under MockClock

BODY = """
[run]
label = "relay"
report_interval = "5s"
seed = 4
[clients]
[[clients.stages]]
kind = "ramp"
to = 20
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "30s"
[heartbeat]
interval = "{interval}"
timeout = "1s"
[reconnect]
initial_delay = "200ms"
max_delay = "1s"
max_attempts = 0
[thresholds]
# the relays cost these runs availability (each close is a reconnect); the
# checks here are about naming the intermediary, so availability's defaults
# are switched off
availability = "0%"
storm_recovery = "0%"
"""


def relay(
    gateway: Gateway, *, idle: float | None = None, lifetime: Callable[[], float] | None = None
) -> Callable[[trio.Nursery], Opener]:
    """Clients connect through a relay to ``gateway``. ``idle``: end a
    connection the gateway was silent on that long; ``lifetime``: end each
    connection after the seconds it returns."""

    def make(nursery: trio.Nursery) -> Opener:
        nursery.start_soon(gateway.run_checker)

        async def open_stream() -> trio.abc.Stream:
            client, down = trio.testing.memory_stream_pair()
            up, gw_side = trio.testing.memory_stream_pair()
            nursery.start_soon(gateway.handle_stream, gw_side)
            nursery.start_soon(pump, down, up)
            return client

        async def pump(down: trio.abc.Stream, up: trio.abc.Stream) -> None:
            last = trio.current_time()
            ends = None if lifetime is None else last + lifetime()
            async with trio.open_nursery() as n:

                async def upward() -> None:
                    async for data in down:
                        await up.send_all(data)
                    n.cancel_scope.cancel()

                async def downward() -> None:
                    nonlocal last
                    async for data in up:
                        last = trio.current_time()
                        await down.send_all(data)
                    n.cancel_scope.cancel()

                async def timer() -> None:
                    while True:
                        due = min(x for x in (ends, None if idle is None else last + idle) if x)
                        await trio.sleep_until(due)
                        now = trio.current_time()
                        if (ends is not None and now >= ends) or (
                            idle is not None and now >= last + idle
                        ):
                            n.cancel_scope.cancel()
                            return

                n.start_soon(upward)
                n.start_soon(downward)
                if idle is not None or ends is not None:
                    n.start_soon(timer)
            with trio.CancelScope(shield=True):
                await down.aclose()
                await up.aclose()

        return open_stream

    return make


async def test_an_idle_relay_shorter_than_the_heartbeat_is_named(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(BODY.format(interval="2s"), results=tmp_path)
    outcome, _ = await run_in_memory(profile, tmp_path, relay(Gateway(GatewayConfig()), idle=1.5))
    s = outcome.summary
    tot = s["totals"]
    closes = tot["closes"]
    # counted under their own reason and category in the totals
    assert set(closes) == {"intermediary_idle_timeout", "client_shutdown"}, closes
    (found,) = s["intermediaries"]
    assert found["closes"] == closes["intermediary_idle_timeout"] >= 100
    assert found["hop"] is None  # the profile has no hops
    assert tot["closes_by_category"]["intermediary"] == found["closes"]
    assert "transport" not in tot["closes_by_category"]
    assert tot["closes_named"] == {"intermediary_idle_timeout": {"transport_eof": found["closes"]}}
    assert abs(found["timeout_s"] - 1.5) < 0.01
    assert found["direction"] == "server_or_either"
    assert tot["intermediary_closes"] == found["closes"]
    assert outcome.exit_code == 1
    assert s["verdict"] == "thresholds failed: intermediary_closes"
    assert s["thresholds"][-1]["default"] is True
    assert "chain" not in s


async def test_an_idle_relay_longer_than_the_heartbeat_closes_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(BODY.format(interval="500ms"), results=tmp_path)
    outcome, _ = await run_in_memory(profile, tmp_path, relay(Gateway(GatewayConfig()), idle=1.5))
    assert set(outcome.summary["totals"]["closes"]) == {"client_shutdown"}
    assert outcome.summary["intermediaries"] == []
    assert outcome.exit_code == 0


async def test_random_drops_are_not_named(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The connections end at random moments: many abrupt closes, no
    intermediary named, and the verdict is the thresholds' (none here)."""
    rng = random.Random(5)
    profile = make_profile(BODY.format(interval="2s"), results=tmp_path)
    make = relay(Gateway(GatewayConfig()), lifetime=lambda: rng.uniform(0.5, 8.0))
    outcome, _ = await run_in_memory(profile, tmp_path, make)
    closes = outcome.summary["totals"]["closes"]
    assert closes["transport_eof"] >= 50, closes
    assert outcome.summary["intermediaries"] == []
    assert outcome.exit_code == 0


async def test_a_profile_threshold_decides_instead_of_the_default(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    body = BODY.format(interval="2s") + "intermediary_closes = 10000\n"
    profile = make_profile(body, results=tmp_path)
    outcome, _ = await run_in_memory(profile, tmp_path, relay(Gateway(GatewayConfig()), idle=1.5))
    checks = {c["name"]: c for c in outcome.summary["thresholds"]}
    assert set(checks) == {"availability", "storm_recovery", "intermediary_closes"}
    check = checks["intermediary_closes"]
    assert check["ok"] is True
    assert "default" not in check
    assert outcome.exit_code == 0


def hops(*entries: str) -> str:
    """``[[target.hops]]`` tables, one per ``key = value, ...`` string."""
    return "".join(
        "[[target.hops]]\n" + "".join(f"{kv.strip()}\n" for kv in e.split(",")) for e in entries
    )


def interval_sums(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """intervals.jsonl's closes and categories, added up."""
    reasons: dict[str, int] = {}
    cats: dict[str, int] = {}
    for line in (path / "intervals.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for k, v in rec["closes"].items():
            reasons[k] = reasons.get(k, 0) + v
        for k, v in rec["closes_by_category"].items():
            cats[k] = cats.get(k, 0) + v
    return reasons, cats


async def test_a_declared_hop_is_named_and_its_prediction_agrees(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    extra = hops('kind = "nginx", idle_timeout = "1500ms"', 'kind = "nat", idle_timeout = "350s"')
    profile = make_profile(BODY.format(interval="2s"), results=tmp_path, target_extra=extra)
    outcome, path = await run_in_memory(
        profile, tmp_path, relay(Gateway(GatewayConfig()), idle=1.5)
    )
    s = outcome.summary
    tot = s["totals"]
    (found,) = s["intermediaries"]
    assert found["hop"] == "nginx"
    assert found["closes"] == tot["closes"]["intermediary_idle_timeout"] >= 100
    assert found["text"].startswith("hop 'nginx' (nginx): an idle timeout of 1.5 s")
    # the intervals keep the reasons as counted; moved back, they are the totals
    reasons, cats = interval_sums(path)
    moved = tot["closes_named"]["intermediary_idle_timeout"]["transport_eof"]
    assert reasons["transport_eof"] == moved == found["closes"]
    assert cats["transport"] == moved
    assert reasons["client_shutdown"] == tot["closes"]["client_shutdown"]
    chain = s["chain"]
    nginx, nat = chain["hops"]
    assert nginx["predicted"]["closes"] is True
    assert nginx["observed"]["named"] is True
    assert nginx["verdict"] == "agrees"
    assert nat["predicted"]["closes"] is False
    assert nat["verdict"] == "agrees"
    assert chain["predicted_first"]["hop"] == "nginx"
    assert chain["observed_first"] == {"hop": "nginx", "timeout_s": found["timeout_s"]}
    assert chain["agrees"] is True
    assert chain["text"].endswith(": agrees")
    assert outcome.exit_code == 1


async def test_a_timeout_no_hop_has_contradicts_the_chain(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The profile says nginx keeps idle connections 5 s; something closes
    them after 1.5 s: named, with no hop, and the prediction is contradicted."""
    extra = hops('kind = "nginx", idle_timeout = "5s"')
    profile = make_profile(BODY.format(interval="2s"), results=tmp_path, target_extra=extra)
    outcome, _ = await run_in_memory(profile, tmp_path, relay(Gateway(GatewayConfig()), idle=1.5))
    s = outcome.summary
    (found,) = s["intermediaries"]
    assert found["hop"] is None
    chain = s["chain"]
    (nginx,) = chain["hops"]
    assert nginx["predicted"]["closes"] is False
    assert nginx["verdict"] == "agrees"  # nginx itself closed nothing
    (unlisted,) = chain["unlisted"]
    assert unlisted["timeout_s"] == found["timeout_s"]
    assert unlisted["closes"] == found["closes"]
    assert chain["agrees"] is False
    assert "CONTRADICTED" in chain["text"]
    assert "no hop has" in chain["text"]


async def test_a_predicted_close_that_never_comes_is_contradicted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The profile says a load balancer cuts after 1.5 s; nothing does."""
    extra = hops('kind = "load_balancer", idle_timeout = "1500ms"')
    profile = make_profile(BODY.format(interval="2s"), results=tmp_path, target_extra=extra)
    outcome, _ = await run_in_memory(profile, tmp_path, relay(Gateway(GatewayConfig())))
    s = outcome.summary
    assert s["intermediaries"] == []
    (lb,) = s["chain"]["hops"]
    assert lb["predicted"]["closes"] is True
    assert lb["verdict"] == "contradicted"
    assert "the run saw 0 closes at that silence" in lb["text"]
    assert s["chain"]["agrees"] is False
    assert outcome.exit_code == 0  # a contradiction is reported, not judged


async def test_heartbeats_inside_every_hop_timeout_agree_with_no_close(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    extra = hops('kind = "haproxy", idle_timeout = "1500ms"')
    profile = make_profile(BODY.format(interval="500ms"), results=tmp_path, target_extra=extra)
    outcome, _ = await run_in_memory(profile, tmp_path, relay(Gateway(GatewayConfig()), idle=1.5))
    s = outcome.summary
    assert s["intermediaries"] == []
    (h,) = s["chain"]["hops"]
    assert h["verdict"] == "agrees"
    assert s["chain"]["predicted_first"] is None
    assert s["chain"]["agrees"] is True
    assert outcome.exit_code == 0
