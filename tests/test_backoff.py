"""Reconnect backoff: the exponential base, the jitter variants, giving up."""

from __future__ import annotations

import random

import pytest

from soak.backoff import exponential, gave_up, next_delay
from soak.config.heartbeat import ReconnectConfig

DRAWS = 2000


def config(
    jitter: str = "none",
    *,
    initial_delay: float = 1.0,
    base: float = 2.0,
    max_delay: float = 60.0,
    max_attempts: int = 5,
    hint: str = "jitter",
) -> ReconnectConfig:
    return ReconnectConfig(
        hint=hint,
        initial_delay=initial_delay,
        base=base,
        max_delay=max_delay,
        max_attempts=max_attempts,
        jitter=jitter,
    )


# -- no jitter --------------------------------------------------------------------------


def test_exponential_doubles_up_to_the_cap() -> None:
    cfg = config()
    got = [exponential(cfg, a) for a in range(1, 11)]
    assert got == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]


def test_no_jitter_next_delay_is_the_exponential_sequence() -> None:
    cfg = config("none")
    rng = random.Random(1)
    got = [next_delay(cfg, a, 0.0, rng) for a in range(1, 9)]
    assert got == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    # and no randomness was used
    assert rng.random() == random.Random(1).random()


def test_exponential_with_other_parameters() -> None:
    cfg = config(initial_delay=0.25, base=3.0, max_delay=10.0)
    assert [exponential(cfg, a) for a in range(1, 6)] == [0.25, 0.75, 2.25, 6.75, 10.0]


def test_base_one_is_a_constant_delay() -> None:
    cfg = config(initial_delay=5.0, base=1.0)
    assert {exponential(cfg, a) for a in (1, 2, 50, 10**9)} == {5.0}


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match=f"attempt must be >= 1, got {attempt}"):
        exponential(config(), attempt)


# -- huge attempt numbers ----------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1001, 1025, 5000, 10**6, 10**18, 2**100])
def test_huge_attempts_are_capped_without_overflow(attempt: int) -> None:
    assert exponential(config(), attempt) == 60.0
    assert exponential(config(base=10.0), attempt) == 60.0  # 10.0 ** 1000 overflows
    assert exponential(config(base=1.5), attempt) == 60.0


def test_huge_attempt_with_an_integer_base() -> None:
    # int ** int never overflows, but converting the result to float does
    cfg = ReconnectConfig(initial_delay=1.0, base=3, max_delay=60.0, jitter="none")
    assert exponential(cfg, 5000) == 60.0


@pytest.mark.parametrize("jitter", ["none", "full", "equal", "decorrelated"])
def test_huge_attempts_with_every_jitter(jitter: str) -> None:
    cfg = config(jitter)
    rng = random.Random(3)
    for _ in range(100):
        d = next_delay(cfg, 10**12, 60.0, rng)
        assert 0.0 <= d <= 60.0


# -- jitter bounds -------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 7, 20])
def test_full_jitter_is_between_zero_and_the_exponential(attempt: int) -> None:
    cfg = config("full")
    cap = exponential(cfg, attempt)
    rng = random.Random(attempt)
    draws = [next_delay(cfg, attempt, 0.0, rng) for _ in range(DRAWS)]
    assert all(0.0 <= d <= cap for d in draws)
    # spread over the whole range, not clustered
    assert min(draws) < 0.05 * cap
    assert max(draws) > 0.95 * cap
    assert sum(d < cap / 2 for d in draws) > DRAWS // 3
    assert sum(d > cap / 2 for d in draws) > DRAWS // 3


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 7, 20])
def test_equal_jitter_is_between_half_and_all_of_the_exponential(attempt: int) -> None:
    cfg = config("equal")
    cap = exponential(cfg, attempt)
    rng = random.Random(attempt)
    draws = [next_delay(cfg, attempt, 0.0, rng) for _ in range(DRAWS)]
    assert all(cap / 2 <= d <= cap for d in draws)
    assert min(draws) < 0.55 * cap
    assert max(draws) > 0.95 * cap


def test_decorrelated_jitter_bounds_over_a_chain_of_retries() -> None:
    cfg = config("decorrelated", initial_delay=1.0, max_delay=60.0)
    rng = random.Random(11)
    previous = 0.0
    reached_cap = 0
    for attempt in range(1, DRAWS + 1):
        d = next_delay(cfg, attempt, previous, rng)
        high = min(60.0, max(1.0, previous or 1.0) * 3)
        assert 1.0 <= d <= high
        reached_cap += d == 60.0
        previous = d
    assert reached_cap > 0  # the cap is actually applied


