"""Address spreading: source addresses (``[target] source_ips``,
``--source-ip``) and target addresses (``[target] connect_to``), and the
messages shown when descriptors or ephemeral ports run out."""

from __future__ import annotations

import errno
import ipaddress
import json
import re
from pathlib import Path

import click
import pytest
import trio
from click.testing import CliRunner

from soak.addresses import is_assignable, parse_host_port, parse_source_ips
from soak.cli import check_ports, cli
from soak.client import _os_cause, url_opener
from soak.config.overrides import override
from soak.errors import ProfileError
from soak.limits import (
    check_port_capacity,
    fds_exhausted_message,
    limit_message,
    ports_exhausted_message,
)
from tests.support.runs import make_profile, run_in_memory

STAGES = '[[clients.stages]]\nkind = "ramp"\nto = 2\nduration = "1s"\n'


def anything_local(_addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return True


# -- parsing ---------------------------------------------------------------------


def test_a_range_expands_in_order() -> None:
    got = parse_source_ips("127.0.0.1-127.0.0.4")
    assert got == ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


def test_lists_commas_single_addresses_and_repeats() -> None:
    assert parse_source_ips(["127.0.0.9", "127.0.0.1-127.0.0.2", "127.0.0.9"]) == (
        "127.0.0.9",
        "127.0.0.1",
        "127.0.0.2",
    )
    assert parse_source_ips("127.0.0.3, 127.0.0.4") == ("127.0.0.3", "127.0.0.4")
    assert parse_source_ips("::1", anything_local) == ("::1",)


def test_a_range_crosses_octets() -> None:
    got = parse_source_ips("127.0.0.254-127.0.1.1")
    assert got == ("127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("127.0.0.1-127.0.0", '"127.0.0.1-127.0.0" is not an IP address or a range like'),
        ("localhost", '"localhost" is not an IP address or a range like'),
        ("127.0.0.1-127.0.0.2-127.0.0.3", "is not an IP address or a range like"),
        (
            "127.0.0.9-127.0.0.1",
            'range "127.0.0.9-127.0.0.1" goes backwards (its start is after its end); '
            'write "127.0.0.1-127.0.0.9"',
        ),
        ("127.0.0.1-::1", 'range "127.0.0.1-::1" mixes IPv4 and IPv6'),
        (
            "127.0.0.0-127.1.0.0",
            'range "127.0.0.0-127.1.0.0" has 65,537 addresses; at most 65,536',
        ),
        ("", "expected at least one address"),
        ([], "expected at least one address"),
        (5, "expected an address range like"),
        (["127.0.0.1", 2], "expected an address range like"),
    ],
)
def test_bad_ranges_say_what_is_wrong(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_source_ips(raw, anything_local)


def test_an_address_that_is_not_local_is_refused() -> None:
    # the host check is injected: here only 127.0.0.1 counts as this host's
    def only_one(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return str(addr) == "127.0.0.1"

    with pytest.raises(ValueError, match=re.escape("127.0.0.7")) as info:
        parse_source_ips("127.0.0.1,127.0.0.7", only_one)
    assert str(info.value) == (
        "127.0.0.7 is not an address of this host (neither loopback nor on a local "
        "interface), so connections cannot use it as their source"
    )


@pytest.mark.process
def test_is_assignable_on_this_host() -> None:
    # all of 127/8 is local on Linux; 192.0.2.0/24 (TEST-NET-1) is on no
    # interface: the bind fails, nothing is sent
    assert is_assignable(ipaddress.ip_address("127.0.0.1"))
    assert is_assignable(ipaddress.ip_address("127.3.2.1"))
    assert not is_assignable(ipaddress.ip_address("192.0.2.1"))


def test_host_port() -> None:
    assert parse_host_port("127.0.0.2:8765") == ("127.0.0.2", 8765)
    assert parse_host_port("[::1]:80") == ("::1", 80)
    for bad in ("127.0.0.2", "127.0.0.2:0", "127.0.0.2:x", ":80", 8765):
        with pytest.raises(ValueError, match="host:port"):
            parse_host_port(bad)


# -- the profile and the command line ----------------------------------------------


def test_profile_fields() -> None:
    p = make_profile(
        STAGES,
        target_extra='source_ips = "127.0.0.1-127.0.0.3"\n'
        'connect_to = ["127.0.0.1:8765", "127.0.0.2:8766"]\n',
    )
    assert p.target.source_ips == ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    assert p.target.connect_to == (("127.0.0.1", 8765), ("127.0.0.2", 8766))
    shown = p.redacted()["target"]
    assert list(shown["source_ips"]) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    # unused: not in run.json at all, as before these fields existed
    assert "source_ips" not in make_profile(STAGES).redacted()["target"]
    assert "connect_to" not in make_profile(STAGES).redacted()["target"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            'source_ips = "127.0.0.5-127.0.0.1"\n',
            'test.toml: target.source_ips: range "127.0.0.5-127.0.0.1" goes backwards',
        ),
        (
            'source_ips = "192.0.2.1"\n',
            "test.toml: target.source_ips: 192.0.2.1 is not an address of this host",
        ),
        (
            'source_ips = "::1"\n',
            "test.toml: target.source_ips: expected addresses of the same family as the "
            'target 127.0.0.1 (IPv4), got "::1"',
        ),
        (
            'connect_to = "127.0.0.1:1"\n',
            'test.toml: target.connect_to: expected a list like ["127.0.0.1:8765", ',
        ),
        (
            'connect_to = ["127.0.0.1"]\n',
            'test.toml: target.connect_to: "127.0.0.1" is not "host:port"',
        ),
    ],
)
@pytest.mark.process
def test_bad_profile_fields(extra: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        make_profile(STAGES, target_extra=extra)
    assert str(info.value).startswith(message), str(info.value)


def test_source_ip_option_overrides_the_profile() -> None:
    p = make_profile(STAGES, target_extra='source_ips = "127.0.0.1"\n')
    assert override(p, source_ip="127.0.0.7-127.0.0.8").target.source_ips == (
        "127.0.0.7",
        "127.0.0.8",
    )
    with pytest.raises(ProfileError, match=re.escape('--source-ip: "127.0.0.x" is not')):
        override(p, source_ip="127.0.0.x")


def test_run_source_ip_option_bad_range(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'[target]\nurl = "ws://127.0.0.1:9/ws"\n{STAGES}')
    result = CliRunner().invoke(cli, ["run", str(path), "--source-ip", "127.0.0.9-127.0.0.1"])
    assert result.exit_code == 2
    assert result.output == (
        'Error: --source-ip: range "127.0.0.9-127.0.0.1" goes backwards (its start is after '
        'its end); write "127.0.0.1-127.0.0.9", got "127.0.0.9-127.0.0.1"\n'
    )


def test_run_refuses_more_clients_than_the_ports_hold() -> None:
    # more than any ip_local_port_range holds for one (source, target) pair;
    # soak run checks descriptors first, so the port check is called directly
    big = '[[clients.stages]]\nkind = "ramp"\nto = 200000\nduration = "1s"\n'
    with pytest.raises(click.ClickException) as info:
        check_ports(make_profile(big, url="ws://127.0.0.1:8765/ws"))
    assert info.value.exit_code == 2
    assert info.value.message.startswith(
        "the profile needs 200,000 connections at its peak, but at most "
    )
    assert "fit towards 127.0.0.1:8765 (ip_local_port_range " in info.value.message
    assert "spread with --source-ip 127.0.0.1-127.0.0." in info.value.message
    wide = make_profile(big, target_extra='source_ips = "127.0.0.1-127.0.0.200"\n')
    check_ports(wide)  # 200 addresses hold them: no error


# -- opening connections ------------------------------------------------------------


async def accept_peers(
    listener: trio.SocketListener, count: int, peers: list[tuple[str, int]]
) -> None:
    for _ in range(count):
        stream = await listener.accept()
        assert isinstance(stream, trio.SocketStream)
        peers.append((stream.socket.getpeername()[0], stream.socket.getsockname()[1]))
        await stream.aclose()


@pytest.mark.process
async def test_connections_round_robin_over_sources_and_targets() -> None:
    listeners = [
        (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0],
        (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0],
    ]
    ports = [lst.socket.getsockname()[1] for lst in listeners]
    p = make_profile(
        STAGES,
        url=f"ws://127.0.0.1:{ports[0]}/ws",
        target_extra='source_ips = "127.0.0.2-127.0.0.3"\n'
        f'connect_to = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]\n',
    )
    opener = url_opener(p.target)
    peers: list[tuple[str, int]] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_peers, listeners[0], 4, peers)
            nursery.start_soon(accept_peers, listeners[1], 4, peers)
            got = []
            for _ in range(8):
                stream = await opener()
                assert isinstance(stream, trio.SocketStream)
                got.append((stream.socket.getsockname()[0], stream.socket.getpeername()[1]))
                await stream.aclose()
    a, b = ports
    # source n % 2, target (n // 2) % 2: every (source, target) pair in turn
    assert (
        got
        == [
            ("127.0.0.2", a),
            ("127.0.0.3", a),
            ("127.0.0.2", b),
            ("127.0.0.3", b),
        ]
        * 2
    )
    assert sorted(peers) == sorted(got)
    for lst in listeners:
        await lst.aclose()


