"""The sans-IO heartbeat engine, driven with plain numbers.

Times are chosen to be exact in binary floating point (halves, quarters,
eighths), so every assertion compares exact values.
"""

from __future__ import annotations

import pytest

from soak.heartbeat import (
    DUPLICATE,
    LATE,
    MAX_EXPIRED_KEPT,
    OK,
    UNKNOWN,
    HeartbeatEngine,
    Pong,
    Sent,
)


def engine(
    *,
    interval: float = 1.0,
    timeout: float = 0.5,
    max_missed: int = 3,
    origin: float = 0.0,
    now: float = 0.0,
    first_seq: int = 1,
    early: float = 0.0,
) -> HeartbeatEngine:
    return HeartbeatEngine(
        interval=interval,
        timeout=timeout,
        max_missed=max_missed,
        origin=origin,
        now=now,
        first_seq=first_seq,
        early=early,
    )


# -- the grid ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "now", "first_slot"),
    [
        (0.25, 10.0, 10.25),  # between slots: the next one
        (0.25, 10.25, 10.25),  # exactly on a slot: that one
        (0.25, 10.375, 11.25),  # just after a slot: the following one
        (0.25, 0.0, 0.25),  # before the origin
        (5.5, 0.0, 0.5),  # the grid extends back from a later origin
        (0.0, 0.0, 0.0),
    ],
)
def test_first_slot_is_the_first_grid_point_at_or_after_now(
    origin: float, now: float, first_slot: float
) -> None:
    e = engine(origin=origin, now=now)
    assert e.next_send == first_slot


def test_first_slot_tolerates_float_noise_on_a_grid_point() -> None:
    # 3 * 0.1 is 0.30000000000000004: still "on" the slot, not one interval later
    e = engine(interval=0.1, origin=0.0, now=0.1 * 3)
    assert e.next_send == 0.1 * 3


def test_due_only_from_the_slot_on() -> None:
    e = engine(origin=0.25, now=0.0)
    assert not e.due(0.0)
    assert not e.due(0.125)
    assert e.due(0.25)
    assert e.due(0.5)


def test_on_time_sends_follow_the_grid() -> None:
    e = engine(interval=2.0, timeout=1.0, origin=0.5, now=0.0)
    sent = []
    for slot in (0.5, 2.5, 4.5, 6.5):
        assert e.next_send == slot
        assert e.due(slot)
        sent.append(e.on_send(slot))
        assert e.on_pong(sent[-1].seq, slot + 0.25) == Pong(OK, 0.25, 0.25)
    assert sent == [
        Sent(1, 0.5, 0.0, 0),
        Sent(2, 2.5, 0.0, 0),
        Sent(3, 4.5, 0.0, 0),
        Sent(4, 6.5, 0.0, 0),
    ]
    assert e.next_send == 8.5


def test_first_seq_is_used() -> None:
    e = engine(first_seq=7)
    assert e.on_send(0.0).seq == 7
    assert e.on_send(1.0).seq == 8
    assert e.next_seq == 9


# -- RTT: scheduled vs actual send -------------------------------------------


def test_late_send_rtt_from_scheduled_service_from_actual_send() -> None:
    e = engine(origin=0.0, now=0.5)  # first slot 1.0
    sent = e.on_send(1.25)  # a quarter late
    assert sent == Sent(seq=1, scheduled=1.0, lateness=0.25, skipped=0)
    pong = e.on_pong(1, 1.5)
    assert pong == Pong(kind=OK, rtt=0.5, service=0.25)


def test_late_send_does_not_move_the_grid() -> None:
    e = engine(origin=0.0, now=0.5)
    e.on_send(1.75)  # late, but by less than one interval: nothing skipped
    assert e.next_send == 2.0
    assert e.due(2.0)
    assert e.on_send(2.0) == Sent(2, 2.0, 0.0, 0)
    assert e.next_send == 3.0


def test_early_option_makes_a_ping_due_before_its_slot() -> None:
    e = engine(origin=0.0, now=0.5, early=0.25)  # slot 1.0
    assert not e.due(0.625)
    assert e.due(0.75)
    assert e.next_deadline() == 0.75


