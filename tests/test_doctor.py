"""soak doctor: the pure consistency checks and the config parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.config.load import load_profile
from soak.config.profile import Profile
from soak.doctor.consistency import check_consistency
from soak.doctor.findings import ERROR, INFO, WARNING, Finding, exit_code
from soak.doctor.gateway_config import (
    GatewayConfigError,
    HeartbeatRule,
    load_gateway_config,
    parse_gateway_config,
)
from soak.doctor.proxies import load_proxy_config, parse_proxy_config
from soak.doctor.timeouts import HAPROXY, NGINX, ProxyConfigError, parse_time
from tests.support.runs import make_profile

FIXTURES = Path(__file__).parent / "fixtures" / "doctor"
INCIDENT_PROFILE = Path(__file__).parent.parent / "profiles" / "incident.toml"


def fx(name: str) -> str:
    return str(FIXTURES / name)


def codes(findings: list[Finding]) -> list[str]:
    return sorted(f.code for f in findings)


def incident_profile() -> Profile:
    return load_profile(INCIDENT_PROFILE)


def client_profile(interval: str, server: str = "") -> Profile:
    return make_profile(
        f'[clients]\n[[clients.stages]]\nkind = "ramp"\nto = 10\nduration = "1s"\n'
        f'[heartbeat]\ninterval = "{interval}"\n',
        target_extra=server,
    )


# -- the incident's own configs: exactly these findings ------------------------------


def test_incident_gateway_and_nginx() -> None:
    found = check_consistency(
        gateway=load_gateway_config(fx("gateway-2026.04.yaml")),
        proxy=load_proxy_config(fx("nginx-incident.conf")),
        profile=incident_profile(),
    )
    assert codes(found) == ["channel-timeout-before-max-missed", "proxy-timeout-long"]
    by = {f.code: f for f in found}
    assert by["proxy-timeout-long"].severity == WARNING
    assert "86400 s" in by["proxy-timeout-long"].message
    assert "120 s" in by["proxy-timeout-long"].message
    assert "180s" in by["proxy-timeout-long"].fix
    chan = by["channel-timeout-before-max-missed"]
    assert chan.severity == ERROR
    assert "channels.wecom.heartbeat" in chan.message
    assert "overrides interval" in chan.message
    assert "interval 60 s, timeout = 3 x interval (180 s), maxMissed 3" in chan.fix
    assert exit_code(found) == 2


def test_fixed_block_with_colon_typos() -> None:
    found = check_consistency(
        gateway=load_gateway_config(fx("gateway-fixed.json")),
        proxy=load_proxy_config(fx("nginx-fixed-typos.conf")),
        profile=incident_profile(),
    )
    assert codes(found) == ["proxy-invalid-directive", "proxy-invalid-directive"]
    messages = " ".join(f.message for f in found)
    assert "line 8: `proxy_read_timeout: 180s;`" in messages
    assert "line 9: `proxy_send_timeout: 180s;`" in messages
    assert all("`proxy_" in f.fix and "no colon" in f.fix for f in found)


def test_timeout_before_max_missed_and_the_client() -> None:
    found = check_consistency(
        gateway=load_gateway_config(fx("gateway-tight.yaml")), profile=incident_profile()
    )
    assert codes(found) == ["client-interval-not-tolerated", "timeout-before-max-missed"]
    tight = next(f for f in found if f.code == "timeout-before-max-missed")
    assert "timeout 60 s < interval 30 s x maxMissed 3 = 90 s" in tight.message
    client = next(f for f in found if f.code == "client-interval-not-tolerated")
    assert "at most 20 s" in client.fix


def test_gateway_alone_without_proxy_or_profile() -> None:
    found = check_consistency(gateway=load_gateway_config(fx("gateway-2026.04.yaml")))
    assert codes(found) == ["channel-timeout-before-max-missed"]


def test_proxy_timeout_shorter_than_the_interval() -> None:
    gw = parse_gateway_config(
        '{"gateway": {"heartbeat": {"interval": 30000, "timeout": 90000, "maxMissed": 3}}}',
        "gw.json",
    )
    nginx = "location /ws { proxy_set_header Upgrade $http_upgrade; proxy_read_timeout 20s; }"
    found = check_consistency(gateway=gw, proxy=parse_proxy_config(nginx, "n.conf"))
    assert codes(found) == ["proxy-timeout-short"]
    assert found[0].severity == ERROR
    assert "20 s" in found[0].message
    assert "30 s" in found[0].message


def test_proxy_short_against_the_client_interval_from_the_profile() -> None:
    nginx = "location /ws { proxy_set_header Upgrade $http_upgrade; proxy_read_timeout 45; }"
    found = check_consistency(
        proxy=parse_proxy_config(nginx, "n.conf"), profile=client_profile("60s")
    )
    assert codes(found) == ["proxy-timeout-short"]
    assert "heartbeat.interval" in found[0].message


def test_channel_override_that_breaks_the_proxy_rule() -> None:
    gw = parse_gateway_config(
        "gateway:\n  heartbeat:\n    interval: 30000\n    timeout: 180000\n    maxMissed: 3\n"
        "channels:\n  slow:\n    heartbeat:\n      interval: 60000\n      timeout: 240000\n",
        "gw.yaml",
    )
    nginx = "location /ws { proxy_set_header Upgrade $http_upgrade; proxy_read_timeout 45s; }"
    found = check_consistency(gateway=gw, proxy=parse_proxy_config(nginx, "n.conf"))
    assert codes(found) == ["channel-proxy-timeout-short"]
    assert "channels.slow" in found[0].message


def test_client_interval_under_planned_latency() -> None:
    server = '[target.server_heartbeat]\ninterval = "30s"\ntimeout = "90s"\nmax_missed = 3\n'
    profile = client_profile("30s", server)
    assert check_consistency(profile=profile) == []
    found = check_consistency(profile=profile, latency=0.1)
    assert codes(found) == ["client-interval-not-tolerated"]
    assert "latency 0.1 s" in found[0].message
    assert "target.server_heartbeat" in found[0].message


def test_client_interval_not_shorter_than_the_timeout() -> None:
    server = '[target.server_heartbeat]\ninterval = "30s"\ntimeout = "120s"\nmax_missed = 1\n'
    found = check_consistency(profile=client_profile("2m", server))
    assert codes(found) == ["client-interval-not-tolerated"]
    assert "not shorter than the server's timeout" in found[0].message


def test_recommended_settings_are_clean() -> None:
    gw = parse_gateway_config(
        "gateway:\n  heartbeat:\n    interval: 60s\n    timeout: 180s\n    maxMissed: 3\n", "g.yaml"
    )
    nginx = "location /ws { proxy_set_header Upgrade $http_upgrade; proxy_read_timeout 180s; }"
    assert check_consistency(gateway=gw, proxy=parse_proxy_config(nginx, "n")) == []


def test_nginx_without_a_websocket_location() -> None:
    found = check_consistency(
        gateway=load_gateway_config(fx("gateway-fixed.json")),
        proxy=load_proxy_config(fx("nginx-no-websocket.conf")),
    )
    assert codes(found) == ["proxy-no-websocket-location"]
    assert "nginx-no-websocket.conf" in found[0].message


def test_nginx_default_timeout_is_said() -> None:
    gw = load_gateway_config(fx("gateway-fixed.json"))
    nginx = "location /ws { proxy_set_header Upgrade $http_upgrade; }"
    found = check_consistency(gateway=gw, proxy=parse_proxy_config(nginx, "n"))
    # 60 s default <= the 60 s interval: cut, and the default is named
    assert codes(found) == ["proxy-timeout-default", "proxy-timeout-short"]
    default = next(f for f in found if f.code == "proxy-timeout-default")
    assert default.severity == INFO
    assert "default of 60 s" in default.message
    assert "not set (nginx default 60 s)" in found[-1].message


def test_haproxy_tunnel_timeout() -> None:
    proxy = load_proxy_config(fx("haproxy.cfg"))
    assert proxy.kind == HAPROXY
    assert [loc.name for loc in proxy.locations] == ["frontend ws -> backend gateway"]
    idle = proxy.locations[0].idle
    assert idle is not None
    assert idle.directive == "timeout tunnel"
    assert idle.seconds == 3600
    found = check_consistency(gateway=load_gateway_config(fx("gateway-fixed.json")), proxy=proxy)
    assert codes(found) == ["proxy-timeout-long"]  # 3600 s > 10 x 180 s


# -- parsers ------------------------------------------------------------------------


def test_nginx_timeouts_units_and_inheritance() -> None:
    text = """
    http {
        proxy_read_timeout 2m;
        server {
            proxy_send_timeout 1h30m;
            location /ws {
                proxy_http_version 1.1;
                proxy_set_header Upgrade $http_upgrade;  # a comment; with ; and {
                proxy_connect_timeout 500ms;
            }
        }
    }
    """
    cfg = parse_proxy_config(text, "n.conf")
    assert cfg.kind == NGINX
    assert cfg.problems == ()
    (loc,) = cfg.locations
    assert loc.name == "location /ws"
    got = {t.directive: (t.seconds, t.source) for t in loc.timeouts}
    assert got == {
        "proxy_read_timeout": (120.0, "inherited"),
        "proxy_send_timeout": (5400.0, "inherited"),
        "proxy_connect_timeout": (0.5, "set"),
    }


def test_parse_time() -> None:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    assert parse_time("86400", units, 1.0) == 86400
    assert parse_time("1h", units, 1.0) == 3600
    assert parse_time("250ms", units, 1.0) == 0.25
    assert parse_time("180s;", units, 1.0) is None
    assert parse_time("3 minutes", units, 1.0) is None
    assert parse_time("", units, 1.0) is None


def test_nginx_invalid_value() -> None:
    nginx = "location /ws { proxy_set_header Upgrade x; proxy_read_timeout 3min; }"
    cfg = parse_proxy_config(nginx, "n")
    assert len(cfg.problems) == 1
    assert "3min" in cfg.problems[0].text
    found = check_consistency(proxy=cfg)
    assert codes(found) == ["proxy-invalid-directive"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("location /ws { proxy_read_timeout 1s;", "never closed"),
        ("location /ws { proxy_read_timeout 1s }", "missing its ';'"),
        ("}", "unexpected '}'"),
        ("location / { return 200 'ok; }", "unterminated"),
    ],
)
def test_nginx_unparseable(text: str, message: str) -> None:
    with pytest.raises(ProxyConfigError, match=message) as err:
        parse_proxy_config(text, "bad.conf")
    assert str(err.value).startswith("bad.conf:")


def test_missing_files_are_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ProxyConfigError, match="not found") as e1:
        load_proxy_config(tmp_path / "nope.conf")
    assert e1.value.unreadable
    with pytest.raises(GatewayConfigError, match="not found") as e2:
        load_gateway_config(tmp_path / "nope.yaml")
    assert e2.value.unreadable


def test_gateway_config_values() -> None:
    gw = load_gateway_config(fx("gateway-2026.04.yaml"))
    assert (gw.default.interval, gw.default.timeout, gw.default.max_missed) == (30.0, 120.0, 3)
    (wecom,) = gw.channels  # telegram has no heartbeat override
    assert wecom.name == "wecom"
    assert wecom.overridden == {"interval"}
    assert (wecom.rule.interval, wecom.rule.timeout, wecom.rule.max_missed) == (60.0, 120.0, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "invalid JSON"),
        ("[1, 2]", "expected a mapping at the top level"),
        ("gateway:\n    heartbeat: 1\n  other: 2\n", "invalid YAML: line 3: "),
        ('{"gateway": {}}', "gateway.heartbeat: expected a mapping"),
        ('{"gateway": {"heartbeat": {"interval": 1}}}', "missing timeout, maxMissed"),
        (
            '{"gateway": {"heartbeat": {"interval": "soon", "timeout": 1, "maxMissed": 1}}}',
            "gateway.heartbeat.interval: expected milliseconds",
        ),
        (
            '{"gateway": {"heartbeat": {"interval": 1, "timeout": 1, "maxMissed": 0}}}',
            "maxMissed: expected a whole number >= 1",
        ),
        ("gateway:\n  heartbeat:\n    - 1\n", "gateway.heartbeat: expected a mapping"),
    ],
)
def test_gateway_config_errors(text: str, message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message) as err:
        parse_gateway_config(text, "g.yaml")
    assert str(err.value).startswith("g.yaml:")
    assert not err.value.unreadable


def test_yaml_that_the_old_subset_reader_took_reads_the_same() -> None:
    gw = parse_gateway_config(
        "---\n# top\ngateway:\n  name: 'gw # one'   # a comment\n  enabled: true\n"
        "  note: ~\n  title: hello world\n  ratio: 2.5\n  log:\n  heartbeat:\n"
        "    interval: 30000   # ms\n    timeout: '2m'\n    maxMissed: 3\n",
        "g.yaml",
    )
    assert gw.default == HeartbeatRule(30.0, 120.0, 3)
    assert gw.channels == ()


def test_a_gateway_config_with_lists_is_read() -> None:
    gw = load_gateway_config(fx("gateway-with-lists.yaml"))
    assert gw.default == HeartbeatRule(30.0, 120.0, 3)
    by = {c.name: c for c in gw.channels}
    assert set(by) == {"wecom", "telegram"}
    assert by["wecom"].rule == HeartbeatRule(60.0, 120.0, 3)
    assert by["wecom"].overridden == {"interval"}
    # an alias of the default: every field given, each equal to the default
    assert by["telegram"].rule == gw.default
    assert by["telegram"].overridden == {"interval", "timeout", "maxMissed"}
    # the same findings as the incident's config without the lists
    plain = load_gateway_config(fx("gateway-2026.04.yaml"))
    assert codes(check_consistency(gateway=gw)) == codes(check_consistency(gateway=plain))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gateway:\n    heartbeat: 1\n  other: 2\n", "line 3: .*expected <block end>"),
        ("gateway: 1\ngateway: 2\n", "line 2: duplicate key 'gateway'"),
        ("gateway: {heartbeat: 1, heartbeat: 2}\n", "line 1: duplicate key 'heartbeat'"),
        ("gateway:\n\theartbeat: 1\n", r"line 2: .*found character '\\t'"),
        ("gateway: 'open\n", "line 2: .*end of stream"),
        ("gateway: 1\n---\ngateway: 2\n", "line 2: expected a single document"),
        ("gateway: !!python/object:os.system x\n", "line 1: .*constructor for the tag"),
    ],
)
def test_invalid_yaml_names_the_file_and_the_line(text: str, message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message) as err:
        parse_gateway_config(text, "g.yaml")
    assert str(err.value).startswith("g.yaml: invalid YAML: line ")
    assert not err.value.unreadable


def test_a_wrong_value_in_yaml_names_its_line() -> None:
    text = "gateway:\n  heartbeat:\n    interval: soon\n    timeout: 1\n    maxMissed: 1\n"
    with pytest.raises(GatewayConfigError) as err:
        parse_gateway_config(text, "g.yaml")
    assert str(err.value).startswith(
        "g.yaml: line 3: gateway.heartbeat.interval: expected milliseconds (30000)"
    )
    with pytest.raises(GatewayConfigError, match=r"^g\.yaml: line 4: channels\.x: expected a map"):
        parse_gateway_config(
            "gateway:\n  heartbeat: {interval: 1, timeout: 1, maxMissed: 1}\nchannels:\n  x: [1]\n",
            "g.yaml",
        )


def test_finding_validation_and_exit_codes() -> None:
    info = Finding("consistency", INFO, "x", "m")
    warn = Finding("consistency", WARNING, "y", "m")
    err = Finding("input", ERROR, "z", "m")
    assert exit_code([]) == 0
    assert exit_code([info]) == 0
    assert exit_code([info, warn]) == 1
    assert exit_code([warn, err]) == 2
    with pytest.raises(ValueError, match="unknown severity"):
        Finding("consistency", "fatal", "x", "m")
    assert err.to_json() == {
        "section": "input",
        "severity": "error",
        "code": "z",
        "message": "m",
        "fix": "",
    }


def test_any_colon_directive_is_invalid_but_not_map_keys() -> None:
    text = """
    map $http_upgrade $connection_upgrade { default upgrade; "~^a:" close; b: x; }
    server {
        listen: 80;
        location /ws { proxy_set_header Upgrade $http_upgrade; proxy_read_timeout 180s; }
    }
    """
    cfg = parse_proxy_config(text, "n.conf")
    assert [(p.line, p.text) for p in cfg.problems] == [(4, "listen: 80;")]
    idle = cfg.locations[0].idle
    assert idle is not None
    assert idle.seconds == 180


def test_text_rendering_groups_and_colours() -> None:
    from soak.doctor.render import render_json, render_text

    found = [
        Finding("environment", INFO, "loop-lag", "fine"),
        Finding("consistency", WARNING, "proxy-timeout-long", "long", "shorten it"),
        Finding("input", ERROR, "proxy-config-unreadable", "gone", "fix the path"),
    ]
    plain = render_text(found)
    assert plain.index("Inputs") < plain.index("Heartbeat consistency") < plain.index("Environment")
    assert "  ERROR   [proxy-config-unreadable] gone\n          fix: fix the path" in plain
    assert "\x1b[" not in plain
    assert "\x1b[31" in render_text(found, color=True)  # red errors on a terminal
    assert render_text([]).endswith("ok (exit 0)\n")
    assert '"exit_code": 2' in render_json(found)