@pytest.mark.process
async def test_a_failed_connect_names_its_source_and_target() -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
    p = make_profile(
        STAGES, url=f"ws://127.0.0.1:{port}/ws", target_extra='source_ips = "127.0.0.5"\n'
    )
    with pytest.raises(OSError, match="refused") as info:
        await url_opener(p.target)()
    assert info.value.errno == errno.ECONNREFUSED
    assert getattr(info.value, "source", None) == "127.0.0.5"
    assert getattr(info.value, "target", None) == f"127.0.0.1:{port}"


# -- when descriptors or ports run out ----------------------------------------------


def test_ports_exhausted_message() -> None:
    text = ports_exhausted_message(
        "127.0.0.1", "127.0.0.1:8765", needed=50_000, ports=(32768, 60999)
    )
    assert text == (
        "ephemeral ports exhausted for 127.0.0.1 -> 127.0.0.1:8765 (ip_local_port_range "
        "32768-60999 = 28,232 ports per source address; 1 source address(es) x 1 target "
        "address(es) = 28,232, the profile needs 50,000 connections); spread with "
        "--source-ip 127.0.0.1-127.0.0.2, or widen net.ipv4.ip_local_port_range"
    )


def test_ports_exhausted_with_sources_asks_for_more_than_it_has() -> None:
    text = ports_exhausted_message(
        "127.0.0.3", "127.0.0.1:8765", needed=50_000, sources=4, ports=(32768, 60999)
    )
    assert "4 source address(es) x 1 target address(es) = 112,928" in text
    # 4 should have been enough; the ports ran out anyway (TIME_WAIT, other
    # sockets), so the fix asks for one more
    assert text.endswith(
        "spread with --source-ip 127.0.0.1-127.0.0.5, or widen net.ipv4.ip_local_port_range"
    )


