"""The profile schema: durations, loading, defaults, and error messages that
name the file and the field."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from soak.config.heartbeat import HeartbeatConfig, ReconnectConfig
from soak.config.load import load_profile, parse_profile
from soak.config.openclaw import OPENCLAW_SERVER_HEARTBEAT
from soak.config.overrides import override
from soak.config.profile import Profile, RunConfig
from soak.config.stages import Churn, ClientsConfig, Hold, Ramp, Spike, Storm
from soak.config.tables.thresholds import parse_threshold_option
from soak.config.target import PROTOCOLS, Secret, TargetConfig
from soak.config.thresholds import Threshold, percentile_of
from soak.config.units import format_duration, parse_duration
from soak.errors import ProfileError

PROFILES = Path(__file__).resolve().parent.parent / "profiles"

MINIMAL = """\
[target]
url = "ws://127.0.0.1:9/ws"

[[clients.stages]]
kind = "ramp"
to = 2
duration = "1s"
"""


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    """Load ``text`` from a file; return the message, which must start with
    the file's name."""
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path, environ={} if environ is None else environ)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message


# -- durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("2d", 172800.0),
        ("500us", 0.0005),
        ("1.5s", 1.5),
        ("0s", 0.0),
        (" 10s ", 10.0),
        ("1h0m5s", 3605.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["30", "-1s", "", "   ", "5x", "s", "1.s", ".5s", "30 s", "1h 30m", "1e3s", "30S", "1h-30m"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the input
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90.0, "1m30s"), (0.25, "250ms"), (0.0, "0s"), (3600.0, "1h"), (5400.0, "1h30m"), (5.0, "5s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("name", "percentile"),
    [("p50", 50.0), ("p99", 99.0), ("p999", 99.9), ("p9999", 99.99), ("p100", 100.0), ("p9", 9.0)],
)
def test_percentile_of(name: str, percentile: float) -> None:
    assert percentile_of(name) == percentile


def test_percentile_of_max() -> None:
    assert percentile_of("max") is None


# -- a full profile -------------------------------------------------------------------------

FULL = """\
[run]
label = "full-test"
duration = "1h30m"
report_interval = "5s"
seed = 7
results_dir = "out"

[target]
url = "wss://gw.example.com:8443/socket"
protocol = "ws-ping"
headers = { "X-Client" = "soak", "Cookie" = "session=abc" }
token_env = "GW_TOKEN"
token_header = "X-Token"
token_prefix = ""
connect_timeout = "3s"

[clients]
max_connecting = 50
client_id_prefix = "lt"

[[clients.stages]]
kind = "ramp"
to = 100
duration = "2m"

[[clients.stages]]
kind = "hold"
duration = "10m"

[[clients.stages]]
kind = "spike"
add = 50
duration = "30s"

[[clients.stages]]
kind = "churn"
rate = 2.5
duration = "1m"

[[clients.stages]]
kind = "ramp"
to = 0
duration = "0s"

[heartbeat]
interval = "15s"
timeout = "5s"
max_missed = 2
phase = "aligned"

[reconnect]
enabled = false
initial_delay = "500ms"
base = 1.5
max_delay = "30s"
max_attempts = 0
jitter = "decorrelated"

[thresholds]
rtt_p99 = "250ms"
rtt_p999 = "1s"
connect_max = "2s"
heartbeat_success = "99.9%"
false_timeouts = 0
zombies = 3
"""


def test_full_profile_loads_into_the_expected_dataclasses(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    p = load_profile(path, environ={"GW_TOKEN": "tok-123"})
    assert p.path == str(path)
    assert p.run == RunConfig(
        label="full-test", duration=5400.0, report_interval=5.0, seed=7, results_dir="out"
    )
    assert p.target == TargetConfig(
        url="wss://gw.example.com:8443/socket",
        protocol="ws-ping",
        headers=(("X-Client", "soak"), ("Cookie", "session=abc")),
        token_env="GW_TOKEN",
        token_header="X-Token",
        token_prefix="",
        connect_timeout=3.0,
        token=Secret("tok-123"),
    )
    assert p.target.secure
    assert p.clients == ClientsConfig(
        stages=(
            Ramp(120.0, to=100),
            Hold(600.0),
            Spike(30.0, add=50),
            Churn(60.0, rate=2.5),
            Ramp(0.0, to=0),
        ),
        max_connecting=50,
        client_id_prefix="lt",
    )
    assert p.heartbeat == HeartbeatConfig(interval=15.0, timeout=5.0, max_missed=2, phase="aligned")
    assert p.reconnect == ReconnectConfig(
        enabled=False,
        initial_delay=0.5,
        base=1.5,
        max_delay=30.0,
        max_attempts=0,
        jitter="decorrelated",
    )
    assert p.thresholds == (
        Threshold("rtt_p99", 0.25, "250ms"),
        Threshold("rtt_p999", 1.0, "1s"),
        Threshold("connect_max", 2.0, "2s"),
        Threshold("heartbeat_success", 0.999, "99.9%", ">="),
        Threshold("false_timeouts", 0.0, "0"),
        Threshold("zombies", 3.0, "3"),
    )
    assert [t.op for t in p.thresholds] == ["<=", "<=", "<=", ">=", "<=", "<="]
    assert p.duration == 5400.0  # run.duration wins over the stages
    assert p.peak_clients == 150


def test_minimal_profile_gets_the_defaults() -> None:
    p = parse_profile(MINIMAL, "m.toml", {})
    assert p.run == RunConfig(
        label="run", duration=None, report_interval=10.0, seed=1, results_dir="results"
    )
    assert p.target == TargetConfig(url="ws://127.0.0.1:9/ws")
    assert p.target.protocol == "json"
    assert p.target.token is None
    assert not p.target.secure
    assert p.clients == ClientsConfig(stages=(Ramp(1.0, to=2),))
    assert p.clients.max_connecting == 256
    assert p.heartbeat == HeartbeatConfig(interval=30.0, timeout=10.0, max_missed=3, phase="spread")
    assert p.reconnect == ReconnectConfig()
    assert p.thresholds == ()
    assert p.duration == 1.0  # the sum of the stages


def test_reconnect_defaults() -> None:
    rc = parse_profile(MINIMAL, "m.toml", {}).reconnect
    assert rc.enabled is True
    assert rc.initial_delay == 1.0
    assert rc.base == 2.0
    assert rc.max_delay == 60.0
    assert rc.max_attempts == 5
    assert rc.jitter == "full"


def test_duration_is_the_sum_of_the_stages() -> None:
    text = MINIMAL + '\n[[clients.stages]]\nkind = "hold"\nduration = "1m30s"\n'
    assert parse_profile(text, "m.toml", {}).duration == 91.0


def test_zero_time_stages_need_run_duration() -> None:
    text = MINIMAL.replace('"1s"', '"0s"')
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "m.toml", {})
    assert str(info.value) == (
        "m.toml: run.duration: is required when the stages add up to no time"
    )
    p = parse_profile('[run]\nduration = "5s"\n' + text, "m.toml", {})
    assert p.duration == 5.0


# -- the shipped profiles -------------------------------------------------------------------


SHIPPED = sorted(PROFILES.glob("*.toml"))


def test_profiles_are_shipped() -> None:
    assert {p.name for p in SHIPPED} >= {"demo.toml", "smoke.toml", "incident.toml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_profile_loads(path: Path) -> None:
    # a profile that reads its token from the environment gets one
    token_env = tomllib.loads(path.read_text(encoding="utf-8"))["target"].get("token_env")
    environ = {token_env: "test-token"} if isinstance(token_env, str) else {}
    p = load_profile(path, environ=environ)
    assert p.path == str(path)
    assert p.clients.stages
    assert p.duration > 0
    assert p.peak_clients > 0
    assert p.target.url.startswith(("ws://", "wss://"))
    assert p.run.label == path.stem


def test_shipped_profiles_shape() -> None:
    demo = load_profile(PROFILES / "demo.toml", environ={})
    assert demo.duration == 60.0
    assert demo.peak_clients == 1000
    incident = load_profile(PROFILES / "incident.toml", environ={})
    assert incident.duration == 1800.0
    assert incident.heartbeat == HeartbeatConfig(30.0, 10.0, 3, "spread")
    assert incident.reconnect.jitter == "none"
    token = {"OPENCLAW_GATEWAY_TOKEN": "t"}
    restart = load_profile(PROFILES / "openclaw-restart.toml", environ=token)
    assert restart.duration == 120.0
    assert restart.peak_clients == 300
    assert restart.target.protocol == "openclaw"
    assert restart.clients.max_connecting <= 32  # the gateway's pre-auth budget
    (storm,) = [s for s in restart.clients.stages if isinstance(s, Storm)]
    assert storm.kind == "storm"
    assert storm.command is not None
    assert "-USR2" in storm.command
    assert restart.target.server_heartbeat == OPENCLAW_SERVER_HEARTBEAT  # the protocol's


# -- error messages --------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ProfileError) as info:
        load_profile(path, environ={})
    assert str(info.value) == f"{path}: profile not found"


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    text = MINIMAL + "\n[heartbeat\ninterval = 5\n"
    message = load_error(tmp_path, text)
    assert "invalid TOML" in message
    assert "line 9" in message


def test_invalid_toml_value_names_the_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("to = 2", 'to = "2')
    message = load_error(tmp_path, text)
    assert "invalid TOML" in message
    assert "line 6" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b'[run]\nlabel = "\xff"\n')
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(path, environ={})


@pytest.mark.parametrize(
    ("section", "key", "suggestion"),
    [
        ("heartbeat", "intervall", "interval"),
        ("heartbeat", "max_mised", "max_missed"),
        ("reconnect", "max_atempts", "max_attempts"),
        ("run", "lable", "label"),
        ("target", "protocl", "protocol"),
        ("clients", "max_conecting", "max_connecting"),
    ],
)
def test_unknown_field_suggests_the_nearest(
    tmp_path: Path, section: str, key: str, suggestion: str
) -> None:
    text = f"[{section}]\n{key} = 1\n" + MINIMAL
    if section == "target":
        text = MINIMAL.replace("[target]\n", f"[target]\n{key} = 1\n")
    elif section == "clients":
        text = MINIMAL + f"\n[clients]\n{key} = 1\n"
    message = load_error(tmp_path, text)
    assert f": {section}.{key}: unknown field (did you mean '{suggestion}'?)" in message


def test_unknown_field_message_in_full(tmp_path: Path) -> None:
    text = MINIMAL + '\n[heartbeat]\nintervall = "5s"\n'
    message = load_error(tmp_path, text)
    assert message.endswith(
        "heartbeat.intervall: unknown field (did you mean 'interval'?); "
        "valid fields: interval, timeout, max_missed, phase"
    )


def test_unknown_top_level_section(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + '\n[heartbeats]\ninterval = "5s"\n')
    assert ": heartbeats: unknown field (did you mean 'heartbeat'?)" in message


def test_unknown_field_in_a_stage(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace("to = 2", "to = 2\nrate = 3"))
    assert ": clients.stages[0].rate: unknown field" in message
    assert "valid fields: kind, duration, to" in message


def test_unknown_field_without_a_near_name(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "\n[heartbeat]\nzzz = 1\n")
    assert ": heartbeat.zzz: unknown field; valid fields: " in message
    assert "did you mean" not in message


@pytest.mark.parametrize(
    ("snippet", "where", "expected"),
    [
        ('[heartbeat]\nmax_missed = "3"', "heartbeat.max_missed", 'got "3"'),
        ("[heartbeat]\ninterval = 30", "heartbeat.interval", "got 30"),
        ("[heartbeat]\ninterval = true", "heartbeat.interval", "got true"),
        ("[heartbeat]\ntimeout = 1.5", "heartbeat.timeout", "got 1.5"),
        ("[run]\nseed = 1.5", "run.seed", "expected a whole number >= 0, got 1.5"),
        ("[run]\nseed = true", "run.seed", "got true"),
        ("[run]\nlabel = 5", "run.label", "expected a string, got 5"),
        ('[reconnect]\nenabled = "yes"', "reconnect.enabled", 'expected true or false, got "yes"'),
        ('[reconnect]\nbase = "2"', "reconnect.base", 'expected a number >= 1, got "2"'),
        ("[reconnect]\nbase = 0.5", "reconnect.base", "expected a number >= 1, got 0.5"),
        ("[reconnect]\nbase = nan", "reconnect.base", "got nan"),
        ('[reconnect]\njitter = "ful"', "reconnect.jitter", "(did you mean 'full'?)"),
        ('[heartbeat]\nphase = "spred"', "heartbeat.phase", "(did you mean 'spread'?)"),
        ("[heartbeat]\nmax_missed = 0", "heartbeat.max_missed", "expected a whole number >= 1"),
        ("heartbeat = 5", "heartbeat", "expected a table, got 5"),
        ('run = "x"', "run", 'expected a table, got "x"'),
    ],
)
def test_wrong_type(tmp_path: Path, snippet: str, where: str, expected: str) -> None:
    message = load_error(tmp_path, snippet + "\n" + MINIMAL)
    assert f": {where}: " in message
    assert expected in message


def test_wrong_type_message_in_full(tmp_path: Path) -> None:
    path = write(tmp_path, "[heartbeat]\ninterval = -1\n" + MINIMAL)
    with pytest.raises(ProfileError) as info:
        load_profile(path, environ={})
    assert str(info.value) == (
        f'{path}: heartbeat.interval: expected a duration like "30s", "5m" or "250ms", got -1'
    )


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ('[heartbeat]\ninterval = "-1s"', "heartbeat.interval"),
        ('[heartbeat]\ntimeout = "-5m"', "heartbeat.timeout"),
        ('[run]\nduration = "-10s"', "run.duration"),
        ('[reconnect]\ninitial_delay = "-1s"', "reconnect.initial_delay"),
    ],
)
def test_negative_duration(tmp_path: Path, snippet: str, where: str) -> None:
    message = load_error(tmp_path, snippet + "\n" + MINIMAL)
    assert f": {where}: expected a duration" in message
    assert '"-' in message  # the value as written


