// The Node `ws` reference client for benchmarks/peers.py: the scenario soak
// runs, written as a plain Node client would. Settings: one JSON argument
// {url, clients, interval_s, ramp_s, duration_s, window: [w0, w1],
// max_connecting}. Client i connects at i * ramp / clients (at most
// max_connecting handshakes at once), then sends a JSON ping every interval
// on its own phase (i / clients of the interval: spread), and times each
// pong with performance.now().
//
// stdout, one JSON object a line: {"t": k, "pongs": cumulative, "pings": ..,
// "connected": ..} at every whole second k of its own clock, and at the end
// {"done": true, ...} with the RTT p50/p99 of the pongs received inside the
// window, and the totals.
"use strict";
const WebSocket = require("ws");
const { performance } = require("perf_hooks");

const cfg = JSON.parse(process.argv[2]);
const N = cfg.clients;
const interval = cfg.interval_s * 1000;
const ramp = cfg.ramp_s * 1000;
const duration = cfg.duration_s * 1000;
const [w0, w1] = cfg.window.map((x) => x * 1000);
const maxConnecting = cfg.max_connecting;

const t0 = performance.now();
let pongs = 0;
let pings = 0;
let connected = 0;
let failed = 0;
let connecting = 0;
let stopping = false;
const samples = []; // RTT ms of pongs received inside the window
const sockets = [];
const queue = [];

function now() {
  return performance.now() - t0;
}

function open(i) {
  connecting++;
  const ws = new WebSocket(cfg.url, { perMessageDeflate: false });
  const id = `node-${i}`;
  const sent = new Map();
  let seq = 0;
  let timer = null;
  let slot = -1; // the grid slot of the last ping (a timer may fire a little early)
  const phase = (i / N) * interval;
  ws.on("open", () => {
    connecting--;
    connected++;
    sockets.push(ws);
    next();
    pump();
  });
  function next() {
    if (stopping) return;
    const t = now();
    // the next slot of this client's grid, never the same one twice
    const k = Math.max(Math.floor((t - phase) / interval) + 1, slot + 1);
    slot = k;
    timer = setTimeout(ping, Math.max(0, phase + k * interval - t));
  }
  function ping() {
    seq++;
    const at = now();
    sent.set(seq, at);
    ws.send(`{"type":"ping","timestamp":${Date.now()},"clientId":"${id}","seq":${seq}}`);
    pings++;
    next();
  }
  ws.on("message", (data) => {
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (m === null || m.type !== "pong") return;
    const at = sent.get(m.seq);
    if (at === undefined) return;
    sent.delete(m.seq);
    const t = now();
    pongs++;
    if (t >= w0 && t < w1) samples.push(t - at);
  });
  ws.on("error", () => {});
  ws.on("close", () => {
    if (timer !== null) clearTimeout(timer);
    if (!stopping) {
      if (sockets.indexOf(ws) < 0) {
        connecting--;
        failed++;
        pump();
      } else connected--;
    }
  });
}

function pump() {
  while (queue.length && connecting < maxConnecting) open(queue.shift());
}

for (let i = 0; i < N; i++) {
  setTimeout(() => {
    queue.push(i);
    pump();
  }, (i * ramp) / N);
}

function pct(sorted, q) {
  if (!sorted.length) return null;
  const k = Math.min(sorted.length - 1, Math.ceil((q / 100) * sorted.length) - 1);
  return sorted[Math.max(0, k)];
}

let k = 0;
function tick() {
  k++;
  process.stdout.write(JSON.stringify({ t: k, pongs, pings, connected }) + "\n");
  if (k * 1000 >= duration) return finish();
  setTimeout(tick, k * 1000 + 1000 - now());
}
setTimeout(tick, 1000);

function finish() {
  stopping = true;
  const sorted = Float64Array.from(samples).sort();
  process.stdout.write(
    JSON.stringify({
      done: true,
      pongs,
      pings,
      connected,
      failed,
      window_samples: sorted.length,
      rtt_p50_ms: pct(sorted, 50),
      rtt_p99_ms: pct(sorted, 99),
      rtt_max_ms: sorted.length ? sorted[sorted.length - 1] : null,
    }) + "\n",
  );
  for (const ws of sockets) ws.terminate();
  setTimeout(() => process.exit(0), 200);
}
