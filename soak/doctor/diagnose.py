"""``soak doctor`` end to end: load what was given, run every check, and
turn a bad input into a finding so that the other checks still run."""

from __future__ import annotations

import trio

from soak.config.load import load_profile
from soak.config.profile import Profile
from soak.doctor.chain import check_beats, check_chain
from soak.doctor.consistency import check_consistency
from soak.doctor.environment import Host, read_host, run_environment
from soak.doctor.findings import ERROR, INPUT, Finding
from soak.doctor.gateway_config import GatewayConfigError, GatewayHeartbeat, load_gateway_config
from soak.doctor.proxies import load_proxy_config
from soak.doctor.target import TARGET_TIMEOUT
from soak.doctor.timeouts import HAPROXY, ProxyConfig, ProxyConfigError
from soak.errors import ProfileError

ProxyPath = tuple[str | None, str]  # (kind, or None to tell from the text; path)


def load_inputs(
    profile_path: str | None,
    gateway_path: str | None,
    proxy_paths: list[ProxyPath],
) -> tuple[Profile | None, GatewayHeartbeat | None, list[ProxyConfig], list[Finding]]:
    out: list[Finding] = []
    proxies: list[ProxyConfig] = []
    profile = gateway = None
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
    given = {str(path) for _kind, path in proxy_paths}
    if profile is not None:
        # the hops' own config files, read as their kind (soak.doctor.chain)
        proxy_paths = proxy_paths + [
            (h.kind, h.config)
            for h in profile.target.hops
            if h.config is not None and h.config not in given
        ]
    for kind, path in proxy_paths:
        try:
            proxies.append(load_proxy_config(path, kind))
        except ProxyConfigError as exc:
            out.append(_unusable("proxy-config", exc, exc.unreadable, "the proxy's timeouts"))
    return profile, gateway, proxies, out


def diagnose(
    *,
    profile_path: str | None = None,
    gateway_path: str | None = None,
    proxy_path: str | None = None,
    haproxy_path: str | None = None,
    latency: float = 0.0,
    host: Host | None = None,
    target_timeout: float = TARGET_TIMEOUT,
) -> list[Finding]:
    """Every finding; the environment checks run only with a loaded profile."""
    paths: list[ProxyPath] = []
    if proxy_path is not None:
        paths.append((None, proxy_path))
    if haproxy_path is not None:
        paths.append((HAPROXY, haproxy_path))
    profile, gateway, proxies, out = load_inputs(profile_path, gateway_path, paths)
    out += check_consistency(gateway=gateway, proxies=proxies, profile=profile, latency=latency)
    if profile is not None:
        out += check_chain(profile)
        out += check_beats(profile)
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
