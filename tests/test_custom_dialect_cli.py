"""protocol = "custom" from the command line: the shipped worked example
against the real reference gateway (in one process and with --workers 2),
and bad input as one line, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from soak.childproc import gateway_process
from soak.cli import cli
from soak.config.target import PROTOCOLS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_shipped_custom_json_profile_against_the_reference_gateway(
    tmp_path: Path, workers: str
) -> None:
    with gateway_process() as gw:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "soak",
                "run",
                "custom-json",
                "--url",
                gw.url,
                "--duration",
                "6s",
                "--workers",
                workers,
                "--quiet",
                "--results-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode in (0, 1), done.stderr  # 1: the short run does not reach its load
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    tot = summary["totals"]
    assert tot["pings"] > 20  # ~120 clients by 6 s, a ping every 5 s
    assert tot["pongs"] == tot["pings"] - tot["abandoned"]
    assert tot["missed"] == 0
    assert set(tot["closes"]) == {"client_shutdown"}
    assert "Traceback" not in done.stderr


def test_a_bad_template_is_refused_before_the_run(tmp_path: Path) -> None:
    text = (ROOT / "soak" / "profiles" / "custom-json.toml").read_text()
    bad = text.replace('"clientId":"{client_id}"', '"clientId":{client_id}')
    assert bad != text
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    result = CliRunner().invoke(cli, ["run", str(path), "--quiet"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: {path}: target.dialect.send: renders as ")
    assert "which is not JSON" in lines[0]
    assert not list(tmp_path.glob("results*"))


def test_an_unknown_protocol_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        (ROOT / "soak" / "profiles" / "custom-json.toml")
        .read_text()
        .replace('protocol = "custom"', 'protocol = "costum"')
    )
    result = CliRunner().invoke(cli, ["run", str(path), "--quiet"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: {path}: target.protocol: expected one of {', '.join(PROTOCOLS)} "
        "(did you mean 'custom'?), got \"costum\""
    )
