"""soak doctor reading haproxy.cfg with HAProxy's rules (soak.doctor.haproxy):
defaults sections (named, ``from``), the frontend's client side and the
backend's server side, ``timeout tunnel`` over both once upgraded, bad
lines; and the same files checked by the real haproxy where it is installed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from soak import middlebox
from soak.cli import cli
from soak.doctor.consistency import check_consistency
from soak.doctor.haproxy import parse_haproxy
from soak.doctor.proxies import load_proxy_config, parse_proxy_config
from soak.doctor.timeouts import HAPROXY, NGINX, ProxyConfigError
from tests.support.runs import make_profile

FIXTURES = Path(__file__).parent / "fixtures" / "doctor"
CHAIN = FIXTURES / "haproxy-chain.cfg"


def routes(text: str) -> dict[str, tuple[str | None, float | None, str | None]]:
    cfg = parse_haproxy(text, "h.cfg")
    return {
        loc.name: (
            loc.idle.directive if loc.idle else None,
            loc.idle.seconds if loc.idle else None,
            loc.idle.source if loc.idle else None,
        )
        for loc in cfg.locations
    }


def test_the_chain_fixture_route_by_route() -> None:
    cfg = load_proxy_config(CHAIN, HAPROXY)
    assert cfg.kind == HAPROXY
    assert cfg.problems == ()
    got = {loc.name: loc for loc in cfg.locations}
    assert list(got) == [
        "frontend public -> backend gateway",
        "frontend public -> backend web",
        "listen legacy",
    ]
    # the backend inherits timeout tunnel 7s from `defaults websockets from base`
    gw = got["frontend public -> backend gateway"].idle
    assert gw is not None
    assert (gw.directive, gw.seconds, gw.source, gw.line) == (
        "timeout tunnel",
        7.0,
        "inherited",
        17,
    )
    # no tunnel: the shorter of the frontend's client (50 s, set) and the
    # backend's server (20 s, set) cuts an idle WebSocket
    web = got["frontend public -> backend web"].idle
    assert web is not None
    assert (web.directive, web.seconds, web.source) == ("timeout server", 20.0, "set")
    # a bare number is milliseconds; resolvers' timeouts are not a proxy's
    legacy = got["listen legacy"].idle
    assert legacy is not None
    assert (legacy.directive, legacy.seconds) == ("timeout client", 15.0)
    assert all(t.directive != "timeout resolve" for loc in cfg.locations for t in loc.timeouts)


def test_an_unnamed_defaults_resets_the_one_before() -> None:
    text = """
defaults
    timeout tunnel 1h
    timeout client 30s
defaults
    timeout client 40s
    timeout server 40s
frontend f
    default_backend b
backend b
    server s 127.0.0.1:1
"""
    assert routes(text) == {"frontend f -> backend b": ("timeout client", 40.0, "inherited")}


def test_tunnel_in_a_frontend_is_ignored_and_said() -> None:
    text = """
defaults
    timeout client 30s
    timeout server 30s
frontend f
    timeout tunnel 5s
    default_backend b
backend b
    timeout client 2s
    server s 127.0.0.1:1
