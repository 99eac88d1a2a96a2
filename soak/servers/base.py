"""Installing, starting and stopping one real server (see the package).

Every wait is bounded; a server is stopped by its PID (SIGTERM to its
process group, SIGKILL after :data:`STOP_TIMEOUT`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0  # seconds until it accepts connections
STOP_TIMEOUT = 10.0
INSTALL_TIMEOUT = 300.0  # npm install, once per cache
PACKAGE_DATA = Path(__file__).parent / "files"


class ServerUnavailable(RuntimeError):
    """It cannot be installed or did not start; the message says what is
    missing and how to get it (tests skip with it)."""


def cache_dir() -> Path:
    """Where npm packages are installed: ``$SOAK_CACHE``, else
    ``$XDG_CACHE_HOME/soak`` (``~/.cache/soak``). Never the repository."""
    root = os.environ.get("SOAK_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "soak"


# argv of the server: (the recipe's install directory or None, a scratch
# directory for its config and logs, the port, the options) -> argv
Argv = Callable[[Path | None, Path, int, Mapping[str, str]], list[str]]


@dataclass(frozen=True)
class Recipe:
    """How to get and start one real server."""

    name: str  # as `soak server NAME` and the tests call it
    dialect: str  # the profile's protocol it speaks
    summary: str
    argv: Argv
    path: str = "/"  # the WebSocket resource
    npm: tuple[str, ...] = ()  # packages, installed into cache_dir()/npm/<name>
    binary: str | None = None  # a Debian package's binary that must exist
    debian: str | None = None  # the package that has it
    env: Callable[[Mapping[str, str]], dict[str, str]] = field(default=lambda opts: {})
    options: tuple[str, ...] = ()  # the option names it understands (--set K=V)
    start_timeout: float = START_TIMEOUT  # seconds until it listens (RabbitMQ: ~15 s)

    def url(self, port: int) -> str:
        return f"ws://{LOOPBACK}:{port}{self.path}"


@dataclass
class RealServer:
    recipe: Recipe
    proc: subprocess.Popen[bytes]
    port: int
    dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return self.recipe.url(self.port)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        stop_process(self.proc)

    def pause(self) -> None:
        """SIGSTOP: a frozen server (its sockets stay open)."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on now: bound with port 0, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def npm_install(name: str, packages: tuple[str, ...]) -> Path:
    """``npm install`` of ``packages`` into ``cache_dir()/npm/<name>``, once
    (a stamp file records what was installed; a lock keeps two processes
    from installing at once). Returns the directory."""
    npm = shutil.which("npm")
    if npm is None:
        raise ServerUnavailable(
            f"{name}: npm is not installed (Debian: apt-get install -y npm); "
            f"needed for {' '.join(packages)}"
        )
    where = cache_dir() / "npm" / _safe(name)
    where.mkdir(parents=True, exist_ok=True)
    stamp = where / ".soak-installed"
    wanted = json.dumps(sorted(packages))
    with open(where / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == wanted:
            return where
        if not (where / "package.json").exists():
            (where / "package.json").write_text('{"name": "soak-server", "private": true}\n')
        cmd = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *packages]
        try:
            done = subprocess.run(
                cmd, cwd=where, capture_output=True, timeout=INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise ServerUnavailable(
                f"{name}: npm install {' '.join(packages)} took over {INSTALL_TIMEOUT:g}s"
            ) from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            why = last[-1] if last else f"exit code {done.returncode}"
            raise ServerUnavailable(f"{name}: npm install {' '.join(packages)} failed: {why}")
        stamp.write_text(wanted)
    return where


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def find_binary(binary: str) -> str | None:
    """On PATH or in /usr/sbin (Debian puts some daemons there)."""
    found = shutil.which(binary)
    if found is None and os.access(f"/usr/sbin/{binary}", os.X_OK):
        found = f"/usr/sbin/{binary}"
    return found


def prepare(recipe: Recipe) -> Path | None:
    """Install or find what the recipe needs; its npm directory, if any."""
    if recipe.binary is not None and find_binary(recipe.binary) is None:
        pkg = recipe.debian or recipe.binary
        raise ServerUnavailable(
            f"{recipe.name}: {recipe.binary} is not installed (Debian: apt-get install -y {pkg})"
        )
    if recipe.npm:
        if shutil.which("node") is None:
            raise ServerUnavailable(
                f"{recipe.name}: node is not installed (Debian: apt-get install -y nodejs)"
            )
        return npm_install(recipe.name, recipe.npm)
    return None


@contextlib.contextmanager
def start(
    recipe: Recipe,
    workdir: Path,
    *,
    port: int = 0,
    options: Mapping[str, str] | None = None,
    start_timeout: float | None = None,
) -> Iterator[RealServer]:
    """Start ``recipe`` on 127.0.0.1 (``port`` 0: a free one), wait until it
    accepts connections, check it listens on loopback only, and stop it by
    its PID when the block ends."""
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(recipe.options))
    if unknown:
        known = ", ".join(recipe.options) or "none"
        raise ValueError(f"{recipe.name}: unknown option {unknown[0]!r} (known: {known})")
    installed = prepare(recipe)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = recipe.argv(installed, workdir, port, opts)
    log = workdir / f"{_safe(recipe.name)}.log"
    env = {**os.environ, **recipe.env(opts), "PORT": str(port), "HOST": LOOPBACK}
    if installed is not None:
        env["NODE_PATH"] = str(installed / "node_modules")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=installed or workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    server = RealServer(recipe, proc, port, workdir, log)
    try:
        _wait_listening(server, start_timeout or recipe.start_timeout)
        check_loopback_only(server)
        yield server
    finally:
        stop_process(proc)


def _wait_listening(server: RealServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise ServerUnavailable(
                f"{server.recipe.name} exited with {server.proc.returncode} before "
                f"listening on {LOOPBACK}:{server.port}:\n{server.log_tail()}"
            )
        try:
            with socket.create_connection((LOOPBACK, server.port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServerUnavailable(
                f"{server.recipe.name} did not listen on {LOOPBACK}:{server.port} "
                f"within {timeout:g}s:\n{server.log_tail()}"
            )
        time.sleep(0.05)


def listening(pid_group: int) -> list[str]:
    """The local addresses the processes of ``pid_group``'s session listen
    on, from ``ss -ltnpH`` ([] when ss is missing)."""
    ss = shutil.which("ss")
    if ss is None:
        return []
    done = subprocess.run([ss, "-ltnpH"], capture_output=True, timeout=10, check=False)
    pids = _session_pids(pid_group)
    found = []
    for line in done.stdout.decode(errors="replace").splitlines():
        cols = line.split()
        if len(cols) < 5:
            continue
        if any(f"pid={p}," in line for p in pids):
            found.append(cols[3])
    return found


def _session_pids(sid: int) -> set[int]:
    pids = {sid}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and fields[3] == str(sid):  # the session id
            pids.add(int(entry.name))
    return pids


def check_loopback_only(server: RealServer) -> None:
    """Refuse a server that listens beyond loopback (mosquitto binds every
    interface unless told ``socket_domain ipv4``): stop it and say where."""
    wide = [a for a in listening(server.pid) if not _loopback(a)]
    if wide:
        stop_process(server.proc)
        raise ServerUnavailable(
            f"{server.recipe.name} listens on {', '.join(wide)}, not only on loopback; stopped it"
        )


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1", "localhost")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its process group, then SIGKILL after STOP_TIMEOUT."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)
