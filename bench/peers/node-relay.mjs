// A Node `net` TCP relay, as a Node user would write one: each accepted connection gets its own
// upstream connection and the two are piped both ways (backpressure by pipe). The benchmark's
// reference peer for keyport's forward listener.
//   node node-relay.mjs --port P --target HOST:PORT [--host 127.0.0.1]
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    target: { type: 'string' },
  },
});
const i = values.target.lastIndexOf(':');
const target = { host: values.target.slice(0, i), port: Number(values.target.slice(i + 1)) };

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ ...target, noDelay: true });
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end);
  upstream.on('error', end);
  client.on('close', end);
  upstream.on('close', end);
  client.pipe(upstream);
  upstream.pipe(client);
});
server.maxConnections = 1 << 30;
server.listen({ host: values.host, port: Number(values.port), backlog: 4096 }, () => {
  const { address, port } = server.address();
  process.stdout.write(
    `${JSON.stringify({ peer: 'node-relay', listen: `${address}:${port}`, target: values.target, pid: process.pid })}\n`,
  );
});
const stop = () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 200).unref(); // open connections do not hold the exit
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
