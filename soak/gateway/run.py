"""Run the reference gateway as a process: ``soak gateway`` calls this."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

import trio

from soak.gateway.config import GatewayConfig
from soak.gateway.server import Gateway
from soak.gcctl import GcControl, GrowthFreezer
from soak.limits import raise_fd_limit

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from soak.gateway.cluster import Cluster


async def freeze_as_it_grows(gateway: Gateway, gc_control: GcControl) -> None:
    freezer = GrowthFreezer(gc_control)
    while True:
        await trio.sleep(1.0)
        freezer.observe(gateway.connection_count)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def run_gateway(
    config: GatewayConfig,
    cluster: Cluster | None = None,
    worker: int = 0,
    ready: Connection | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then close every connection with 1001.

    SIGUSR2 acts out a restart, as it does to an OpenClaw gateway: every
    client is closed with 1012 and new ones are refused for
    ``config.restart_outage`` seconds (see :meth:`Gateway.restart`).

    Prints exactly one line, ``soak gateway listening on <host>:<port>``, once
    the port is bound; a parent that started us with ``--port 0`` parses it.
    With bugs enabled, a second line follows on stderr naming them, so nobody
    mistakes a deliberately broken gateway for the fixed one.

    With ``cluster`` this is worker ``worker`` of ``soak gateway --workers N``
    (see :mod:`soak.gateway.cluster`): it listens with SO_REUSEPORT, tells the
    parent through ``ready`` instead of printing, answers the other workers'
    stats requests, and a restart asked for by SIGUSR2 uses the outage the
    cluster recorded.
    """
    raise_fd_limit()
    # Gateway() opens config.truth_log and raises LocalError if it cannot.
    gateway = Gateway(config, cluster=cluster, worker=None if cluster is None else worker)
    # Installed here, not at import: importing soak must not touch signals.
    with (
        gateway,
        GcControl(gateway.gc_pause) as gc_control,
        trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR2) as signals,
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(freeze_as_it_grows, gateway, gc_control)
            port = await nursery.start(gateway.serve)
            if cluster is not None:
                await nursery.start(cluster.serve_snapshots, gateway.stats, worker)
                if ready is not None:
                    ready.send(("ready", port))
                    ready.close()
            else:
                print(f"soak gateway listening on {_address(config.host, port)}", flush=True)
            if config.bugs and worker == 0:
                bugs = ", ".join(config.bug_names)
                print(f"soak gateway: bugs enabled: {bugs}", file=sys.stderr, flush=True)
                for note in config.bug_notes():
                    print(f"soak gateway: note: {note}", file=sys.stderr, flush=True)
            async for signum in signals:
                if signum != signal.SIGUSR2:
                    break
                outage = config.restart_outage
                if cluster is not None:
                    outage = cluster.take_restart(outage)
                closed = gateway.restart(outage)
                who = "" if cluster is None else f" worker {worker}:"
                print(
                    f"soak gateway:{who} SIGUSR2: restart, {closed} connections closed, "
                    f"refusing new ones for {outage:g}s",
                    file=sys.stderr,
                    flush=True,
                )
            # Cancelling serve's nursery makes each connection send 1001.
            nursery.cancel_scope.cancel()
