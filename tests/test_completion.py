"""Shell completion through click's own mechanism: what a shell asks with
``_SOAK_COMPLETE=bash_complete`` and what soak answers."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.config.target import PROTOCOLS


def complete(words: str, shell: str = "bash") -> list[str]:
    env = {
        "_SOAK_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    if shell != "bash":
        env = {"_SOAK_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": ""}
    result = CliRunner().invoke(cli, [], env=env, prog_name="soak")
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_commands_complete() -> None:
    out = complete("soak p")
    assert "plain,plan" in out
    assert "plain,profiles" in out


def test_protocol_values_complete() -> None:
    out = complete("soak init --protocol ")
    assert [line.split(",", 1)[1] for line in out] == list(PROTOCOLS)
    assert complete("soak init --protocol ws") == ["plain,ws-ping"]


@pytest.mark.parametrize("command", ["run", "plan", "demo"])
def test_profile_arguments_complete_to_files_and_shipped_names(command: str) -> None:
    out = complete(f"soak {command} st")
    assert "plain,storm" in out
    assert "file,st" in out  # the shell completes the paths


def test_shipped_names_complete_for_show() -> None:
    assert complete("soak profiles show openclaw") == [
        "plain,openclaw-restart",
        "plain,openclaw-soak",
    ]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_gets_its_script(shell: str) -> None:
    result = CliRunner().invoke(
        cli, [], env={"_SOAK_COMPLETE": f"{shell}_source"}, prog_name="soak"
    )
    assert result.exit_code == 0
    assert "_SOAK_COMPLETE" in result.output
