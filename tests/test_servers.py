"""soak.servers and `soak server`: what is missing is named, bad options
are refused, and a started server is stopped by its PID. The dialects'
own tests start the real servers; these use a tiny Python server."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.servers import Recipe, ServerUnavailable, start
from soak.servers.base import _loopback, cache_dir, listening, npm_install, prepare

ECHO = """
import socket, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ["HOST"], int(os.environ["PORT"]))); s.listen()
while True:
    c, _ = s.accept(); c.close()
"""


def _python(script: str) -> Recipe:
    def argv(installed: Path | None, work: Path, port: int, opts: Mapping[str, str]) -> list[str]:
        (work / "server.py").write_text(script)
        return [sys.executable, str(work / "server.py")]

    return Recipe(name="toy", dialect="json", summary="a toy", argv=argv, options=("speed",))


def test_a_missing_binary_names_the_debian_package() -> None:
    r = Recipe(
        name="x",
        dialect="mqtt",
        summary="",
        argv=lambda *a: [],
        binary="no-such-daemon-zz",
        debian="zz-pkg",
    )
    with pytest.raises(
        ServerUnavailable,
        match=r"x: no-such-daemon-zz is not installed \(Debian: apt-get install -y zz-pkg\)",
    ):
        prepare(r)


def test_npm_missing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ServerUnavailable, match="npm is not installed"):
        npm_install("sio", ("socket.io@4",))


def test_the_cache_is_outside_the_repository(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SOAK_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SOAK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "soak"


def test_an_unknown_option_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match=r"toy: unknown option 'sped' \(known: speed\)"),
        start(_python(ECHO), tmp_path, options={"sped": "1"}),
    ):
        pass


def test_loopback_addresses() -> None:
    assert _loopback("127.0.0.1:9001")
    assert _loopback("[::1]:80")
    assert not _loopback("0.0.0.0:9001")
    assert not _loopback("*:9001")
    assert not _loopback("[::]:9001")


@pytest.mark.process
def test_a_server_is_started_on_loopback_and_stopped_by_its_pid(tmp_path: Path) -> None:
    with start(_python(ECHO), tmp_path, start_timeout=10) as srv:
        assert srv.url.startswith("ws://127.0.0.1:")
        assert srv.proc.poll() is None
        assert listening(srv.pid) == [f"127.0.0.1:{srv.port}"]
    assert srv.proc.poll() is not None


@pytest.mark.process
def test_a_server_that_dies_at_once_is_named_with_its_log(tmp_path: Path) -> None:
    dies = _python("import sys; print('boom'); sys.exit(3)")
    with (
        pytest.raises(ServerUnavailable, match=r"toy exited with 3 before listening(.|\n)*boom"),
        start(dies, tmp_path, start_timeout=10),
    ):
        pass


@pytest.mark.process
def test_a_server_listening_beyond_loopback_is_stopped_and_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what ss reports for mosquitto without socket_domain ipv4 (the toy
    # itself stays on loopback: tests never listen wider)
    monkeypatch.setattr("soak.servers.base.listening", lambda pid: ["*:9001"])
    with (
        pytest.raises(ServerUnavailable, match=r"listens on \*:9001, not only on loopback"),
        start(_python(ECHO), tmp_path, start_timeout=10),
    ):
        pass


def test_soak_server_refuses_an_unknown_name_listing_the_known() -> None:
    result = CliRunner().invoke(cli, ["server", "no-such"])
    assert result.exit_code == 2
    assert "no real server called 'no-such' (known:" in result.output


def test_soak_server_refuses_a_setting_without_equals() -> None:
    from soak.servers import registry

    registry.RECIPES["toy"] = _python(ECHO)
    try:
        result = CliRunner().invoke(cli, ["server", "toy", "--set", "speed"])
    finally:
        del registry.RECIPES["toy"]
    assert result.exit_code == 2
    assert "--set speed: expected KEY=VALUE" in result.output
