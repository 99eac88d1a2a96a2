"""Command-line overrides of an already valid profile, validated by the
same parsers as the file."""

from __future__ import annotations

import dataclasses

from soak.config.profile import Profile
from soak.config.tables.run import label as parse_label
from soak.config.tables.run import port as parse_port
from soak.config.tables.run import shard as parse_shard
from soak.config.tables.run import start_at as parse_start_at
from soak.config.tables.run import workers as parse_workers
from soak.config.tables.target import PROTOCOL_TABLES, check_families, source_ips
from soak.config.tables.thresholds import parse_threshold_option
from soak.config.target import openclaw_connecting
from soak.config.validation import Loader


def override(
    profile: Profile,
    *,
    url: str | None = None,
    label: str | None = None,
    duration: str | None = None,
    results_dir: str | None = None,
    thresholds: tuple[str, ...] = (),
    workers: str | None = None,
    source_ip: str | None = None,
    strict: bool = False,
    shard: str | None = None,
    start_at: str | None = None,
    metrics_port: str | None = None,
    dashboard_port: str | None = None,
) -> Profile:
    """Apply CLI overrides, validated with the same parsers as the file. A
    ``--threshold`` replaces the profile's threshold of the same name;
    ``strict`` (``--strict``) turns the profile's ``[thresholds] strict`` on."""
    ld = Loader("")
    run = profile.run
    target = profile.target
    if url is not None:
        target = dataclasses.replace(target, url=ld.url("--url", url))
        for table in PROTOCOL_TABLES.values():
            if table.protocol == target.protocol and table.check is not None:
                table.check(ld, "--url", target)
    clients = profile.clients
    if source_ip is not None:
        before = target
        target = dataclasses.replace(target, source_ips=source_ips(ld)("--source-ip", source_ip))
        if target.protocol == "openclaw" and clients.max_connecting == openclaw_connecting(before):
            # the default cap follows the addresses (a cap the profile set stays)
            clients = dataclasses.replace(clients, max_connecting=openclaw_connecting(target))
    if source_ip is not None or url is not None:
        check_families(ld, "--source-ip" if source_ip else "target.source_ips", target)
    if label is not None:
        run = dataclasses.replace(run, label=parse_label(ld, "--label", label))
    if duration is not None:
        run = dataclasses.replace(run, duration=ld.positive_duration("--duration", duration))
    if results_dir is not None:
        run = dataclasses.replace(run, results_dir=results_dir)
    if workers is not None:
        run = dataclasses.replace(run, workers=parse_workers(ld, "--workers", workers))
    if shard is not None:
        run = dataclasses.replace(run, shard=parse_shard(ld, "--shard", shard))
    if start_at is not None:
        run = dataclasses.replace(run, start_at=parse_start_at(ld, "--start-at", start_at))
    if metrics_port is not None:
        run = dataclasses.replace(run, metrics_port=parse_port(ld, "--metrics-port", metrics_port))
    if dashboard_port is not None:
        run = dataclasses.replace(run, dashboard_port=parse_port(ld, "--dashboard", dashboard_port))
    checks = list(profile.thresholds)
    for text in thresholds:
        th = parse_threshold_option(text)
        checks = [c for c in checks if c.name != th.name] + [th]
    return dataclasses.replace(
        profile,
        run=run,
        target=target,
        clients=clients,
        thresholds=tuple(checks),
        strict=profile.strict or strict,
    )
