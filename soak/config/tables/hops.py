"""``[[target.hops]]``: the chain between the clients and the gateway
(soak.config.hops). A hop's idle timeout comes from the profile, from its
config file (nginx.conf, haproxy.cfg: read with soak doctor's readers,
which are pure and import nothing of soak.config), or from its kind's
default, in that order; a hop that has none of them is refused."""

from __future__ import annotations

import dataclasses
from typing import Any

from soak.config.hops import HOP_KINDS, KINDS, RESETS, Hop
from soak.config.validation import Loader, Section
from soak.doctor.proxies import load_proxy_config
from soak.doctor.timeouts import ProxyConfigError

NO_HOPS: tuple[Hop, ...] = ()


def parse_hops(ld: Loader, where: str, raw: Any) -> tuple[Hop, ...]:
    """The list of hops; names made unique (``nginx``, ``nginx 2``)."""
    if not isinstance(raw, list):
        ld.fail(where, 'expected a list of tables ([[target.hops]] with kind = "nginx", ...)', raw)
    hops = [parse_hop(Section(ld, f"{where}[{i}]", item)) for i, item in enumerate(raw)]
    seen: dict[str, int] = {}
    out = []
    for i, hop in enumerate(hops):
        name = hop.label()
        if hop.name and name in seen:
            ld.fail(f"{where}[{i}].name", "expected a name no other hop has", name)
        seen[name] = seen.get(name, 0) + 1
        if not hop.name:
            n = sum(1 for h in hops[:i] if not h.name and h.kind == hop.kind) + 1
            name = hop.kind if n == 1 else f"{hop.kind} {n}"
        out.append(dataclasses.replace(hop, name=name))
    return tuple(out)


def parse_hop(s: Section) -> Hop:
    ld = s.loader
    kind = s.require("kind", ld.choice(KINDS))
    known = HOP_KINDS[kind]
    name = s.get("name", ld.string, "")
    idle = s.get("idle_timeout", ld.positive_duration, None)
    resets = s.get("resets_on", ld.choice(RESETS), None)
    config = s.get("config", ld.existing_file, None)
    shutdown = s.get("shutdown_timeout", ld.duration, None)
    s.finish()
    if config is not None and not known.reads_config:
        ld.fail(s.where("config"), "is read for kind nginx or haproxy only", kind)
    if shutdown is not None and not known.reloads:
        ld.fail(s.where("shutdown_timeout"), "applies to kind nginx or haproxy only", kind)
    from_file, line = _config_timeout(ld, s.where("config"), config, kind)
    source = "profile"
    chosen = idle
    if chosen is None and from_file is not None:
        chosen, source = from_file, line
    if chosen is None and config is not None and kind == "haproxy":
        ld.fail(
            s.where("config"),
            "sets no timeout that cuts an idle WebSocket (timeout tunnel, client or server): "
            "HAProxy holds them forever; give idle_timeout to judge closes against one",
            config,
        )
    if chosen is None and known.idle_timeout is not None:
        chosen, source = known.idle_timeout, f"{kind} default ({known.what})"
    if chosen is None:
        ld.fail(
            s.where("idle_timeout"),
            f'is required for kind {kind} ({known.what}), e.g. idle_timeout = "350s"'
            + (", or config = the file to read it from" if known.reads_config else ""),
            None,
            found=False,
        )
    return Hop(
        kind=kind,
        name=name,
        idle_timeout=chosen,
        resets_on=resets,
        config=config,
        shutdown_timeout=shutdown,
        source=source,
        config_timeout=from_file if idle is not None else None,
    )


def _config_timeout(
    ld: Loader, where: str, path: str | None, kind: str
) -> tuple[float | None, str]:
    """The shortest idle timeout the config file applies to WebSockets, and
    where it was set; (None, "") without a file or a timeout in it."""
    if path is None:
        return None, ""
    try:
        conf = load_proxy_config(path, kind)
    except ProxyConfigError as exc:
        return ld.fail(where, f"cannot be read as {kind}'s config: {exc}", path)
    best: tuple[float, str] | None = None
    for loc in conf.locations:
        if loc.idle is None or loc.idle.seconds is None:
            continue
        text = f"{path}: {loc.name}: {loc.idle.describe()}"
        if best is None or loc.idle.seconds < best[0]:
            best = (loc.idle.seconds, text)
    return (None, "") if best is None else best
