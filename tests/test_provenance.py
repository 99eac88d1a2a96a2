"""run.json's provenance: the command line redacted (pure), the git commit
of this checkout, and the manifest's keys."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import trio
import trio.testing

from soak import __version__
from soak.gateway import Gateway, GatewayConfig
from soak.provenance import REDACTED, git_commit, os_version, redact_argv
from soak.run.finish import manifest
from tests.support.runs import gateway_opener, make_profile, one_client, run_in_memory

BODY = '[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (
            ["run", "p.toml", "--url", "ws://u:s3cret@h:1/ws"],
            ["run", "p.toml", "--url", f"ws://{REDACTED}@h:1/ws"],
        ),
        (
            ["run", "p.toml", "--url=wss://h/ws?token=abc&x=1"],
            ["run", "p.toml", f"--url=wss://h/ws?token={REDACTED}&x=1"],
        ),
        (
            ["gateway", "--admin-token", "abc", "--port", "0"],
            ["gateway", "--admin-token", REDACTED, "--port", "0"],
        ),
        (["x", "--api-key=abc"], ["x", f"--api-key={REDACTED}"]),
        (["run", "http://h/api/stats?auth=1"], ["run", f"http://h/api/stats?auth={REDACTED}"]),
        (
            ["run", "p.toml", "--threshold", "rtt_p99<250ms"],
            ["run", "p.toml", "--threshold", "rtt_p99<250ms"],
        ),
        ([], []),
    ],
)
def test_the_command_line_is_redacted(argv: list[str], shown: list[str]) -> None:
    assert redact_argv(argv) == shown
    assert "s3cret" not in " ".join(redact_argv(argv))


def test_git_commit_of_this_checkout() -> None:
    commit = git_commit()
    # the tests run from soak's own checkout (a fresh clone in CI)
    assert commit is not None
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)


def test_the_manifest_says_where_the_run_came_from() -> None:
    p = make_profile(BODY, url="ws://user:pw@127.0.0.1:9/ws")
    m = manifest(p, ["run", "x.toml", "--url", "ws://user:pw@127.0.0.1:9/ws"], 0.0)
    assert m["git_commit"] == git_commit()
    assert m["os"] == os_version()
    assert m["python"]
    assert m["server_version"] is None  # filled in when the run ends
    assert m["argv"] == ["run", "x.toml", "--url", f"ws://{REDACTED}@127.0.0.1:9/ws"]
    assert shlex.split(m["command"]) == ["soak", *m["argv"]]
    assert "pw" not in str(m["argv"]) + m["command"]
    library = manifest(p, None, 0.0)
    assert library["argv"] is None
    assert library["command"] is None


@pytest.mark.parametrize("protocol", ["json", "ws-ping"])
async def test_the_reference_gateways_version_from_its_server_header(
    protocol: str, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    p = make_profile(one_client(hold="3s"), results=tmp_path, protocol=protocol)
    _outcome, run_dir = await run_in_memory(p, tmp_path, gateway_opener(Gateway(GatewayConfig())))
    run = json.loads((run_dir / "run.json").read_text())
    assert run["server_version"] == f"soak-gateway/{__version__}"
