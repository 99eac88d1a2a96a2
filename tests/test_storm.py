"""Pure storm detection and measurement, with plain numbers."""

from __future__ import annotations

import pytest

from soak.classify import SERVER, CloseInfo
from soak.client import retry_hint
from soak.storm import StormTracker, sync_index


def tracker(**kw: float) -> StormTracker:
    return StormTracker(heartbeat_interval=10.0, min_losses=3, window=1.0, quiet=5.0, **kw)


def test_sync_index_spread_and_bunched() -> None:
    assert sync_index([0.0, 2.5, 5.0, 7.5], 10.0) == pytest.approx(0.0, abs=1e-12)
    assert sync_index([1.0, 11.0, 21.0], 10.0) == pytest.approx(1.0)
    assert sync_index([1.0], 10.0) is None


def test_a_storm_needs_enough_losses_within_the_window() -> None:
    t = tracker()
    assert t.lost(0.0) is None
    assert t.lost(1.5) is None  # the first loss has left the window
    assert t.lost(2.0) is None
    storm = t.lost(2.4)
    assert storm is not None
    assert storm.start == 1.5
    assert storm.lost == 3
    t.lost(2.6)
    assert storm.lost == 4


def test_recovery_times_peaks_and_end() -> None:
    t = tracker()
    for _ in range(4):
        t.lost(10.0)
    storm = t.current
    assert storm is not None
    # no jitter: all four retry 1 s later (refused), then 3 s later (accepted)
    for n in range(4):
        t.attempt(11.0, in_flight=n + 1)
    for _ in range(4):
        t.failed(11.01, "refused")
    for n in range(4):
        t.attempt(13.0, in_flight=n + 1)
    assert t.tick(13.0) is None
    for i, now in enumerate((13.002, 13.004, 13.004, 13.2)):
        t.ready(now, handshake=0.002 * (i + 1), lost_at=10.0)
    ended = t.tick(13.2)
    assert ended is storm
    s = t.summary_of(storm)
    assert s["lost"] == s["recovered"] == 4
    assert s["attempts"] == 8
    assert s["peak_attempts_per_100ms"] == 4
    assert s["peak_at_s"] == 1.0
    assert s["max_in_flight"] == 4
    assert s["failures"] == {"refused": 4}
    assert s["recovery_s"] == {
        "p50": pytest.approx(3.004),
        "p90": pytest.approx(3.2),
        "p95": pytest.approx(3.2),  # added with availability (issue 23)
        "p99": pytest.approx(3.2),
        "p100": pytest.approx(3.2),
    }
    assert s["end_s"] == 13.2
    series = storm.series()
    assert series["attempts"][10] == 4
    assert series["attempts"][30] == 4
    assert sum(series["attempts"]) == 8
    assert series["recovered_pct"][30] == 75.0
    assert series["recovered_pct"][-1] == 100.0


def test_late_losses_while_early_ones_are_back_stay_one_storm() -> None:
    """A loaded tester (or a gateway closing thousands one by one) notices
    the last losses after the first clients are back: still one storm,
    settled only once no loss came for a window, ending at the last recovery."""
    t = tracker()
    for k in range(4):
        t.lost(10.0 + 0.01 * k)
    storm = t.current
    assert storm is not None
    for k in range(4):
        t.ready(10.5 + 0.01 * k, handshake=0.001, lost_at=10.0)
    assert t.tick(10.6) is None  # all four back, but a loss was 0.57 s ago
    t.lost(10.7)  # one more, noticed late
    assert t.current is storm
    t.ready(11.0, handshake=0.001, lost_at=10.7)
    assert t.tick(11.5) is None
    assert t.tick(11.7) is storm  # a window (1 s) after the last loss
    s = t.summary_of(storm)
    assert (s["lost"], s["recovered"]) == (5, 5)
    assert s["end_s"] == 11.0


def test_quiet_ends_a_storm_whose_clients_never_came_back() -> None:
    t = tracker()
    for _ in range(3):
        t.lost(0.0)
    t.attempt(1.0, 1)
    t.gave_up(1.0)
    assert t.tick(5.9) is None
    storm = t.tick(6.0)
    assert storm is not None
    s = t.summary_of(storm)
    assert s["recovered"] == 0
    assert s["gave_up"] == 1
    assert s["recovery_s"]["p50"] is None
    assert s["end_s"] == 1.0  # the last activity


