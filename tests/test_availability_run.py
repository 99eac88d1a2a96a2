"""Availability of whole runs under MockClock: 20 clients, the gateway
restarts at 10 s of a 40 s run and comes back after 5 s (every client back
at +7 s: no jitter, delays 1, 2, 4 s), or never comes back. The figures are
exact; the run that loses its clients fails; compare calls it a regression."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing
from click.testing import CliRunner

from soak.cli import cli
from soak.gateway import Gateway, GatewayConfig
from soak.report.compare import compare
from soak.report.compare_text import render_text
from soak.report.report import build
from soak.results.reader import load_run
from soak.run.runner import Outcome, Runner
from tests.support.runs import Opener, make_profile, memory_opener, run_in_memory

RESTART_AT = 10.0
CLIENTS = 20

PROFILE = """
[run]
label = "{label}"
report_interval = "10s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 20
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "40s"
[heartbeat]
interval = "1s"
timeout = "500ms"
[reconnect]
jitter = "none"
initial_delay = "1s"
base = 2.0
max_delay = "60s"
max_attempts = 20
{thresholds}
"""


async def restart_run(
    tmp_path: Path, label: str, outage: float, thresholds: str = ""
) -> tuple[Outcome, Path]:
    gateway = Gateway(GatewayConfig(hb_interval=30.0, hb_timeout=120.0, check_every=5.0))

    def make(nursery: trio.Nursery) -> Opener:
        nursery.start_soon(gateway.run_checker)
        inner = memory_opener(gateway, nursery)

        async def open_stream() -> trio.abc.Stream:
            if gateway.refusing(trio.current_time()):
                raise ConnectionRefusedError(111, "Connection refused")
            return await inner()

        return open_stream

    async def restart(runner: Runner) -> None:
        await trio.sleep(RESTART_AT)
        gateway.restart(outage)

    body = PROFILE.format(label=label, thresholds=thresholds)
    profile = make_profile(body, results=tmp_path)
    return await run_in_memory(profile, tmp_path, make, during=restart)


def intervals(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (path / "intervals.jsonl").read_text().splitlines()]


async def test_a_target_that_returns_after_5s(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, path = await restart_run(tmp_path, "back", 5.0)
    av = outcome.summary["availability"]
    # 20 clients x 40 s planned; 20 x 7 s lost (refused at +1 and +3 s, back at +7 s)
    assert av["target_client_s"] == pytest.approx(CLIENTS * 40.0, abs=1e-6)
    assert av["connected_client_s"] == pytest.approx(CLIENTS * 33.0, abs=1e-6)
    assert av["availability"] == pytest.approx(33.0 / 40.0, abs=1e-6)
    # the interval from 10 s to 20 s held 30%: below 95% for that interval
    assert av["below"] == {"share": 0.95, "longest_s": 10.0, "from_s": 10.0}
    (storm,) = av["storms"]
    assert storm["lost"] == storm["recovered"] == CLIENTS
    assert storm["recovered_share"] == 1.0
    assert storm["recovery_95_s"] == pytest.approx(7.0, abs=1e-6)
    assert storm["recovery_100_s"] == pytest.approx(7.0, abs=1e-6)
    assert av["storm_recovery"] == 1.0
    # per interval, in intervals.jsonl
    recs = intervals(path)
    assert [r["availability"] for r in recs[:4]] == pytest.approx([1.0, 0.3, 1.0, 1.0])
    assert recs[1]["connected_s"] == pytest.approx(60.0)
    assert recs[1]["target_s"] == pytest.approx(200.0)
    # 82.5% is under the default 90%: the run fails, and says why
    assert outcome.exit_code == 1
    assert outcome.summary["verdict"].startswith(
        "the planned load was not held: availability 82.50% (at least 90%)"
    )
    checks = {v["name"]: v for v in outcome.summary["thresholds"]}
    assert checks["storm_recovery"]["ok"]


async def test_a_profile_that_expects_the_outage_passes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await restart_run(tmp_path, "ok", 5.0, '[thresholds]\navailability = "80%"')
    assert outcome.exit_code == 0, outcome.summary["verdict"]
    checks = {v["name"]: v for v in outcome.summary["thresholds"]}
    assert checks["availability"]["text"].startswith("PASS availability >= 80%: 82.50%")


async def test_a_target_that_never_returns_fails_and_compare_flags_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gone, gone_path = await restart_run(tmp_path / "gone", "gone", 1e6)
    av = gone.summary["availability"]
    assert av["availability"] == pytest.approx(10.0 / 40.0, abs=1e-6)
    assert av["below"] == {"share": 0.95, "longest_s": 30.0, "from_s": 10.0}
    (storm,) = av["storms"]
    assert storm["lost"] == CLIENTS
    assert storm["recovered"] == 0
    assert storm["recovered_share"] == 0.0
    assert storm["recovery_95_s"] is None
    assert storm["recovery_100_s"] is None
    # the clients have not used up their 20 attempts: it is availability that fails
    assert gone.summary["totals"]["reconnect_failed"] == 0
    assert gone.exit_code == 1
    verdict = gone.summary["verdict"]
    assert verdict.startswith("the planned load was not held: availability 25.00% (at least 90%)")
    assert "storm_recovery 0.00% (at least 100%)" in verdict
    assert "storm 1 at 10 s: 0 of 20 lost clients back by the end" in verdict

    _, back_path = await restart_run(tmp_path / "back", "back", 5.0)
    c = compare([load_run(back_path), load_run(gone_path)], resamples=50)
    bad = {k.name for k in c.checks if k.regression}
    assert {"availability", "storm_recovery", "storm_recovery_s"} <= bad
    assert c.exit_code == 1
    text = render_text(c)
    assert "REGRESSION: availability (gone)" in text
    assert "7 s -> never (0 of 20 back by the end)" in text
    # a 40 s run: counts, not rates per hour, and the note says so
    assert "compared as counts, not per hour" in text
    rows = {r.key: r for r in c.rows}
    assert rows["availability"].values == pytest.approx([82.5, 25.0])
    assert "closes_per_hour.server" not in rows
    # same profile but the label: no warning
    assert not c.warnings


@pytest.mark.slow
async def test_the_report_shows_availability_and_the_storm_band(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    _, path = await restart_run(tmp_path, "back", 5.0)
    rep = build(path)
    conn = {c.name: c for c in rep.charts}["connections"]
    assert conn.extra["storms"] == [(10.0, 17.0)]  # the storm, start to the last client back
    assert conn.series["connected (mean)"] == pytest.approx([20.0, 6.0, 20.0, 20.0])
    assert conn.series["target (mean)"] == pytest.approx([20.0, 20.0, 20.0, 20.0])
    assert rep.availability is not None
    assert rep.availability["availability"] == pytest.approx(0.825)
    result = CliRunner().invoke(cli, ["report", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    page = (path / "report.html").read_text()
    assert "<h2>Availability</h2>" in page
    assert "82.500%" in page
    assert "storm 1 at 10 s: 20 of 20 lost clients back by the end" in page
    # one storm: its timeline chart has one panel and is drawn
    assert (path / "storm_timeline.png").stat().st_size > 0
    assert (path / "connections.png").stat().st_size > 0
