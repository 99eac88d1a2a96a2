"""The impairment model with plain numbers: no sockets, no clock."""

from __future__ import annotations

import math
import random
import re

import pytest

from soak.proxy.config import (
    Bandwidth,
    ImpairmentConfig,
    Latency,
    NatIdle,
    Scope,
    TimedDrop,
    parse_rate,
)
from soak.proxy.impair import Link, sample_delay, selected


def test_no_impairment_forwards_at_arrival() -> None:
    link = Link(ImpairmentConfig(), 0, now=0.0)
    assert link.release_time("up", 1.5, 10) == 1.5
    assert link.release_time("down", 2.0, 10) == 2.0
    assert link.next_deadline() == math.inf
    assert link.events() == []


def test_fixed_latency_on_one_direction() -> None:
    config = ImpairmentConfig(latency=(Latency(0.1, directions=("down",)),))
    link = Link(config, 3, now=0.0)
    assert link.release_time("down", 1.0, 10) == pytest.approx(1.1)
    assert link.release_time("up", 1.0, 10) == 1.0
    assert link.events() == [
        {
            "t": 1.0,
            "conn": 3,
            "impairment": "latency",
            "direction": "down",
            "delay": 0.1,
            "jitter": 0.0,
            "dist": "uniform",
        }
    ]
    link.release_time("down", 2.0, 10)
    assert link.events() == []  # announced once per connection and direction


def test_uniform_jitter_release_times_are_exact_with_a_seeded_rng() -> None:
    config = ImpairmentConfig(latency=(Latency(0.1, 0.05, "uniform"),))
    link = Link(config, 0, now=0.0, rng=random.Random(42))
    ref = random.Random(42)
    for i in range(5):
        now = float(i)  # far apart: no chunk waits for another
        assert link.release_time("down", now, 1) == now + (0.1 + ref.uniform(-0.05, 0.05))


@pytest.mark.parametrize("dist", ["uniform", "normal", "pareto"])
def test_jitter_never_reorders(dist: str) -> None:
    config = ImpairmentConfig(latency=(Latency(0.1, 0.08, dist),), seed=5)
    link = Link(config, 0, now=0.0)
    releases = [link.release_time("down", i * 0.001, 100) for i in range(2000)]
    assert all(r is not None for r in releases)
    assert releases == sorted(releases)  # type: ignore[type-var]
    # and each chunk still waits at least its own arrival time
    assert all(r is not None and r >= i * 0.001 for i, r in enumerate(releases))


def test_delays_are_never_negative() -> None:
    lat = Latency(0.01, 0.1, "normal")
    rng = random.Random(1)
    assert min(sample_delay(lat, rng) for _ in range(1000)) == 0.0


def test_uniform_distribution_known_answer() -> None:
    """100 ms ± 50 ms uniform: p10 is 60 ms, p50 100 ms, p90 140 ms."""
    lat = Latency(0.1, 0.05, "uniform")
    rng = random.Random(1)
    delays = sorted(sample_delay(lat, rng) for _ in range(20000))
    assert delays[2000] == pytest.approx(0.060, abs=0.002)
    assert delays[10000] == pytest.approx(0.100, abs=0.002)
    assert delays[18000] == pytest.approx(0.140, abs=0.002)


def test_pareto_tail_has_the_jitter_as_mean() -> None:
    lat = Latency(0.1, 0.02, "pareto")
    rng = random.Random(3)
    delays = [sample_delay(lat, rng) for _ in range(50000)]
    assert min(delays) >= 0.1
    assert sum(delays) / len(delays) == pytest.approx(0.12, abs=0.002)


