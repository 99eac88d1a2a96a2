// A Node `ws` pong server for benchmarks/peers.py: answers soak's JSON ping
// ({"type":"ping","timestamp":ms,"clientId":"..","seq":n}) with the pong
// the reference gateway sends, field for field. Listens on $HOST:$PORT.
"use strict";
const { WebSocketServer } = require("ws");

const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT || 0);
const wss = new WebSocketServer({ host, port, perMessageDeflate: false, clientTracking: false });

wss.on("connection", (ws) => {
  ws.on("error", () => {});
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (m === null || m.type !== "ping") return;
    ws.send(
      JSON.stringify({
        type: "pong",
        timestamp: m.timestamp,
        clientId: m.clientId,
        seq: m.seq,
        serverTime: Date.now(),
      }),
    );
  });
});
wss.on("listening", () => {
  const a = wss.address();
  console.log(`listening on ws://${a.address}:${a.port}/`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
