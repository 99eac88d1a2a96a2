// A SockJS echo server (npm sockjs, sockjs-node 0.3.24) on 127.0.0.1: soak's
// real server for `protocol = "sockjs"` (`soak server sockjs`, the tests).
// Every message it gets on a session is written back (a["..."]).
//
// Environment (set by soak.servers.sockjs from the recipe's options):
//   PORT, HOST        where it listens (HOST must be a loopback address)
//   PREFIX            the SockJS prefix (default /echo): sessions are
//                     PREFIX/<server>/<session>/websocket
//   HEARTBEAT_DELAY   ms between its heartbeats (sockjs-node's heartbeat_delay, 25000)
//   PONG_WAIT         ms it waits for the pong to its RFC 6455 ping before
//                     c[3000,"No response from heartbeat"] (sockjs-node
//                     hard-codes 10000; this script shortens that timer)
//   HEARTBEATS        "ws-ping" (sockjs-node's own) or "h": "h" frames, as
//                     Spring's SockJS sends, with no timeout of their own
// Modules come from NODE_PATH (soak's npm cache).
'use strict';
const http = require('http');

function ms(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`${name}: expected whole milliseconds > 0, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT);
const prefix = process.env.PREFIX || '/echo';
const delay = ms('HEARTBEAT_DELAY', 25000);
const pongWait = ms('PONG_WAIT', 10000);
const style = process.env.HEARTBEATS || 'ws-ping';
const SOCKJS_PONG_WAIT = 10000; // lib/trans-websocket.js, WebSocketReceiver.heartbeat

if (pongWait !== SOCKJS_PONG_WAIT) {
  if (delay === SOCKJS_PONG_WAIT) {
    console.error('PONG_WAIT cannot be changed when HEARTBEAT_DELAY is 10000');
    process.exit(2);
  }
  // the only 10 s timer sockjs-node sets is the pong wait
  const setTimer = global.setTimeout;
  global.setTimeout = (fn, wait, ...args) =>
    setTimer(fn, wait === SOCKJS_PONG_WAIT ? pongWait : wait, ...args);
}
if (style === 'h') {
  // no RFC 6455 pings: sockjs-node then writes "h" frames, as Spring does
  require('faye-websocket').prototype.ping = () => false;
} else if (style !== 'ws-ping') {
  console.error(`HEARTBEATS: expected ws-ping or h, got ${JSON.stringify(style)}`);
  process.exit(2);
}

const sockjs = require('sockjs');
const version = require('sockjs/package.json').version;
const echo = sockjs.createServer({ heartbeat_delay: delay, log: () => {} });
echo.on('connection', (conn) => {
  conn.on('data', (message) => conn.write(message));
});
const server = http.createServer();
echo.installHandlers(server, { prefix });
server.listen(port, host, () => {
  console.log(
    `sockjs ${version} on ws://${host}:${port}${prefix}/<server>/<session>/websocket ` +
      `(${style} heartbeats every ${delay} ms, pong wait ${pongWait} ms)`,
  );
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
