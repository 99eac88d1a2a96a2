"""GatewayConfig validation: errors name the field, the expectation and the value."""

from __future__ import annotations

from typing import Any

import pytest

from soak.errors import LocalError
from soak.gateway import GatewayConfig


def test_defaults_are_the_incidents_settings() -> None:
    config = GatewayConfig()
    assert (config.host, config.port) == ("127.0.0.1", 0)
    assert (config.hb_interval, config.hb_timeout, config.max_missed) == (30.0, 120.0, 3)
    assert (config.timeout_close_code, config.timeout_close_reason) == (4000, "heartbeat_timeout")
    assert config.server_ping_interval is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hb_interval", 0.0, "hb_interval: expected a number > 0, got 0.0"),
        ("hb_timeout", float("inf"), "hb_timeout: expected a number > 0, got inf"),
        ("check_every", -5.0, "check_every: expected a number > 0, got -5.0"),
        ("server_ping_interval", 0.0, "server_ping_interval: expected a number > 0"),
        ("max_missed", 0, "max_missed: expected an integer >= 1, got 0"),
        ("port", 70000, "port: expected 0..65535, got 70000"),
        ("timeout_close_code", 1006, "timeout_close_code: expected a sendable close code"),
        ("timeout_close_reason", "x" * 124, "timeout_close_reason: expected at most 123 bytes"),
    ],
)
def test_bad_values_are_rejected_with_the_field_name(field: str, value: Any, message: str) -> None:
    with pytest.raises(LocalError, match=f"^gateway: {message}"):
        GatewayConfig(**{field: value})
