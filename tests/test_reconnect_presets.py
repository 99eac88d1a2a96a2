"""[reconnect] presets (the official clients' policies), the new jitter
kinds and what a server's restart hint does: pure, plain numbers."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from soak.backoff import gave_up, next_delay, policy_delay
from soak.config.heartbeat import PRESETS, ReconnectConfig
from soak.config.load import parse_profile
from soak.errors import ProfileError

DRAWS = 2000


def load(reconnect: str) -> ReconnectConfig:
    text = (
        '[target]\nurl = "ws://127.0.0.1:9/ws"\n[clients]\n[[clients.stages]]\n'
        'kind = "hold"\nduration = "1s"\n[reconnect]\n' + reconnect
    )
    return parse_profile(text, "p.toml", {}).reconnect


def error(reconnect: str) -> str:
    with pytest.raises(ProfileError) as info:
        load(reconnect)
    return str(info.value)


def draws(cfg: ReconnectConfig, attempt: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [policy_delay(cfg, attempt, 0.0, rng) for _ in range(DRAWS)]


def test_socket_io_client_1s_doubling_capped_at_5s_plus_minus_half() -> None:
    cfg = load('preset = "socket.io-client"')
    assert (cfg.initial_delay, cfg.base, cfg.max_delay, cfg.max_attempts) == (1.0, 2.0, 5.0, 0)
    for attempt, (lo, hi) in {1: (0.5, 1.5), 2: (1.0, 3.0), 3: (2.0, 5.0)}.items():
        d = draws(cfg, attempt)
        assert lo <= min(d) < lo + 0.05
        assert hi - 0.05 < max(d) <= hi
    # 8 s +-50 % is 4-12 s, capped after the jitter (as backo2 does): 4-5 s
    late = draws(cfg, 4)
    assert min(late) >= 4.0
    assert max(late) == 5.0
    assert not any(gave_up(cfg, a) for a in (1, 100, 10_000))


def test_graphql_ws_two_to_the_n_plus_300_to_3000_ms_five_tries() -> None:
    cfg = load('preset = "graphql-ws"')
    for attempt in range(1, 6):
        d = draws(cfg, attempt)
        base = 2.0 ** (attempt - 1)
        assert base + 0.3 <= min(d) < base + 0.35
        assert base + 2.95 < max(d) <= base + 3.0
    assert [gave_up(cfg, a) for a in range(1, 8)] == [False] * 5 + [True] * 2


def test_mqtt_js_one_second_fixed_no_jitter() -> None:
    cfg = load('preset = "mqtt.js"')
    assert {policy_delay(cfg, a, 0.0, random.Random(a)) for a in range(1, 50)} == {1.0}
    assert not gave_up(cfg, 1000)


def test_phoenix_table_then_5s() -> None:
    cfg = load('preset = "phoenix"')
    got = [policy_delay(cfg, a, 0.0, random.Random(0)) for a in range(1, 14)]
    assert got == [0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0, 5.0]


def test_signalr_0_2_10_30_then_gives_up() -> None:
    cfg = load('preset = "signalr"')
    assert [policy_delay(cfg, a, 0.0, random.Random(0)) for a in range(1, 5)] == [0, 2, 10, 30]
    assert [gave_up(cfg, a) for a in range(1, 7)] == [False] * 4 + [True] * 2


def test_stompjs_5s_linear() -> None:
    cfg = load('preset = "stompjs"')
    assert {policy_delay(cfg, a, 0.0, random.Random(0)) for a in range(1, 20)} == {5.0}


def test_actioncable_wide_first_retry_then_15_percent() -> None:
    cfg = load('preset = "actioncable"')
    first = draws(cfg, 1)
    assert 6.0 <= min(first) < 6.1
    assert 11.9 < max(first) <= 12.0
    second = draws(cfg, 2)
    assert 6.9 <= min(second) < 6.95
    assert 7.9 < max(second) <= 6.9 * 1.15 + 1e-9


def test_centrifuge_half_a_second_plus_full_jitter_capped_at_20s() -> None:
    cfg = load('preset = "centrifuge"')
    first = draws(cfg, 1)
    assert 0.5 <= min(first) < 0.52
    assert 0.98 < max(first) <= 1.0
    late = draws(cfg, 12)
    assert max(late) == 20.0
    assert min(late) >= 0.5


def test_every_preset_loads_and_is_documented() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs/profiles.md").read_text()
    for name in PRESETS:
        cfg = load(f'preset = "{name}"')
        assert cfg.preset == name
        assert f"`{name}`" in docs, f"docs/profiles.md does not describe preset {name}"


def test_explicit_fields_win_over_the_preset() -> None:
    cfg = load('preset = "socket.io-client"\nmax_delay = "10s"\nmax_attempts = 3')
    assert (cfg.max_delay, cfg.max_attempts) == (10.0, 3)
    assert (cfg.initial_delay, cfg.jitter, cfg.spread) == (1.0, "proportional", (-0.5, 0.5))
    assert max(draws(cfg, 5)) > 5.0  # the cap is the profile's


def test_bad_presets_and_ranges_name_the_field() -> None:
    assert error('preset = "socketio"') == (
        "p.toml: reconnect.preset: expected one of "
        + ", ".join(PRESETS)
        + " (did you mean 'socket.io-client'?), got \"socketio\""
    )
    assert error("spread = [0.5, -0.5]") == (
        "p.toml: reconnect.spread: expected low <= high, like [-0.5, 0.5], got a list"
    )
    assert error("spread = [-1, 0.5]") == (
        "p.toml: reconnect.spread: expected fractions above -1, like [-0.5, 0.5], got -1"
    )
    assert error('add = ["3s"]') == (
        'p.toml: reconnect.add: expected [low, high], like ["300ms", "3s"], got a list'
    )
    assert error("delays = []") == (
        "p.toml: reconnect.delays: expected a list of durations like "
        '["0s", "2s", "10s"], got an empty list'
    )
    assert error('hint = "ceiling"').startswith(
        "p.toml: reconnect.hint: expected one of jitter, floor"
    )


# -- the server's restart hint ---------------------------------------------------------


def _buckets(delays: list[float]) -> Counter[int]:
    return Counter(int(d * 10) for d in delays)  # 100 ms buckets


def test_a_hint_as_a_floor_puts_every_full_jitter_retry_at_the_hint() -> None:
    """What the real OpenClaw restart showed: with full jitter (1 s) and a
    5 s restart hint, every draw is below the hint, so every client retries
    at exactly the hint: all in one 100 ms bucket."""
    cfg = ReconnectConfig(jitter="full", hint="floor")
    rng = random.Random(3)
    got = [next_delay(cfg, 1, 0.0, rng, server_hint=5.0) for _ in range(DRAWS)]
    assert set(got) == {5.0}
    assert max(_buckets(got).values()) == DRAWS


def test_a_hint_with_jitter_spreads_the_retries_after_the_hint() -> None:
    cfg = ReconnectConfig(jitter="full", hint="jitter")
    assert ReconnectConfig().hint == "jitter"  # the default
    rng = random.Random(3)
    got = [next_delay(cfg, 1, 0.0, rng, server_hint=5.0) for _ in range(DRAWS)]
    assert min(got) >= 5.0  # never sooner than the server asked
    assert max(got) <= 6.0  # the hint, then the policy's own delay (full jitter of 1 s)
    buckets = _buckets(got)
    assert len(buckets) == 10  # 5.0-5.1, ..., 5.9-6.0: spread over the policy's jitter
    assert max(buckets.values()) < DRAWS * 0.15


def test_a_hint_with_a_policy_without_jitter_is_the_hint_plus_the_delay() -> None:
    cfg = ReconnectConfig(jitter="none", hint="jitter")
    assert next_delay(cfg, 1, 0.0, random.Random(0), server_hint=1.5) == 2.5
    assert next_delay(cfg, 3, 0.0, random.Random(0), server_hint=1.5) == 5.5
    assert next_delay(cfg, 3, 0.0, random.Random(0), server_hint=None) == 4.0
