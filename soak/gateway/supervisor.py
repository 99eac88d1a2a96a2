"""The parent process of ``soak gateway --workers N``: several gateways on one port.

One process holds at most about 19,900 descriptors here, so a gateway for
50,000 clients needs several. The parent binds ``host:port`` with
SO_REUSEPORT first (for ``--port 0`` that is how the port is chosen), then
forks N workers. Each worker is a whole single-process gateway
(:func:`soak.gateway.run.run_gateway`) with its own SO_REUSEPORT listening
socket on that port, so the kernel spreads new connections over the workers.
The parent keeps its bound, non-listening socket until it exits, so the port
stays reserved; it accepts nothing itself. Once every worker listens, the
parent prints the usual ``soak gateway listening on <host>:<port>`` line.
What the workers share (stats, restarts) is :mod:`soak.gateway.cluster`.

A worker that dies is reported on stderr; the parent then stops the others
(each closes its clients with 1001) and exits with status 3: a reference
gateway that lost a worker has lost the ground truth of its clients, so it
does not go on as if nothing happened. SIGINT and SIGTERM stop every worker
the same way, and the parent exits 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from typing import Any

import trio

from soak.errors import LocalError
from soak.gateway.cluster import EXIT_WORKER_LOST, Cluster, check_workers
from soak.gateway.config import GatewayConfig
from soak.gateway.run import run_gateway

# How long the parent waits for every worker to listen.
START_TIMEOUT = 60.0


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) a SO_REUSEPORT socket on ``host:port``; the
    workers bind theirs to the port it got. Raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _name, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock, int(sock.getsockname()[1])


def _worker_main(
    config: GatewayConfig,
    cluster: Cluster,
    index: int,
    ready: multiprocessing.connection.Connection,
) -> None:
    # The parent and Ctrl-C stop us; until trio listens, USR1/USR2 must not kill us.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        trio.run(run_gateway, config, cluster, index, ready)
    except (LocalError, OSError) as exc:
        text = str(exc) if isinstance(exc, LocalError) else (exc.strerror or str(exc))
        with contextlib.suppress(OSError):
            ready.send(("error", text))
        sys.exit(EXIT_WORKER_LOST)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def run_cluster(config: GatewayConfig, workers: int, *, out: Any = None) -> int:
    """The parent of ``soak gateway --workers N``; returns the exit status.

    Raises OSError if ``host:port`` cannot be bound.
    """
    out = sys.stdout if out is None else out
    check_workers(workers)
    sock, port = reserve_port(config.host, config.port)
    cluster = Cluster(workers)
    worker_config = _replace_port(config, port)
    ctx = multiprocessing.get_context("fork")
    stop = {"signal": 0, "restart": 0}

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGUSR2:
            stop["restart"] += 1
        else:
            stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        pipes = []
        for i in range(workers):
            parent_end, child_end = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker_main,
                args=(worker_config, cluster, i, child_end),
                name=f"soak-gateway-{i}",
                daemon=False,
            )
            proc.start()
            child_end.close()
            procs.append(proc)
            pipes.append(parent_end)
        status = _await_ready(procs, pipes, stop)
        if status is not None:
            return status
        host = config.host
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        print(f"soak gateway listening on {shown}", file=out, flush=True)
        pids = ", ".join(str(p.pid) for p in procs)
        print(
            f"soak gateway: {workers} worker processes (SO_REUSEPORT), pids {pids}",
            file=sys.stderr,
            flush=True,
        )
        return _supervise(config, cluster, procs, stop)
    finally:
        _stop_all(procs, config)
        for s, handler in old.items():
            signal.signal(s, handler)
        sock.close()


def _replace_port(config: GatewayConfig, port: int) -> GatewayConfig:
    return dataclasses.replace(config, port=port)


def _await_ready(
    procs: list[multiprocessing.process.BaseProcess],
    pipes: list[multiprocessing.connection.Connection],
    stop: dict[str, int],
) -> int | None:
    """Wait until every worker listens; an exit status if one cannot."""
    waiting = dict(enumerate(pipes))
    deadline = time.monotonic() + START_TIMEOUT
    while waiting:
        if stop["signal"]:
            return 0
        left = deadline - time.monotonic()
        if left <= 0:
            print(
                f"soak gateway: workers {sorted(waiting)} did not start within {START_TIMEOUT:g}s",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_WORKER_LOST
        for done in multiprocessing.connection.wait(list(waiting.values()), timeout=min(left, 0.2)):
            index = next(i for i, c in waiting.items() if c is done)
            try:
                message = waiting[index].recv()
            except (EOFError, OSError):
                message = ("error", f"it {_describe_exit(procs[index].exitcode)}")
            del waiting[index]
            if message[0] != "ready":
                procs[index].join(timeout=5)
                print(
                    f"soak gateway: worker {index} could not start: {message[1]}",
                    file=sys.stderr,
                    flush=True,
                )
                return EXIT_WORKER_LOST
    return None


def _supervise(
    config: GatewayConfig,
    cluster: Cluster,
    procs: list[multiprocessing.process.BaseProcess],
    stop: dict[str, int],
) -> int:
    restarts_done = 0
    sentinels = [p.sentinel for p in procs]
    while not stop["signal"]:
        multiprocessing.connection.wait(sentinels, timeout=0.2)
        if stop["restart"] > restarts_done:
            restarts_done = stop["restart"]
            cluster.request_restart(config.restart_outage)
            for p in procs:
                if p.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGUSR2)
            print(
                f"soak gateway: SIGUSR2: restarting all {len(procs)} workers, refusing new "
                f"connections for {config.restart_outage:g}s",
                file=sys.stderr,
                flush=True,
            )
        for i, p in enumerate(procs):
            if p.exitcode is not None and not stop["signal"]:
                print(
                    f"soak gateway: worker {i} (pid {p.pid}) {_describe_exit(p.exitcode)}; "
                    f"stopping the other workers",
                    file=sys.stderr,
                    flush=True,
                )
                return EXIT_WORKER_LOST
    return 0


def _stop_all(procs: list[multiprocessing.process.BaseProcess], config: GatewayConfig) -> None:
    """SIGTERM every live worker (each closes its clients with 1001), wait
    for them (bounded), then SIGKILL whoever is left."""
    for p in procs:
        if p.exitcode is None and p.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + config.close_wait + 10.0
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.exitcode is None:
            p.kill()
            p.join(timeout=5)


__all__ = ["START_TIMEOUT", "reserve_port", "run_cluster"]
