"""Pure: what a run of a profile will do, worked out without connecting
(``soak plan``, ``soak run --dry-run``): its stages, the target count over
time, the peak and its heartbeat rate, what it needs of this machine against
what the machine allows (the very checks ``soak run`` makes, with the same
messages), the workers ``--workers auto`` would pick, its thresholds and the
commands it would run. The machine's facts come in as a :class:`Machine`, so
tests give plain numbers."""

from __future__ import annotations

from dataclasses import dataclass

from soak.config.profile import WORKERS_AUTO, Profile
from soak.config.stages import Churn, Hold, Ramp, Spike, Stage, Storm
from soak.config.units import format_duration
from soak.limits import (
    CLIENT_BYTES,
    FD_RESERVE,
    PROXIED_FDS,
    check_port_capacity,
    fd_problem,
    memory_problem,
    ports_per_pair,
    worker_capacity,
)
from soak.run.split import auto_workers, resolve_workers
from soak.schedule import Schedule


@dataclass(frozen=True)
class Machine:
    """What this machine allows: the soft descriptor limit (after soak raised
    it), its cores, MemAvailable (None: unknown) and the ephemeral ports."""

    fd_soft: int
    cores: int
    memory: int | None
    ports: tuple[int, int]


@dataclass(frozen=True)
class Plan:
    profile: Profile
    machine: Machine
    workers: int  # what the run would use
    auto_workers: int  # what --workers auto would pick
    peak: int
    heartbeats_per_s: float  # at the peak
    fds_needed: int  # per process, at the peak
    fds_allowed: int  # per process
    ports_needed: int
    ports_allowed: int
    memory_needed: int
    problems: tuple[str, ...]  # the messages soak run would stop with; () when it fits
    dials: str  # the target address(es), for messages


def capacity_problem(profile: Profile, machine: Machine) -> tuple[int, str | None]:
    """The worker count ``soak run`` would use and why the machine cannot
    hold the profile's peak (descriptors, then memory), or None."""
    workers = resolve_workers(profile, machine.fd_soft, machine.cores)
    peak = profile.peak_clients
    problem = fd_problem(peak, workers, machine.fd_soft, profile.impairment is not None)
    return workers, problem or memory_problem(peak, machine.memory)


def ports_problem(profile: Profile, dials: str, targets: int, ports: tuple[int, int]) -> str | None:
    """Why the peak cannot fit in the ephemeral ports, or None."""
    sources = max(1, len(profile.target.source_ips))
    return check_port_capacity(
        profile.peak_clients, dials, sources=sources, targets=targets, ports=ports
    )


def shown_dials(dials: tuple[tuple[str, int], ...]) -> str:
    """The target addresses for messages: the first three, then "..."."""
    return ", ".join(f"{h}:{p}" for h, p in dials[:3]) + (" ..." if len(dials) > 3 else "")