def test_decorrelated_first_delay_is_between_initial_and_three_times_initial() -> None:
    cfg = config("decorrelated", initial_delay=0.5, max_delay=60.0)
    rng = random.Random(5)
    draws = [next_delay(cfg, 1, 0.0, rng) for _ in range(DRAWS)]
    assert all(0.5 <= d <= 1.5 for d in draws)
    assert min(draws) < 0.55
    assert max(draws) > 1.45


def test_decorrelated_depends_on_previous_not_on_the_attempt() -> None:
    cfg = config("decorrelated", initial_delay=1.0, max_delay=1000.0)
    draws = [next_delay(cfg, 1, 100.0, random.Random(9)) for _ in range(3)]
    assert draws == [next_delay(cfg, 40, 100.0, random.Random(9))] * 3
    assert 1.0 <= draws[0] <= 300.0
    # a previous delay far beyond the cap still yields at most the cap
    rng = random.Random(2)
    assert all(next_delay(cfg, 1, 1e12, rng) <= 1000.0 for _ in range(DRAWS))


# -- reproducibility -------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated"])
def test_seeded_draws_are_reproducible(jitter: str) -> None:
    cfg = config(jitter)

    def sequence(seed: int) -> list[float]:
        rng = random.Random(seed)
        out: list[float] = []
        previous = 0.0
        for attempt in range(1, 21):
            previous = next_delay(cfg, attempt, previous, rng)
            out.append(previous)
        return out

    assert sequence(42) == sequence(42)
    assert sequence(42) != sequence(43)


# -- the server's hint ----------------------------------------------------------------------


def test_server_hint_is_a_floor_without_jitter() -> None:
    cfg = config("none", hint="floor")
    rng = random.Random(0)
    assert next_delay(cfg, 1, 0.0, rng, server_hint=5.0) == 5.0
    assert next_delay(cfg, 4, 0.0, rng, server_hint=5.0) == 8.0  # already longer
    assert next_delay(cfg, 1, 0.0, rng, server_hint=0.0) == 1.0
    assert next_delay(cfg, 1, 0.0, rng, server_hint=None) == 1.0


def test_server_hint_beyond_the_cap_wins() -> None:
    # never retry sooner than the server asked, even past max_delay
    cfg = config("none", max_delay=60.0, hint="floor")
    assert next_delay(cfg, 10, 0.0, random.Random(0), server_hint=120.0) == 120.0


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated"])
def test_server_hint_is_a_floor_with_jitter(jitter: str) -> None:
    cfg = config(jitter, hint="floor")
    rng = random.Random(7)
    draws = [next_delay(cfg, 3, 2.0, rng, server_hint=3.5) for _ in range(DRAWS)]
    assert all(d >= 3.5 for d in draws)
    assert min(draws) == 3.5  # the hint is applied to the short draws...
    assert max(draws) > 3.5  # ...and longer draws are kept


# -- giving up ----------------------------------------------------------------------------


def test_gave_up_after_max_attempts() -> None:
    cfg = config(max_attempts=5)
    assert [gave_up(cfg, a) for a in range(1, 9)] == [False] * 5 + [True] * 3


def test_zero_max_attempts_never_gives_up() -> None:
    cfg = config(max_attempts=0)
    assert not any(gave_up(cfg, a) for a in (1, 2, 5, 6, 1000, 10**18))


def test_one_max_attempt() -> None:
    cfg = config(max_attempts=1)
    assert not gave_up(cfg, 1)
    assert gave_up(cfg, 2)


def test_profile_defaults_give_the_documented_policy() -> None:
    cfg = ReconnectConfig()
    assert (cfg.initial_delay, cfg.base, cfg.max_delay, cfg.max_attempts) == (1.0, 2.0, 60.0, 5)
    assert cfg.jitter == "full"
    assert gave_up(cfg, 6)
    assert not gave_up(cfg, 5)


def test_permanence_needs_three_refusals_in_a_row() -> None:
    from soak.backoff import Permanence

    p = Permanence()
    assert not p.refused("auth", "wrong token", 0.0)
    assert not p.refused("auth", "wrong token", 1.0)
    p.connected()  # a success between: start over
    assert not p.refused("auth", "wrong token", 2.0)
    assert not p.refused("auth", "wrong token", 3.0)
    assert p.known is None
    assert p.refused("auth", "wrong token", 5.0)  # the third in a row
    assert (p.cause, p.at, p.count) == ("auth", 5.0, 3)
    assert str(p.known) == "wrong token"
    assert not p.refused("auth", "wrong token", 6.0)  # known once, not again
    p.connected()  # once known, it stays known
    assert str(p.known) == "wrong token"
