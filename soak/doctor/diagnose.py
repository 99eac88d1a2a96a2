"""``soak doctor`` end to end: load what was given, run every check, and
turn a bad input into a finding so that the other checks still run."""

from __future__ import annotations

import trio

from soak.config.load import load_profile
from soak.config.profile import Profile
from soak.doctor.consistency import check_consistency
from soak.doctor.environment import Host, read_host, run_environment
from soak.doctor.findings import ERROR, INPUT, Finding
from soak.doctor.gateway_config import GatewayConfigError, GatewayHeartbeat, load_gateway_config
from soak.doctor.nginx import ProxyConfig, ProxyConfigError, load_proxy_config
from soak.doctor.target import TARGET_TIMEOUT
from soak.errors import ProfileError


def load_inputs(
    profile_path: str | None, gateway_path: str | None, proxy_path: str | None
) -> tuple[Profile | None, GatewayHeartbeat | None, ProxyConfig | None, list[Finding]]:
    out: list[Finding] = []
    profile = gateway = proxy = None
    if profile_path is not None:
        try:
            profile = load_profile(profile_path)
        except ProfileError as exc:
            out.append(
                Finding(
                    INPUT,
                    ERROR,
                    "profile-invalid",
                    str(exc),
                    "fix the profile; the checks that need it were skipped",
                )
            )
    if gateway_path is not None:
        try:
            gateway = load_gateway_config(gateway_path)
        except GatewayConfigError as exc:
            out.append(
                _unusable("gateway-config", exc, exc.unreadable, "the gateway's heartbeat config")
            )
    if proxy_path is not None:
        try:
            proxy = load_proxy_config(proxy_path)
        except ProxyConfigError as exc:
            out.append(_unusable("proxy-config", exc, exc.unreadable, "the proxy's timeouts"))
    return profile, gateway, proxy, out


def diagnose(
    *,
    profile_path: str | None = None,
    gateway_path: str | None = None,
    proxy_path: str | None = None,
    latency: float = 0.0,
    host: Host | None = None,
    target_timeout: float = TARGET_TIMEOUT,
) -> list[Finding]:
    """Every finding; the environment checks run only with a loaded profile."""
    profile, gateway, proxy, out = load_inputs(profile_path, gateway_path, proxy_path)
    out += check_consistency(gateway=gateway, proxy=proxy, profile=profile, latency=latency)
    if profile is not None:
        facts = host if host is not None else read_host()
        out += trio.run(lambda: run_environment(profile, facts, target_timeout=target_timeout))
    return out


def _unusable(what: str, exc: Exception, unreadable: bool, needed: str) -> Finding:
    """A config file that could not be used: an error finding, and the
    checks that needed it are skipped."""
    return Finding(
        INPUT,
        ERROR,
        f"{what}-unreadable" if unreadable else f"{what}-invalid",
        str(exc),
        f"fix the file or the path; the checks that need {needed} were skipped",
    )