def test_ports_exhausted_beyond_one_octet() -> None:
    text = ports_exhausted_message(None, "127.0.0.1:80", needed=10_000_000, ports=(32768, 60999))
    assert "ephemeral ports exhausted for the default source address -> 127.0.0.1:80" in text
    assert "spread with --source-ip 127.0.0.1-127.0.1.99, or" in text  # 355 addresses
    # a message about a remote target (TEST-NET-1: a pure string, nothing is sent)
    remote = ports_exhausted_message(None, "192.0.2.3:80", needed=60_000, ports=(32768, 60999))
    assert "spread over 3 addresses of this host with --source-ip (or target.source_ips)" in remote


def test_fd_messages() -> None:
    text = fds_exhausted_message(errno.EMFILE, needed=30_000, soft=1024, hard=4096)
    assert text == (
        "descriptors exhausted: this process may open 1,024 files (RLIMIT_NOFILE, hard limit "
        "4,096) and the profile needs 30,000 connections plus a few for files; raise it "
        "(ulimit -n 30064, or LimitNOFILE= under systemd) or run fewer clients per process"
    )
    text = fds_exhausted_message(errno.ENFILE, needed=30_000)
    assert text.startswith("the system-wide open-file limit is reached (fs.file-max = ")
    assert "the profile needs 30,000 connections: raise it, e.g. sysctl -w fs.file-max=" in text