def make_plan(profile: Profile, machine: Machine, dials: tuple[tuple[str, int], ...]) -> Plan:
    """The plan; ``dials`` are the addresses TCP goes to (connect_to, or the URL's)."""
    shown = shown_dials(dials)
    workers, problem = capacity_problem(profile, machine)
    ports = ports_problem(profile, shown, len(dials), machine.ports)
    peak = profile.peak_clients
    proxied = profile.impairment is not None
    per_worker = -(-peak // max(1, workers))
    sources = max(1, len(profile.target.source_ips))
    return Plan(
        profile=profile,
        machine=machine,
        workers=workers,
        auto_workers=auto_workers(profile, machine.fd_soft, machine.cores),
        peak=peak,
        heartbeats_per_s=peak / profile.heartbeat.interval,
        fds_needed=per_worker * (PROXIED_FDS if proxied else 1) + FD_RESERVE,
        fds_allowed=machine.fd_soft,
        ports_needed=peak,
        ports_allowed=ports_per_pair(machine.ports) * sources * max(1, len(dials)),
        memory_needed=peak * CLIENT_BYTES,
        problems=tuple(p for p in (problem, ports) if p is not None),
        dials=shown,
    )


def describe_stage(stage: Stage) -> str:
    match stage:
        case Ramp(to=to):
            return f"to {to:,} clients"
        case Hold():
            return "hold the count"
        case Spike(add=add):
            return f"{add:,} extra clients, then back"
        case Churn(rate=rate):
            return f"close and reopen {rate:g} clients/s"
        case Storm():
            parts = []
            if stage.drop:
                parts.append(f"drop {stage.drop:.0%} ({stage.how})")
            if stage.command:
                parts.append("run a command")
            if stage.restart_url:
                parts.append("ask the gateway to restart")
            return ", ".join(parts)
    return ""  # pragma: no cover - the union is exhaustive


def stages_table(profile: Profile) -> list[str]:
    """One row per stage: number, kind, start, end, clients at its end, what it does."""
    sched = Schedule(profile.clients.stages)
    rows = [("#", "kind", "from", "to", "clients", "does")]
    for i, seg in enumerate(sched.segments, 1):
        rows.append(
            (
                str(i),
                seg.stage.kind,
                format_duration(seg.start),
                format_duration(seg.end),
                f"{seg.level_after:,}",
                describe_stage(seg.stage),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    return [
        "  ".join(r[c].ljust(widths[c]) if c < 2 else r[c].rjust(widths[c]) for c in range(5))
        + "  "
        + r[5]
        for r in rows
    ]


def chart(profile: Profile, width: int = 60, height: int = 8) -> list[str]:
    """The target count over the run, as text: ``height`` rows of ``width``
    columns, each column the most clients wanted in its slice of time."""
    sched = Schedule(profile.clients.stages)
    total = max(profile.duration, sched.end)
    peak = max(1, sched.peak)
    if total <= 0:
        return []
    cols = []
    for c in range(width):
        t0, t1 = total * c / width, total * (c + 1) / width
        samples = [sched.target(t0 + (t1 - t0) * k / 8) for k in range(8)]
        # a spike or storm shorter than a column still shows
        for seg in sched.segments:
            if seg.start < t1 and seg.end > t0 and isinstance(seg.stage, Spike):
                samples.append(seg.level_before + seg.stage.add)
        cols.append(max(samples))
    label_w = len(f"{peak:,}")
    lines = []
    for row in range(height, 0, -1):
        level = peak * (row - 0.5) / height
        bar = "".join("#" if v >= level else " " for v in cols)
        tag = f"{peak:,}" if row == height else ("0" if row == 1 else "")
        lines.append(f"{tag:>{label_w}} |{bar}")
    lines.append(" " * label_w + " +" + "-" * width)
    end = format_duration(total)
    lines.append(" " * label_w + "  0" + end.rjust(width - 1))
    return lines


def _mib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**20:,.0f} MiB"


def commands(profile: Profile) -> list[str]:
    """What the profile would run or ask for besides connecting: storm
    stages' shell commands and restart requests, with when."""
    out = []
    for seg in Schedule(profile.clients.stages).segments:
        st = seg.stage
        if isinstance(st, Storm):
            at = format_duration(seg.start)
            if st.command:
                limit = format_duration(st.command_timeout)
                out.append(f"at {at}: /bin/sh -c {st.command!r} (timeout {limit})")
            if st.restart_url:
                out.append(f"at {at}: POST {st.restart_url}")
    return out


def render(plan: Plan) -> list[str]:
    """The plan as text, as ``soak plan`` prints it."""
    p, m = plan.profile, plan.machine
    hb = p.heartbeat
    workers_setting = "auto" if p.run.workers == WORKERS_AUTO else str(p.run.workers)
    lines = [
        f"profile   {p.path}",
        f"target    {p.target.url} (protocol {p.target.protocol})",
        f"duration  {format_duration(p.duration)}, an interval every "
        f"{format_duration(p.run.report_interval)}, results under {p.run.results_dir}/",
        "",
        "stages",
        *("  " + row for row in stages_table(p)),
        "",
        "target clients over time",
        *("  " + row for row in chart(p)),
        "",
        f"peak      {plan.peak:,} clients",
        f"heartbeat every {format_duration(hb.interval)} (timeout {format_duration(hb.timeout)}, "
        f"phase {hb.phase}): {plan.heartbeats_per_s:,.1f} heartbeats/s at the peak",
        "",
        "this machine",
        f"  workers      {plan.workers} (run.workers = {workers_setting}; "
        f"--workers auto would pick {plan.auto_workers}; {m.cores} cores)",
        f"  descriptors  {plan.fds_needed:,} per process needed, {plan.fds_allowed:,} allowed "
        f"(holds {worker_capacity(m.fd_soft, p.impairment is not None):,} clients per process)",
        f"  ports        {plan.ports_needed:,} needed towards {plan.dials}, "
        f"{plan.ports_allowed:,} available",
        f"  memory       {_mib(plan.memory_needed)} needed "
        f"(~{CLIENT_BYTES // 1024} KiB a client), {_mib(m.memory)} available",
        "",
        "thresholds",
    ]
    if p.thresholds:
        lines += [f"  {t.name} {t.op} {t.text}" for t in p.thresholds]
    else:
        lines.append("  none (the run passes unless it fails to run)")
    lines += ["", "commands"]
    lines += ["  " + c for c in commands(p)] or ["  none"]
    lines.append("")
    if plan.problems:
        lines += [f"does not fit: {problem}" for problem in plan.problems]
    else:
        lines.append("fits this machine")
    return lines
