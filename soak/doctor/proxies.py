"""A proxy's config file loaded with the reader for its kind: nginx
(soak.doctor.nginx) or HAProxy (soak.doctor.haproxy). ``soak doctor
--nginx-conf`` reads a file as nginx's unless it is plainly haproxy.cfg
(sections, no braces); ``--haproxy-cfg`` reads it as HAProxy's."""

from __future__ import annotations

import glob
from collections.abc import Callable
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
    if kind is None:
        kind = HAPROXY if looks_like_haproxy(text) else NGINX
    if kind == NGINX:
        return parse_nginx(text, name, includer(Path(path).parent))
    return parse_proxy_config(text, name, kind)


def includer(conf_dir: Path) -> Callable[[str], list[tuple[str, str]]]:
    """nginx's ``include``: a relative path is relative to the directory of
    the file given (nginx: its configuration prefix); a pattern with ``*``,
    ``?`` or ``[`` may match no file, and matches are read in name order; a
    plain path must exist."""

    def include(pattern: str) -> list[tuple[str, str]]:
        full = pattern if Path(pattern).is_absolute() else str(conf_dir / pattern)
        if glob.has_magic(full):
            names = sorted(glob.glob(full))
        elif Path(full).is_file():
            names = [full]
        else:
            raise ProxyConfigError(f"{full}: file not found", unreadable=True)
        out = []
        for n in names:
            try:
                out.append((n, Path(n).read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise ProxyConfigError(f"{n}: cannot read: {exc}", unreadable=True) from None
        return out

    return include


def parse_proxy_config(text: str, name: str, kind: str | None = None) -> ProxyConfig:
    """Text only: nginx's ``include`` is not followed (load_proxy_config does)."""
    if kind is None:
        kind = HAPROXY if looks_like_haproxy(text) else NGINX
    if kind == HAPROXY:
        return parse_haproxy(text, name)
    if kind == NGINX:
        return parse_nginx(text, name)
    raise ProxyConfigError(
        f"{name}: unknown proxy kind {kind!r}; expected one of {', '.join(KINDS)}"
    )
