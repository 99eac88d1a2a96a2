"""soak doctor on the command line: exit codes, --json, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.doctor import diagnose as diagnose_mod
from soak.doctor.consistency import check_consistency
from soak.doctor.environment import Host

FIXTURES = Path(__file__).parent / "fixtures" / "doctor"
INCIDENT = Path(__file__).parent.parent / "profiles" / "incident.toml"


def fx(name: str) -> str:
    return str(FIXTURES / name)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, ["doctor", *args])


def as_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = invoke(*args, "--json")
    return result.exit_code, json.loads(result.output)


def test_incident_configs_exit_2_with_text() -> None:
    r = invoke(
        "--gateway-config", fx("gateway-2026.04.yaml"), "--nginx-conf", fx("nginx-incident.conf")
    )
    assert r.exit_code == 2, r.output
    assert "Heartbeat consistency" in r.output
    assert "ERROR   [channel-timeout-before-max-missed]" in r.output
    assert "WARNING [proxy-timeout-long]" in r.output
    assert "fix: " in r.output
    assert "\x1b[" not in r.output  # no colour off a terminal
    assert r.output.rstrip().endswith("errors (exit 2)")


def test_json_shape() -> None:
    code, doc = as_json(
        "--gateway-config", fx("gateway-2026.04.yaml"), "--nginx-conf", fx("nginx-incident.conf")
    )
    assert code == 2 == doc["exit_code"]
    assert doc["counts"] == {"error": 1, "warning": 1, "info": 0}
    assert sorted(f["code"] for f in doc["findings"]) == [
        "channel-timeout-before-max-missed",
        "proxy-timeout-long",
    ]
    for f in doc["findings"]:
        assert set(f) == {"section", "severity", "code", "message", "fix"}
        assert f["section"] == "consistency"


def test_warnings_only_exit_1_and_clean_exit_0(tmp_path: Path) -> None:
    gw = tmp_path / "gw.json"
    gw.write_text(
        '{"gateway": {"heartbeat": {"interval": 60000, "timeout": 180000, "maxMissed": 3}}}'
    )
    long = tmp_path / "long.conf"
    long.write_text(
        "location /ws { proxy_set_header Upgrade $http_upgrade; proxy_read_timeout 1d; }"
    )
    good = tmp_path / "good.conf"
    good.write_text(
        "location /ws { proxy_set_header Upgrade $http_upgrade; proxy_read_timeout 180s; }"
    )
    code, doc = as_json("--gateway-config", str(gw), "--nginx-conf", str(long))
    assert code == 1
    assert [f["code"] for f in doc["findings"]] == ["proxy-timeout-long"]
    r = invoke("--gateway-config", str(gw), "--nginx-conf", str(good))
    assert r.exit_code == 0, r.output
    assert "ok (exit 0)" in r.output


def test_unreadable_file_is_a_finding_and_the_rest_still_runs(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.conf")
    code, doc = as_json("--gateway-config", fx("gateway-tight.yaml"), "--nginx-conf", missing)
    assert code == 2
    by = {f["code"]: f for f in doc["findings"]}
    assert set(by) == {"proxy-config-unreadable", "timeout-before-max-missed"}
    assert missing in by["proxy-config-unreadable"]["message"]
    assert by["proxy-config-unreadable"]["section"] == "input"


def test_invalid_gateway_config_is_a_finding(tmp_path: Path) -> None:
    bad = tmp_path / "gw.yaml"
    bad.write_text("gateway:\n  heartbeat:\n    - interval: 1\n")
    code, doc = as_json("--gateway-config", str(bad), "--nginx-conf", fx("nginx-fixed-typos.conf"))
    assert code == 2
    got = sorted(f["code"] for f in doc["findings"])
    assert got == ["gateway-config-invalid", "proxy-invalid-directive", "proxy-invalid-directive"]
    msg = next(f["message"] for f in doc["findings"] if f["code"] == "gateway-config-invalid")
    assert str(bad) in msg
    assert "line 3" in msg


def test_nginx_without_websocket_location_still_checks_the_gateway() -> None:
    code, doc = as_json(
        "--gateway-config",
        fx("gateway-2026.04.yaml"),
        "--nginx-conf",
        fx("nginx-no-websocket.conf"),
    )
    assert code == 2
    assert sorted(f["code"] for f in doc["findings"]) == [
        "channel-timeout-before-max-missed",
        "proxy-no-websocket-location",
    ]


def test_invalid_profile_is_a_finding(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text("[target\n")
    code, doc = as_json("--profile", str(bad), "--nginx-conf", fx("nginx-incident.conf"))
    assert code == 2
    assert [f["code"] for f in doc["findings"]] == ["profile-invalid"]
    assert "invalid TOML" in doc["findings"][0]["message"]


def test_no_inputs_and_bad_latency_are_usage_errors() -> None:
    r = invoke()
    assert r.exit_code == 2
    assert "at least one of --profile" in r.output
    r = invoke("--gateway-config", fx("gateway-2026.04.yaml"), "--latency", "soon")
    assert r.exit_code == 2
    assert "--latency" in r.output


def test_latency_is_passed_to_the_client_check(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(**kwargs: Any) -> list[Any]:
        seen.update(kwargs)
        return []

    monkeypatch.setattr(diagnose_mod, "diagnose", fake)
    r = invoke("--gateway-config", fx("gateway-2026.04.yaml"), "--latency", "100ms")
    assert r.exit_code == 0, r.output
    assert seen["latency"] == pytest.approx(0.1)
    assert seen["gateway_path"] == fx("gateway-2026.04.yaml")


def test_diagnose_with_latency(tmp_path: Path) -> None:
    gw = tmp_path / "gw.json"
    gw.write_text(
        '{"gateway": {"heartbeat": {"interval": 30000, "timeout": 90000, "maxMissed": 3}}}'
    )
    profile, gateway, _, problems = diagnose_mod.load_inputs(str(INCIDENT), str(gw), [])
    assert problems == []
    assert check_consistency(gateway=gateway, profile=profile) == []
    found = check_consistency(gateway=gateway, profile=profile, latency=0.1)
    assert [f.code for f in found] == ["client-interval-not-tolerated"]


@pytest.mark.process
def test_profile_runs_the_environment_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(
        fd_soft=100, fd_hard=100, port_range="60000 60999", mem_available=None, tcp_tables=()
    )
    monkeypatch.setattr(diagnose_mod, "read_host", lambda: host)
    profile = Path(__file__).parent.parent / "profiles" / "incident.toml"
    code, doc = (
        as_json("--profile", str(profile), "--url-unused")
        if False
        else as_json("--profile", str(profile))
    )
    found = {f["code"]: f for f in doc["findings"]}
    assert code == 2
    assert found["fd-limit-too-low"]["section"] == "environment"
    assert found["ephemeral-ports-exhausted"]["severity"] == "error"  # 2,000 > 1,000 ports
    assert "memory-estimate" in found
    assert "sockets" in found
    assert "loop-lag" in found or "loop-lag-high" in found
    # target-tcp-* depends on whether something listens on 127.0.0.1:8765
    assert any(c.startswith("target-") for c in found)
