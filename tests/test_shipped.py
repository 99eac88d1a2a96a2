"""Profiles shipped as package data: ``soak profiles``, ``soak profiles
show``, PROFILE arguments that name a shipped profile, and a real
(non-editable) install of the package, run from a directory far from the
repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.config.load import load_profile
from soak.config.target import PROTOCOLS
from soak.shipped import find_shipped, profiles_dir, resolve_profile, shipped

ROOT = Path(__file__).resolve().parent.parent


def test_every_shipped_profile_is_listed_with_its_dialect_and_a_line() -> None:
    result = CliRunner().invoke(cli, ["profiles"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    items = shipped()
    assert len(lines) == len(items) >= 7
    for line, item in zip(lines, items, strict=True):
        name, protocol, summary = line.split(maxsplit=2)
        assert name == item.name
        assert protocol in PROTOCOLS
        assert (
            protocol
            == load_profile(item.path, environ={"OPENCLAW_GATEWAY_TOKEN": "t"}).target.protocol
        )
        assert summary.endswith(".")
        assert len(summary) < 100
    assert {"demo", "smoke", "storm", "openclaw-soak"} <= {i.name for i in items}


def test_the_shipped_profiles_are_the_package_data_and_the_repo_path_points_there() -> None:
    assert profiles_dir() == ROOT / "soak" / "profiles"
    # profiles/ in the repository is a link to them: docs and `make demo` keep working
    assert (ROOT / "profiles").resolve() == profiles_dir()


def test_show_prints_the_profile_as_shipped() -> None:
    result = CliRunner().invoke(cli, ["profiles", "show", "demo"])
    assert result.exit_code == 0
    assert result.output == (profiles_dir() / "demo.toml").read_text(encoding="utf-8")


def test_show_of_an_unknown_name_lists_the_shipped_ones() -> None:
    result = CliRunner().invoke(cli, ["profiles", "show", "dmeo"])
    assert result.exit_code == 2
    names = ", ".join(item.name for item in shipped())
    assert names.startswith("demo, ")
    assert f"dmeo: no shipped profile of that name; shipped: {names}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("arg", ["demo", "demo.toml", "profiles/demo.toml"])
def test_a_shipped_name_means_the_shipped_file_from_any_directory(
    arg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_profile(arg) == str(profiles_dir() / "demo.toml")


def test_an_existing_file_wins_over_a_shipped_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("mine")
    assert resolve_profile("demo") == "demo"
    # a missing file that names nothing shipped stays as written, for the loader's message
    assert resolve_profile("nope.toml") == "nope.toml"
    assert find_shipped("../demo") is None
    assert find_shipped("") is None


def test_run_of_a_missing_profile_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["plan", "missing.toml"])
    assert result.exit_code == 2
    assert "missing.toml: profile not found" in result.output


def test_demo_defaults_to_the_shipped_demo() -> None:
    demo = cli.commands["demo"]
    (arg,) = [p for p in demo.params if p.name == "profile"]
    assert arg.default == "demo"


@pytest.mark.process
@pytest.mark.slow
def test_a_real_install_ships_the_profiles_and_the_schema(tmp_path: Path) -> None:
    # a non-editable build and install of the repository (its dependencies
    # come from the test's own environment), then soak run far from the repo
    # built from a copy, so the build's own files (build/, *.egg-info) stay in tmp_path
    src = tmp_path / "src"
    shutil.copytree(ROOT / "soak", src / "soak", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    assert (site / "soak" / "profiles" / "demo.toml").is_file()
    assert (site / "soak" / "profile.schema.json").is_file()
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def soak(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "soak", *args],
            cwd=away, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    where = soak("profiles", "show", "demo")
    assert where.returncode == 0, where.stderr
    assert "[[clients.stages]]" in where.stdout
    planned = soak("plan", "demo")
    assert planned.returncode == 0, planned.stderr
    assert f"profile   {site / 'soak' / 'profiles' / 'demo.toml'}" in planned.stdout
    assert "peak      1,000 clients" in planned.stdout