def test_negative_stage_duration(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace('"1s"', '"-1s"'))
    assert ": clients.stages[0].duration: expected a duration of zero or more" in message
    assert 'got "-1s"' in message


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ('[heartbeat]\ninterval = "0s"', "heartbeat.interval"),
        ('[run]\nreport_interval = "0ms"', "run.report_interval"),
        ('[target]\nconnect_timeout = "0s"', "target.connect_timeout"),
    ],
)
def test_zero_duration_where_positive_is_needed(tmp_path: Path, snippet: str, where: str) -> None:
    if snippet.startswith("[target]"):
        text = MINIMAL.replace("[target]\n", snippet + "\n")
    else:
        text = snippet + "\n" + MINIMAL
    message = load_error(tmp_path, text)
    assert f": {where}: expected a duration greater than zero, got " in message


def test_hold_stage_of_zero_seconds(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + '\n[[clients.stages]]\nkind = "hold"\nduration = "0s"')
    expected = ': clients.stages[1].duration: expected a duration greater than zero, got "0s"'
    assert expected in message


def test_max_delay_below_initial_delay(tmp_path: Path) -> None:
    text = '[reconnect]\ninitial_delay = "10s"\nmax_delay = "1s"\n' + MINIMAL
    message = load_error(tmp_path, text)
    assert message.endswith(
        ': reconnect.max_delay: expected a duration >= initial_delay (10s), got "1s"'
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/ws",
        "https://example.com/",
        "127.0.0.1:9",
        "ws://",
        "ws:///path",
        "ws://127.0.0.1:0/ws",
        "ws://127.0.0.1:99999/ws",
        "ws://127.0.0.1:abc/ws",
    ],
)
def test_url_must_be_ws_or_wss_with_a_host(tmp_path: Path, url: str) -> None:
    message = load_error(tmp_path, MINIMAL.replace("ws://127.0.0.1:9/ws", url))
    assert ": target.url: expected a " in message
    assert f'got "{url}"' in message


