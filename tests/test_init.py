"""``soak init``: a starter profile for every dialect that loads as written."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.config.load import load_profile
from soak.config.tables.target import PROTOCOL_TABLES
from soak.config.target import PROTOCOLS
from soak.starter import Starter, render, toml_value

OPTIONS = {
    "url": ["ws://127.0.0.1:8765/ws", "wss://gw.example:443/socket?x=1"],
    "clients": ["1", "20000"],
    "ramp": ["0s", "1m"],
    "duration": ["1s", "24h"],
    "heartbeat": ["250ms", "30s"],
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_combination_loads_as_written(protocol: str, tmp_path: Path) -> None:
    keys = list(OPTIONS)
    for i, values in enumerate(itertools.product(*OPTIONS.values())):
        path = tmp_path / f"p{i}.toml"
        args = ["init", str(path), "--protocol", protocol]
        for key, value in zip(keys, values, strict=True):
            args += [f"--{key}", value]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        p = load_profile(path, environ={})
        opts = dict(zip(keys, values, strict=True))
        assert p.target.protocol == protocol
        assert p.target.url == opts["url"]
        assert p.peak_clients == int(opts["clients"])
        assert p.heartbeat.timeout <= p.heartbeat.interval
        # a dialect's own table is written with its defaults
        if protocol in PROTOCOL_TABLES:
            assert getattr(p.target, protocol) is not None


def test_the_protocol_choices_are_the_loaders() -> None:
    init = cli.commands["init"]
    (opt,) = [p for p in init.params if p.name == "protocol"]
    assert list(opt.type.choices) == list(PROTOCOLS)  # type: ignore[attr-defined]


def test_the_default_path_and_refusing_to_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(cli, ["init"])
    assert first.exit_code == 0
    assert first.output.strip() == "soak.toml"
    (tmp_path / "soak.toml").write_text("# mine\n")
    again = CliRunner().invoke(cli, ["init", "--clients", "5"])
    assert again.exit_code == 2
    assert "soak.toml: exists; use --force to overwrite it" in again.output
    assert (tmp_path / "soak.toml").read_text() == "# mine\n"
    forced = CliRunner().invoke(cli, ["init", "--clients", "5", "--force"])
    assert forced.exit_code == 0
    assert load_profile(tmp_path / "soak.toml", environ={}).peak_clients == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://x/"], "--url: expected a ws:// or wss:// URL with a host"),
        (["--duration", "10"], '--duration: expected a duration like "30s"'),
        (["--heartbeat", "0s"], "--heartbeat: expected a duration greater than zero"),
        (["--ramp", "-1s"], "--ramp: expected a duration of zero or more"),
        (["--clients", "0"], "0 is not in the range x>=1"),
        (["--protocol", "jsn"], "'jsn' is not one of 'json', 'ws-ping', 'openclaw'"),
    ],
)
def test_bad_options_get_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "x.toml"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.toml").exists()


def test_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "no" / "such" / "dir.toml")])
    assert result.exit_code == 2
    assert "cannot write" in result.output


def test_toml_values() -> None:
    assert toml_value('a "b"') == '"a \\"b\\""'
    assert toml_value(True) == "true"
    assert toml_value(("x", "y")) == '["x", "y"]'
    assert toml_value(3) == "3"
    with pytest.raises(TypeError):
        toml_value(None)
    assert 'protocol = "ws-ping"' in render(Starter(protocol="ws-ping"))
