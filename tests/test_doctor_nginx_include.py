"""soak doctor following nginx's ``include``: relative to the file given,
globs in name order, timeouts inherited across files, problems and bad
includes named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak.doctor.consistency import check_consistency
from soak.doctor.proxies import load_proxy_config, parse_proxy_config
from soak.doctor.timeouts import ProxyConfigError

MAIN = """events { }
http {
    proxy_read_timeout 7s;
    include conf.d/*.conf;
    include missing.d/*.conf;
}
"""
SITE = """server {
    listen 127.0.0.1:8080;
    location /ws {
        proxy_pass http://127.0.0.1:8765;
        proxy_set_header Upgrade $http_upgrade;
        proxy_send_timeout: 30s;
    }
}
"""


def tree(tmp_path: Path, main: str = MAIN) -> Path:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b-ws.conf").write_text(SITE)
    (tmp_path / "conf.d" / "a-empty.conf").write_text("# nothing\n")
    conf = tmp_path / "nginx.conf"
    conf.write_text(main)
    return conf


def test_a_location_in_an_included_file_inherits_from_the_main_file(tmp_path: Path) -> None:
    conf = tree(tmp_path)
    cfg = load_proxy_config(conf)
    site = str(tmp_path / "conf.d" / "b-ws.conf")
    (loc,) = cfg.locations
    assert (loc.name, loc.file, loc.line) == ("location /ws", site, 3)
    assert loc.idle is not None
    assert (loc.idle.seconds, loc.idle.source, loc.idle.file, loc.idle.line) == (
        7.0,
        "inherited",
        "",
        3,
    )
    assert loc.idle.describe() == "proxy_read_timeout 7 s (inherited from line 3)"
    # the problem is in the included file, and says so
    (p,) = cfg.problems
    assert (p.file, p.line) == (site, 6)
    (f,) = [x for x in check_consistency(proxies=[cfg]) if x.code == "proxy-invalid-directive"]
    assert f.message.startswith(f"{site}: line 6: `proxy_send_timeout: 30s;`")


def test_text_alone_does_not_follow_includes(tmp_path: Path) -> None:
    cfg = parse_proxy_config(MAIN, "nginx.conf")
    assert cfg.locations == ()


def test_a_missing_plain_include_names_the_file_and_line(tmp_path: Path) -> None:
    conf = tree(tmp_path, MAIN.replace("missing.d/*.conf", "missing.conf"))
    with pytest.raises(ProxyConfigError) as err:
        load_proxy_config(conf)
    assert str(err.value) == (
        f"{conf}: line 5: include missing.conf: {tmp_path / 'missing.conf'}: file not found"
    )


def test_an_include_loop_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text("http { include nginx.conf; }\n")
    with pytest.raises(ProxyConfigError, match="line 1: includes nested too deep"):
        load_proxy_config(conf)


def test_a_broken_included_file_is_named(tmp_path: Path) -> None:
    conf = tree(tmp_path)
    (tmp_path / "conf.d" / "c-bad.conf").write_text("server {\n    listen 80\n}\n")
    with pytest.raises(ProxyConfigError) as err:
        load_proxy_config(conf)
    assert str(err.value) == (
        f"{tmp_path / 'conf.d' / 'c-bad.conf'}: line 2: 'listen 80' is missing its ';'"
    )
