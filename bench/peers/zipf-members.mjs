// Bench members for the bounded-loads section (bench/lib/section-bounded.mjs): one process,
// `--members N` node:http servers on 127.0.0.1 that answer every request after `--delay-ms`
// (the work a request takes, so requests overlap and each member has some in flight), with
// `x-served-by: <host:port>`. Each member counts, since the last reset: requests, requests per
// key (the path), requests in flight now, the most at once, and in flight × time (its mean load).
//
// `--ports a,b,…` asks for these ports (so that a ring over the members is the same from run to
// run); a port that is taken falls back to one the system picks.
//
// Started with an IPC channel: sends {type:'ready', port: <the control server's port>}.
// Control server (HTTP, its own port, never in a pool):
//   GET  /stats         {seconds, members:[{id, requests, peakInflight, meanInflight}] (in the
//                        order of --ports), keys:{<path>: [requests served by member 0, 1, …]}}
//   POST /reset         zero every counter
//   POST /delay?ms=N    change the delay (0 answers at once: the calibration pass)
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({ options: { members: { type: 'string', default: '5' }, 'delay-ms': { type: 'string', default: '20' }, ports: { type: 'string', default: '' } } });
const nMembers = Number(opts.members);
let delayMs = Number(opts['delay-ms']);
const wanted = opts.ports.split(',').filter(Boolean).map(Number);

const members = []; // {id, inflight, requests, peak, area, since}
let keys = new Map(); // path → Int32Array(nMembers)
let resetAt = performance.now();

function reset() {
  const now = performance.now();
  for (const m of members) {
    m.requests = 0;
    m.peak = m.inflight;
    m.area = 0;
    m.since = now;
  }
  keys = new Map();
  resetAt = now;
}

/** Adds the in-flight × time since the member's last change. */
function account(m, now) {
  m.area += m.inflight * (now - m.since);
  m.since = now;
}

function serve(index) {
  const m = members[index];
  const head = { 'x-served-by': '', 'content-type': 'text/plain', 'content-length': 2 };
  return (req, res) => {
    head['x-served-by'] = m.id;
    const now = performance.now();
    account(m, now);
    m.inflight++;
    m.requests++;
    if (m.inflight > m.peak) m.peak = m.inflight;
    let row = keys.get(req.url);
    if (row === undefined) keys.set(req.url, (row = new Int32Array(nMembers)));
    row[index]++;
    const done = () => {
      account(m, performance.now());
      m.inflight--;
      res.writeHead(200, head);
      res.end('ok');
    };
    req.resume();
    if (delayMs > 0) setTimeout(done, delayMs);
    else req.on('end', done);
  };
}

for (let i = 0; i < nMembers; i++) {
  const m = { id: '', inflight: 0, requests: 0, peak: 0, area: 0, since: performance.now() };
  members.push(m);
  const server = http.createServer({ keepAliveTimeout: 60_000 }, serve(i));
  const listen = (port) =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(wanted[i] ?? 0).catch(() => listen(0));
  m.id = `127.0.0.1:${server.address().port}`;
}

const control = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const json = (v) => {
    const text = JSON.stringify(v);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  if (req.method === 'GET' && url.pathname === '/stats') {
    const now = performance.now();
    const ms = now - resetAt;
    for (const m of members) account(m, now);
    return json({
      seconds: ms / 1000,
      members: members.map((m) => ({ id: m.id, requests: m.requests, peakInflight: m.peak, meanInflight: ms > 0 ? m.area / ms : 0 })),
      keys: Object.fromEntries([...keys].map(([k, row]) => [k, [...row]])),
    });
  }
  if (req.method === 'POST' && url.pathname === '/reset') {
    reset();
    return json({ ok: true });
  }
  if (req.method === 'POST' && url.pathname === '/delay') {
    delayMs = Number(url.searchParams.get('ms') ?? 0);
    return json({ ok: true, delayMs });
  }
  res.writeHead(404).end();
});
await new Promise((r) => control.listen(0, '127.0.0.1', r));
reset();
process.send?.({ type: 'ready', port: control.address().port });
