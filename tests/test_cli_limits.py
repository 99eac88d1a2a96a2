from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from soak.cli import cli

PROFILE = """
[target]
url = "ws://127.0.0.1:9/ws"
[clients]
[[clients.stages]]
kind = "ramp"
to = {to}
duration = "10s"
"""


def test_profile_needing_more_descriptors_than_a_process_has(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(PROFILE.format(to=10_000_000))
    result = CliRunner().invoke(cli, ["run", str(path), "--results-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "needs 10,000,000 connections at its peak" in result.output
    assert "descriptors" in result.output
    assert "Traceback" not in result.output
    # refused before anything was written
    assert not (tmp_path / "r").exists()


def test_gateway_rejects_bad_durations() -> None:
    result = CliRunner().invoke(cli, ["gateway", "--hb-interval", "-1s"])
    assert result.exit_code == 2
    assert "--hb-interval" in result.output
    assert 'expected a duration like "30s", got "-1s"' in result.output


def test_gateway_rejects_unknown_bugs_and_bad_arguments(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["gateway", "--bug", "nopong 0.1"])
    assert result.exit_code == 2
    assert "unknown bug 'nopong'; did you mean 'no-pong'?" in result.output
    result = CliRunner().invoke(cli, ["gateway", "--bug", "no-pong 2"])
    assert result.exit_code == 2
    assert "RATE: expected the fraction of connections to affect" in result.output
    result = CliRunner().invoke(
        cli, ["gateway", "--truth-log", str(tmp_path / "missing" / "truth.jsonl")]
    )
    assert result.exit_code == 2
    assert "truth_log: cannot open" in result.output
    assert "Traceback" not in result.output
