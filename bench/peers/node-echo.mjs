// A Node `net` echo server, as a Node user would write one: the benchmark's reference peer for
// keyport's echo listener. Runs under Linux Node and, unchanged, under the Windows Node in Wine.
//   node node-echo.mjs --port P [--host 127.0.0.1]
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string' } },
});

const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
});
server.maxConnections = 1 << 30;
server.listen({ host: values.host, port: Number(values.port), backlog: 4096 }, () => {
  const { address, port } = server.address();
  process.stdout.write(
    `${JSON.stringify({ peer: 'node-echo', listen: `${address}:${port}`, pid: process.pid })}\n`,
  );
});
const stop = () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 200).unref(); // open connections do not hold the exit
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