def test_early_send_measures_rtt_from_the_actual_send() -> None:
    e = engine(timeout=4.0, origin=0.0, now=0.5, early=0.25)
    sent = e.on_send(0.75)  # a quarter before the 1.0 slot
    assert sent == Sent(seq=1, scheduled=1.0, lateness=0.0, skipped=0)
    # from the send at 0.75, not from the slot at 1.0 (that would give 0.25)
    assert e.on_pong(1, 1.25) == Pong(OK, rtt=0.5, service=0.5)
    # the grid is unchanged by an early send
    assert e.next_send == 2.0
    assert e.next_deadline() == 1.75


def test_timeout_runs_from_the_actual_send_even_when_early() -> None:
    e = engine(timeout=0.5, origin=0.0, now=0.5, early=0.25)
    e.on_send(0.75)
    assert e.next_deadline() == 1.25
    assert e.check(1.125) == 0
    assert e.check(1.25) == 1


# -- the tester stalls -----------------------------------------------------------


def test_stall_sends_one_ping_for_the_oldest_slot_and_counts_the_skipped() -> None:
    e = engine(timeout=10.0, origin=0.0, now=0.0)
    assert e.on_send(0.0) == Sent(1, 0.0, 0.0, 0)
    # the tester stalls from 0 to 4.5: slots 1, 2, 3 and 4 are all due
    sent = e.on_send(4.5)
    # one ping for slot 1 (the oldest due), slots 2, 3 and 4 skipped
    assert sent == Sent(seq=2, scheduled=1.0, lateness=3.5, skipped=3)
    # no burst of catch-up pings: the next slot is in the future
    assert e.next_send == 5.0
    assert not e.due(4.5)
    assert not e.due(4.875)
    assert e.due(5.0)
    assert e.on_send(5.0) == Sent(3, 5.0, 0.0, 0)
    # the stalled ping's RTT includes the stall (coordinated omission)
    assert e.on_pong(2, 4.75) == Pong(OK, rtt=3.75, service=0.25)


def test_stall_ending_exactly_on_a_slot_skips_it_too() -> None:
    e = engine(timeout=10.0, origin=0.0, now=0.0)
    e.on_send(0.0)
    # at 4.0 the slots 1..4 are due; 1 is sent, 2, 3 and 4 skipped
    assert e.on_send(4.0) == Sent(2, 1.0, 3.0, 3)
    assert e.next_send == 5.0


def test_exactly_one_interval_late_skips_the_slot_that_is_due_now() -> None:
    e = engine(timeout=10.0, origin=0.0, now=0.5)
    assert e.on_send(2.0) == Sent(1, 1.0, 1.0, 1)
    assert e.next_send == 3.0


def test_stall_on_an_offset_grid() -> None:
    e = engine(interval=2.0, timeout=10.0, origin=0.5, now=0.0)  # slots 0.5, 2.5, ...
    assert e.on_send(9.0) == Sent(1, 0.5, 8.5, 4)  # 2.5, 4.5, 6.5 and 8.5 skipped
    assert e.next_send == 10.5
    assert e.on_send(10.5) == Sent(2, 10.5, 0.0, 0)


# -- pongs -----------------------------------------------------------------------------


def test_several_pongs_outstanding_answered_out_of_order() -> None:
    e = engine(timeout=10.0)
    for t in (0.0, 1.0, 2.0):
        e.on_send(t)
    assert e.pending == 3
    assert e.outstanding == 3
    assert e.on_pong(3, 2.5) == Pong(OK, 0.5, 0.5)
    assert e.pending == 2
    assert e.on_pong(1, 2.75) == Pong(OK, 2.75, 2.75)
    assert e.pending == 1
    assert e.on_pong(2, 3.0) == Pong(OK, 2.0, 2.0)
    assert e.pending == 0
    assert e.outstanding == 0
    assert e.last_pong_at == 3.0


