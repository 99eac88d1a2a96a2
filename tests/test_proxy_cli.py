"""``soak proxy`` on the command line: bad input names the option and the
expected form, with exit code 2; an unreachable upstream exits with 3."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from soak.cli import cli


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--upstream", "nope"],
            'Invalid value for --upstream: expected HOST:PORT like "127.0.0.1',
        ),
        (["--upstream", "h:1", "--listen", "x"], "Invalid value for --listen: expected HOST:PORT"),
        (["--upstream", "h:1", "--latency", "100"], 'expected a duration like "100ms", got "100"'),
        (["--upstream", "h:1", "--jitter", "-5ms"], "Invalid value for --jitter"),
        (["--upstream", "h:1", "--nat-idle", "0s"], "Invalid value for --nat-idle"),
        (["--upstream", "h:1", "--reset-at", "soon"], "Invalid value for --reset-at"),
        (["--upstream", "h:1", "--bandwidth", "fast"], 'expected a rate like "100kB"'),
        (["--upstream", "h:1", "--fraction", "1.5"], "Invalid value for '--fraction'"),
        (["--upstream", "h:1", "--jitter-dist", "gamma"], "Invalid value for '--jitter-dist'"),
        (["--upstream", "h:1", "--direction", "sideways"], "Invalid value for '--direction'"),
        (["--upstream", "h:1", "--drop-heartbeat", "0"], "Invalid value for '--drop-heartbeat'"),
        (
            ["--upstream", "h:1", "--drop-heartbeat-p", "2"],
            "Invalid value for '--drop-heartbeat-p'",
        ),
        (["--upstream", "h:1", "--drop-everything"], "No such option '--drop-everything'"),
    ],
)
def test_bad_input_is_named(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["proxy", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.process
def test_unreachable_upstream_is_a_target_failure() -> None:
    port = free_port()
    result = CliRunner().invoke(cli, ["proxy", "--upstream", f"127.0.0.1:{port}"])
    assert result.exit_code == 3
    assert f"--upstream: cannot connect to 127.0.0.1:{port}" in result.output