def test_url_port_out_of_range_says_so(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace(":9/", ":99999/"))
    assert "out of range" in message


def test_url_of_the_wrong_type(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace('"ws://127.0.0.1:9/ws"', "9"))
    assert message.endswith(": target.url: expected a string, got 9")


def test_missing_target(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[[clients.stages]]\nkind = "hold"\nduration = "1s"\n')
    assert message.endswith(": target: is required")


def test_missing_url(tmp_path: Path) -> None:
    message = load_error(
        tmp_path, MINIMAL.replace('url = "ws://127.0.0.1:9/ws"', 'protocol = "json"')
    )
    assert message.endswith(": target.url: is required")


def test_bad_protocol(tmp_path: Path) -> None:
    text = MINIMAL.replace("[target]\n", '[target]\nprotocol = "jsn"\n')
    message = load_error(tmp_path, text)
    assert (
        f": target.protocol: expected one of {', '.join(PROTOCOLS)} (did you mean 'json'?), "
        'got "jsn"' in (message)
    )


# -- the token -----------------------------------------------------------------------------

TOKEN_PROFILE = MINIMAL.replace(
    "[target]\n",
    '[target]\ntoken_env = "SOAK_TEST_TOKEN"\nheaders = { Authorization = "Basic c2VjcmV0" }\n',
)
TOKEN = "tk-5ecret-value-91"


def test_missing_token_variable(tmp_path: Path) -> None:
    message = load_error(tmp_path, TOKEN_PROFILE, environ={"OTHER": "x"})
    assert message.endswith(
        ": target.token_env: environment variable SOAK_TEST_TOKEN is not set "
        "(it should hold the token)"
    )


def test_empty_token_variable_counts_as_missing(tmp_path: Path) -> None:
    message = load_error(tmp_path, TOKEN_PROFILE, environ={"SOAK_TEST_TOKEN": ""})
    assert ": target.token_env: environment variable SOAK_TEST_TOKEN is not set" in message


def test_token_is_read_from_the_given_environment_only(tmp_path: Path) -> None:
    path = write(tmp_path, TOKEN_PROFILE)
    p = load_profile(path, environ={"SOAK_TEST_TOKEN": TOKEN})
    assert p.target.token == Secret(TOKEN)


def test_token_never_appears_in_repr_or_redacted(tmp_path: Path) -> None:
    path = write(tmp_path, TOKEN_PROFILE)
    p = load_profile(path, environ={"SOAK_TEST_TOKEN": TOKEN})
    assert TOKEN not in repr(p)
    assert TOKEN not in str(p)
    assert TOKEN not in repr(p.target)
    assert TOKEN not in repr(p.target.token)
    redacted = p.redacted()
    dumped = json.dumps(redacted)
    assert TOKEN not in dumped
    assert "token" not in redacted["target"]
    assert redacted["target"]["token_env"] == "SOAK_TEST_TOKEN"
    # a sensitive header written in the file is redacted too
    assert redacted["target"]["headers"] == {"Authorization": "<redacted>"}
    assert "c2VjcmV0" not in dumped


def test_redacted_keeps_harmless_headers() -> None:
    text = MINIMAL.replace(
        "[target]\n", '[target]\nheaders = { "X-Client" = "soak", "X-Api-Key" = "k1" }\n'
    )
    d = parse_profile(text, "m.toml", {}).redacted()
    assert d["target"]["headers"] == {"X-Client": "soak", "X-Api-Key": "<redacted>"}
    assert d["run"]["label"] == "run"
    assert list(d["clients"]["stages"]) == [
        {
            "kind": "ramp",
            "duration": 1.0,
            "to": 2,
            "add": 0,
            "rate": 0.0,
            "drop": 0.0,
            "how": "clean",
            "command": None,
            "command_timeout": 30.0,
            "restart_url": None,
        }
    ]
    json.dumps(d)  # serialisable for run.json


# -- thresholds ----------------------------------------------------------------------------


def test_bad_threshold_name_suggests_the_nearest(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + '\n[thresholds]\nrtt_p99x = "250ms"\n')
    expected = ": thresholds.rtt_p99x: unknown field (did you mean 'rtt_p99'?); valid thresholds: "
    assert expected in message


def test_bad_threshold_name_without_a_near_one(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + '\n[thresholds]\nlatency = "250ms"\n')
    assert ": thresholds.latency: unknown field; valid thresholds: <histogram>_p<NN>" in message
    assert "for rtt, rtt_service, connect, reconnect and lag" in message


@pytest.mark.parametrize("name", ["rtt_p0", "lag_p00"])
def test_percentile_out_of_range(tmp_path: Path, name: str) -> None:
    message = load_error(tmp_path, MINIMAL + f'\n[thresholds]\n{name} = "250ms"\n')
    assert (
        f': thresholds.{name}: expected a percentile between p1 and p100, got "{name}"' in message
    )


def test_latency_thresholds_by_pattern() -> None:
    text = MINIMAL + '\n[thresholds]\nrtt_p95 = "100ms"\nreconnect_p50 = "2s"\nlag_max = "5ms"\n'
    got = parse_profile(text, "m.toml", {}).thresholds
    assert got == (
        Threshold("rtt_p95", 0.1, "100ms"),
        Threshold("reconnect_p50", 2.0, "2s"),
        Threshold("lag_max", 0.005, "5ms"),
    )


@pytest.mark.parametrize("value", ['"150%"', '"-1%"', "99.9", '"99.9"', '"abc%"', '"%"', '"nan%"'])
def test_bad_percentage(tmp_path: Path, value: str) -> None:
    message = load_error(tmp_path, MINIMAL + f"\n[thresholds]\nheartbeat_success = {value}\n")
    assert ': thresholds.heartbeat_success: expected a percentage like "99.9%", got ' in message


@pytest.mark.parametrize(
    ("text", "fraction"),
    [
        ('"99.9%"', 0.999),  # exactly 999 / 1000, not 99.9 / 100 (0.9990000000000001)
        ('"99.99%"', 0.9999),
        ('"100%"', 1.0),
        ('"0%"', 0.0),
        ('"50%"', 0.5),
    ],
)
def test_percentage(text: str, fraction: float) -> None:
    th = parse_profile(MINIMAL + f"\n[thresholds]\nheartbeat_success = {text}\n", "m", {})
    assert th.thresholds == (Threshold("heartbeat_success", fraction, text.strip('"'), ">="),)


def test_bad_count_threshold(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "\n[thresholds]\nzombies = -1\n")
    assert message.endswith(": thresholds.zombies: expected a whole number >= 0, got -1")


def test_bad_latency_threshold(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL + "\n[thresholds]\nrtt_p99 = 250\n")
    assert message.endswith(
        ': thresholds.rtt_p99: expected a duration like "30s", "5m" or "250ms", got 250'
    )


# -- stages ------------------------------------------------------------------------------


def test_stage_missing_to(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace("to = 2\n", ""))
    assert message.endswith(": clients.stages[0].to: is required")


def test_second_stage_missing_field(tmp_path: Path) -> None:
    message = load_error(
        tmp_path, MINIMAL + '\n[[clients.stages]]\nkind = "spike"\nduration = "1s"\n'
    )
    assert message.endswith(": clients.stages[1].add: is required")


def test_stage_missing_kind(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace('kind = "ramp"\n', ""))
    assert message.endswith(": clients.stages[0].kind: is required")


def test_stage_bad_kind(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace('"ramp"', '"rmp"'))
    assert message.endswith(
        ": clients.stages[0].kind: expected one of ramp, hold, spike, churn, storm "
        "(did you mean 'ramp'?), got \"rmp\""
    )


def test_churn_rate_must_be_positive(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[clients.stages]]\nkind = "churn"\nrate = 0\nduration = "1s"\n'
    message = load_error(tmp_path, text)
    assert message.endswith(
        ": clients.stages[1].rate: expected clients per second greater than zero, got 0.0"
    )


def test_negative_ramp_target(tmp_path: Path) -> None:
    message = load_error(tmp_path, MINIMAL.replace("to = 2", "to = -2"))
    assert message.endswith(": clients.stages[0].to: expected a whole number >= 0, got -2")


def test_empty_stages(tmp_path: Path) -> None:
    text = '[target]\nurl = "ws://127.0.0.1:9/ws"\n[clients]\nstages = []\n'
    message = load_error(tmp_path, text)
    assert message.endswith(
        ": clients.stages: expected a list of [[clients.stages]] tables, got an empty list"
    )


def test_stages_not_a_list(tmp_path: Path) -> None:
    text = '[target]\nurl = "ws://127.0.0.1:9/ws"\n[clients]\nstages = "ramp"\n'
    message = load_error(tmp_path, text)
    assert ': clients.stages: expected a list of [[clients.stages]] tables, got "ramp"' in message


def test_missing_stages(tmp_path: Path) -> None:
    text = '[target]\nurl = "ws://127.0.0.1:9/ws"\n[clients]\nmax_connecting = 5\n'
    message = load_error(tmp_path, text)
    assert message.endswith(": clients.stages: is required")


def test_missing_clients(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[target]\nurl = "ws://127.0.0.1:9/ws"\n')
    assert message.endswith(": clients: is required")


def test_stage_that_is_not_a_table(tmp_path: Path) -> None:
    text = '[target]\nurl = "ws://127.0.0.1:9/ws"\n[clients]\nstages = [1]\n'
    message = load_error(tmp_path, text)
    assert message.endswith(": clients.stages[0]: expected a table, got 1")


def test_bad_label(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[run]\nlabel = "a b/c"\n' + MINIMAL)
    assert message.endswith(': run.label: expected 1-80 letters, digits or . _ + -, got "a b/c"')


# -- command-line overrides -------------------------------------------------------------------


def profile() -> Profile:
    return parse_profile(MINIMAL, "m.toml", {})


def test_override_applies_valid_values() -> None:
    p = override(
        profile(),
        url="wss://other.example/ws",
        label="x1",
        duration="2m",
        results_dir="/tmp/r",
    )
    assert p.target.url == "wss://other.example/ws"
    assert p.run.label == "x1"
    assert p.run.duration == 120.0
    assert p.duration == 120.0
    assert p.run.results_dir == "/tmp/r"


def test_override_nothing_is_the_same_profile() -> None:
    assert override(profile()) == profile()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"duration": "-5s"},
            '--duration: expected a duration of zero or more, got "-5s"',
        ),
        ({"duration": "0s"}, "--duration: expected a duration greater than zero"),
        ({"duration": "10"}, '--duration: expected a duration like "30s"'),
        ({"url": "http://x/"}, "--url: expected a ws:// or wss:// URL with a host"),
        ({"label": "a b"}, "--label: expected 1-80 letters"),
    ],
)
def test_override_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError) as info:
        override(profile(), **kwargs)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "url", ["https://h/api/stats", "http:///api/stats", "http://h:99999/", "ws://h/"]
)
def test_stats_url_must_be_plain_http(tmp_path: Path, url: str) -> None:
    message = load_error(tmp_path, f'[target.stats]\nurl = "{url}"\n' + MINIMAL)
    assert (
        f': target.stats.url: expected an http:// URL with a host and a valid port, got "{url}"'
        in message
    )