def test_missed_then_late_pong_is_counted_once_and_resets_misses() -> None:
    e = engine(timeout=0.5, max_missed=3)
    e.on_send(0.0)
    assert e.check(0.25) == 0
    assert e.pending == 1
    assert e.check(0.5) == 1  # the timeout is reached at exactly sent + timeout
    assert e.consecutive_missed == 1
    assert e.pending == 0  # missed, no longer pending...
    assert e.outstanding == 1  # ...but kept, so its pong can be matched
    assert e.check(0.75) == 0  # not missed a second time
    assert e.consecutive_missed == 1
    pong = e.on_pong(1, 0.875)
    assert pong == Pong(LATE, rtt=0.875, service=0.875)  # RTT still recorded
    assert e.consecutive_missed == 0  # the connection is alive after all
    assert e.last_pong_at == 0.875
    assert e.outstanding == 0
    assert e.check(5.0) == 0  # nothing left to miss
    assert e.on_pong(1, 1.0) == Pong(DUPLICATE)  # and a repeat is a duplicate


def test_late_pong_keeps_its_late_send_rtt() -> None:
    e = engine(timeout=0.5, origin=0.0, now=0.5)
    e.on_send(1.25)  # slot 1.0, sent a quarter late
    assert e.check(1.625) == 0  # the timeout counts from the actual send
    assert e.check(1.75) == 1
    assert e.on_pong(1, 2.0) == Pong(LATE, rtt=1.0, service=0.75)


def test_duplicate_pong() -> None:
    e = engine(timeout=10.0)
    e.on_send(0.0)
    e.on_send(1.0)
    assert e.on_pong(1, 0.25).kind == OK
    assert e.on_pong(1, 0.5) == Pong(DUPLICATE, 0.0, 0.0)
    assert e.last_pong_at == 0.25  # a duplicate is no evidence
    assert e.pending == 1  # seq 2 is untouched
    assert e.on_pong(2, 1.5) == Pong(OK, 0.5, 0.5)


def test_duplicate_does_not_reset_consecutive_misses() -> None:
    e = engine(timeout=0.5, max_missed=5)
    e.on_send(0.0)
    assert e.on_pong(1, 0.25).kind == OK
    e.on_send(1.0)
    assert e.check(1.5) == 1
    assert e.on_pong(1, 1.5) == Pong(DUPLICATE)
    assert e.consecutive_missed == 1


@pytest.mark.parametrize("seq", [0, -1, 2, 3, 1_000_000])
def test_unknown_seq(seq: int) -> None:
    e = engine(timeout=10.0)
    e.on_send(0.0)  # only seq 1 was ever sent
    assert e.on_pong(seq, 0.5) == Pong(UNKNOWN, 0.0, 0.0)
    assert e.last_pong_at is None
    assert e.pending == 1
    assert e.on_pong(1, 0.5).kind == OK


def test_pong_before_any_ping_is_unknown() -> None:
    e = engine()
    assert e.on_pong(1, 0.0).kind == UNKNOWN


# -- missed heartbeats and zombies -------------------------------------------------


def test_max_missed_consecutive_misses_make_a_zombie() -> None:
    e = engine(interval=1.0, timeout=0.5, max_missed=3)
    for k in range(3):
        assert not e.zombie
        e.on_send(float(k))
        assert e.check(k + 0.5) == 1
        assert e.consecutive_missed == k + 1
    assert e.zombie


def test_a_pong_between_misses_prevents_the_zombie() -> None:
    e = engine(interval=1.0, timeout=0.5, max_missed=3)
    e.on_send(0.0)
    e.check(0.5)
    e.on_send(1.0)
    e.check(1.5)
    assert e.consecutive_missed == 2
    e.on_send(2.0)
    assert e.on_pong(3, 2.25).kind == OK
    assert e.consecutive_missed == 0
    e.on_send(3.0)
    e.check(3.5)
    e.on_send(4.0)
    e.check(4.5)
    assert e.consecutive_missed == 2
    assert not e.zombie


def test_several_misses_found_by_one_check() -> None:
    e = engine(interval=1.0, timeout=10.0, max_missed=3)
    for t in (0.0, 1.0, 2.0):
        e.on_send(t)
    assert e.check(10.5) == 1  # only seq 1 (sent at 0) has timed out
    assert e.check(12.0) == 2
    assert e.consecutive_missed == 3
    assert e.zombie
    assert e.pending == 0
    assert e.outstanding == 3


def test_a_late_pong_revives_a_zombie_count() -> None:
    e = engine(interval=1.0, timeout=0.5, max_missed=2)
    e.on_send(0.0)
    e.check(0.5)
    e.on_send(1.0)
    e.check(1.5)
    assert e.zombie
    assert e.on_pong(1, 1.75).kind == LATE
    assert not e.zombie