"""
    cfg = parse_haproxy(text, "h.cfg")
    assert [(p.line, "ignored" in p.message) for p in cfg.problems] == [(6, True), (9, True)]
    (loc,) = cfg.locations
    assert loc.idle is not None
    assert (loc.idle.directive, loc.idle.seconds) == ("timeout client", 30.0)


def test_no_timeout_at_all_applies_nothing() -> None:
    text = "frontend f\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n"
    assert routes(text) == {"frontend f -> backend b": (None, None, None)}
    (f,) = check_consistency(proxies=[parse_haproxy(text, "h.cfg")])
    assert (f.code, f.severity) == ("proxy-timeout-none", "warning")
    assert f.message.startswith("h.cfg: frontend f -> backend b (line 1): no timeout applies")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("    timeout client 30s\n", "h.cfg: line 1: `timeout client 30s` is outside any section"),
        ("frontend f from nope\n", "h.cfg: line 1: `from nope`: no defaults section named 'nope'"),
        ("frontend\n", "h.cfg: line 1: `frontend` needs a name"),
        ("defaults x from\n", "h.cfg: line 1: `defaults x from`: expected a defaults section"),
    ],
)
def test_files_haproxy_rejects_name_the_line(text: str, expected: str) -> None:
    with pytest.raises(ProxyConfigError) as err:
        parse_haproxy(text, "h.cfg")
    assert str(err.value).startswith(expected)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("timeout tunnel", "haproxy expects `timeout <name> <time>`"),
        ("timeout: tunnel 1h", "haproxy expects `timeout <name> <time>`"),
        ("timeout tunel 1h", "unknown timeout 'tunel'"),
        ("timeout tunnel 1x", "invalid time '1x'"),
    ],
)
def test_bad_timeout_lines_are_problems_with_their_line(line: str, message: str) -> None:
    cfg = parse_haproxy(f"defaults\n    mode http\n    {line}\n", "h.cfg")
    (p,) = cfg.problems
    assert p.line == 3
    assert message in p.message


def test_an_unknown_backend_is_a_problem() -> None:
    cfg = parse_haproxy("frontend f\n    default_backend nobody\n", "h.cfg")
    (p,) = cfg.problems
    assert p.line == 2
    assert "no backend named 'nobody'" in p.message


def test_kind_is_guessed_or_given() -> None:
    assert parse_proxy_config(CHAIN.read_text(), "c").kind == HAPROXY
    assert parse_proxy_config("http { }", "n").kind == NGINX
    with pytest.raises(
        ProxyConfigError, match="unknown proxy kind 'squid'; expected one of nginx, haproxy"
    ):
        parse_proxy_config("", "x", "squid")


def test_tunnel_below_the_heartbeat_is_an_error() -> None:
    profile = make_profile(
        '[clients]\n[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'
        '[heartbeat]\ninterval = "10s"\ntimeout = "5s"\n'
    )
    found = check_consistency(proxies=[load_proxy_config(CHAIN, HAPROXY)], profile=profile)
    short = [f for f in found if f.code == "proxy-timeout-short"]
    assert len(short) == 1
    assert "frontend public -> backend gateway: timeout tunnel 7 s (inherited from line 17)" in (
        short[0].message
    )
    assert "heartbeat interval 10 s" in short[0].message


def test_cli_haproxy_cfg(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        '[target]\nurl = "ws://127.0.0.1:9/ws"\n[clients]\n[[clients.stages]]\nkind = "hold"\n'
        'duration = "1s"\n[heartbeat]\ninterval = "10s"\ntimeout = "5s"\n'
    )
    gateway = FIXTURES / "gateway-fixed.json"
    r = CliRunner().invoke(
        cli, ["doctor", "--gateway-config", str(gateway), "--haproxy-cfg", str(CHAIN), "--json"]
    )
    codes = [f["code"] for f in json.loads(r.output)["findings"]]
    assert "proxy-timeout-short" in codes, r.output
    assert r.exit_code == 2
    missing = CliRunner().invoke(cli, ["doctor", "--haproxy-cfg", str(tmp_path / "nope.cfg")])
    assert missing.exit_code == 2
    assert f"{tmp_path / 'nope.cfg'}: file not found" in missing.output
    bad = tmp_path / "bad.cfg"
    bad.write_text("frontend f from nope\n")
    r = CliRunner().invoke(cli, ["doctor", "--haproxy-cfg", str(bad)])
    assert r.exit_code == 2
    assert f"{bad}: line 1: `from nope`: no defaults section named 'nope'" in r.output
    assert "Traceback" not in r.output


@pytest.mark.process
@pytest.mark.parametrize("name", ["haproxy-chain.cfg", "haproxy.cfg"])
def test_the_real_haproxy_accepts_the_fixtures(name: str) -> None:
    """What soak reads is what haproxy runs: ``haproxy -c`` on the fixtures."""
    binary = middlebox.find_binary(middlebox.HAPROXY)
    if binary is None:
        pytest.skip(middlebox.missing(middlebox.HAPROXY))
    r = subprocess.run(
        [binary, "-c", "-f", str(FIXTURES / name)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stdout + r.stderr