def test_bandwidth_serialises_chunks() -> None:
    config = ImpairmentConfig(bandwidth=(Bandwidth(1000.0),))
    link = Link(config, 0, now=0.0)
    # 100 bytes at 1000 B/s take 0.1 s each, one after the other
    assert [link.release_time("up", 0.0, 100) for _ in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    # after the link went idle, a chunk takes only its own time
    assert link.release_time("up", 5.0, 500) == pytest.approx(5.5)
    # directions have a link each
    assert link.release_time("down", 0.0, 100) == pytest.approx(0.1)


def test_bandwidth_burst_lets_the_first_bytes_through() -> None:
    config = ImpairmentConfig(bandwidth=(Bandwidth(1000.0, burst=200.0),))
    link = Link(config, 0, now=0.0)
    assert [link.release_time("up", 0.0, 100) for _ in range(4)] == pytest.approx(
        [0.0, 0.0, 0.1, 0.2]
    )


def test_bandwidth_then_latency() -> None:
    config = ImpairmentConfig(
        latency=(Latency(0.05),), bandwidth=(Bandwidth(1000.0, directions=("up",)),)
    )
    link = Link(config, 0, now=0.0)
    assert link.release_time("up", 1.0, 100) == pytest.approx(1.15)
    assert link.release_time("down", 1.0, 100) == pytest.approx(1.05)


def test_window_covers_arrival_times_in_start_end() -> None:
    config = ImpairmentConfig(latency=(Latency(0.1, scope=Scope(start=10.0, end=20.0)),))
    link = Link(config, 0, now=0.0)
    assert link.release_time("up", 9.999, 1) == 9.999
    assert link.release_time("up", 10.0, 1) == pytest.approx(10.1)
    assert link.release_time("up", 19.5, 1) == pytest.approx(19.6)
    # outside the window again, but never before the chunk ahead of it
    assert link.release_time("up", 20.0, 1) == 20.0


def test_fraction_picks_the_same_connections_for_a_seed() -> None:
    picks = [selected(9, "latency0", conn, 0.3) for conn in range(1000)]
    assert picks == [selected(9, "latency0", conn, 0.3) for conn in range(1000)]
    assert 250 < sum(picks) < 350
    assert picks != [selected(10, "latency0", conn, 0.3) for conn in range(1000)]
    assert all(selected(9, "x", c, 1.0) for c in range(100))
    assert not any(selected(9, "x", c, 0.0) for c in range(100))


def test_fraction_applies_per_connection() -> None:
    config = ImpairmentConfig(latency=(Latency(0.1, scope=Scope(fraction=0.5)),), seed=2)
    delayed = [Link(config, c, 0.0).release_time("up", 0.0, 1) == 0.1 for c in range(200)]
    assert delayed == [selected(2, "latency0", c, 0.5) for c in range(200)]


def test_nat_idle_drop_after_silence_in_both_directions() -> None:
    link = Link(ImpairmentConfig(nat_idle=NatIdle(30.0)), 4, now=0.0)
    assert link.next_deadline() == 30.0
    link.release_time("up", 10.0, 5)
    assert link.next_deadline() == 40.0
    link.release_time("down", 25.0, 5)  # either direction keeps it alive
    assert link.next_deadline() == 55.0
    assert link.check(54.999) == "open"
    assert link.check(60.0) == "silent"
    assert link.events() == [{"t": 55.0, "conn": 4, "impairment": "nat_idle_drop", "idle": 30.0}]
    # from then on nothing goes through, either way, and nothing more happens
    assert link.release_time("up", 61.0, 5) is None
    assert link.release_time("down", 61.0, 5) is None
    assert link.next_deadline() == math.inf
    assert link.events() == []


def test_nat_idle_waits_for_its_window() -> None:
    config = ImpairmentConfig(nat_idle=NatIdle(5.0, Scope(start=100.0, end=200.0)))
    link = Link(config, 0, now=0.0)
    assert link.next_deadline() == 100.0  # idle since 0, so it fires as the window opens
    link.release_time("up", 198.0, 1)
    assert link.next_deadline() == math.inf  # 203 is past the window


def test_black_hole_from_t_whether_idle_or_not() -> None:
    link = Link(ImpairmentConfig(black_hole=TimedDrop(60.0)), 1, now=0.0)
    assert link.release_time("up", 59.9, 1) == 59.9
    assert link.next_deadline() == 60.0
    assert link.release_time("up", 60.0, 1) is None
    assert link.state == "silent"
    assert link.events() == [{"t": 60.0, "conn": 1, "impairment": "black_hole"}]


def test_black_hole_swallows_connections_opened_after_t() -> None:
    link = Link(ImpairmentConfig(black_hole=TimedDrop(60.0)), 1, now=70.0)
    assert link.state == "silent"
    assert link.events() == [{"t": 70.0, "conn": 1, "impairment": "black_hole"}]


def test_reset_at_t_hits_only_connections_open_then() -> None:
    config = ImpairmentConfig(reset=TimedDrop(90.0))
    old = Link(config, 0, now=10.0)
    assert old.next_deadline() == 90.0
    assert old.check(89.0) == "open"
    assert old.check(90.0) == "reset"
    assert old.events() == [{"t": 90.0, "conn": 0, "impairment": "reset"}]
    assert old.release_time("up", 91.0, 1) is None
    new = Link(config, 1, now=91.0)
    assert new.next_deadline() == math.inf
    assert new.check(1000.0) == "open"


def test_first_due_wins_and_silence_is_final() -> None:
    config = ImpairmentConfig(nat_idle=NatIdle(10.0), reset=TimedDrop(15.0))
    link = Link(config, 0, now=0.0)
    assert link.check(20.0) == "silent"  # the NAT forgot it at 10: nothing left to reset
    assert [e["impairment"] for e in link.events()] == ["nat_idle_drop"]


def test_timed_drops_on_a_fraction() -> None:
    config = ImpairmentConfig(black_hole=TimedDrop(5.0, fraction=0.5), seed=3)
    hit = [Link(config, c, 0.0).check(5.0) == "silent" for c in range(100)]
    assert hit == [selected(3, "black_hole", c, 0.5) for c in range(100)]


@pytest.mark.parametrize(
    ("text", "rate"),
    [("100kB", 100e3), ("1MiB/s", 1048576.0), ("8Mbit", 1e6), ("512B", 512.0)],
)
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["100", "0kB", "-1kB", "fast", "10 kb"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(text)):
        parse_rate(text)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"fraction: expected a fraction in \[0, 1\], got 1.5"):
        Scope(fraction=1.5)
    with pytest.raises(ValueError, match="jitter distribution: expected one of uniform"):
        Latency(0.1, 0.01, "gamma")
    with pytest.raises(ValueError, match="direction: expected up, down or both"):
        Latency(0.1, directions=("sideways",))
    with pytest.raises(ValueError, match=r"fraction"):
        TimedDrop(1.0, fraction=-0.1)
    with pytest.raises(ValueError, match="window"):
        Scope(start=5.0, end=5.0)