# -- next_deadline and pending ---------------------------------------------------------


def test_next_deadline_is_the_next_send_when_nothing_is_outstanding() -> None:
    e = engine(origin=0.25, now=0.0)
    assert e.next_deadline() == 0.25


def test_next_deadline_is_the_earliest_timeout_of_a_pending_ping() -> None:
    e = engine(interval=1.0, timeout=0.5)
    e.on_send(0.0)
    assert e.next_deadline() == 0.5  # the timeout comes before the 1.0 slot
    assert e.check(0.5) == 1
    assert e.next_deadline() == 1.0  # a missed ping has no deadline left


def test_next_deadline_skips_expired_pings_still_kept() -> None:
    e = engine(interval=1.0, timeout=0.5)
    e.on_send(0.0)
    assert e.check(0.5) == 1  # seq 1 missed, kept first in line for a late pong
    e.on_send(1.0)
    assert e.next_deadline() == 1.5  # seq 2's timeout, not seq 1's long-gone 0.5
    assert e.on_pong(2, 1.25).kind == OK
    assert e.next_deadline() == 2.0


def test_next_deadline_with_out_of_order_answers() -> None:
    e = engine(interval=1.0, timeout=1.5)
    e.on_send(0.0)  # times out at 1.5
    e.on_send(1.0)  # times out at 2.5
    assert e.next_send == 2.0
    assert e.next_deadline() == 1.5
    assert e.on_pong(2, 1.25).kind == OK  # the newer one answered first
    assert e.next_deadline() == 1.5  # seq 1 still pending
    assert e.on_pong(1, 1.375).kind == OK
    assert e.next_deadline() == 2.0


def test_pending_counts_only_live_pings() -> None:
    e = engine(interval=1.0, timeout=1.5)
    assert e.pending == 0
    e.on_send(0.0)
    e.on_send(1.0)
    assert (e.pending, e.outstanding) == (2, 2)
    e.check(1.5)
    assert (e.pending, e.outstanding) == (1, 2)
    e.on_pong(2, 1.75)
    assert (e.pending, e.outstanding) == (0, 1)
    e.on_pong(1, 2.0)
    assert (e.pending, e.outstanding) == (0, 0)


# -- the bound on expired pings kept for late matching ------------------------------


def _expire(e: HeartbeatEngine, n: int, start: int = 0) -> None:
    """Send ``n`` pings one interval apart, each missed."""
    for k in range(start, start + n):
        e.on_send(float(k))
        assert e.check(k + 0.5) == 1


def test_expired_pings_are_kept_up_to_the_cap() -> None:
    e = engine(interval=1.0, timeout=0.5, max_missed=10_000)
    _expire(e, MAX_EXPIRED_KEPT)
    assert e.outstanding == MAX_EXPIRED_KEPT
    assert e.on_pong(1, 100.0) == Pong(LATE, 100.0, 100.0)  # the oldest is still there


def test_the_oldest_expired_ping_is_evicted_beyond_the_cap() -> None:
    e = engine(interval=1.0, timeout=0.5, max_missed=10_000)
    n = MAX_EXPIRED_KEPT + 6
    _expire(e, n)
    # every miss is counted, even those no longer kept
    assert e.consecutive_missed == n
    assert e.outstanding == MAX_EXPIRED_KEPT
    assert e.pending == 0
    # the newest and the oldest still kept (seq 7) are matched as late
    assert e.on_pong(n, 200.0) == Pong(LATE, 200.0 - (n - 1), 200.0 - (n - 1))
    assert e.on_pong(7, 200.0) == Pong(LATE, 194.0, 194.0)
    # seq 1..6 were evicted: their pong can no longer be called late
    for seq in range(1, 7):
        assert e.on_pong(seq, 200.0).kind != LATE


def test_eviction_never_drops_a_pending_ping() -> None:
    e = engine(interval=1.0, timeout=0.5, max_missed=10_000)
    _expire(e, MAX_EXPIRED_KEPT)  # seq 1..64, sent at 0..63
    e.on_send(64.0)  # seq 65, times out at 64.5
    e.on_send(65.0)  # seq 66, times out at 65.5
    assert e.check(65.25) == 1  # seq 65 expires: 65 expired, one too many
    assert e.outstanding == MAX_EXPIRED_KEPT + 1  # 64 expired + seq 66 pending
    assert e.pending == 1
    assert e.on_pong(66, 65.375) == Pong(OK, 0.375, 0.375)
    assert e.on_pong(1, 65.5).kind != LATE  # evicted
    assert e.on_pong(2, 65.5).kind == LATE


