"""Availability, pure: client-seconds integrated with plain numbers, the
run's share, the longest stretch below a share, storm recovery, and the
default checks that turn them into a verdict."""

from __future__ import annotations

import io
from typing import Any

import pytest

from soak.availability import (
    ClientSeconds,
    Span,
    describe,
    longest_below,
    share,
    spans,
    storm_figures,
    summarize,
)
from soak.config.tables.thresholds import parse_threshold_option
from soak.config.thresholds import DEFAULT_THRESHOLDS, Threshold, with_defaults
from soak.config.validation import FieldError
from soak.live import LiveView
from soak.summary import judge
from tests.support.runs import make_profile

# -- the integrator -----------------------------------------------------------------


def test_client_seconds_are_piecewise_constant_and_capped_at_the_target() -> None:
    cs = ClientSeconds()
    cs.target(10.0, 100)  # before this, nothing was planned
    cs.connected(10.0, 100)
    cs.connected(20.0, 0)  # 10 s x 100 connected
    cs.connected(25.0, 100)  # 5 s with nobody
    assert cs.take(30.0) == (1500.0, 2000.0)
    # more connected than planned (a scale-down still closing) counts as the target
    cs.target(30.0, 50)
    assert cs.take(32.0) == (100.0, 100.0)
    # a target of 0 adds nothing to either side
    cs.target(32.0, 0)
    assert cs.take(40.0) == (0.0, 0.0)


def test_client_seconds_stop_at_the_shutdown() -> None:
    cs = ClientSeconds(0.0)
    cs.target(0.0, 10)
    cs.connected(0.0, 10)
    cs.stop(4.0)
    cs.connected(4.5, 0)  # the shutdown's closes: not an outage
    assert cs.peek(9.0) == (40.0, 40.0)
    assert cs.take(9.0) == (40.0, 40.0)
    assert cs.take(10.0) == (0.0, 0.0)


def test_time_going_backwards_adds_nothing() -> None:
    cs = ClientSeconds(5.0)
    cs.target(5.0, 2)
    cs.connected(4.0, 2)  # an earlier timestamp than the last change
    assert cs.take(6.0) == (2.0, 2.0)


# -- the run's figures ----------------------------------------------------------------


def test_share_is_none_without_a_plan_and_never_above_one() -> None:
    assert share(0.0, 0.0) is None
    assert share(5.0, 10.0) == 0.5
    assert share(11.0, 10.0) == 1.0


def test_summary_is_time_weighted_including_a_short_last_interval() -> None:
    items = [
        Span(0.0, 10.0, 1000.0, 1000.0),  # 100 of 100 for 10 s
        Span(10.0, 10.0, 500.0, 1000.0),  # half of them for 10 s
        Span(20.0, 2.0, 0.0, 200.0),  # the partial last interval: nobody
        Span(22.0, 1.0, 0.0, 0.0),  # the shutdown tail: nothing planned
    ]
    av = summarize(items, [])
    assert av["availability"] == pytest.approx(1500.0 / 2200.0, abs=1e-6)
    assert av["connected_client_s"] == 1500.0
    assert av["target_client_s"] == 2200.0
    assert av["below"] == {"share": 0.95, "longest_s": 12.0, "from_s": 10.0}
    assert av["storm_recovery"] is None
    assert av["storms"] == []


def test_longest_stretch_is_the_longest_of_several_and_a_zero_target_does_not_break_it() -> None:
    items = [
        Span(0.0, 1.0, 0.0, 10.0),
        Span(1.0, 1.0, 10.0, 10.0),
        Span(2.0, 1.0, 9.0, 10.0),
        Span(3.0, 1.0, 0.0, 0.0),  # nothing planned: neither up nor down
        Span(4.0, 1.0, 5.0, 10.0),
        Span(5.0, 1.0, 9.6, 10.0),  # 96% is not below 95%
    ]
    assert longest_below(items, 0.95) == {"share": 0.95, "longest_s": 2.0, "from_s": 2.0}
    assert longest_below(items, 0.5) == {"share": 0.5, "longest_s": 1.0, "from_s": 0.0}
    assert longest_below([], 0.95) == {"share": 0.95, "longest_s": 0.0, "from_s": None}


def test_storm_figures_from_a_storm_record() -> None:
    storm: dict[str, Any] = {
        "index": 1,
        "start_s": 45.0,
        "lost": 200,
        "recovered": 150,
        "gave_up": 50,
        "recovery_s": {"p50": 2.0, "p90": 4.0, "p95": 6.5, "p99": None, "p100": None},
    }
    assert storm_figures(storm) == {
        "index": 1,
        "start_s": 45.0,
        "lost": 200,
        "recovered": 150,
        "gave_up": 50,
        "recovered_share": 0.75,
        "recovery_95_s": 6.5,
        "recovery_100_s": None,
    }
    av = summarize([Span(0.0, 1.0, 1.0, 1.0)], [storm, {**storm, "index": 2, "recovered": 200}])
    assert av["storm_recovery"] == 0.75  # the worst storm
    assert "storm 1 at 45 s: 150 of 200 lost clients back by the end" in describe(av)
    assert "(95% in 6.5 s, never 100%)" in describe(av)


def test_spans_skip_records_without_client_seconds() -> None:
    recs: list[dict[str, Any]] = [
        {"t": 0.0, "dt": 1.0, "connected_s": 1.0, "target_s": 2.0},
        {"t": 1.0, "dt": 1.0},  # from before availability was measured
        {"t": "x", "dt": 1.0, "connected_s": 1.0, "target_s": 2.0},
        {"t": 2.0, "dt": 1.0, "connected_s": True, "target_s": 2.0},
    ]
    assert spans(recs) == [Span(0.0, 1.0, 1.0, 2.0)]


