// A graphql-ws server (subprotocol graphql-transport-ws) on 127.0.0.1, the
// reference implementation's `ws` adapter: soak's real server for
// `protocol = "graphql-ws"` (`soak server graphql-ws`, the tests).
//
// Environment (set by soak.servers.graphql_ws from the recipe's options):
//   PORT, HOST       where it listens (HOST must be a loopback address)
//   WS_PATH          the WebSocket resource (default /graphql)
//   KEEPALIVE        ms between its RFC 6455 pings, and its pong wait (12000; 0: none)
//   INIT_WAIT        connectionInitWaitTimeout in ms (3000): no connection_init -> 4408
//   TOKEN            if set, connection_init's payload must carry {"token": TOKEN} (else 4403)
//   PICK_SUBPROTOCOL "false": accept the upgrade without choosing a subprotocol
// Modules come from the working directory's node_modules (soak's npm cache).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(`${process.cwd()}/`);
const { WebSocketServer } = require('ws');
const { useServer } = require('graphql-ws/use/ws');
const { buildSchema } = require('graphql');

function ms(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    console.error(`${name}: expected milliseconds >= 0, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT);
const path = process.env.WS_PATH || '/graphql';
const keepAlive = ms('KEEPALIVE', 12000);
const initWait = ms('INIT_WAIT', 3000);
const token = process.env.TOKEN || '';
const version = JSON.parse(
  readFileSync(`${process.cwd()}/node_modules/graphql-ws/package.json`, 'utf8'),
).version;

const schema = buildSchema(`
  type Query { hello: String }
  type Subscription { greetings: String }
`);
const roots = {
  query: { hello: () => 'world' },
  subscription: {
    greetings: async function* greetings() {
      for (const hi of ['Hi', 'Bonjour', 'Hola']) yield { greetings: hi };
    },
  },
};

const wss = new WebSocketServer({ host, port, path });
useServer(
  {
    schema,
    roots,
    connectionInitWaitTimeout: initWait,
    onConnect: (ctx) => token === '' || (ctx.connectionParams || {}).token === token,
  },
  wss,
  keepAlive,
);
if (process.env.PICK_SUBPROTOCOL === 'false') wss.options.handleProtocols = () => false;

wss.on('listening', () => {
  console.log(
    `graphql-ws ${version} on ws://${host}:${port}${path} (keepAlive ${keepAlive} ms, ` +
      `connectionInitWaitTimeout ${initWait} ms)`,
  );
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
