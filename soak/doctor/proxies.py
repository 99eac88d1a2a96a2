"""A proxy's config file loaded with the reader for its kind: nginx
(soak.doctor.nginx) or HAProxy (soak.doctor.haproxy). ``soak doctor
--nginx-conf`` reads a file as nginx's unless it is plainly haproxy.cfg
(sections, no braces); ``--haproxy-cfg`` reads it as HAProxy's."""

from __future__ import annotations

from pathlib import Path

from soak.doctor.haproxy import looks_like_haproxy, parse_haproxy
from soak.doctor.nginx import parse_nginx
from soak.doctor.timeouts import HAPROXY, KINDS, NGINX, ProxyConfig, ProxyConfigError


def load_proxy_config(path: str | Path, kind: str | None = None) -> ProxyConfig:
    """Read and parse ``path``; ``kind`` None: guess it from the text."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProxyConfigError(f"{name}: file not found", unreadable=True) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProxyConfigError(f"{name}: cannot read: {exc}", unreadable=True) from None
    return parse_proxy_config(text, name, kind)


def parse_proxy_config(text: str, name: str, kind: str | None = None) -> ProxyConfig:
    if kind is None:
        kind = HAPROXY if looks_like_haproxy(text) else NGINX
    if kind == HAPROXY:
        return parse_haproxy(text, name)
    if kind == NGINX:
        return parse_nginx(text, name)
    raise ProxyConfigError(
        f"{name}: unknown proxy kind {kind!r}; expected one of {', '.join(KINDS)}"
    )
