"""URLs as soak shows and sends them: one place that knows about credentials
in the authority (``ws://user:secret@host/``)."""

from __future__ import annotations

from urllib.parse import urlsplit


def authority(url: str) -> str:
    """``host[:port]`` of ``url`` without any ``user:password@`` (the Host
    header, and what messages show)."""
    return urlsplit(url).netloc.rpartition("@")[2]


def without_userinfo(url: str, *, mask: str | None = None) -> str:
    """``url`` without its ``user:password@``; with ``mask``, the credentials
    are replaced by ``mask`` (``"<redacted>"``) so a reader sees there were
    some. A URL without credentials is returned unchanged."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = host if mask is None else f"{mask}@{host}"
    return parts._replace(netloc=netloc).geturl()
