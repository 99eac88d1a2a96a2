"""``soak plan`` and ``soak run --dry-run``: the plan worked out from plain
numbers (soak.plan is pure), and the commands' exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.config.profile import Profile
from soak.limits import fd_problem, memory_problem
from soak.plan import Machine, capacity_problem, chart, commands, make_plan, render, stages_table
from tests.support.runs import make_profile

BIG = Machine(fd_soft=65536, cores=8, memory=64 * 2**30, ports=(32768, 60999))
DIAL = (("127.0.0.1", 8765),)

STAGES = """
[[clients.stages]]
kind = "ramp"
to = 1000
duration = "1m"
[[clients.stages]]
kind = "spike"
add = 500
duration = "10s"
[[clients.stages]]
kind = "storm"
drop = "50%"
command = "true --flag"
restart_url = "http://127.0.0.1:8765/admin/restart"
duration = "20s"
[[clients.stages]]
kind = "churn"
rate = 5
duration = "30s"
[heartbeat]
interval = "10s"
[thresholds]
rtt_p99 = "250ms"
heartbeat_success = "99.9%"
"""


def profile(body: str = STAGES) -> Profile:
    return make_profile(body)


def test_the_numbers_of_a_plan() -> None:
    plan = make_plan(profile(), BIG, DIAL)
    assert plan.peak == 1500
    assert plan.heartbeats_per_s == 150.0
    assert plan.workers == 1
    assert plan.auto_workers == 1
    assert plan.fds_needed == 1500 + 64
    assert plan.ports_allowed == 28232
    assert plan.memory_needed == 1500 * 10 * 1024
    assert plan.problems == ()


def test_the_stages_table_and_the_commands() -> None:
    rows = stages_table(profile())
    assert rows[0].split() == ["#", "kind", "from", "to", "clients", "does"]
    assert rows[1].split()[:5] == ["1", "ramp", "0s", "1m", "1,000"]
    assert "500 extra clients, then back" in rows[2]
    assert "drop 50% (clean), run a command, ask the gateway to restart" in rows[3]
    assert rows[4].split()[:4] == ["4", "churn", "1m30s", "2m"]
    assert commands(profile()) == [
        "at 1m10s: /bin/sh -c 'true --flag' (timeout 30s)",
        "at 1m10s: POST http://127.0.0.1:8765/admin/restart",
    ]


def test_the_chart_rises_with_the_ramp_and_shows_the_spike() -> None:
    lines = chart(profile(), width=24, height=6)
    assert len(lines) == 6 + 2
    assert lines[0].startswith("1,500 |")
    top = lines[0].split("|", 1)[1]
    bottom = lines[5].split("|", 1)[1]
    # 2 min over 24 columns of 5 s: the spike (60-70 s) is columns 12 and 13,
    # and nothing else reaches the top
    assert top.strip() == "##"
    assert top.index("#") == 12
    assert bottom[0] == " "  # the ramp starts at zero: under 125 clients in its first 5 s
    assert bottom[1] == "#"
    assert bottom.endswith("#")
    assert lines[-1].strip().split() == ["0", "2m"]


def test_workers_auto_is_shown_as_the_run_would_pick() -> None:
    body = STAGES.replace("to = 1000", "to = 100000").replace(
        "[heartbeat]", '[run]\nworkers = "auto"\n[heartbeat]'
    )
    small = Machine(fd_soft=20000, cores=2, memory=64 * 2**30, ports=(32768, 60999))
    plan = make_plan(profile(body), small, tuple((f"127.0.0.{i}", 8765) for i in range(1, 5)))
    assert plan.workers == plan.auto_workers == 6  # 100,500 / 19,936 per process
    text = "\n".join(render(plan))
    assert "workers      6 (run.workers = auto; --workers auto would pick 6; 2 cores)" in text
    assert "towards 127.0.0.1:8765, 127.0.0.2:8765, 127.0.0.3:8765 ..." in text
    assert "fits this machine" in text


def test_a_machine_too_small_gets_soak_runs_own_messages() -> None:
    tiny = Machine(fd_soft=1024, cores=1, memory=5 * 2**20, ports=(60000, 60999))
    p = profile()
    plan = make_plan(p, tiny, DIAL)
    assert plan.problems[0] == fd_problem(1500, 1, 1024, False)
    assert capacity_problem(p, tiny) == (1, plan.problems[0])
    big_fds = Machine(65536, 1, 5 * 2**20, (60000, 60999))
    assert make_plan(p, big_fds, DIAL).problems[0] == memory_problem(1500, 5 * 2**20)
    assert "at most 1,000 fit towards 127.0.0.1:8765" in make_plan(p, big_fds, DIAL).problems[1]
    text = "\n".join(render(plan))
    assert text.endswith("does not fit: " + plan.problems[-1])


def test_render_without_thresholds_or_commands() -> None:
    p = profile(
        '[[clients.stages]]\nkind = "ramp"\nto = 3\nduration = "0s"\n'
        '[[clients.stages]]\nkind = "hold"\nduration = "1h"\n'
    )
    text = "\n".join(render(make_plan(p, BIG, DIAL)))
    assert "none (the run passes unless it fails to run)" in text
    assert "commands\n  none" in text
    assert "0.1 heartbeats/s at the peak" in text  # 3 clients every 30 s


HUGE = """
[target]
url = "ws://127.0.0.1:9/ws"
[clients]
[[clients.stages]]
kind = "ramp"
to = 10000000
duration = "10s"
"""


@pytest.mark.parametrize("how", [["plan"], ["run", "--dry-run"]])
def test_plan_and_dry_run_fail_with_the_message_run_gives(how: list[str], tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text(HUGE)
    ran = CliRunner().invoke(cli, ["run", str(path), "--results-dir", str(tmp_path / "r")])
    planned = CliRunner().invoke(cli, [*how, str(path), "--results-dir", str(tmp_path / "r")])
    assert ran.exit_code == planned.exit_code == 2
    error = ran.output.strip().splitlines()[-1]
    assert error.startswith("Error: this profile needs 10,000,000 connections at its peak")
    assert planned.output.strip().splitlines()[-1] == error
    assert "stages" in planned.output
    assert not (tmp_path / "r").exists()


def test_plan_of_a_shipped_profile_with_overrides() -> None:
    result = CliRunner().invoke(cli, ["plan", "storm", "--duration", "2m", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "duration  2m," in result.output
    assert "workers      2 (run.workers = 2;" in result.output
    assert "POST http://127.0.0.1:8765/admin/restart" in result.output
    assert "fits this machine" in result.output


def test_plan_of_a_bad_profile_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(HUGE.replace('duration = "10s"', 'duration = "10"'))
    result = CliRunner().invoke(cli, ["plan", str(path)])
    assert result.exit_code == 2
    assert 'clients.stages[0].duration: expected a duration like "30s"' in result.output
