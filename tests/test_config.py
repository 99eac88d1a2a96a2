"""soak.config: typed stages, and the one validation of impairments that a
profile's [impairment] and soak proxy's options share."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.commands.proxy import _impairment
from soak.config.load import parse_profile
from soak.config.stages import STAGE_KINDS, Churn, Hold, Ramp, Spike, Storm, stage_record
from soak.config.tables.clients import STAGE_PARSERS
from soak.config.tables.impairment import parse_scope
from soak.config.validation import did_you_mean, nearest
from soak.errors import ProfileError
from soak.schedule import Schedule

TARGET = '[target]\nurl = "ws://127.0.0.1:9/ws"\n'
HOLD = '[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'

EVERY_KIND = (
    TARGET
    + """
[[clients.stages]]
kind = "ramp"
to = 10
duration = "10s"
[[clients.stages]]
kind = "hold"
duration = "5s"
[[clients.stages]]
kind = "spike"
add = 3
duration = "2s"
[[clients.stages]]
kind = "churn"
rate = 1.5
duration = "4s"
[[clients.stages]]
kind = "storm"
drop = "50%"
how = "abrupt"
duration = "3s"
"""
)


def error_of(text: str) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "p.toml", {})
    return str(info.value)


# -- typed stages ---------------------------------------------------------------------


def test_each_kind_loads_as_its_own_type() -> None:
    stages = parse_profile(EVERY_KIND, "p.toml", {}).clients.stages
    assert stages == (
        Ramp(10.0, to=10),
        Hold(5.0),
        Spike(2.0, add=3),
        Churn(4.0, rate=1.5),
        Storm(3.0, drop=0.5, how="abrupt"),
    )
    assert [s.kind for s in stages] == list(STAGE_KINDS)
    assert set(STAGE_PARSERS) == set(STAGE_KINDS)
    assert not hasattr(stages[1], "to")  # a hold has no target count


def test_schedule_matches_on_the_stage_type() -> None:
    stages = parse_profile(EVERY_KIND, "p.toml", {}).clients.stages
    s = Schedule(stages)
    assert s.peak == 13
    assert s.target(16.0) == 13  # during the spike
    assert s.target(19.0) == 10  # churn and storm hold the count
    assert s.target(22.0) == 10
    assert s.churned_by(21.0) == 6  # 1.5 per second for the churn's 4 s


def test_run_json_shows_every_stage_field_in_the_old_order() -> None:
    record = stage_record(Spike(2.0, add=3))
    assert list(record) == [
        "kind",
        "duration",
        "to",
        "add",
        "rate",
        "drop",
        "how",
        "command",
        "command_timeout",
        "restart_url",
    ]
    assert record == {
        "kind": "spike",
        "duration": 2.0,
        "to": 0,
        "add": 3,
        "rate": 0.0,
        "drop": 0.0,
        "how": "clean",
        "command": None,
        "command_timeout": 30.0,
        "restart_url": None,
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            '"spke"',
            "p.toml: clients.stages[0].kind: expected one of ramp, hold, spike, churn, storm "
            "(did you mean 'spike'?), got \"spke\"",
        ),
        (
            '"wave"',
            "p.toml: clients.stages[0].kind: expected one of ramp, hold, spike, churn, storm, "
            'got "wave"',
        ),
        (
            "3",
            "p.toml: clients.stages[0].kind: expected one of ramp, hold, spike, churn, storm, "
            "got 3",
        ),
    ],
)
def test_an_unknown_stage_kind_is_one_clear_line(kind: str, expected: str) -> None:
    text = TARGET + f'[[clients.stages]]\nkind = {kind}\nduration = "1s"\n'
    message = error_of(text)
    assert message == expected
    assert "\n" not in message


def test_a_field_of_another_kind_is_unknown_for_this_one() -> None:
    text = TARGET + '[[clients.stages]]\nkind = "hold"\nduration = "1s"\nto = 5\n'
    assert error_of(text) == (
        "p.toml: clients.stages[0].to: unknown field; valid fields: kind, duration"
    )


def test_did_you_mean_is_one_helper() -> None:
    assert nearest("latncy", ["latency", "bandwidth"]) == "latency"
    assert nearest("zzz", ["latency"]) is None
    assert did_you_mean("rmp", ("ramp", "hold")) == " (did you mean 'ramp'?)"
    assert did_you_mean("zzz", ("ramp",)) == ""


# -- one validation for soak run's [impairment] and soak proxy's options -----------------


def proxy_error(*args: str) -> str:
    result = CliRunner().invoke(cli, ["proxy", "--upstream", "127.0.0.1:9", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # click may wrap a long line


@pytest.mark.parametrize(
    ("key", "option", "value", "detail"),
    [
        ("latency", "--latency", "100", 'expected a duration like "100ms", got "100"'),
        ("jitter", "--jitter", "-5ms", 'expected a duration of zero or more, got "-5ms"'),
        ("nat_idle", "--nat-idle", "0s", 'expected a duration greater than zero, got "0s"'),
        (
            "black_hole_at",
            "--black-hole-at",
            "later",
            'expected a duration like "100ms", got "later"',
        ),
        ("reset_at", "--reset-at", "soon", 'expected a duration like "100ms", got "soon"'),
        (
            "bandwidth",
            "--bandwidth",
            "fast",
            'expected a rate like "100kB", "1MiB" or "8Mbit", got "fast"',
        ),
    ],
)
def test_a_bad_setting_gets_the_same_error_from_both(
    key: str, option: str, value: str, detail: str
) -> None:
    profile = error_of(TARGET + HOLD + f'[impairment]\n{key} = "{value}"\n')
    assert profile == f"p.toml: impairment.{key}: {detail}"
    assert f"Invalid value for {option}: {detail}" in proxy_error(option, value)


@pytest.mark.parametrize(
    ("scope", "detail"),
    [
        ("fraction=1.5", "fraction: expected a fraction between 0 and 1, got 1.5"),
        ("from=-5s", 'from: expected a duration of zero or more, got "-5s"'),
        ("until=soon", 'until: expected a duration like "30s", "5m" or "250ms", got "soon"'),
        ("direction=left", 'direction: expected one of up, down, both, got "left"'),
        ("from=10s,until=5s", 'until: expected a time after from (10s), got "5s"'),
        ("speed=3", "speed: unknown field"),
    ],
)
def test_a_bad_scope_gets_the_same_error_from_both(scope: str, detail: str) -> None:
    table = "\n".join(f"{k} = {v if k == 'fraction' else repr(v)}" for k, v in _items(scope))
    profile = error_of(TARGET + HOLD + f'[impairment.latency]\ndelay = "1s"\n{table}\n')
    assert profile.startswith(f"p.toml: impairment.latency.{detail}")
    cli_text = proxy_error("--latency", "1s", "--scope", f"latency:{scope}")
    assert f"--scope latency.{detail}" in cli_text


def _items(scope: str) -> list[tuple[str, str]]:
    return [(k, v) for k, _, v in (item.partition("=") for item in scope.split(","))]


def test_the_same_settings_make_the_same_proxy_config() -> None:
    text = (
        TARGET
        + HOLD
        + """
