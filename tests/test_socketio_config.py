"""protocol = "socket.io", pure: [target.socketio] and its checks against
the URL, what soak init writes for it, the impairment proxy's view of 2 and
3, and the real server's recipe and `soak server` options."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.config.load import parse_profile
from soak.config.overrides import override
from soak.config.socketio import SOCKETIO_SERVER_HEARTBEAT, SocketIOConfig, resolve
from soak.config.target import TargetConfig
from soak.errors import ProfileError
from soak.protocols import PROTOCOLS
from soak.protocols.socketio import SocketIO, SocketIOState
from soak.proxy.frames import kinds_of
from soak.servers import recipe
from soak.starter import Starter, render

URL = "ws://127.0.0.1:3001/socket.io/"
STAGES = '\n[clients]\n[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'


def target(
    table: str = "", url: str = URL, keys: str = "", env: dict[str, str] | None = None
) -> TargetConfig:
    text = f'[target]\nurl = "{url}"\nprotocol = "socket.io"\n{keys}'
    if table:
        text += f"[target.socketio]\n{table}\n"
    return parse_profile(text + STAGES, "p.toml", env or {}).target


def client(table: str = "", url: str = URL) -> SocketIO:
    return SocketIO("soak-000001", SocketIOState(target(table, url=url)))


def load_error(text: str) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(text + STAGES, "p.toml", {})
    return str(info.value)


# -- the profile ------------------------------------------------------------------------


def test_defaults_and_the_implied_server_heartbeat() -> None:
    t = target()
    assert t.socketio is None
    assert t.server_heartbeat == SOCKETIO_SERVER_HEARTBEAT
    assert SOCKETIO_SERVER_HEARTBEAT.close_codes == (1005,)
    assert "socket.io" in PROTOCOLS


@pytest.mark.parametrize(
    ("url", "table", "resource"),
    [
        ("ws://h:1/", "", "/socket.io/?EIO=4&transport=websocket"),
        ("ws://h:1", "", "/socket.io/?EIO=4&transport=websocket"),
        ("ws://h:1/rt", "", "/rt/?EIO=4&transport=websocket"),
        ("ws://h:1/", 'path = "/rt"', "/rt/?EIO=4&transport=websocket"),
        ("ws://h:1/rt/", 'path = "/rt/"', "/rt/?EIO=4&transport=websocket"),
        (
            "ws://h:1/socket.io/?EIO=3&transport=websocket",
            "",
            "/socket.io/?EIO=3&transport=websocket",
        ),
        ("ws://h:1/?token=a%20b&x=", "", "/socket.io/?token=a+b&x=&EIO=4&transport=websocket"),
        ("ws://h:1/?EIO=4", "eio = 4", "/socket.io/?EIO=4&transport=websocket"),
    ],
)
def test_the_upgrade_resource(url: str, table: str, resource: str) -> None:
    assert client(table, url=url).resource("/") == resource


@pytest.mark.parametrize(
    ("table", "url", "says"),
    [
        (
            "eio = 5",
            URL,
            "target.socketio.eio: expected 4 (Socket.IO 3 and 4) or 3 (Socket.IO 2), got 5",
        ),
        ("eio = true", URL, "target.socketio.eio: expected 4"),
        (
            'namespace = "admin"',
            URL,
            'target.socketio.namespace: expected a namespace like "/" or "/admin", got "admin"',
        ),
        ('namespace = "/a,b"', URL, "target.socketio.namespace: expected a namespace"),
        (
            'auth = "[1]"',
            URL,
            'target.socketio.auth: expected a table like { token = "..." } or a JSON object '
            'as text, got "[1]"',
        ),
        (
            'auth = "{x"',
            URL,
            'target.socketio.auth: expected a table like { token = "..." } or a JSON object '
            "as text (not JSON",
        ),
        ("auth = 3", URL, "target.socketio.auth: expected a table"),
        ("eio = 3\nauth = { a = 1 }", URL, "target.socketio.auth: is not sent with eio = 3"),
        (
            'path = "socket.io"',
            URL,
            'target.socketio.path: expected a path like "/socket.io/", got "socket.io"',
        ),
        (
            'permanent_errors = "("',
            URL,
            "target.socketio.permanent_errors: expected a regular expression",
        ),
        (
            'namspace = "/x"',
            URL,
            "target.socketio.namspace: unknown field (did you mean 'namespace'?)",
        ),
        ("eio = 4", "ws://h/socket.io/?EIO=3", "target.socketio: eio = 4 but the URL says EIO=3"),
        ('path = "/a/"', "ws://h/b/", 'target.socketio: path = "/a/" but the URL\'s path is "/b/"'),
        (
            "",
            "ws://h/?transport=polling",
            "target.url: the URL's transport=polling: soak speaks Engine.IO over the "
            "websocket transport only",
        ),
        ("", "ws://h/?EIO=5", "target.url: the URL's EIO=5: soak speaks Engine.IO 3 and 4"),
        ("", "ws://h/?sid=abc", "target.url: the URL has a sid"),
    ],
)
def test_bad_input_names_the_field(table: str, url: str, says: str) -> None:
    text = f'[target]\nurl = "{url}"\nprotocol = "socket.io"\n'
    if table:
        text += f"[target.socketio]\n{table}\n"
    message = load_error(text)
    assert message.startswith("p.toml: " + says), message
    assert "\n" not in message


def test_the_table_on_another_dialect_names_both() -> None:
    message = load_error(
        f'[target]\nurl = "{URL}"\nprotocol = "json"\n[target.socketio]\neio = 3\n'
    )
    assert (
        message == 'p.toml: target.socketio: is only used with protocol = "socket.io", got "json"'
    )


def test_url_override_is_checked_against_the_table() -> None:
    profile = parse_profile(
        f'[target]\nurl = "{URL}"\nprotocol = "socket.io"\n[target.socketio]\neio = 3\n' + STAGES,
        "p.toml",
        {},
    )
    with pytest.raises(ProfileError) as info:
        override(profile, url="ws://h/socket.io/?EIO=4")
    assert str(info.value) == "--url: eio = 3 but the URL says EIO=4"
    assert override(profile, url="ws://h:2/").target.url == "ws://h:2/"


def test_resolve_is_pure() -> None:
    r = resolve("ws://h/x?EIO=3&a=1", SocketIOConfig())
    assert (r.eio, r.path, r.query) == (3, "/x/", (("a", "1"),))


def test_soak_init_writes_a_profile_that_loads() -> None:
    text = render(Starter(protocol="socket.io", url=URL))
    assert "[target.socketio]" in text
    assert 'namespace = "/"' in text
    profile = parse_profile(text, "init.toml", {})
    assert profile.target.socketio == SocketIOConfig()


def test_run_json_shows_the_table_only_for_socketio() -> None:
    t = target('namespace = "/admin"')
    assert t.socketio is not None
    profile = parse_profile(
        f'[target]\nurl = "{URL}"\nprotocol = "socket.io"\n'
        + '[target.socketio]\nnamespace = "/admin"\n'
        + STAGES,
        "p.toml",
        {},
    )
    assert profile.redacted()["target"]["socketio"]["namespace"] == "/admin"
    plain = parse_profile(f'[target]\nurl = "{URL}"\n' + STAGES, "p.toml", {})
    assert "socketio" not in plain.redacted()["target"]


# -- the impairment proxy and the real server's recipe -----------------------------------


def test_the_proxy_knows_engine_io_heartbeats() -> None:
    kind = kinds_of("socket.io")
    assert kind(0x1, True, b"2") == "ping"
    assert kind(0x1, True, b"3") == "pong"
    assert kind(0x1, True, b"40") is None
    assert kind(0x1, True, b"2probe") is None
    assert kind(0x1, False, b"2") is None
    assert kind(0x2, True, b"2") is None
    assert kinds_of("json")(0x1, True, b"2") is None


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"ping_interval": "1s"}, "option ping_interval='1s': expected milliseconds"),
        ({"ping_timeout": "0"}, "option ping_timeout='0': expected milliseconds"),
        ({"path": "x"}, "option path='x': expected a path like /socket.io/"),
    ],
)
def test_the_recipes_options_are_checked(options: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=r"socket\.io: ") as info:
        recipe("socket.io").env(options)
    assert says in str(info.value)


def test_the_recipe_passes_its_options_as_the_scripts_environment() -> None:
    env = recipe("socket.io").env({"ping_interval": "1000", "auth_token": "t"})
    assert env == {"PING_INTERVAL": "1000", "AUTH_TOKEN": "t"}
    assert recipe("socket.io").url(3001) == "ws://127.0.0.1:3001/socket.io/"


def test_soak_server_lists_it_and_refuses_a_bad_option() -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["server"])
    assert listing.exit_code == 0
    (line,) = [x for x in listing.output.splitlines() if x.startswith("socket.io ")]
    assert "options: ping_interval, ping_timeout, auth_token, path, disconnect_after" in line
    bad = runner.invoke(cli, ["server", "socket.io", "--set", "nope=1"])
    assert bad.exit_code == 2
    assert "socket.io: unknown option 'nope'" in bad.output
    assert "Traceback" not in bad.output


def test_summary_strings_do_not_add_up_across_workers() -> None:
    s = SocketIOState(target()).summary()
    assert isinstance(s["engine_io"], str)
    assert json.dumps(s)