def test_server_heartbeat_signature_must_parse(tmp_path: Path) -> None:
    message = load_error(
        tmp_path, '[target.server_heartbeat]\nreason_pattern = "heart(beat"\n' + MINIMAL
    )
    assert ": target.server_heartbeat.reason_pattern: expected a regular expression" in message
    message = load_error(tmp_path, "[target.server_heartbeat]\nclose_codes = [99]\n" + MINIMAL)
    assert ": target.server_heartbeat.close_codes: expected a list of close codes" in message


@pytest.mark.parametrize(
    ("text", "name", "op", "limit"),
    [
        ("rtt_p99<250ms", "rtt_p99", "<", 0.25),
        ("false_timeouts==0", "false_timeouts", "==", 0.0),
        ("heartbeat_success >= 99.9%", "heartbeat_success", ">=", 0.999),
        ("connect_max<=2s", "connect_max", "<=", 2.0),
        ("zombies>3", "zombies", ">", 3.0),
    ],
)
def test_threshold_option(text: str, name: str, op: str, limit: float) -> None:
    th = parse_threshold_option(text)
    assert (th.name, th.op, th.limit) == (name, op, limit)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rtt_p99", '--threshold: expected NAME OP VALUE like "rtt_p99<250ms"'),
        ("rtt_p99<fast", '--threshold rtt_p99: expected a duration like "30s"'),
        ("latency<1s", "--threshold latency: unknown field"),
        ("zombies==few", "--threshold zombies: expected a whole number >= 0"),
    ],
)
def test_threshold_option_errors(text: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_threshold_option(text)
    assert str(info.value).startswith(message)


def test_threshold_option_replaces_the_profiles_own() -> None:
    p = profile()
    p = override(p, thresholds=("rtt_p99<1s",))
    p = override(p, thresholds=("rtt_p99<2s", "zombies==0"))
    assert [(t.name, t.op, t.limit) for t in p.thresholds] == [
        ("rtt_p99", "<", 2.0),
        ("zombies", "==", 0.0),
    ]


def test_threshold_ops_hold() -> None:
    assert parse_threshold_option("rtt_p99<1s").holds(0.5)
    assert not parse_threshold_option("rtt_p99<1s").holds(1.0)
    assert parse_threshold_option("rtt_p99<=1s").holds(1.0)
    assert parse_threshold_option("zombies==0").holds(0)
    assert not parse_threshold_option("zombies==0").holds(1)


def storm_profile(stage: str) -> str:
    return MINIMAL + '\n[[clients.stages]]\nkind = "storm"\nduration = "10s"\n' + stage


def test_storm_stage_loads() -> None:
    text = storm_profile(
        'drop = "25%"\nhow = "abrupt"\ncommand = "echo restarting"\n'
        'command_timeout = "5s"\nrestart_url = "http://127.0.0.1:8765/admin/restart?outage=5"\n'
    )
    stage = parse_profile(text, "s.toml", {}).clients.stages[-1]
    assert isinstance(stage, Storm)
    assert (stage.kind, stage.drop, stage.how, stage.command_timeout) == (
        "storm",
        0.25,
        "abrupt",
        5.0,
    )
    assert stage.command == "echo restarting"
    assert stage.restart_url == "http://127.0.0.1:8765/admin/restart?outage=5"


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("", "clients.stages[1].kind: a storm stage needs at least one of drop"),
        (
            'command = "no-such-program-xyz --now"\n',
            "clients.stages[1].command: executable 'no-such-program-xyz' not found on PATH",
        ),
        ('drop = "50%"\nhow = "violent"\n', "clients.stages[1].how: expected one of clean, abrupt"),
        ('drop = "150%"\n', 'clients.stages[1].drop: expected a percentage like "99.9%"'),
        ('restart_url = "ftp://x/"\n', "clients.stages[1].restart_url: expected an http:// URL"),
        (
            'drop = "10%"\ncommand_timeout = "-1s"\n',
            "clients.stages[1].command_timeout: expected a duration of zero or more",
        ),
    ],
)
def test_storm_stage_errors(tmp_path: Path, stage: str, message: str) -> None:
    assert message in load_error(tmp_path, storm_profile(stage))


def test_credentials_in_urls_are_redacted() -> None:
    text = MINIMAL.replace('url = "ws://127.0.0.1:9/ws"', 'url = "ws://bob:hunter2@127.0.0.1:9/ws"')
    text = '[target.stats]\nurl = "http://ops:pw9@127.0.0.1:9/api/stats"\n' + text
    d = parse_profile(text, "m.toml", {}).redacted()
    assert d["target"]["url"] == "ws://<redacted>@127.0.0.1:9/ws"
    assert d["target"]["stats"]["url"] == "http://<redacted>@127.0.0.1:9/api/stats"
    assert "hunter2" not in json.dumps(d)
    assert "pw9" not in json.dumps(d)
