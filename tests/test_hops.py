"""[[target.hops]]: parsed and refused (soak.config.tables.hops), checked by
``soak doctor`` (soak.doctor.chain), and closes judged against the hops
(soak.chain, soak.chain_summary) with plain events."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner

from soak.chain import RELOAD_REASON, ChainCloses, predict, silence
from soak.chain_summary import summarize
from soak.cli import cli
from soak.config.hops import KINDS
from soak.config.load import parse_profile
from soak.doctor.chain import check_chain
from soak.errors import ProfileError
from soak.report.chain_html import chain_section
from soak.report.report import Report
from soak.results.reader import Run

HEAD = '[target]\nurl = "ws://127.0.0.1:9/ws"\n'
TAIL = '[heartbeat]\ninterval = "10s"\n[[clients.stages]]\nkind = "hold"\nduration = "60s"\n'


def profile(hops: str, tail: str = TAIL) -> Any:
    return parse_profile(HEAD + hops + tail, "p.toml", {})


def refused(hops: str) -> str:
    with pytest.raises(ProfileError) as info:
        profile(hops)
    return str(info.value)


def test_hops_take_their_kinds_defaults_and_unique_names() -> None:
    p = profile(
        '[[target.hops]]\nkind = "nginx"\n'
        '[[target.hops]]\nkind = "nat"\nidle_timeout = "350s"\n'
        '[[target.hops]]\nkind = "nat"\nidle_timeout = "30s"\nresets_on = "client"\n'
        '[[target.hops]]\nkind = "cloudfront"\nname = "cdn"\n'
    )
    nginx, nat, nat2, cdn = p.target.hops
    assert (nginx.label(), nginx.timeout, nginx.resets) == ("nginx", 60.0, "either")
    assert nginx.source.startswith("nginx default")
    assert (nat.label(), nat.timeout, nat.source) == ("nat", 350.0, "profile")
    assert (nat2.label(), nat2.resets) == ("nat 2", "client")
    assert (cdn.label(), cdn.timeout, cdn.resets) == ("cdn", 600.0, "server")
    # run.json shows them; a profile without hops shows none
    assert p.redacted()["target"]["hops"][1]["idle_timeout"] == 350.0
    assert "hops" not in profile("").redacted()["target"]


def test_an_unknown_kind_is_refused_listing_the_kinds() -> None:
    msg = refused('[[target.hops]]\nkind = "ngnix"\n')
    assert msg.startswith("p.toml: target.hops[0].kind: expected one of ")
    assert ", ".join(KINDS) in msg
    assert msg.endswith(" (did you mean 'nginx'?), got \"ngnix\"")


@pytest.mark.parametrize(
    ("hops", "expected"),
    [
        ('[[target.hops]]\nidle_timeout = "5s"\n', "target.hops[0].kind: is required"),
        (
            '[[target.hops]]\nkind = "nat"\n',
            "target.hops[0].idle_timeout: is required for kind nat (the NAT's idle TCP "
            'mapping timeout), e.g. idle_timeout = "350s"',
        ),
        (
            '[[target.hops]]\nkind = "haproxy"\n',
            "target.hops[0].idle_timeout: is required for kind haproxy",
        ),
        (
            '[[target.hops]]\nkind = "nat"\nidle_timeout = "-1s"\n',
            "target.hops[0].idle_timeout: expected a duration of zero or more",
        ),
        (
            '[[target.hops]]\nkind = "nat"\nidle_timeout = "5s"\nresets_on = "up"\n',
            "target.hops[0].resets_on: expected one of either, server, client",
        ),
        (
            '[[target.hops]]\nkind = "nat"\nidle_timeout = "5s"\nidle = "5s"\n',
            "target.hops[0].idle: unknown field",
        ),
        (
            '[[target.hops]]\nkind = "nat"\nidle_timeout = "5s"\nshutdown_timeout = "1s"\n',
            "target.hops[0].shutdown_timeout: applies to kind nginx or haproxy only",
        ),
        (
            '[[target.hops]]\nkind = "nginx"\nconfig = "/nonexistent/nginx.conf"\n',
            "target.hops[0].config: expected the path of an existing file",
        ),
        (
            '[[target.hops]]\nkind = "nginx"\nname = "a"\n'
            '[[target.hops]]\nkind = "nat"\nname = "a"\nidle_timeout = "5s"\n',
            "target.hops[1].name: expected a name no other hop has",
        ),
        ('[target.hops]\nkind = "nginx"\n', "target.hops: expected a list of tables"),
    ],
)
def test_bad_hops_are_refused_naming_the_field(hops: str, expected: str) -> None:
    msg = refused(hops)
    assert msg.startswith("p.toml: "), msg
    assert expected in msg, msg
    assert "\n" not in msg


def test_a_hop_reads_its_idle_timeout_from_its_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "events {}\nhttp {\n  proxy_read_timeout 90s;\n  server {\n"
        "    location /ws {\n      proxy_pass http://gw;\n"
        "      proxy_set_header Upgrade $http_upgrade;\n      proxy_read_timeout 7s;\n"
        "    }\n  }\n}\n"
    )
    (hop,) = profile(f'[[target.hops]]\nkind = "nginx"\nconfig = "{conf}"\n').target.hops
    assert hop.timeout == 7.0
    assert "proxy_read_timeout 7 s (line 8)" in hop.source
    # the profile's value wins, and doctor says they differ
    p = profile(f'[[target.hops]]\nkind = "nginx"\nconfig = "{conf}"\nidle_timeout = "20s"\n')
    (hop,) = p.target.hops
    assert (hop.timeout, hop.config_timeout) == (20.0, 7.0)
    codes = [f.code for f in check_chain(p)]
    assert "hop-config-differs" in codes


def test_a_config_file_that_cannot_be_parsed_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "h.cfg"
    cfg.write_text("defaults from nope\n    timeout client 5s\n")
    msg = refused(f'[[target.hops]]\nkind = "haproxy"\nconfig = "{cfg}"\n')
    head = "p.toml: target.hops[0].config: cannot be read as haproxy's config: "
    assert msg.startswith(f"{head}{cfg}: line 1: "), msg
    assert "\n" not in msg


def test_doctor_predicts_the_hop_that_closes_first() -> None:
    p = profile(
        '[[target.hops]]\nkind = "aws_alb"\n'
        '[[target.hops]]\nkind = "nat"\nidle_timeout = "8s"\n'
        '[[target.hops]]\nkind = "nginx"\nidle_timeout = "7s"\n'
    )
    found = {(f.code, f.message.split(":")[1].strip()): f for f in check_chain(p)}
    codes = [c for c, _ in found]
    assert codes.count("hop-timeout-short") == 2
    assert codes.count("hop-timeout-ok") == 1
    (pred,) = [f for f in check_chain(p) if f.code == "chain-prediction"]
    assert pred.message.startswith(
        "prediction: hop 'nginx' closes idle connections first, 7 s after their last frame, "
        "each within 17 s of opening"
    )
    calm = profile('[[target.hops]]\nkind = "aws_alb"\n')
    (pred,) = [f for f in check_chain(calm) if f.code == "chain-prediction"]
    assert pred.message.startswith("prediction: no hop closes idle connections; the nearest is")
    assert check_chain(profile("")) == []


def test_doctor_cli_checks_the_chain_of_a_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        HEAD.replace("9/ws", "1/ws") + '[[target.hops]]\nkind = "nat"\nidle_timeout = "5s"\n' + TAIL
    )
    result = CliRunner().invoke(cli, ["doctor", "--profile", str(path)])
    assert "[hop-timeout-short]" in result.output
    assert "prediction: hop 'nat' closes idle connections first, 5 s after" in result.output
    assert result.exit_code == 2


# -- closes judged against the hops, as plain events -----------------------------------


def close(t: float, server: float, sent: float | None = None, reason: str = "transport_eof") -> Any:
    return {
        "t": t,
        "event": "close",
        "reason": reason,
        "category": "transport",
        "initiator": "transport",
        "transport": "eof",
        "evidence": {
            "last_frame_age_s": server,
            "last_sent_age_s": server if sent is None else sent,
            "age_s": server + 3.0,
        },
    }


def totals(eof: int) -> dict[str, Any]:
    return {
        "closes": {"transport_eof": eof, "client_shutdown": 2},
        "closes_by_category": {"transport": eof, "client": 2},
    }


def test_silence_is_counted_in_the_hops_direction() -> None:
    ev = {"last_frame_age_s": 7.0, "last_sent_age_s": 2.0}
    assert (silence(ev, "server"), silence(ev, "client"), silence(ev, "either")) == (7.0, 2.0, 2.0)
    assert silence({"last_frame_age_s": 7.0}, "either") == 7.0


def test_each_close_goes_to_the_hop_whose_timeout_it_matches() -> None:
    p = profile(
        '[[target.hops]]\nkind = "nginx"\nidle_timeout = "7s"\n'
        '[[target.hops]]\nkind = "nat"\nidle_timeout = "4s"\nresets_on = "server"\n'
    )
    # five closes at 7 s of silence, five at 4 s from the server while the
    # client kept sending: nat's, since only the server's silence resets it
    events = [close(10.0 + i, 7.0) for i in range(5)] + [
        close(20.0 + i, 4.0, sent=1.0) for i in range(5)
    ]
    closes = ChainCloses(p.target.hops).observe_all(events)
    assert closes.idle["nginx"].count == 5
    assert closes.idle["nat"].count == 5
    tot = totals(10)
    entries, chain = summarize(closes, 10.0, tot, duration=60.0)
    assert {e["hop"]: e["closes"] for e in entries} == {"nginx": 5, "nat": 5}
    assert tot["closes"] == {"client_shutdown": 2, "intermediary_idle_timeout": 10}
    assert tot["closes_by_category"] == {"client": 2, "intermediary": 10}
    assert tot["intermediary_closes"] == 10
    assert chain is not None
    assert chain["agrees"] is True
    assert chain["predicted_first"]["hop"] == "nat"


def test_two_closes_at_a_hops_timeout_are_not_named() -> None:
    p = profile('[[target.hops]]\nkind = "nginx"\nidle_timeout = "7s"\n')
    closes = ChainCloses(p.target.hops).observe_all([close(10.0, 7.0), close(30.0, 7.0)])
    tot = totals(2)
    entries, chain = summarize(closes, 10.0, tot, duration=60.0)
    assert entries == []
    assert tot["closes"]["transport_eof"] == 2
    assert "closes_named" not in tot
    assert chain is not None
    (row,) = chain["hops"]
    assert row["observed"]["closes"] == 2
    assert row["verdict"] == "contradicted"


def test_a_short_run_cannot_contradict_a_prediction() -> None:
    p = profile('[[target.hops]]\nkind = "nginx"\nidle_timeout = "7s"\n')
    _, chain = summarize(ChainCloses(p.target.hops), 10.0, totals(0), duration=12.0)
    assert chain is not None
    (row,) = chain["hops"]
    assert row["verdict"] == "not_observable"
    assert "too short" in row["text"]
    assert chain["agrees"] is None


def test_closes_a_reload_explains_are_the_hops_not_the_gateways() -> None:
    """A storm stage's command (the reload) at 5 s; nginx's old worker holds
    its connections for shutdown_timeout (2 s) and then closes them all."""
    p = profile('[[target.hops]]\nkind = "nginx"\nidle_timeout = "60s"\nshutdown_timeout = "2s"\n')
    events = [
        {"t": 5.0, "event": "storm_stage", "command": "nginx -s reload"},
        *(close(7.0 + i * 0.001, 0.2 + i * 0.01) for i in range(20)),
        close(30.0, 0.5),  # later, unrelated
    ]
    closes = ChainCloses(p.target.hops).observe_all(events)
    tot = totals(21)
    storms = [{"index": 1, "start_s": 7.0}]
    entries, chain = summarize(closes, 10.0, tot, duration=60.0, storms=storms)
    (reload,) = entries
    assert reload["reason"] == RELOAD_REASON
    assert reload["category"] == "intermediary"
    assert (reload["hop"], reload["closes"], reload["reload_t_s"]) == ("nginx", 20, 5.0)
    assert reload["after_reload_s"] == pytest.approx(2.0)
    assert reload["storm"] == 1
    assert "not by the gateway" in reload["text"]
    assert tot["closes"] == {"client_shutdown": 2, "intermediary_reload": 20, "transport_eof": 1}
    assert tot["intermediary_reload_closes"] == 20
    assert tot["intermediary_closes"] == 0
    assert chain is not None
    assert chain["hops"][0]["observed"]["reload_closes"] == 20


def test_without_a_reload_instant_a_mass_close_is_not_named() -> None:
    p = profile('[[target.hops]]\nkind = "nginx"\nshutdown_timeout = "2s"\n')
    closes = ChainCloses(p.target.hops).observe_all(
        [close(7.0 + i * 0.001, 0.2 + i * 0.01) for i in range(20)]
    )
    entries, _ = summarize(closes, 10.0, totals(20), duration=60.0)
    assert entries == []


def test_predict_is_per_hop_against_the_interval() -> None:
    p = profile(
        '[[target.hops]]\nkind = "nginx"\nidle_timeout = "10s"\n'
        '[[target.hops]]\nkind = "nat"\nidle_timeout = "10.5s"\n'
    )
    a, b = predict(p.target.hops, 10.0)
    assert (a.closes, b.closes) == (True, False)  # equal to the interval: a race it loses
    assert b.margin == pytest.approx(0.5)


def test_the_reports_chain_table_shows_prediction_and_observation() -> None:
    p = profile('[[target.hops]]\nkind = "nginx"\nidle_timeout = "7s"\nname = "edge <1>"\n')
    events = [close(10.0 + i, 7.0) for i in range(6)]
    _, chain = summarize(
        ChainCloses(p.target.hops).observe_all(events), 10.0, totals(6), duration=60.0
    )
    report = Report(
        run=cast(Run, None),
        summary={"chain": chain},
        computed=False,
        charts=[],
        false_timeouts=[],
        false_timeouts_total=0,
    )
    html = chain_section(report)
    assert html.startswith("<h2>The chain: predicted and observed</h2>")
    assert "edge &lt;1&gt;" in html  # escaped
    assert "<td>closes</td><td class='num'>6</td><td class='num'>7</td>" in html
    assert "<td>agrees</td>" in html
    assert chain_section(dataclasses.replace(report, summary={})) == ""


def test_an_haproxy_config_without_an_idle_timeout_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:8080\n    default_backend b\n"
        "backend b\n    server gw 127.0.0.1:8765\n"
    )
    msg = refused(f'[[target.hops]]\nkind = "haproxy"\nconfig = "{cfg}"\n')
    assert msg.startswith("p.toml: target.hops[0].config: sets no timeout that cuts an idle")
    (hop,) = profile(
        f'[[target.hops]]\nkind = "haproxy"\nconfig = "{cfg}"\nidle_timeout = "1h"\n'
    ).target.hops
    assert hop.timeout == 3600.0
