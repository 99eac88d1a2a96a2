"""Bad input through the command line: exit code 2 and one clear line, never
a traceback. An unreachable target: exit code 3, with complete results."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from soak.cli import cli

VALID = """\
[run]
label = "cli-test"
duration = "2s"
report_interval = "1s"

[target]
url = "ws://127.0.0.1:9/ws"

[[clients.stages]]
kind = "ramp"
to = 2
duration = "0s"

[[clients.stages]]
kind = "hold"
duration = "2s"

[reconnect]
initial_delay = "100ms"
max_delay = "200ms"
max_attempts = 2
"""

# an environment variable no test environment sets; removed for the run anyway
TOKEN_VAR = "SOAK_CLI_INPUT_TEST_TOKEN"


def invoke(args: list[str], env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env)


def assert_usage_error(result: Result, *parts: str) -> str:
    """Exit code 2, exactly one ``Error: ...`` line containing ``parts``, no
    traceback. Returns the line."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    line = lines[0]
    assert line.startswith("Error: ")
    for part in parts:
        assert part in line
    return line


def write(tmp_path: Path, text: str, name: str = "profile.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_valid_profile_is_valid(tmp_path: Path) -> None:
    # the bad profiles below differ from this one in one place only
    from soak.config.load import load_profile

    p = load_profile(write(tmp_path, VALID), environ={})
    assert p.duration == 2.0
    assert p.peak_clients == 2


def test_missing_profile(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    line = assert_usage_error(invoke(["run", str(path)]))
    assert line == f"Error: {path}: profile not found"


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('label = "cli-test"', 'label = "cli-test'))
    assert_usage_error(invoke(["run", str(path)]), f"{path}: invalid TOML", "line 2")


@dataclass(frozen=True)
class Case:
    id: str
    old: str
    new: str
    parts: tuple[str, ...]


CASES = [
    Case(
        "unknown-field",
        "[reconnect]\n",
        '[reconnect]\nintial_delay = "1s"\n',
        ("reconnect.intial_delay: unknown field (did you mean 'initial_delay'?)",),
    ),
    Case(
        "wrong-type",
        'report_interval = "1s"',
        "report_interval = 1",
        ('run.report_interval: expected a duration like "30s"', "got 1"),
    ),
    Case(
        "wrong-type-integer",
        "max_attempts = 2",
        'max_attempts = "2"',
        ('reconnect.max_attempts: expected a whole number >= 0, got "2"',),
    ),
    Case(
        "negative-duration",
        'label = "cli-test"\nduration = "2s"',
        'label = "cli-test"\nduration = "-2s"',
        ("run.duration: expected a duration of zero or more", 'got "-2s"'),
    ),
    Case(
        "non-ws-url",
        "ws://127.0.0.1:9/ws",
        "http://127.0.0.1:9/ws",
        ('target.url: expected a ws:// or wss:// URL with a host, got "http://127.0.0.1:9/ws"',),
    ),
    Case(
        "missing-token-variable",
        "[target]\n",
        f'[target]\ntoken_env = "{TOKEN_VAR}"\n',
        (f"target.token_env: environment variable {TOKEN_VAR} is not set",),
    ),
    Case(
        "stage-missing-to",
        "to = 2\n",
        "",
        ("clients.stages[0].to: is required",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_profile(tmp_path: Path, case: Case) -> None:
    assert VALID.count(case.old) == 1
    path = write(tmp_path, VALID.replace(case.old, case.new))
    results = tmp_path / "results"
    result = invoke(["run", str(path), "--results-dir", str(results)], env={TOKEN_VAR: None})
    line = assert_usage_error(result, f"Error: {path}: ", *case.parts)
    assert line.startswith(f"Error: {path}: ")
    assert not results.exists()  # refused before anything was written


def test_unwritable_results_directory(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    results = blocker / "results"
    result = invoke(["run", str(path), "--results-dir", str(results)])
    assert_usage_error(result, f"Error: {results}: cannot write results here", "Not a directory")
    # failed before the run started, so before any connection was attempted
    assert "soak: running" not in result.output
    assert blocker.read_text() == "not a directory\n"


def test_unwritable_results_directory_from_the_profile(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    results = blocker / "sub"
    path = write(tmp_path, VALID.replace("[run]\n", f'[run]\nresults_dir = "{results}"\n'))
    result = invoke(["run", str(path)])
    assert_usage_error(result, f"Error: {results}: cannot write results here")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-5s", 'expected a duration of zero or more, got "-5s"'),
        ("0s", 'expected a duration greater than zero, got "0s"'),
        ("5", 'expected a duration like "30s", "5m" or "250ms", got "5"'),
    ],
)
def test_bad_duration_option(tmp_path: Path, value: str, expected: str) -> None:
    path = write(tmp_path, VALID)
    results = tmp_path / "results"
    result = invoke(["run", str(path), "--duration", value, "--results-dir", str(results)])
    assert_usage_error(result, "--duration: ", expected)
    assert not results.exists()


def test_bad_url_option(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    result = invoke(["run", str(path), "--url", "tcp://127.0.0.1:9"])
    assert_usage_error(result, '--url: expected a ws:// or wss:// URL with a host, got "tcp://')


def test_bad_label_option(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    result = invoke(["run", str(path), "--label", "../escape"])
    assert_usage_error(result, '--label: expected 1-80 letters, digits or . _ + -, got "../escape"')


# -- an unreachable target -------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port that was just free: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass(frozen=True)
class UnreachableRun:
    result: Result
    run_dir: Path
    run_json: dict[str, Any]
    intervals: list[dict[str, Any]]
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def unreachable(tmp_path_factory: pytest.TempPathFactory) -> UnreachableRun:
    """One ~2 s run against a closed loopback port, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("unreachable")
    url = f"ws://127.0.0.1:{closed_port()}/ws"
    path = write(tmp, VALID.replace("ws://127.0.0.1:9/ws", url))
    results = tmp / "results"
    result = invoke(["run", str(path), "--results-dir", str(results), "--quiet"])
    dirs = list(results.iterdir()) if results.is_dir() else []
    assert len(dirs) == 1, result.output
    run_dir = dirs[0]
    lines = (run_dir / "intervals.jsonl").read_text().splitlines()
    return UnreachableRun(
        result=result,
        run_dir=run_dir,
        run_json=json.loads((run_dir / "run.json").read_text()),
        intervals=[json.loads(line) for line in lines],
        summary=json.loads((run_dir / "summary.json").read_text()),
    )


@pytest.mark.process
def test_unreachable_target_exits_3(unreachable: UnreachableRun) -> None:
    result = unreachable.result
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


@pytest.mark.process
def test_unreachable_target_leaves_complete_results(unreachable: UnreachableRun) -> None:
    assert unreachable.run_dir.name.endswith("-cli-test")
    assert unreachable.run_json["status"] == "completed"
    assert unreachable.run_json["exit_code"] == 3
    assert len(unreachable.intervals) >= 1
    summary = unreachable.summary
    assert summary["exit_code"] == 3
    assert summary["passed"] is False
    totals = summary["totals"]
    assert totals["connects"] == 0
    # 2 clients, each: the first attempt and 2 retries
    assert totals["connect_attempts"] == 6
    assert totals["handshake_failure_total"] == 6
    assert sum(totals["handshake_failures"].values()) == 6
    assert totals["reconnect_failed"] == 2  # both clients gave up


@pytest.mark.process
def test_unreachable_target_failures_are_counted_as_refused(
    unreachable: UnreachableRun,
) -> None:
    failures = unreachable.summary["totals"]["handshake_failures"]
    assert failures.get("refused", 0) > 0
    assert failures == {"refused": 6}
