"""The profiles shipped inside the package (``soak/profiles/*.toml``), so
``soak demo`` and ``soak profiles`` work from any directory after ``pip
install``; and the one rule that turns a PROFILE argument into a file.

A PROFILE argument is a path when that file exists; otherwise a shipped
profile's name (``demo``, ``demo.toml`` or ``profiles/demo.toml``, the form
the docs use) means the shipped file. Anything else stays as written, so the
loader's "profile not found" names it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

PACKAGE_DIR = "profiles"
DEFAULT_DEMO = "demo"


@dataclass(frozen=True)
class ShippedProfile:
    name: str  # "demo"
    path: Path
    summary: str  # the first line of its leading comment
    protocol: str  # as written, or the loader's default ("json")


def profiles_dir() -> Path:
    """The shipped profiles' directory. The package is installed as files
    (setuptools' default), so this is a real directory."""
    return Path(str(resources.files("soak").joinpath(PACKAGE_DIR)))


def _summary(text: str) -> str:
    """The first sentence of the profile's leading comment."""
    words: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#") or not stripped.lstrip("#").strip():
            break
        words.append(stripped.lstrip("#").strip())
    joined = " ".join(words)
    m = re.match(r"(.+?\.)(\s|$)", joined)
    return m.group(1) if m else joined


def _protocol(text: str) -> str:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return "?"
    target = data.get("target")
    protocol = target.get("protocol", "json") if isinstance(target, dict) else "json"
    return str(protocol)


def shipped() -> list[ShippedProfile]:
    """Every shipped profile, by name."""
    out = []
    for path in sorted(profiles_dir().glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        out.append(ShippedProfile(path.stem, path, _summary(text), _protocol(text)))
    return out


def shipped_names() -> list[str]:
    return [p.name for p in shipped()]


def find_shipped(name: str) -> Path | None:
    """The shipped profile ``name`` names (``demo``, ``demo.toml``,
    ``profiles/demo.toml``), or None."""
    stem = name.removeprefix(f"{PACKAGE_DIR}/").removesuffix(".toml")
    if not stem or "/" in stem or stem.startswith("."):
        return None
    path = profiles_dir() / f"{stem}.toml"
    return path if path.is_file() else None


def resolve_profile(arg: str) -> str:
    """The file a PROFILE argument means: the path itself when it exists,
    else the shipped profile it names, else the argument unchanged."""
    if Path(arg).exists():
        return arg
    found = find_shipped(arg)
    return str(found) if found is not None else arg
