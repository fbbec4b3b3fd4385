// Bench backend: node:http answering every GET with a 1 KiB body, keep-alive. A POST or PUT is
// read to its end before it is answered (an answer sent before the body is read would make an
// upload bench measure nothing): 200 with the number of body bytes received as its body.
// The last path segment picks the caching headers of a GET's answer (the cache section):
// `…/public` → `Cache-Control: public, max-age=3600`; `…/vary` → the same and
// `Vary: Accept-Language`; `…/no-store` → `Cache-Control: no-store`; anything else, none.
// `…/big` answers a 1 MiB body instead of 1 KiB (the soak's slow readers).
// Started by bench/run.mjs with an IPC channel: sends {type:'ready', port} once listening and
// answers {type:'stats'} with {type:'stats', connections, closed, open, requests, bodies, bodyBytes}:
// `connections` counts every 'connection' event since start (the harness takes deltas to see
// upstream churn); `bodies`/`bodyBytes` count request bodies read to their end and their bytes.
import http from 'node:http';

const body = Buffer.alloc(1024, 'x');
const PUBLIC = 'public, max-age=3600';
const PLAIN = { 'content-type': 'text/plain', 'content-length': body.length };
const BIG = Buffer.alloc(1024 * 1024, 'y');
const BIG_HEAD = { 'content-type': 'application/octet-stream', 'content-length': BIG.length };
/** Last path segment → the answer's head (built once: the backend's cost stays the same for every section). */
const HEADS = new Map([
  ['public', { ...PLAIN, 'cache-control': PUBLIC }],
  ['vary', { ...PLAIN, 'cache-control': PUBLIC, vary: 'Accept-Language' }],
  ['no-store', { ...PLAIN, 'cache-control': 'no-store' }],
  ['big', BIG_HEAD],
]);

function headOf(url) {
  const q = url.indexOf('?');
  const p = q < 0 ? url : url.slice(0, q);
  return HEADS.get(p.slice(p.lastIndexOf('/') + 1)) ?? PLAIN;
}

let connections = 0;
let open = 0;
let closed = 0;
let requests = 0;
let bodies = 0;
let bodyBytes = 0;

const server = http.createServer((req, res) => {
  requests++;
  if (req.method === 'POST' || req.method === 'PUT') {
    let n = 0;
    req.on('data', (d) => (n += d.length));
    req.on('end', () => {
      bodies++;
      bodyBytes += n;
      const answer = `${n}\n`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(answer) });
      res.end(answer);
    });
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { 'content-length': 0 });
    res.end();
    return;
  }
  const head = headOf(req.url);
  res.writeHead(200, head);
  res.end(req.method === 'HEAD' ? undefined : head === BIG_HEAD ? BIG : body);
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
  if (m?.type === 'stats') process.send({ type: 'stats', id: m.id, connections, closed, open, requests, bodies, bodyBytes });
});
// The harness went away: do not linger.
process.on('disconnect', () => process.exit(0));
