"""The load shape: how many clients at time t, and how many churned by t."""

from __future__ import annotations

import pytest

from soak.config.stages import Churn, Hold, Ramp, Spike, Stage
from soak.schedule import Schedule


def ramp(to: int, duration: float) -> Stage:
    return Ramp(duration, to=to)


def hold(duration: float) -> Stage:
    return Hold(duration)


def spike(add: int, duration: float) -> Stage:
    return Spike(duration, add=add)


def churn(rate: float, duration: float) -> Stage:
    return Churn(duration, rate=rate)


# -- ramps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0.0, 0),
        (0.5, 0),
        (0.99, 0),
        (1.0, 1),
        (2.5, 2),
        (5.0, 5),
        (9.99, 9),
        (10.0, 10),  # the end of the ramp
        (11.0, 10),
    ],
)
def test_ramp_up_exact_counts(t: float, expected: int) -> None:
    s = Schedule((ramp(10, 10.0),))
    assert s.target(t) == expected


def test_ramp_up_hits_exact_fractions_despite_float_rounding() -> None:
    # 3 * (1/3) is 0.9999999999999999 in floating point
    s = Schedule((ramp(3, 1.0),))
    assert [s.target(k / 3) for k in range(4)] == [0, 1, 2, 3]


def test_ramp_up_never_overshoots_and_never_goes_back() -> None:
    s = Schedule((ramp(1000, 7.0),))
    previous = 0
    for step in range(0, 7001):
        t = step / 1000
        n = s.target(t)
        assert n <= 1000 * t / 7.0 + 1e-6
        assert n >= previous
        previous = n
    assert previous == 1000


def test_ramp_down() -> None:
    s = Schedule((ramp(10, 10.0), ramp(0, 5.0)))
    assert s.target(10.0) == 10
    assert s.target(10.4) == 10  # 0.8 clients due to go: none yet
    assert s.target(10.5) == 9
    assert s.target(11.0) == 8
    assert s.target(12.5) == 5
    assert s.target(14.99) == 1
    assert s.target(15.0) == 0
    assert s.target(100.0) == 0


def test_ramp_down_never_undershoots() -> None:
    s = Schedule((ramp(100, 1.0), ramp(40, 6.0)))
    previous = 100
    for step in range(1000, 7001):
        t = step / 1000
        n = s.target(t)
        assert n >= 100 - 60 * (t - 1.0) / 6.0 - 1e-6
        assert n <= previous
        previous = n
    assert previous == 40


def test_ramp_from_one_level_to_another() -> None:
    s = Schedule((ramp(10, 1.0), ramp(30, 4.0)))
    assert s.target(1.0) == 10
    assert s.target(2.0) == 15
    assert s.target(3.0) == 20
    assert s.target(4.9) == 29
    assert s.target(5.0) == 30


def test_zero_duration_ramp_jumps() -> None:
    s = Schedule((ramp(5, 0.0), hold(10.0)))
    assert s.target(0.0) == 5
    assert s.target(9.99) == 5
    assert s.target(10.0) == 5
    assert s.peak == 5
    assert s.end == 10.0


def test_zero_duration_ramp_between_stages() -> None:
    s = Schedule((ramp(4, 2.0), ramp(8, 0.0), hold(2.0), ramp(1, 0.0)))
    assert s.target(1.0) == 2
    assert s.target(1.99) == 3
    assert s.target(2.0) == 8  # the jump happens at the boundary
    assert s.target(3.99) == 8
    assert s.target(4.0) == 1  # a jump at the very end: the final level
    assert s.peak == 8
    assert s.final_level == 1


def test_zero_duration_ramp_as_only_stage() -> None:
    s = Schedule((ramp(7, 0.0),))
    assert s.end == 0.0
    assert s.target(0.0) == 7
    assert s.target(60.0) == 7


# -- hold and spike -----------------------------------------------------------------------


def test_hold_keeps_the_level() -> None:
    s = Schedule((ramp(5, 1.0), hold(10.0)))
    for t in (1.0, 1.5, 6.0, 10.99, 11.0, 50.0):
        assert s.target(t) == 5


def test_hold_at_the_start_is_zero() -> None:
    s = Schedule((hold(3.0), ramp(6, 3.0)))
    assert s.target(0.0) == 0
    assert s.target(2.99) == 0
    assert s.target(4.0) == 2


def test_spike_adds_for_its_duration_then_drops_back() -> None:
    s = Schedule((ramp(10, 1.0), hold(2.0), spike(5, 3.0), hold(4.0)))
    assert s.target(2.99) == 10
    assert s.target(3.0) == 15
    assert s.target(4.5) == 15
    assert s.target(5.99) == 15
    assert s.target(6.0) == 10
    assert s.target(9.99) == 10
    assert s.target(10.0) == 10
    assert s.peak == 15


def test_spike_as_the_last_stage_drops_back_after_it() -> None:
    s = Schedule((ramp(2, 1.0), spike(3, 1.0)))
    assert s.target(1.5) == 5
    assert s.target(2.0) == 2
    assert s.final_level == 2


