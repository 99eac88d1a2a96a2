"""Real nginx and HAProxy on loopback, in front of a gateway: for the tests,
and for reproducing a chain like the incident's (nginx in front of the
gateway) on one machine.

Each is started from the Debian package's binary (``apt-get install nginx
haproxy``) with a config written into a directory the caller owns, listens
on 127.0.0.1 only, on a free port picked by binding port 0 and releasing
it, and is stopped by its PID (SIGTERM, then SIGKILL to its process group
after :data:`STOP_TIMEOUT`). Every wait is bounded.

- nginx: ``daemon off``, one worker, the pid file, logs and temporary
  files in the directory; the WebSocket ``location`` proxies to the
  upstream with ``proxy_read_timeout`` as given. Reload: SIGHUP to the
  master (what ``nginx -s reload`` sends).
- HAProxy: master-worker mode in the foreground (``-W -db``), ``mode
  http``, ``timeout tunnel`` (what applies to a WebSocket once upgraded)
  as given. Reload: SIGUSR2 to the master.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds until it accepts connections
STOP_TIMEOUT = 10.0  # seconds from SIGTERM to its exit, then SIGKILL
NGINX = "nginx"
HAPROXY = "haproxy"
PACKAGES = {NGINX: "nginx", HAPROXY: "haproxy"}


class MiddleboxError(RuntimeError):
    """It is not installed, or did not start (the message says which, and why)."""


def find_binary(kind: str) -> str | None:
    """The path of ``nginx`` or ``haproxy`` (on PATH or in /usr/sbin), or None."""
    found = shutil.which(kind)
    if found is None and os.access(f"/usr/sbin/{kind}", os.X_OK):
        found = f"/usr/sbin/{kind}"
    return found


def missing(kind: str) -> str:
    """The one line that says it is not installed, and how to install it."""
    return f"{kind} is not installed (Debian: apt-get install -y {PACKAGES[kind]})"


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on now: bound with port 0, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Middlebox:
    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    dir: Path
    config: Path
    log: Path
    host: str = LOOPBACK
    reloads: int = field(default=0)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/ws", scheme: str = "ws") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def reload(self) -> None:
        """Reload its config: old workers finish (until nginx's
        ``worker_shutdown_timeout`` or HAProxy's ``hard-stop-after``), new
        ones take over the listening socket."""
        sig = signal.SIGHUP if self.kind == NGINX else signal.SIGUSR2
        os.kill(self.pid, sig)
        self.reloads += 1

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def nginx_config(
    dir: Path,
    port: int,
    upstream: str,
    *,
    read_timeout: str = "60s",
    location: str = "",
    main: str = "",
    server: str = "",
    tls: tuple[Path, Path] | None = None,
) -> str:
    """nginx.conf for a WebSocket location ``/`` that proxies to ``upstream``
    (``host:port``). ``location``, ``server`` and ``main`` are added to the
    location, the server and the main context (``worker_shutdown_timeout``).
    ``tls``: (certificate chain, key) PEM files: nginx terminates TLS
    (``wss://``) and speaks plain ``ws://`` to the upstream."""
    d = str(dir)
    user = "user root;\n" if os.geteuid() == 0 else ""
    ssl = ""
    if tls is not None:
        ssl = f"ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};"
    return f"""# written by soak.middlebox
{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx.log info;
{main}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' close;
    }}
    server {{
        listen {LOOPBACK}:{port}{" ssl" if tls is not None else ""};
        {ssl}
        {server}
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout {read_timeout};
            {location}
        }}
    }}
}}
"""


def haproxy_config(
    port: int,
    upstream: str,
    *,
    tunnel: str | None = "1h",
    client: str = "30s",
    server: str = "30s",
    global_: str = "",
) -> str:
    """haproxy.cfg: one frontend on ``port`` and one backend, ``upstream``
    (``host:port``); ``tunnel`` None leaves ``timeout tunnel`` out."""
    tunnel_line = f"    timeout tunnel {tunnel}\n" if tunnel is not None else ""
    return f"""# written by soak.middlebox
global
    maxconn 4096
{global_}
defaults
    mode http
    timeout connect 5s
    timeout client {client}
    timeout server {server}
{tunnel_line}
frontend soak_in
    bind {LOOPBACK}:{port}
    default_backend gateway

backend gateway
    server gw {upstream}
"""


def _wait_listening(mb: Middlebox, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if mb.proc.poll() is not None:
            raise MiddleboxError(
                f"{mb.kind} exited with {mb.proc.returncode} before listening "
                f"(config {mb.config}):\n{mb.log_tail()}"
            )
        try:
            with socket.create_connection((mb.host, mb.port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise MiddleboxError(
                f"{mb.kind} did not listen on {mb.host}:{mb.port} within {timeout:g} s:\n"
                f"{mb.log_tail()}"
            )
        time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM to its PID, wait up to ``timeout``, then SIGKILL to its
    process group (the workers too). True if it had to be killed."""
    if proc.poll() is not None:
        return False
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


@contextmanager
def _running(kind: str, argv: list[str], mb_args: dict[str, object]) -> Iterator[Middlebox]:
    log = Path(str(mb_args["dir"])) / f"{kind}.out"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    mb = Middlebox(kind, proc, log=log, **mb_args)  # type: ignore[arg-type]
    try:
        _wait_listening(mb, START_TIMEOUT)
        yield mb
    finally:
        stop(proc)


@contextmanager
def nginx(
    dir: Path,
    upstream: str,
    *,
    read_timeout: str = "60s",
    location: str = "",
    main: str = "",
    server: str = "",
    tls: tuple[Path, Path] | None = None,
) -> Iterator[Middlebox]:
    """A real nginx on 127.0.0.1 in front of ``upstream``; stopped on exit.
    ``tls``: terminate TLS with these (chain, key) PEM files."""
    binary = find_binary(NGINX)
    if binary is None:
        raise MiddleboxError(missing(NGINX))
    port = free_port()
    conf = dir / "nginx.conf"
    conf.write_text(
        nginx_config(
            dir,
            port,
            upstream,
            read_timeout=read_timeout,
            location=location,
            main=main,
            server=server,
            tls=tls,
        )
    )
    argv = [binary, "-p", str(dir), "-c", str(conf), "-e", str(dir / "nginx.log")]
    with _running(NGINX, argv, {"port": port, "dir": dir, "config": conf}) as mb:
        mb.log = dir / "nginx.log"
        yield mb


@contextmanager
def haproxy(
    dir: Path,
    upstream: str,
    *,
    tunnel: str | None = "1h",
    client: str = "30s",
    server: str = "30s",
    global_: str = "",
) -> Iterator[Middlebox]:
    """A real HAProxy (master-worker, foreground) on 127.0.0.1 in front of
    ``upstream``; stopped on exit."""
    binary = find_binary(HAPROXY)
    if binary is None:
        raise MiddleboxError(missing(HAPROXY))
    port = free_port()
    cfg = dir / "haproxy.cfg"
    cfg.write_text(
        haproxy_config(port, upstream, tunnel=tunnel, client=client, server=server, global_=global_)
    )
    argv = [binary, "-W", "-db", "-f", str(cfg)]
    with _running(HAPROXY, argv, {"port": port, "dir": dir, "config": cfg}) as mb:
        yield mb


def listening(pids: set[int]) -> list[str]:
    """The local addresses (``host:port``) on which processes ``pids``
    listen, from ``ss -ltnpH``; raises MiddleboxError without ``ss``."""
    ss = shutil.which("ss") or "/usr/bin/ss"
    try:
        out = subprocess.run(
            [ss, "-ltnpH"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise MiddleboxError(f"cannot list listening sockets with ss: {exc}") from None
    found = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 6:
            continue
        if any(f"pid={pid}," in cols[-1] for pid in pids):
            found.append(cols[3])
    return found


def children(pid: int) -> set[int]:
    """``pid`` and its direct children (nginx's or HAProxy's workers), from /proc."""
    out = {pid}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the ppid is the second field after the parenthesised command
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.add(int(entry.name))
    return out
