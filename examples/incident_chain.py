"""The incident's chain on loopback, with one command: the reference gateway
(``soak gateway --bug ignore-max-missed``), a real nginx in front of it with
``proxy_read_timeout`` shorter than the heartbeat interval, and ``soak run``
through nginx, then ``soak report``. Both servers listen on 127.0.0.1 only
and are stopped by their PIDs at the end; nginx's config lives in a
temporary directory.

The profile run is a copy of ``--profile`` with nginx's address and the
chain added: one ``[[target.hops]]`` entry, kind nginx, whose idle timeout
soak reads from the nginx.conf that nginx runs. ``soak doctor --profile``
prints its prediction first (which hop closes idle connections, and when);
``soak run`` then says whether the run agreed.

    .venv/bin/python examples/incident_chain.py [--read-timeout 7s]
        [--profile profiles/incident-chain.toml] [--results-dir results]

Needs Debian's nginx (``apt-get install -y nginx``). Exits with soak run's
exit code (1: the intermediary closed connections, see
docs/intermediaries.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from soak import middlebox
from soak.childproc import gateway_process

ROOT = Path(__file__).resolve().parent.parent


def with_chain(text: str, url: str, nginx_conf: Path) -> str:
    """The profile's text with ``url`` as the target and nginx as its one hop
    (its idle timeout read from ``nginx_conf``)."""
    lines = [f'url = "{url}"' if line.startswith("url = ") else line for line in text.splitlines()]
    hop = ["", "[[target.hops]]", 'kind = "nginx"', f'config = "{nginx_conf}"']
    return "\n".join(lines + hop) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--read-timeout", default="7s", help="nginx's proxy_read_timeout")
    ap.add_argument("--profile", default=str(ROOT / "profiles" / "incident-chain.toml"))
    ap.add_argument("--results-dir", default="results")
    args = ap.parse_args()
    if middlebox.find_binary(middlebox.NGINX) is None:
        print(f"incident_chain: {middlebox.missing(middlebox.NGINX)}", file=sys.stderr)
        return 2
    gateway = ("--hb-interval", "10s", "--hb-timeout", "120s", "--bug", "ignore-max-missed")
    with (
        tempfile.TemporaryDirectory(prefix="soak-nginx-") as tmp,
        gateway_process(*gateway) as gw,
        middlebox.nginx(Path(tmp), f"127.0.0.1:{gw.port}", read_timeout=args.read_timeout) as mb,
    ):
        print(
            f"incident_chain: gateway pid {gw.pid} on 127.0.0.1:{gw.port}, nginx pid "
            f"{mb.pid} on 127.0.0.1:{mb.port} (proxy_read_timeout {args.read_timeout})",
            flush=True,
        )
        profile = Path(tmp) / "incident-chain.toml"
        profile.write_text(with_chain(Path(args.profile).read_text(), mb.url(), mb.config))
        soak = [sys.executable, "-m", "soak"]
        # the prediction (doctor exits 2 on the short timeout: that is the point)
        subprocess.run([*soak, "doctor", "--profile", str(profile)], check=False)
        run = subprocess.run(
            [*soak, "run", str(profile), "--results-dir", args.results_dir], check=False
        )
    runs = sorted(Path(args.results_dir).glob("*-incident-chain"), key=lambda p: p.stat().st_mtime)
    if runs:
        subprocess.run([sys.executable, "-m", "soak", "report", str(runs[-1])], check=False)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
