// A subscriptions-transport-ws server (subprotocol graphql-ws, the old
// Apollo protocol) on 127.0.0.1: soak's real server for
// `protocol = "graphql-ws-legacy"` (`soak server graphql-ws-legacy`, the tests).
//
// Environment (set by soak.servers.graphql_ws from the recipe's options):
//   PORT, HOST   where it listens (HOST must be a loopback address)
//   WS_PATH      the WebSocket resource (default /graphql)
//   KEEPALIVE    ms between its {"type":"ka"} messages (0, the library's default: none)
//   TOKEN        if set, connection_init's payload must carry {"token": TOKEN}
//                (else connection_error "Prohibited connection!", then close 1011)
// Modules come from the working directory's node_modules (soak's npm cache).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(`${process.cwd()}/`);
const { SubscriptionServer } = require('subscriptions-transport-ws');
const { buildSchema, execute, subscribe } = require('graphql');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT);
const path = process.env.WS_PATH || '/graphql';
const raw = process.env.KEEPALIVE || '0';
const keepAlive = Number(raw);
if (!Number.isFinite(keepAlive) || keepAlive < 0) {
  console.error(`KEEPALIVE: expected milliseconds >= 0, got ${JSON.stringify(raw)}`);
  process.exit(2);
}
const token = process.env.TOKEN || '';
const version = JSON.parse(
  readFileSync(`${process.cwd()}/node_modules/subscriptions-transport-ws/package.json`, 'utf8'),
).version;

const schema = buildSchema(`
  type Query { hello: String }
  type Subscription { greetings: String }
`);

const server = SubscriptionServer.create(
  {
    schema,
    execute,
    subscribe,
    keepAlive: keepAlive > 0 ? keepAlive : undefined,
    onConnect: (payload) => token === '' || (payload || {}).token === token,
  },
  { host, port, path },
);
server.server.on('listening', () => {
  console.log(
    `subscriptions-transport-ws ${version} on ws://${host}:${port}${path} (keepAlive ${keepAlive} ms)`,
  );
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