def test_miss_run_since_marks_the_first_unanswered_ping_of_the_run() -> None:
    hb = engine(interval=1.0, timeout=0.5)
    first = hb.on_send(0.0)
    hb.on_pong(first.seq, 0.1)
    hb.on_send(1.0)
    hb.check(1.4)
    assert hb.miss_run_since is None  # not missed yet
    hb.check(1.5)
    assert hb.miss_run_since == 1.0
    hb.on_send(2.0)
    hb.check(2.5)
    assert hb.miss_run_since == 1.0  # still the start of the run
    third = hb.on_send(3.0)
    hb.on_pong(third.seq, 3.2)
    assert hb.miss_run_since is None  # any pong ends the run


def test_a_capped_slot_woken_a_little_early_is_held_and_the_next_one_comes() -> None:
    """With one heartbeat in flight allowed (Engine.IO 3, MQTT), a slot that
    comes while one is outstanding is held. The client may wake ``early``
    before the slot: it then waits for the slot itself (the ping in flight
    may be answered first), and from the slot on the next chance is the
    slot after it, not the same slot again (the client once spun on it)."""
    hb = HeartbeatEngine(
        interval=1.0, timeout=5.0, max_missed=3, origin=0.0, now=0.0, early=0.001, max_in_flight=1
    )
    assert hb.due(0.0)
    hb.on_send(0.0)
    assert not hb.due(0.999)  # 1 ms before the slot of 1 s, one outstanding
    assert (hb.held, hb.next_send) == (0, 1.0)
    assert hb.next_deadline() == 1.0  # not the early window again: no spin
    assert not hb.due(1.0)
    assert (hb.held, hb.next_send) == (1, 2.0)
    assert not hb.due(1.5)
    assert hb.on_pong(1, 1.5).kind == "ok"
    assert hb.due(1.999)
    assert hb.on_send(1.999).seq == 2


def test_a_pong_is_timed_on_the_wire_from_when_its_heartbeat_left() -> None:
    """The wire RTT runs from when the heartbeat left (the kernel's transmit
    time when known, else the send call) to the pong; ``written`` returns the
    send time ``rtt_service`` counts from, and None once nothing waits."""
    hb = engine(interval=1.0, timeout=0.5)
    first = hb.on_send(0.0)
    assert hb.written(first.seq, 0.125) == 0.0
    assert hb.on_pong(first.seq, 0.25) == Pong(OK, 0.25, 0.25)
    assert hb.last_written == 0.125  # the wire RTT is 0.125, not 0.25
    assert hb.written(first.seq, 0.375) is None  # answered: not waiting any more
    second = hb.on_send(1.0)  # no transmit time learned: it left at the send call
    hb.on_pong(second.seq, 1.5)
    assert hb.last_written == 1.0
    assert hb.written(99, 1.5) is None  # never sent


def test_held_slots_add_up_over_every_hold() -> None:
    """Each slot the in-flight cap holds is counted, over several holds and
    with an interval other than 1 s (the count is slots, not seconds)."""
    hb = HeartbeatEngine(
        interval=2.0, timeout=100.0, max_missed=3, origin=0.0, now=0.0, max_in_flight=1
    )
    hb.on_send(0.0)
    assert not hb.due(2.0)  # slot 2 held
    assert (hb.held, hb.next_send) == (1, 4.0)
    assert not hb.due(9.0)  # slots 4, 6 and 8 held: the next chance is 10
    assert (hb.held, hb.next_send) == (4, 10.0)


def test_a_schedule_with_nothing_to_send_is_empty() -> None:
    """When the server pings and the client only answers, nothing is ever due."""
    hb = HeartbeatEngine(interval=1.0, timeout=0.5, max_missed=3, origin=0.0, now=0.0, sends=False)
    assert not hb.due(0.0)
    assert not hb.due(1e9)
    assert hb.next_deadline() == float("inf")
