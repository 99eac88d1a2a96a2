"""Shell commands from a profile need the user's consent.

A storm stage's ``command`` runs ``/bin/sh -c`` with the user's rights, and
a ``restart_url`` off this machine asks another host to restart something:
a profile from someone else could do anything with either. Before a run
starts, ``soak run`` and ``soak demo`` print every such action; they go on
only with ``--allow-commands`` or a "yes" typed on a terminal, and otherwise
refuse with one line that shows what would have run. A ``restart_url`` on
loopback (127.0.0.0/8, ::1, ``localhost``) is the reference gateway's admin
endpoint on this machine and needs no consent.

:func:`actions` is pure (profile in, lines out); :func:`check` does the
asking.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Callable
from urllib.parse import urlsplit

from soak.config.profile import Profile
from soak.config.stages import Storm
from soak.urls import without_userinfo

FLAG = "--allow-commands"


def on_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine's loopback."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def actions(profile: Profile) -> list[str]:
    """What the profile would run that needs consent, one line each, with
    the field it comes from."""
    out: list[str] = []
    for i, stage in enumerate(profile.clients.stages):
        if not isinstance(stage, Storm):
            continue
        where = f"clients.stages[{i}]"
        if stage.command is not None:
            out.append(f"{where}.command: /bin/sh -c {shlex.quote(stage.command)}")
        if stage.restart_url is not None and not on_loopback(stage.restart_url):
            out.append(f"{where}.restart_url: POST {without_userinfo(stage.restart_url)}")
    return out


def refusal(found: list[str]) -> str:
    """The one line a run without consent stops with."""
    what = "; ".join(found)
    return f"the profile runs commands, not run without {FLAG} (or a yes on a terminal): {what}"


def check(
    profile: Profile,
    allowed: bool,
    *,
    say: Callable[[str], None],
    ask: Callable[[str], bool] | None,
) -> str | None:
    """Print what needs consent and get it. ``allowed``: ``--allow-commands``
    was given; ``ask``: a yes/no question on a terminal, or None when there
    is none (CI, a pipe). Returns None to go on, else the refusal line."""
    found = actions(profile)
    if not found:
        return None
    if allowed:
        for line in found:
            say(f"soak: this run will execute {line} ({FLAG})")
        return None
    if ask is None:
        return refusal(found)
    say("soak: this profile runs, with your rights:")
    for line in found:
        say(f"  {line}")
    if ask(f"Run it? Answer yes to go on ({FLAG} skips this question)"):
        return None
    return refusal(found)
