"""How a run gets its live page (``soak run --dashboard [PORT]``, soak.dashboard):
its server, bound before the run starts, the callbacks beside the terminal
view's, and the servers served beside the run in its event loop.

The dashboard listens on 127.0.0.1 only. When ``--metrics-port`` names the
same port (not 0), one server answers ``/metrics``, ``/`` and
``/status.json``; that needs ``--metrics-addr`` to be 127.0.0.1 too (a
dashboard is never opened wider by sharing: the command refuses). Different
ports: two servers, each on its own address, both in the run's loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from soak.config.profile import Profile
from soak.dashboard import Dashboard
from soak.httpd import HttpServer, serving
from soak.run.shard import Start

DASHBOARD_ADDR = "127.0.0.1"
T = TypeVar("T")
Callback = Callable[[dict[str, Any]], None] | None


class DashboardError(Exception):
    """Bad input for ``--dashboard``: one line."""


def shared_port_problem(profile: Profile, metrics_addr: str) -> str | None:
    """Why the dashboard cannot share the metrics' server, if it cannot."""
    port = profile.run.dashboard_port
    if port and port == profile.run.metrics_port and metrics_addr != DASHBOARD_ADDR:
        return (
            f"--dashboard {port}: the dashboard listens on {DASHBOARD_ADDR} only, and "
            f"--metrics-port {port} on {metrics_addr}; give the dashboard another port"
        )
    return None


def dashboard_server(
    profile: Profile, metrics: HttpServer | None, metrics_addr: str = DASHBOARD_ADDR
) -> HttpServer | None:
    """``--dashboard``'s server, bound now on 127.0.0.1 (a port in use is bad
    input, before anything is written): the metrics server itself when both
    name the same port, else its own. None without ``--dashboard``."""
    port = profile.run.dashboard_port
    if port is None:
        return None
    problem = shared_port_problem(profile, metrics_addr)
    if problem is not None:
        raise DashboardError(problem)
    if metrics is not None and port and port == profile.run.metrics_port:
        return metrics
    server = HttpServer(DASHBOARD_ADDR, port)
    try:
        server.bind()
    except OSError as exc:
        raise DashboardError(
            f"--dashboard {port}: cannot listen on {DASHBOARD_ADDR}:{port}: {exc.strerror or exc}"
        ) from None
    return server


def fan(*fs: Callback) -> Callback:
    """One callback calling each of ``fs`` in order (the Nones left out)."""
    live = [f for f in fs if f is not None]
    if len(live) < 2:
        return live[0] if live else None

    def each(arg: dict[str, Any]) -> None:
        for f in live:
            f(arg)

    return each


def with_dashboard(
    start: Start,
    server: HttpServer | None,
    workers: int,
    on_status: Callback,
    on_interval: Callback,
) -> tuple[Dashboard | None, Callback, Callback]:
    """The live page on ``server`` (None: no page), fed after the terminal
    view with the same status and interval records. The caller gives it the
    Runner's findings once the Runner exists (:meth:`Dashboard.watch`)."""
    if server is None:
        return None, on_status, on_interval
    p = start.profile
    board = Dashboard(
        label=p.run.label,
        target=p.target.url,
        run=start.recorder.path.name,
        duration=p.duration,
        interval=p.run.report_interval,
        workers=workers,
    )
    board.routes(server)
    return board, fan(on_status, board.status), fan(on_interval, board.interval)


async def serve_beside(
    servers: tuple[HttpServer | None, ...], main: Callable[[], Awaitable[T]]
) -> T:
    """``main()`` with each distinct server of ``servers`` serving beside it
    (a shared one once), in this event loop; they stop when ``main`` returns."""
    distinct = [s for i, s in enumerate(servers) if s is not None and s not in servers[:i]]
    if not distinct:
        return await main()
    first, rest = distinct[0], tuple(distinct[1:])
    return await serving(first, lambda: serve_beside(rest, main))