def test_spike_from_nothing() -> None:
    s = Schedule((spike(4, 1.0), hold(1.0)))
    assert s.target(0.0) == 4
    assert s.target(1.0) == 0
    assert s.peak == 4


# -- peak ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stages", "peak"),
    [
        ((), 0),
        ((ramp(10, 1.0),), 10),
        ((ramp(10, 1.0), ramp(3, 1.0)), 10),
        ((ramp(3, 1.0), ramp(10, 1.0), ramp(0, 1.0)), 10),
        ((ramp(10, 1.0), spike(7, 1.0), ramp(12, 1.0)), 17),
        ((ramp(10, 1.0), spike(1, 1.0), ramp(12, 1.0)), 12),
        ((ramp(10, 1.0), churn(5.0, 10.0)), 10),
        ((hold(5.0),), 0),
    ],
)
def test_peak(stages: tuple[Stage, ...], peak: int) -> None:
    assert Schedule(stages).peak == peak


# -- churn ---------------------------------------------------------------------------------


def test_churn_keeps_the_count() -> None:
    s = Schedule((ramp(10, 1.0), churn(2.0, 5.0)))
    for t in (1.0, 3.0, 5.99):
        assert s.target(t) == 10


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (-1.0, 0),
        (0.0, 0),
        (1.0, 0),  # the churn stage starts here
        (1.25, 0),
        (1.5, 1),
        (2.0, 2),
        (3.75, 5),
        (6.0, 10),  # end of the first churn stage: 2/s for 5 s
        (7.0, 10),  # hold: nothing added
        (8.0, 10),  # the second churn stage starts
        (9.0, 10),  # 0.5/s for 1 s: half a client, not yet one
        (10.0, 11),
        (11.9, 11),
        (12.0, 12),  # end of the second churn stage: 0.5/s for 4 s
        (100.0, 12),  # after the last stage
    ],
)
def test_churned_by_across_stage_boundaries(t: float, expected: int) -> None:
    s = Schedule((ramp(10, 1.0), churn(2.0, 5.0), hold(2.0), churn(0.5, 4.0)))
    assert s.churned_by(t) == expected


def test_churned_by_back_to_back_churn_stages_each_floored() -> None:
    s = Schedule((ramp(10, 1.0), churn(1.5, 1.0), churn(1.5, 1.0)))
    assert s.churned_by(2.0) == 1  # floor(1.5)
    assert s.churned_by(3.0) == 2  # floor(1.5) + floor(1.5)


def test_churned_by_exact_for_rates_that_are_not_binary_fractions() -> None:
    s = Schedule((ramp(10, 1.0), churn(0.1, 30.0)))
    assert [s.churned_by(1.0 + k * 10.0) for k in range(4)] == [0, 1, 2, 3]
    s = Schedule((churn(1 / 3, 3.0),))
    assert s.churned_by(3.0) == 1
    # 0.57 * 100 is 56.99999999999999 in floating point
    s = Schedule((ramp(10, 1.0), churn(0.57, 100.0)))
    assert s.churned_by(101.0) == 57
    assert s.churned_by(1000.0) == 57


def test_churn_total_is_the_same_however_the_ticks_fall() -> None:
    s = Schedule((ramp(10, 1.0), churn(7.0, 3.0), hold(1.0), churn(3.0, 2.0)))
    expected_total = 21 + 6
    for step in (0.1, 0.07, 0.25, 0.333, 1.0, 10.0):
        done = 0
        t = 0.0
        while t < 8.0:
            t = min(8.0, t + step)
            due = s.churned_by(t)
            assert due >= done
            done = due
        assert done == expected_total


def test_no_churn_without_churn_stages() -> None:
    s = Schedule((ramp(10, 1.0), hold(10.0), spike(5, 1.0)))
    assert s.churned_by(100.0) == 0


# -- before the start and after the end -----------------------------------------------------


def test_negative_time_is_zero() -> None:
    s = Schedule((spike(4, 1.0), churn(10.0, 1.0), ramp(5, 1.0)))
    assert s.target(-0.001) == 0  # not the final level, 5
    assert s.target(-100.0) == 0
    assert s.churned_by(-5.0) == 0


def test_after_the_last_stage_the_final_level_holds() -> None:
    s = Schedule((ramp(10, 2.0), hold(3.0), ramp(4, 1.0)))
    assert s.end == 6.0
    assert s.final_level == 4
    assert s.segment_at(6.0) is None
    assert s.target(6.0) == 4
    assert s.target(1e9) == 4


def test_empty_schedule() -> None:
    s = Schedule(())
    assert s.end == 0.0
    assert s.target(0.0) == 0
    assert s.target(10.0) == 0
    assert s.churned_by(10.0) == 0
    assert s.peak == 0


def test_segments_record_levels_and_times() -> None:
    s = Schedule((ramp(10, 2.0), spike(5, 1.0), ramp(0, 3.0)))
    got = [(x.start, x.end, x.level_before, x.level_after) for x in s.segments]
    assert got == [(0.0, 2.0, 0, 10), (2.0, 3.0, 10, 10), (3.0, 6.0, 10, 0)]
    seg = s.segment_at(2.0)
    assert seg is not None
    assert seg.stage.kind == "spike"
