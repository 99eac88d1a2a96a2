"""A profile's shell commands need consent (issue 24): a storm stage's
``command`` and a ``restart_url`` off loopback are printed before the run
and run only with --allow-commands or a yes on a terminal; without either,
soak run refuses with one line that shows them, before anything is written
or run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from soak import consent
from soak.cli import cli
from tests.support.runs import make_profile

STORM = """
[run]
label = "consent"
report_interval = "1s"
[[clients.stages]]
kind = "ramp"
to = 2
duration = "0s"
[[clients.stages]]
kind = "storm"
duration = "2s"
{action}
"""


def profile_text(action: str, url: str = "ws://127.0.0.1:9/ws") -> str:
    return f'[target]\nurl = "{url}"\n' + STORM.format(action=action)


def actions(action: str) -> list[str]:
    return consent.actions(make_profile(STORM.format(action=action)))


def test_a_command_and_a_restart_url_off_this_machine_need_consent() -> None:
    assert actions('command = "kill -USR2 $(cat /run/gw.pid)"') == [
        "clients.stages[1].command: /bin/sh -c 'kill -USR2 $(cat /run/gw.pid)'"
    ]
    assert actions('restart_url = "http://admin:pw@gw.example:8765/admin/restart"') == [
        "clients.stages[1].restart_url: POST http://gw.example:8765/admin/restart"
    ]
    for local in (
        "http://127.0.0.1:8765/admin/restart",
        "http://127.0.0.2:1/r",
        "http://[::1]:8765/r",
        "http://localhost:8765/r",
    ):
        assert actions(f'restart_url = "{local}"') == [], local
    assert actions('drop = "50%"') == []


def test_consent_from_the_flag_or_a_yes_on_a_terminal() -> None:
    profile = make_profile(STORM.format(action='command = "echo hi"'))
    said: list[str] = []
    assert consent.check(profile, True, say=said.append, ask=None) is None
    assert said == ["soak: this run will execute clients.stages[1].command: /bin/sh -c 'echo hi' "
                    "(--allow-commands)"]  # fmt: skip
    questions: list[str] = []

    def no(question: str) -> bool:
        questions.append(question)
        return False

    refused = consent.check(profile, False, say=said.append, ask=no)
    assert refused is not None
    assert "/bin/sh -c 'echo hi'" in refused
    assert questions == ["Run it? Answer yes to go on (--allow-commands skips this question)"]
    assert consent.check(profile, False, say=said.append, ask=lambda q: True) is None
    # no terminal: refused without asking
    assert consent.check(profile, False, say=said.append, ask=None) == refused


def test_soak_run_refuses_a_command_without_consent_in_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "p.toml"
    path.write_text(profile_text(f'command = "touch {marker}"'))
    results = tmp_path / "results"
    result = CliRunner().invoke(cli, ["run", str(path), "--results-dir", str(results)])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0] == (
        "Error: the profile runs commands, not run without --allow-commands (or a yes on a "
        f"terminal): clients.stages[1].command: /bin/sh -c 'touch {marker}'"
    )
    assert not marker.exists()
    assert not results.exists()  # nothing written before the refusal


def test_soak_run_refuses_a_restart_url_off_this_machine(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    # never contacted: the run is refused before it starts
    path.write_text(profile_text('restart_url = "http://gateway.invalid:8765/admin/restart"'))
    result = CliRunner().invoke(cli, ["run", str(path), "--results-dir", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "restart_url: POST http://gateway.invalid:8765/admin/restart" in result.output


@pytest.mark.process
def test_soak_demo_runs_the_command_with_allow_commands(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "p.toml"
    path.write_text(profile_text(f'command = "touch {marker}"'))
    proc = subprocess.run(
        [sys.executable, "-m", "soak", "demo", str(path), "--quiet", "--allow-commands",
         "--results-dir", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = f"soak: this run will execute clients.stages[1].command: /bin/sh -c 'touch {marker}'"
    assert said in proc.stderr
    assert marker.exists()
