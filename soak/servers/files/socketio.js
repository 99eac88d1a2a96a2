// A Socket.IO 4 server on loopback for soak's tests and `soak server socket.io`.
// Engine.IO 4 clients (Socket.IO 3/4) and, with allowEIO3, Engine.IO 3 ones
// (Socket.IO 2). Settings come from the environment (soak.servers.socketio):
//   PORT, HOST            where to listen (HOST must be a loopback address)
//   PING_INTERVAL         ms between the server's pings (default 25000)
//   PING_TIMEOUT          ms it waits for the answer (default 20000)
//   SIO_PATH              the Engine.IO path (default /socket.io/)
//   AUTH_TOKEN            if set, CONNECT must carry auth {"token": AUTH_TOKEN}
//                         (or ?token= in the query); else CONNECT_ERROR
//                         "Not authorized"
//   DISCONNECT_AFTER      if set, ms after which the server disconnects each
//                         socket (Socket.IO DISCONNECT, then the close)
// GET /stats answers {"connections": N, "sockets": M}.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const env = process.env;
const port = Number(env.PORT || 3001);
const host = env.HOST || "127.0.0.1";
const num = (name, fallback) => (env[name] ? Number(env[name]) : fallback);
const pingInterval = num("PING_INTERVAL", 25000);
const pingTimeout = num("PING_TIMEOUT", 20000);
const token = env.AUTH_TOKEN || "";
const disconnectAfter = num("DISCONNECT_AFTER", 0);

const httpServer = http.createServer((req, res) => {
  if (req.url === "/stats") {
    let sockets = 0;
    for (const nsp of io._nsps.values()) sockets += nsp.sockets.size;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ connections: io.engine.clientsCount, sockets }));
    return;
  }
  res.writeHead(404);
  res.end();
});

const io = new Server(httpServer, {
  allowEIO3: true,
  pingInterval,
  pingTimeout,
  path: env.SIO_PATH || "/socket.io/",
  serveClient: false,
});

function guard(socket, next) {
  if (!token) return next();
  const auth = socket.handshake.auth || {};
  const given = auth.token || socket.handshake.query.token;
  if (given === token) return next();
  const err = new Error("Not authorized");
  err.data = { reason: given ? "wrong token" : "no token" };
  next(err);
}

function serve(socket) {
  socket.on("echo", (msg, ack) => (typeof ack === "function" ? ack(msg) : socket.emit("echo", msg)));
  if (disconnectAfter > 0) setTimeout(() => socket.disconnect(true), disconnectAfter);
}

for (const name of ["/", "/admin"]) {
  io.of(name).use(guard);
  io.of(name).on("connection", serve);
}

io.engine.on("connection_error", (err) => console.log(`connection_error ${err.code} ${err.message}`));

httpServer.listen(port, host, () => {
  console.log(
    `socket.io ${require("socket.io/package.json").version} on ${host}:${port} ` +
      `pingInterval=${pingInterval} pingTimeout=${pingTimeout}`
  );
});