# -- the default checks ---------------------------------------------------------------


def _verdicts(thresholds: list[Threshold], av: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in judge(with_defaults(thresholds), {}, {}, av)}


def test_defaults_fail_a_run_whose_target_went_away_for_good() -> None:
    storm = {"index": 1, "start_s": 45.0, "lost": 200, "recovered": 0, "gave_up": 0}
    av = summarize([Span(0.0, 45.0, 9000.0, 9000.0), Span(45.0, 45.0, 0.0, 9000.0)], [storm])
    v = _verdicts([], av)
    assert not v["availability"]["ok"]
    assert v["availability"]["value"] == "50.00%"
    assert "below 95% for 45 s from 45 s" in v["availability"]["text"]
    assert not v["storm_recovery"]["ok"]
    assert v["storm_recovery"]["value"] == "0.00%"
    assert "0 of 200 lost clients back by the end" in v["storm_recovery"]["text"]


def test_defaults_pass_a_full_run_and_a_run_without_storms() -> None:
    av = summarize([Span(0.0, 10.0, 100.0, 100.0)], [])
    v = _verdicts([], av)
    assert v["availability"]["ok"]
    assert v["availability"]["value"] == "100.00%"
    assert v["storm_recovery"]["ok"]
    assert v["storm_recovery"]["value"] == "no storms"
    nothing = _verdicts([], summarize([], []))
    assert nothing["availability"]["ok"]
    assert nothing["availability"]["value"] == "no planned load"


def test_a_profile_overrides_a_default() -> None:
    mine = Threshold("availability", 0.5, "50%", ">=")
    assert [th.name for th in with_defaults([mine])] == ["availability", "storm_recovery"]
    assert with_defaults([mine])[0] is mine
    assert [th.limit for th in DEFAULT_THRESHOLDS] == [0.90, 1.0]
    av = summarize([Span(0.0, 45.0, 9000.0, 9000.0), Span(45.0, 45.0, 0.0, 9000.0)], [])
    assert _verdicts([mine], av)["availability"]["ok"]


# -- where a person sees it ---------------------------------------------------------


def test_the_live_view_and_the_summary_show_availability() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=True)
    view.status({**STATUS, "availability": 0.4567})
    assert "200 connected / 400 target" in out.getvalue()
    assert "availability 45.67% so far" in out.getvalue()
    out = io.StringIO()
    LiveView(out, tty=False).interval({**RECORD, "availability": 0.5})
    assert out.getvalue().rstrip("\n").endswith("availability=50.00%")
    out = io.StringIO()
    LiveView(out, tty=False).interval({**RECORD, "availability": None})
    assert out.getvalue().rstrip("\n").endswith("availability=-")
    storm = {"index": 1, "start_s": 10.0, "lost": 20, "recovered": 20, "recovery_s": {}}
    storm["recovery_s"] = {"p95": 7.0, "p100": 7.0}
    av = summarize([Span(0.0, 10.0, 100.0, 200.0)], [storm])
    assert describe(av) == (
        "50.00% of the planned client-seconds connected; below 95% for 10 s (from 0 s); "
        "storm 1 at 10 s: 20 of 20 lost clients back by the end (95% in 7 s, 100% in 7 s)"
    )
    assert describe(summarize([], [])) == "no planned load"


STATUS: dict[str, Any] = {
    "elapsed": 5.0,
    "remaining": 5.0,
    "connected": 200,
    "connecting": 0,
    "target": 400,
    "pongs": 0,
    "interval_elapsed": 1.0,
    "rtt_p50_ms": None,
    "rtt_p99_ms": None,
    "missed": 0,
    "zombies": 0,
    "false_timeouts": 0,
    "reconnects": 0,
    "handshake_failures": 0,
    "loop_lag_max_ms": 0.0,
    "gave_up": 0,
}
RECORD: dict[str, Any] = {
    "t": 0.0,
    "dt": 1.0,
    "connected": 1,
    "target": 2,
    "pings": 0,
    "pongs": 0,
    "missed": 0,
    "late": 0,
    "zombies": 0,
    "false_timeouts": 0,
    "closes": {},
    "reconnects": 0,
    "handshake_failures": {},
}


# -- the profile and the command line -------------------------------------------------


CLIENTS = '[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'


def test_thresholds_table_and_option_take_shares() -> None:
    profile = make_profile(
        CLIENTS + '[thresholds]\navailability = "99.5%"\nstorm_recovery = "90%"\n'
    )
    assert profile.thresholds == (
        Threshold("availability", 0.995, "99.5%", ">="),
        Threshold("storm_recovery", 0.9, "90%", ">="),
    )
    assert parse_threshold_option("storm_recovery==100%") == Threshold(
        "storm_recovery", 1.0, "100%", "=="
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[thresholds]\navailability = "lots"\n',
            'test.toml: thresholds.availability: expected a percentage like "99.9%", got "lots"',
        ),
        (
            "[thresholds]\navailability = 99\n",
            'test.toml: thresholds.availability: expected a percentage like "99.9%", got 99',
        ),
        ('[thresholds]\navailabilty = "99%"\n', "did you mean 'availability'"),
    ],
)
def test_bad_share_thresholds_say_which_field(body: str, message: str) -> None:
    with pytest.raises(FieldError) as err:
        make_profile(CLIENTS + body)
    assert message in str(err.value)


def test_bad_share_option_says_what_was_expected() -> None:
    with pytest.raises(FieldError, match=r"--threshold availability: expected a percentage"):
        parse_threshold_option("availability>=most")