[impairment]
latency = "100ms"
jitter = "10ms"
jitter_dist = "normal"
direction = "down"
fraction = 0.5
bandwidth = "1MiB"
reset_at = "1m"
drop_heartbeat = 2
seed = 7
[impairment.nat_idle]
timeout = "30s"
fraction = 0.25
from = "10s"
"""
    )
    imp = parse_profile(text, "p.toml", {}).impairment
    assert imp is not None
    options = {
        "latency": "100ms",
        "jitter": "10ms",
        "jitter_dist": "normal",
        "direction": "down",
        "fraction": 0.5,
        "bandwidth": "1MiB",
        "nat_idle": "30s",
        "black_hole_at": None,
        "reset_at": "1m",
        "drop_heartbeat": 2,
        "drop_heartbeat_p": 0.0,
        "seed": 7,
    }
    assert _impairment(options, ("nat_idle:fraction=0.25,from=10s",)) == imp.proxy_config()
    assert parse_scope("nat_idle:fraction=0.25,from=10s")[1] == imp.windows()["nat_idle"]


def test_run_json_shows_the_impairment_flat_as_before() -> None:
    text = (
        TARGET
        + HOLD
        + """
[impairment]
fraction = 0.5
nat_idle = "30s"
[impairment.latency]
delay = "100ms"
dist = "normal"
direction = "down"
from = "10s"
[impairment.black_hole]
at = "5m"
fraction = 0.1
"""
    )
    shown = parse_profile(text, "p.toml", {}).redacted()["impairment"]
    expected = {
        "latency": 0.1,
        "jitter": None,
        "jitter_dist": "normal",
        "direction": "both",
        "fraction": 0.5,
        "bandwidth": None,
        "nat_idle": 30.0,
        "black_hole_at": 300.0,
        "reset_at": None,
        "drop_heartbeat": None,
        "drop_heartbeat_p": 0.0,
        "seed": 1,
        "latency_fraction": None,
        "latency_from": 10.0,
        "latency_until": None,
        "latency_direction": "down",
        "bandwidth_fraction": None,
        "bandwidth_from": None,
        "bandwidth_until": None,
        "bandwidth_direction": None,
        "nat_idle_fraction": None,
        "nat_idle_from": None,
        "nat_idle_until": None,
        "drop_heartbeat_fraction": None,
        "drop_heartbeat_from": None,
        "drop_heartbeat_until": None,
        "drop_heartbeat_direction": None,
        "black_hole_fraction": 0.1,
        "reset_fraction": None,
    }
    assert shown == expected
    assert list(shown) == list(expected)  # run.json keeps its key order
