"""The documentation stays inside the repository and the README stays short.

Pure and fast: these tests only read files. They fail when the README or a
page in docs/ links to a file (or a heading) that does not exist, when any
text in the repository names a ``*.md`` file the repository lacks, when the
README grows past what a newcomer reads first, or when a profile the docs
show no longer loads.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from soak.config.load import load_profile

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

# Files the docs link to that are written later, with who writes them. Remove
# an entry once its file exists (a test below says so).
PENDING: dict[str, str] = {}

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_MD_MENTION = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)?[\w./-]*[\w-]\.md)\b")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_REPO_DIRS = ("soak/", "tests/", "benchmarks/", "profiles/", "docs/", ".ci/")
_EXAMPLE = re.compile(r"[<>*{}\s]|\.\.\.")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _exists(target: Path) -> bool:
    target = target.resolve()
    return target.exists() or _rel_or_none(target) in PENDING


def _rel_or_none(path: Path) -> str | None:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped,
    each space a hyphen (``protocol = "openclaw"`` -> ``protocol--openclaw``)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for m in _HEADING.finditer(text):
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_slug_matches_github() -> None:
    assert slug('`protocol = "openclaw"`') == "protocol--openclaw"
    assert slug("Whose fault was it? Close reasons") == "whose-fault-was-it-close-reasons"
    assert slug("`soak compare RUN_A RUN_B ...`") == "soak-compare-run_a-run_b-"
    assert slug("More clients than one process holds: `--workers`") == (
        "more-clients-than-one-process-holds---workers"
    )


@pytest.mark.parametrize("page", _pages(), ids=_rel)
def test_links_point_at_files_and_headings_that_exist(page: Path) -> None:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for m in _LINK.finditer(text):
        href = m.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", href):  # http:, https:, mailto:
            continue
        path, _, anchor = href.partition("#")
        target = (page.parent / path) if path else page
        if not _exists(target):
            broken.append(f"{href}: no such file")
        elif (
            anchor and target.suffix == ".md" and target.exists() and anchor not in anchors(target)
        ):
            broken.append(f"{href}: no heading with anchor #{anchor} in {_rel(target)}")
    assert not broken, f"{_rel(page)}: broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", _pages(), ids=_rel)
def test_repository_paths_in_inline_code_exist(page: Path) -> None:
    # `tests/test_x.py`, `benchmarks/cpu.py`, `profiles/demo.toml`: a path into
    # the repository named in running text must exist. Placeholders
    # (`results/<run>/`, `*.hlog`) and fenced blocks (command output,
    # examples) are not checked.
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    missing = []
    for m in _INLINE_CODE.finditer(text):
        token = m.group(1).strip()
        if not token.startswith(_REPO_DIRS) or _EXAMPLE.search(token):
            continue
        if not _exists(ROOT / token):
            missing.append(token)
    assert not missing, f"{_rel(page)} names paths the repository lacks: {missing}"


def _texts() -> list[Path]:
    files = [*_pages(), ROOT / "Makefile", ROOT / "pyproject.toml"]
    for top in ("soak", "tests", "benchmarks"):
        files += sorted((ROOT / top).rglob("*.py"))
        files += sorted((ROOT / top).rglob("*.sh"))
    return [f for f in files if f.is_file()]


def test_every_md_file_mentioned_anywhere_exists() -> None:
    # DESIGN.md, CALIBRATION.md and OPENCLAW.md once lived outside the
    # repository and were cited from code; every *.md named in the code, the
    # README or docs/ must be a file here (relative to the naming file, or to
    # the repository root).
    missing = []
    for f in _texts():
        if f == Path(__file__).resolve():
            continue
        for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            for m in _MD_MENTION.finditer(line):
                name = m.group(1)
                if _exists(f.parent / name) or _exists(ROOT / name):
                    continue
                missing.append(f"{_rel(f)}:{lineno}: {name}")
    assert not missing, "mentions of files the repository lacks:\n" + "\n".join(missing)


def test_pending_files_are_still_missing() -> None:
    # once a pending file is written, its entry must go, so the exemption
    # cannot hide a later deletion
    written = [name for name in PENDING if (ROOT / name).exists()]
    assert not written, f"now in the repository, remove from PENDING in {__file__}: {written}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {
        (README.parent / m.group(1).partition("#")[0]).resolve()
        for m in _LINK.finditer(README.read_text(encoding="utf-8"))
    }
    orphans = [_rel(p) for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link to: {orphans}"


def test_readme_is_what_a_newcomer_reads_first() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move reference "
        "material into docs/ and link to it"
    )


def _toml_blocks(page: Path) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


def test_the_readme_profile_loads(tmp_path: Path) -> None:
    (block,) = _toml_blocks(README)
    path = tmp_path / "minimal.toml"
    path.write_text(block, encoding="utf-8")
    profile = load_profile(path, environ={})
    assert profile.peak_clients == 1000


def test_the_profile_reference_loads(tmp_path: Path) -> None:
    # docs/profiles.md: the full reference as shown (its CA file made real, its
    # token variable set), and each partial table on top of the README's profile
    (minimal,) = _toml_blocks(README)
    full, impairment_tables, openclaw_table, hops_tables = _toml_blocks(DOCS / "profiles.md")
    ca = tmp_path / "ca.pem"
    ca.write_text("", encoding="utf-8")
    cases = {
        "full.toml": full.replace('"certs/ca.pem"', f'"{ca.as_posix()}"'),
        "impairment.toml": minimal + impairment_tables,
        "openclaw.toml": minimal.replace('protocol = "json"', 'protocol = "openclaw"')
        + openclaw_table,
        "hops.toml": minimal + hops_tables,
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        load_profile(path, environ={"GW_TOKEN": "t0ken"})
