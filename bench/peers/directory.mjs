// Bench directory (section "directory"): a tiny node:http directory in its own process, the kind
// homing's directory routes ask which pool holds a key.
//   GET /backend/t<N>.example.com  →  200 `pool<N mod pools>` (text/plain)
//   GET /backend/<anything else>   →  404 (homing takes it as "no such key")
//   GET /count                     →  200 {"calls":…, "keys":…}: look-ups answered since start
//                                     (every GET /backend/…, 404s included) and distinct keys asked
// `--pools N` (default 3). Started with an IPC channel: sends {type:'ready', port} once listening.
import http from 'node:http';

const argv = process.argv.slice(2);
const at = argv.indexOf('--pools');
const pools = Number(at >= 0 ? argv[at + 1] : 3);
if (!Number.isInteger(pools) || pools < 1) throw new Error(`--pools needs a positive integer, got ${argv[at + 1]}`);

const PREFIX = '/backend/';
const TENANT = /^t(\d+)\.example\.com$/;
let calls = 0;
const keys = new Set();

function send(res, status, type, text) {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  if (req.method !== 'GET') return send(res, 405, 'text/plain', 'GET only\n');
  if (req.url === '/count') return send(res, 200, 'application/json', JSON.stringify({ calls, keys: keys.size }));
  if (!req.url.startsWith(PREFIX)) return send(res, 404, 'text/plain', 'not found\n');
  calls++;
  let key;
  try {
    key = decodeURIComponent(req.url.slice(PREFIX.length));
  } catch {
    return send(res, 400, 'text/plain', 'bad key\n');
  }
  keys.add(key);
  const m = TENANT.exec(key);
  if (!m) return send(res, 404, 'text/plain', 'no such key\n');
  send(res, 200, 'text/plain', `pool${Number(m[1]) % pools}`);
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  if (process.send) process.send({ type: 'ready', port });
  else console.log(`directory listening on 127.0.0.1:${port}`);
});

// The harness went away: do not linger.
process.on('disconnect', () => process.exit(0));
