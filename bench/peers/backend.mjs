// Bench backend: node:http answering every GET with a 1 KiB body, keep-alive.
// Started by bench/run.mjs with an IPC channel: sends {type:'ready', port} once listening and
// answers {type:'stats'} with {type:'stats', connections, closed, open, requests}: `connections` counts
// every 'connection' event since start (the harness takes deltas to see upstream churn).
import http from 'node:http';

const body = Buffer.alloc(1024, 'x');
let connections = 0;
let open = 0;
let closed = 0;
let requests = 0;

const server = http.createServer((req, res) => {
  requests++;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { 'content-length': 0 });
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
});
// Long idle keep-alive so the proxies' pools are not closed between the bench's rounds.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
server.requestTimeout = 0;
server.on('connection', (sock) => {
  connections++;
  open++;
  sock.once('close', () => {
    open--;
    closed++;
  });
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const { port } = server.address();
  if (process.send) process.send({ type: 'ready', port });
  else console.log(`backend listening on 127.0.0.1:${port}`);
});

process.on('message', (m) => {
  if (m?.type === 'stats') process.send({ type: 'stats', id: m.id, connections, closed, open, requests });
});
// The harness went away: do not linger.
process.on('disconnect', () => process.exit(0));
