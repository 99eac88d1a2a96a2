"""Where a run came from, for run.json: the git commit soak was built from
(when it runs from a git checkout of itself), the OS, and the command line
with its secrets redacted (:func:`redact_argv`, pure)."""

from __future__ import annotations

import functools
import platform
import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from soak.urls import without_userinfo

REDACTED = "<redacted>"
# option and query-parameter names whose values are secrets
_SENSITIVE = re.compile(r"token|secret|passw|auth|key|cookie|credential", re.IGNORECASE)


def _redact_url(text: str) -> str:
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or not parts.netloc:
        return text
    text = without_userinfo(text, mask=REDACTED)
    if parts.query:
        query = [(k, REDACTED if _SENSITIVE.search(k) else v) for k, v in parse_qsl(parts.query)]
        text = urlsplit(text)._replace(query=urlencode(query, safe="<>")).geturl()
    return text


def redact_argv(argv: list[str]) -> list[str]:
    """The command line with credentials in URLs (``user:pass@``, ``?token=``)
    and the values of options named like secrets (``--token X``,
    ``--api-key=X``) replaced by ``<redacted>``."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if _SENSITIVE.search(name):
                if eq:
                    out.append(f"{name}={REDACTED}")
                else:
                    out.append(arg)
                    hide_next = True
                continue
            if eq:
                out.append(f"{name}={_redact_url(value)}")
                continue
        out.append(_redact_url(arg))
    return out


@functools.cache
def git_commit() -> str | None:
    """The commit of the git checkout soak runs from (``-dirty`` with
    uncommitted changes), or None: an installed package, or no git."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # only soak's own checkout: not a repository a venv happens to sit in
    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}-dirty" if status else commit


def os_version() -> str:
    """``Linux-6.1.0-...-x86_64-with-glibc2.36``: the OS, its kernel and libc."""
    return platform.platform()
