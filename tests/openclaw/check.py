"""The checks of ``make test-openclaw`` (tests/openclaw/run.sh), and its
readiness probe.

    python -m tests.openclaw.check RUN_DIR --exit-code N --clients 300
    python -m tests.openclaw.check --wait ws://127.0.0.1:PORT/ SECONDS

The first reads what soak wrote for profiles/openclaw-restart.toml and says
what does not hold; :func:`problems` is pure (tests/test_openclaw_check.py).
The second waits until the gateway answers ``connect`` with hello-ok, using
soak's own OpenClaw handshake (the token from OPENCLAW_GATEWAY_TOKEN).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# the gateway's tick interval, and how far a gap between two ticks on one
# connection may stray from it (its timer is global and exact on loopback)
TICK_S = 30.0
TICK_SLACK_S = 1.0


def problems(
    summary: dict[str, Any],
    manifest: dict[str, Any],
    events: list[dict[str, Any]],
    intervals: list[dict[str, Any]],
    *,
    clients: int,
    exit_code: int,
) -> list[str]:
    """What does not hold in a run of openclaw-restart.toml; empty: passed."""
    out: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            out.append(what)

    tot = summary["totals"]
    need(exit_code == 0, f"soak exited {exit_code}: {summary.get('verdict')}")
    need(summary["status"] == "completed", f"the run did not complete: {summary['status']}")
    need(
        manifest.get("server_version") == "2026.9.6",
        f"run.json server_version is {manifest.get('server_version')!r}, expected '2026.9.6'",
    )
    # every client got ticks, at about 30 s
    proto = summary.get("protocol") or {}
    need(proto.get("name") == "openclaw", "summary.json has no OpenClaw protocol section")
    ticked = proto.get("clients_ticked", 0)
    need(ticked == clients, f"{ticked} of {clients} clients got a tick")
    gap = proto.get("tick_gap_ms") or {}
    if not gap.get("count"):
        out.append("no gap between two ticks was measured")
    else:
        low, high = (TICK_S - TICK_SLACK_S) * 1000, (TICK_S + TICK_SLACK_S) * 1000
        need(
            low <= gap["min"] and gap["max"] <= high,
            f"tick gaps {gap['min']:.0f}..{gap['max']:.0f} ms, expected "
            f"{TICK_S:g} s +- {TICK_SLACK_S:g} s",
        )
    # no false timeouts, no zombies, nobody gave up
    need(tot["false_timeouts"] == 0, f"{tot['false_timeouts']} false timeouts")
    need(tot["justified_timeouts"] == 0, f"{tot['justified_timeouts']} heartbeat timeouts")
    need(tot["zombies"] == 0, f"{tot['zombies']} zombies")
    need(tot["reconnect_failed"] == 0, f"{tot['reconnect_failed']} clients gave up")
    need("permanent_failure" not in tot, f"a permanent failure: {tot.get('permanent_failure')}")
    # the restart: the command ran, everyone got the announced 1012
    commands = [e for e in events if e.get("event") == "storm_command"]
    need(
        len(commands) == 1 and commands[0].get("exit_code") == 0,
        f"the SIGUSR2 command did not run cleanly: {commands}",
    )
    restarts = tot["closes"].get("server_1012_restart", 0)
    need(restarts == clients, f"{restarts} of {clients} clients got shutdown + 1012")
    # the storm was measured and every client came back
    storms = summary.get("storms") or []
    need(len(storms) == 1, f"{len(storms)} reconnect storms measured, expected 1")
    if storms:
        st = storms[0]
        need(st["lost"] == clients, f"the storm lost {st['lost']} clients, expected {clients}")
        need(st["recovered"] == st["lost"], f"{st['recovered']} of {st['lost']} came back")
        need(st["recovery_s"].get("p100") is not None, "no recovery time measured")
    need(tot["reconnects"] >= clients, f"{tot['reconnects']} reconnects, expected {clients}")
    # the last interval that ended before the run closed its connections
    before_end = [iv for iv in intervals if iv["t"] + iv["dt"] < summary["duration_s"]]
    last = before_end[-1] if before_end else {}
    need(
        last.get("connected") == clients,
        f"{last.get('connected')} clients connected at the end, expected {clients}",
    )
    return out


def report(run_dir: Path, exit_code: int, clients: int) -> int:
    def lines(name: str) -> list[dict[str, Any]]:
        path = run_dir / name
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    summary = json.loads((run_dir / "summary.json").read_text())
    manifest = json.loads((run_dir / "run.json").read_text())
    found = problems(
        summary,
        manifest,
        lines("events.jsonl"),
        lines("intervals.jsonl"),
        clients=clients,
        exit_code=exit_code,
    )
    proto = summary.get("protocol") or {}
    gap = proto.get("tick_gap_ms") or {}
    storm = (summary.get("storms") or [{}])[0]
    print(
        f"test-openclaw: gateway {manifest.get('server_version')}, "
        f"{proto.get('clients_ticked')} clients ticked, tick gap p50 {gap.get('p50')} ms "
        f"max {gap.get('max')} ms, false timeouts {summary['totals']['false_timeouts']}, "
        f"storm lost {storm.get('lost')} back {storm.get('recovered')} "
        f"(all in {storm.get('recovery_s', {}).get('p100')} s, peak "
        f"{storm.get('peak_attempts_per_100ms')} attempts/100ms)"
    )
    for p in found:
        print(f"test-openclaw: FAILED {p}")
    print("test-openclaw: FAILED" if found else "test-openclaw: PASSED")
    return 1 if found else 0


async def _probe(url: str) -> bool:
    """One try: True when the gateway answered connect with hello-ok."""
    import trio
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

    from soak.config.target import Secret, TargetConfig
    from soak.errors import HandshakeError
    from soak.protocols.openclaw import OpenClaw

    parts = urlsplit(url)
    token = os.environ.get("OPENCLAW_GATEWAY_TOKEN", "")
    target = TargetConfig(url=url, protocol="openclaw", token=Secret(token))
    proto = OpenClaw("probe", OpenClaw.shared_state(target))
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=parts.netloc, target=parts.path or "/")))
        texts: list[str] = []

        class IO:
            def __init__(self) -> None:
                self.url = url
                self.subprotocol: str | None = None

            async def send_bytes(self, data: bytes) -> None:
                await stream.send_all(ws.send(BytesMessage(data)))

            async def receive(self) -> str | bytes:
                return await self.receive_text()

            async def send_text(self, text: str) -> None:
                await stream.send_all(ws.send(TextMessage(text)))

            async def receive_text(self) -> str:
                while not texts:
                    data = await stream.receive_some(65536)
                    if not data:
                        raise HandshakeError("eof", "closed")
                    ws.receive_data(data)
                    for event in ws.events():
                        if isinstance(event, TextMessage):
                            texts.append(event.data)  # small frames: one event each
                return texts.pop(0)

        while True:  # the upgrade
            data = await stream.receive_some(65536)
            if not data:
                return False
            ws.receive_data(data)
            if any(isinstance(e, AcceptConnection) for e in ws.events()):
                break
        try:
            await proto.handshake(IO())
        except HandshakeError as exc:
            print(f"test-openclaw: not ready: {exc}", file=sys.stderr)
            return False
        return True


def wait(url: str, seconds: float) -> int:
    import trio

    async def main() -> int:
        with trio.move_on_after(seconds):
            while True:
                try:
                    with trio.fail_after(10):
                        if await _probe(url):
                            return 0
                except (OSError, trio.TooSlowError, trio.BrokenResourceError):
                    pass
                await trio.sleep(1.0)
        return 1

    return trio.run(main)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--wait"] and len(argv) == 3:
        return wait(argv[1], float(argv[2]))
    if len(argv) == 5 and argv[1] == "--exit-code" and argv[3] == "--clients":
        return report(Path(argv[0]), int(argv[2]), int(argv[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