def test_first_connections_are_not_recoveries() -> None:
    t = tracker()
    for _ in range(3):
        t.lost(0.0)
    t.ready(0.5, handshake=0.001, lost_at=None)  # a brand-new client, not one we lost
    assert t.current is not None
    assert t.current.recovered == 0


@pytest.mark.parametrize(
    ("code", "reason", "hint"),
    [
        (1013, '{"code":"UNAVAILABLE","retryAfterMs":500}', 0.5),
        (1013, "gateway starting, retry after 2s", 2.0),
        (1013, "retry-after: 750ms", 0.75),
        (1013, "try again later", None),
        (1012, '{"retryAfterMs":500}', None),  # only 1013 carries a hint
    ],
)
def test_server_retry_hints(code: int, reason: str, hint: float | None) -> None:
    info = CloseInfo(SERVER, code, reason)
    assert retry_hint(info) == hint


def test_a_connection_back_before_the_storm_was_known_counts_as_recovered() -> None:
    # three losses start a storm; the first client is back before the third
    # loss (a quick reconnect): its loss is the storm's, so is its recovery
    t = StormTracker(heartbeat_interval=10.0, min_losses=3, window=1.0)
    assert t.lost(0.0) is None
    t.ready(0.2, handshake=0.05, lost_at=0.0)
    assert t.lost(0.3) is None
    storm = t.lost(0.4)
    assert storm is not None
    assert (storm.lost, storm.recovered) == (3, 1)
    assert storm.recovery_times == [0.2]
    t.ready(1.0, handshake=0.05, lost_at=0.3)
    t.ready(1.1, handshake=0.05, lost_at=0.4)
    ended = t.tick(2.0)
    assert ended is storm
    assert storm.recovery_percentile(1.0) == pytest.approx(1.1)
    assert storm.recovered == storm.lost


def test_an_early_return_outside_the_window_is_not_the_storms() -> None:
    t = StormTracker(heartbeat_interval=10.0, min_losses=2, window=1.0)
    t.lost(0.0)
    t.ready(0.1, handshake=0.01, lost_at=0.0)
    # 5 s later, a storm of two losses: the early one is long gone
    t.lost(5.0)
    storm = t.lost(5.1)
    assert storm is not None
    assert (storm.lost, storm.recovered) == (2, 0)


def test_connections_back_before_the_storm_was_known_are_its_recoveries() -> None:
    """The storm is known at its third loss, but began at its first: the
    clients lost since then and already back are its recoveries, even one
    lost exactly a window before the storm was known; one lost before the
    storm began is not."""
    t = StormTracker(heartbeat_interval=10.0, min_losses=3, window=1.0, quiet=5.0)
    t.ready(0.75, 0.01, 0.5)  # lost at 0.5, back: before any storm
    assert t.lost(1.0) is None  # A
    t.ready(1.5, 0.01, 1.0)  # A back
    assert t.lost(1.5) is None  # B
    t.ready(2.0, 0.01, 1.5)  # B back, exactly a window after A was lost
    storm = t.lost(2.0)  # C: the third loss within the window
    assert storm is not None
    assert (storm.start, storm.lost, storm.recovered) == (1.0, 3, 2)
    assert storm.recovery_times == [0.5, 1.0]


def test_a_client_lost_before_the_storm_began_and_back_before_it_was_known_is_not_its() -> None:
    """Lost at 0 s, back at 0.9 s; the storm's losses are at 1.2, 1.4 and
    1.6 s (known at the third): the early one is neither lost nor recovered
    by it, so ``recovered`` never exceeds ``lost``."""
    t = StormTracker(heartbeat_interval=10.0, min_losses=3, window=1.0, quiet=5.0)
    assert t.lost(0.0) is None
    t.ready(0.9, 0.01, 0.0)
    assert t.lost(1.2) is None
    assert t.lost(1.4) is None
    storm = t.lost(1.6)
    assert storm is not None
    assert (storm.start, storm.lost, storm.recovered) == (1.2, 3, 0)
