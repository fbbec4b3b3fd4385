// Bench stateful backend (section "affinity"): one process, `--members N` node:http
// servers on 127.0.0.1 (the pool's members), plus a control server. Like the session servers
// behind nginx that homing replaces: every token (the Authorization header) already has a session
// on one member — pre-assigned by a hash of the token, so a balancer's first guess usually
// misses — and any other member answers
//   200, X-Accel-Redirect: /internal_redirect/<owner host:port><uri>
// with a short body that must never reach a client. The owner answers 200 with a 1 KiB body and
// `x-served-by: <its host:port>`.
//
// `strict` (default on) is the behaviour above. With strict off every member answers every
// request with the same 1 KiB body (a plain backend), so a route without affinity can be measured
// against the very same processes and ports.
//
// Started with an IPC channel: sends {type:'ready', members:[port…], control:port}.
// Control server (HTTP, its own port, never in a pool):
//   GET  /stats[?prefix=P]  counters; with prefix: per-token redirect figures over tokens
//                           ("Bearer P…") seen since the last reset (`worst`: up to 20 tokens
//                           with more than one redirect), plus, per token, the upstream
//                           source ports its requests came from (to tell which homing process sent
//                           them)
//   POST /mode?strict=0|1   switch strict mode
//   POST /reset             zero every counter (sessions stay where they are: they are a function
//                           of the token)
import http from 'node:http';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const nMembers = Number(arg('members', 3));
const bodySize = Number(arg('body', 1024));

const body = Buffer.alloc(bodySize, 'x');
const redirectBody = Buffer.from('redirect body that must not reach the client\n');
let strict = true;

/** FNV-1a 32-bit of the token: its pre-assigned owner. */
function ownerIndex(token) {
  let h = 0x811c9dc5;
  for (let i = 0; i < token.length; i++) {
    h ^= token.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % nMembers;
}

const members = []; // {id, server, requests, served, redirects}
const owners = new Map(); // token → owner index (cache of ownerIndex)
let c; // counters
function resetCounters() {
  c = {
    requests: 0,
    served: 0,
    redirects: 0,
    unauthorized: 0,
    /** token → {requests, redirects, ports: Set<number>} */
    tokens: new Map(),
    connections: 0,
  };
  for (const m of members) {
    m.requests = 0;
    m.served = 0;
    m.redirects = 0;
  }
}

function handler(self) {
  return (req, res) => {
    c.requests++;
    self.requests++;
    const token = req.headers.authorization;
    if (!strict) {
      self.served++;
      c.served++;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'x-served-by': self.id });
      res.end(body);
      return;
    }
    if (token === undefined) {
      c.unauthorized++;
      res.writeHead(401, { 'content-length': 0 });
      res.end();
      return;
    }
    let t = c.tokens.get(token);
    if (t === undefined) c.tokens.set(token, (t = { requests: 0, redirects: 0, ports: new Set() }));
    t.requests++;
    if (t.ports.size < 64) t.ports.add(req.socket.remotePort);
    let o = owners.get(token);
    if (o === undefined) owners.set(token, (o = ownerIndex(token)));
    if (o !== self.index) {
      t.redirects++;
      c.redirects++;
      self.redirects++;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': redirectBody.length, 'x-accel-redirect': `/internal_redirect/${members[o].id}${req.url}` });
      res.end(redirectBody);
      return;
    }
    c.served++;
    self.served++;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'x-served-by': self.id });
    res.end(body);
  };
}

function stats(prefix) {
  const out = {
    strict,
    requests: c.requests,
    served: c.served,
    redirects: c.redirects,
    unauthorized: c.unauthorized,
    connections: c.connections,
    members: members.map((m) => ({ id: m.id, requests: m.requests, served: m.served, redirects: m.redirects })),
  };
  if (prefix !== null) {
    const want = `Bearer ${prefix}`;
    let tokens = 0;
    let requests = 0;
    let redirects = 0;
    let max = 0;
    const histogram = {};
    const ports = {};
    const worst = [];
    for (const [tok, t] of c.tokens) {
      if (!tok.startsWith(want)) continue;
      tokens++;
      requests += t.requests;
      redirects += t.redirects;
      if (t.redirects > max) max = t.redirects;
      histogram[t.redirects] = (histogram[t.redirects] ?? 0) + 1;
      ports[tok.slice(7)] = [...t.ports];
      if (t.redirects > 1 && worst.length < 20) worst.push({ token: tok.slice(7), redirects: t.redirects, requests: t.requests });
    }
    out.prefix = { prefix, tokens, requests, redirects, redirectsMax: max, redirectsMean: tokens ? redirects / tokens : 0, histogram, worst, ports };
  }
  return out;
}

function control(req, res) {
  const url = new URL(req.url, 'http://control.invalid');
  const reply = (code, obj) => {
    const text = JSON.stringify(obj);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  if (req.method === 'GET' && url.pathname === '/stats') return reply(200, stats(url.searchParams.get('prefix')));
  if (req.method === 'POST' && url.pathname === '/mode') {
    strict = url.searchParams.get('strict') !== '0';
    return reply(200, { strict });
  }
  if (req.method === 'POST' && url.pathname === '/reset') {
    resetCounters();
    return reply(200, { ok: true });
  }
  reply(404, { error: 'unknown' });
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

for (let i = 0; i < nMembers; i++) {
  const m = { index: i, id: '', server: undefined, requests: 0, served: 0, redirects: 0 };
  m.server = http.createServer(handler(m));
  // Long idle keep-alive, as in backend.mjs: the proxies' pools are not closed under them.
  m.server.keepAliveTimeout = 120_000;
  m.server.headersTimeout = 121_000;
  m.server.requestTimeout = 0;
  m.server.on('connection', () => c.connections++);
  members.push(m);
}
resetCounters();
const ports = [];
for (const m of members) {
  const port = await listen(m.server);
  m.id = `127.0.0.1:${port}`;
  ports.push(port);
}
const ctl = http.createServer(control);
const controlPort = await listen(ctl);
if (process.send) process.send({ type: 'ready', members: ports, control: controlPort });
else console.log(`stateful backend: members ${ports.join(', ')}, control ${controlPort}`);

// The harness went away: do not linger.
process.on('disconnect', () => process.exit(0));