def test_limit_message_finds_the_errno_and_the_source() -> None:
    exc = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
    exc.source = "127.0.0.2"  # type: ignore[attr-defined]
    text = limit_message(exc, needed=40_000, target="127.0.0.1:8765", sources=("127.0.0.2",))
    assert text is not None
    assert text.startswith("ephemeral ports exhausted for 127.0.0.2 -> 127.0.0.1:8765")
    # trio's "all attempts to connect failed", caused by a group of the real errors
    outer = OSError("all attempts to connect to 127.0.0.1:8765 failed")
    outer.__cause__ = ExceptionGroup("x", [OSError(errno.EMFILE, "Too many open files")])
    emfile = limit_message(outer, needed=40_000, target="127.0.0.1:8765")
    assert emfile is not None
    assert emfile.startswith("descriptors exhausted")
    refused = OSError(errno.ECONNREFUSED, "Connection refused")
    assert limit_message(refused, needed=1, target="x:1") is None


def test_bind_without_no_port_counts_as_ports_exhausted() -> None:
    assert _os_cause(OSError(errno.EADDRINUSE, "Address already in use")) == "no_ports"
    assert _os_cause(OSError(errno.EADDRNOTAVAIL, "Cannot assign")) == "no_ports"
    assert _os_cause(OSError(errno.EMFILE, "Too many open files")) == "fd_limit"


def test_port_capacity_before_the_run() -> None:
    assert check_port_capacity(28_232, "127.0.0.1:8765", ports=(32768, 60999)) is None
    text = check_port_capacity(50_000, "127.0.0.1:8765", ports=(32768, 60999))
    assert text == (
        "the profile needs 50,000 connections at its peak, but at most 28,232 fit towards "
        "127.0.0.1:8765 (ip_local_port_range 32768-60999 = 28,232 ports per source address; "
        "1 source address(es) x 1 target address(es)); spread with --source-ip "
        "127.0.0.1-127.0.0.2, or widen net.ipv4.ip_local_port_range"
    )
    assert check_port_capacity(50_000, "x", sources=2, ports=(32768, 60999)) is None
    assert check_port_capacity(50_000, "x", targets=2, ports=(32768, 60999)) is None


@pytest.mark.slow
async def test_the_recorded_error_names_the_limit(tmp_path: Path) -> None:
    """A client whose connect runs out of ports records the limit and the fix."""
    p = make_profile(
        STAGES + '[reconnect]\nmax_attempts = 1\ninitial_delay = "100ms"\n',
        target_extra='source_ips = "127.0.0.1"\n',
    )

    def make(_nursery: trio.Nursery):  # type: ignore[no-untyped-def]
        async def open_stream() -> trio.abc.Stream:
            exc = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
            exc.source = "127.0.0.1"  # type: ignore[attr-defined]
            exc.target = "127.0.0.1:9"  # type: ignore[attr-defined]
            raise exc

        return open_stream

    _outcome, run_dir = await run_in_memory(p, tmp_path, make)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    failures = [e for e in events if e.get("event") == "handshake_failure"]
    assert failures
    assert failures[0]["cause"] == "no_ports"
    assert failures[0]["error"].startswith(
        "ws://127.0.0.1:9/ws: ephemeral ports exhausted for 127.0.0.1 -> 127.0.0.1:9 "
        "(ip_local_port_range "
    )
    assert "the profile needs 2 connections" in failures[0]["error"]
