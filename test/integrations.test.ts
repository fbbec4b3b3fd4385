/**
 * integrations/nginx and integrations/haproxy against real nginx (+ lua-nginx-module, resty.redis)
 * and real HAProxy (Lua built in), each asking a real homing (in-process, RESP router on port 0)
 * where every request goes, in front of real node:http members that answer their own id.
 *
 * What is asserted, through both proxies:
 *  - every key lands on the member homing's admin look-up names (and the proxy's debug header
 *    says the same), over one keep-alive client connection and several, for GET <key> on the
 *    default route and HOMING.ROUTE <route> <key> on a second route keyed by a header;
 *  - after a member leaves the pool (discovery file rewritten), keys land where homing now says:
 *    only the leaving member's keys move, and the member left out (still running) gets nothing;
 *  - fallback: homing answers nil (empty pool), an invalid target, an error, nothing at all
 *    (timeout), or homing is down → the fallback member serves, with the reason in
 *    X-Homing-Fallback, within a bound (no hang beyond the look-up timeout).
 *
 * The proxies run the shipped files: nginx.conf.template (rendered) with homing.lua and its two
 * includes; haproxy.cfg verbatim after a `global` section of `setenv`s, with homing.lua.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';
import { startBackend, startTestHoming, until, WAIT, type Backend } from './support/backends.js';
import { startHaproxy, startNginx, type Service } from './support/services.js';

const NGINX_DIR = resolve(import.meta.dirname, '../integrations/nginx');
const HAPROXY_DIR = resolve(import.meta.dirname, '../integrations/haproxy');
const TIMEOUT_MS = 50;

type Homing = Awaited<ReturnType<typeof startTestHoming>>;
type Cleanup = () => Promise<void> | void;

// ---------------------------------------------------------------------------------------------
// The proxies, from the shipped files

interface ProxyOptions {
  /** homing's RESP port (or a fake's). */
  respPort: number;
  /** host:port of the fallback member. */
  fallback: string;
  /** Add the test's second location/rule: /by-tenant/… keyed by X-Tenant on route `route2`. */
  route2?: string;
  /** nginx only: extra `configure{}` options (Lua source), e.g. 'db = 1,'. */
  luaOptions?: string;
}

function nginxFiles(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const f of ['homing.lua', 'homing-http.conf', 'homing-location.conf']) files[f] = readFileSync(join(NGINX_DIR, f), 'utf8');
  return files;
}

/** nginx.conf.template rendered for the test (plus, with route2, a second location before the fallback one). */
function renderNginxConf(template: string, c: { dir: string; port: number; luaModules: string }, o: ProxyOptions): string {
  let conf = template
    .replaceAll('{{LOAD_MODULES}}', c.luaModules)
    .replaceAll('{{PREFIX}}', c.dir)
    .replaceAll('{{HOMING_DIR}}', c.dir)
    .replaceAll('{{LISTEN}}', `127.0.0.1:${c.port}`)
    .replaceAll('{{HOMING_HOST}}', '127.0.0.1')
    .replaceAll('{{HOMING_PORT}}', String(o.respPort))
    .replaceAll('{{HOMING_TIMEOUT_MS}}', String(TIMEOUT_MS))
    .replaceAll('{{FALLBACK}}', o.fallback);
  if (o.luaOptions) conf = conf.replace('require("homing").configure({', `require("homing").configure({ ${o.luaOptions}`);
  if (o.route2) {
    const anchor = '        location @homing_fallback {';
    conf = conf.replace(
      anchor,
      `        location /by-tenant/ {
            set $homing_key $http_x_tenant;
            set $homing_route ${o.route2};
            set $homing_fallback_location @homing_fallback;
            include ${c.dir}/homing-location.conf;
        }

${anchor}`,
    );
  }
  return conf;
}

function startNginxIntegration(o: ProxyOptions): Promise<Service> {
  const template = readFileSync(join(NGINX_DIR, 'nginx.conf.template'), 'utf8');
  // Checked before starting (a throw inside the config callback would leave the service's temp dir).
  const trial = renderNginxConf(template, { dir: '/x', port: 1, luaModules: '' }, o);
  assert.doesNotMatch(trial, /\{\{\w+\}\}/, 'every placeholder of nginx.conf.template is rendered');
  if (o.route2) assert.match(trial, /location \/by-tenant\//, 'the test location was inserted');
  if (o.luaOptions) assert.ok(trial.includes(o.luaOptions), 'the extra Lua options were inserted');
  return startNginx((c) => renderNginxConf(template, c, o), { files: nginxFiles() });
}

function startHaproxyIntegration(o: ProxyOptions): Promise<Service> {
  let cfg = readFileSync(join(HAPROXY_DIR, 'haproxy.cfg'), 'utf8');
  if (o.route2) {
    const anchor = '    http-request lua.homing ';
    assert.ok(cfg.includes(anchor));
    cfg = cfg.replace(
      anchor,
      `    http-request set-var(txn.homing_key) req.hdr(x-tenant) if { path_beg /by-tenant/ }
    http-request set-var(txn.homing_route) str(${o.route2}) if { path_beg /by-tenant/ }
${anchor}`,
    );
  }
  return startHaproxy(
    (c) => `global
    setenv HOMING_LUA ${c.dir}/homing.lua
    setenv HOMING_LISTEN 127.0.0.1:${c.port}
    setenv HOMING_RESP 127.0.0.1:${o.respPort}
    setenv HOMING_TIMEOUT_MS ${TIMEOUT_MS}
    setenv HOMING_FALLBACK ${o.fallback}
    nbthread 2

${cfg}`,
    { files: { 'homing.lua': readFileSync(join(HAPROXY_DIR, 'homing.lua'), 'utf8') } },
  );
}

const PROXIES = [
  { name: 'nginx', start: startNginxIntegration },
  { name: 'HAProxy', start: startHaproxyIntegration },
] as const;

// ---------------------------------------------------------------------------------------------
// homing with a file-discovered pool

async function replaceFile(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

interface Setup {
  homing: Homing;
  members: Backend[];
  fallback: Backend;
  membersFile: string;
  respPort: number;
  /** Closes homing (once; the cleanup does it too). */
  stopHoming(): Promise<void>;
}

async function setup(cleanups: Cleanup[], n = 4): Promise<Setup> {
  const members = await Promise.all(Array.from({ length: n }, (_, i) => startBackend(`m${i}`)));
  const fallback = await startBackend('fallback');
  for (const b of [...members, fallback]) cleanups.push(() => b.close());
  const dir = await mkdtemp(join(tmpdir(), 'homing-integrations-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const membersFile = join(dir, 'members.yaml');
  await writeFile(membersFile, members.map((b) => `- '${b.id}'\n`).join(''));
  const homing = await startTestHoming(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
resp: { address: 127.0.0.1:0, routes: [docs, tenants] }
pools:
  p: { discovery: { file: '${membersFile}' } }
routes:
  - { name: docs, match: { path: / }, pool: p, hash: { key: path, algorithm: ring } }
  - { name: tenants, match: { path: /by-tenant/ }, pool: p, hash: { key: 'header:x-tenant', algorithm: maglev } }
`);
  let closing: Promise<void> | undefined;
  const stopHoming = (): Promise<void> => (closing ??= homing.close());
  cleanups.push(stopHoming);
  return { homing, members, fallback, membersFile, respPort: homing.resp!.address().port, stopHoming };
}

async function adminTarget(h: Homing, route: string, key: string): Promise<string | null> {
  const r = await request(`${h.adminUrl}/api/v1/routes/${route}/lookup?key=${encodeURIComponent(key)}`);
  const j = (await r.body.json()) as { target?: string | null };
  return j.target ?? null;
}

async function poolMembers(h: Homing): Promise<string[]> {
  const r = await request(`${h.adminUrl}/api/v1/pools`);
  const j = (await r.body.json()) as { pools: { name: string; members: { id: string }[] }[] };
  return j.pools.find((p) => p.name === 'p')!.members.map((m) => m.id);
}

// ---------------------------------------------------------------------------------------------
// Requests through a proxy

interface Answer {
  status: number;
  /** The member that answered (its id), or undefined when the body was not a member's JSON. */
  servedBy: string | undefined;
  target: string | undefined;
  fallback: string | undefined;
  ms: number;
}

async function get(dispatcher: Agent, port: number, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const t0 = Date.now();
  const r = await request(`http://127.0.0.1:${port}${path}`, { dispatcher, headers, headersTimeout: 5000, bodyTimeout: 5000 });
  const text = await r.body.text();
  let servedBy: string | undefined;
  try {
    servedBy = (JSON.parse(text) as { id?: string }).id;
  } catch {
    servedBy = undefined;
  }
  const h = (n: string): string | undefined => {
    const v = r.headers[n];
    return Array.isArray(v) ? v.join(',') : v;
  };
  return { status: r.statusCode, servedBy, target: h('x-homing-target'), fallback: h('x-homing-fallback'), ms: Date.now() - t0 };
}

/** Runs `fn` over `items` with `n` at a time; results in input order. */
async function mapLimit<T, R>(items: readonly T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

const DOC_KEYS = Array.from({ length: 60 }, (_, i) => `/doc/${i}-${(i * 7919) % 1000}`);
const TENANTS = Array.from({ length: 24 }, (_, i) => `tenant-${i}`);

/**
 * Sends every doc key (path) and tenant (X-Tenant on /by-tenant/x) through the proxy, first on
 * one keep-alive connection, then on 6 concurrent ones, and checks each answer against homing's
 * admin look-up. Returns key → member for the doc keys.
 */
async function checkRouting(name: string, s: Setup, port: number): Promise<Map<string, string>> {
  const expected = new Map<string, string>();
  for (const k of DOC_KEYS) expected.set(k, (await adminTarget(s.homing, 'docs', k))!);
  const expectedTenant = new Map<string, string>();
  for (const t of TENANTS) expectedTenant.set(t, (await adminTarget(s.homing, 'tenants', t))!);
  for (const v of [...expected.values(), ...expectedTenant.values()]) assert.ok(v && s.members.some((m) => m.id === v), `homing names a live member (${v})`);
  assert.ok(new Set(expected.values()).size >= 2, 'the keys spread over several members (else the check proves little)');

  for (const [connections, parallel] of [
    [1, 1],
    [6, 6],
  ] as const) {
    const agent = new Agent({ connections, pipelining: 1 });
    try {
      const docs = await mapLimit(DOC_KEYS, parallel, (k) => get(agent, port, k));
      const tenants = await mapLimit(TENANTS, parallel, (t) => get(agent, port, `/by-tenant/x`, { 'x-tenant': t }));
      const where = `${name}, ${connections} client connection(s)`;
      docs.forEach((a, i) => {
        const k = DOC_KEYS[i]!;
        const want = expected.get(k)!;
        assert.deepEqual(
          { status: a.status, servedBy: a.servedBy, target: a.target, fallback: a.fallback },
          { status: 200, servedBy: want, target: want, fallback: undefined },
          `${where}: key ${k} should land on ${want}`,
        );
      });
      tenants.forEach((a, i) => {
        const t = TENANTS[i]!;
        const want = expectedTenant.get(t)!;
        assert.deepEqual(
          { status: a.status, servedBy: a.servedBy, target: a.target, fallback: a.fallback },
          { status: 200, servedBy: want, target: want, fallback: undefined },
          `${where}: tenant ${t} (route tenants) should land on ${want}`,
        );
      });
    } finally {
      await agent.close();
    }
  }
  return expected;
}

// ---------------------------------------------------------------------------------------------

for (const proxy of PROXIES) {
  test(`${proxy.name}: every key lands on the member homing names, and still does after a member leaves the pool`, { timeout: 60_000 }, async () => {
    const cleanups: Cleanup[] = [];
    try {
      const s = await setup(cleanups);
      const p = await proxy.start({ respPort: s.respPort, fallback: s.fallback.id, route2: 'tenants' });
      cleanups.push(() => p.stop());
      const requestsBefore = s.members.reduce((a, m) => a + m.requests, 0);
      const before = await checkRouting(proxy.name, s, p.port);
      const sent = 2 * (DOC_KEYS.length + TENANTS.length);
      assert.equal(s.members.reduce((a, m) => a + m.requests, 0) - requestsBefore, sent, 'every request reached a member exactly once');
      assert.equal(s.fallback.requests, 0, 'nothing fell back');

      // The member owning the most doc keys leaves the pool (it keeps running: a request that
      // still reached it would show).
      const counts = new Map<string, number>();
      for (const m of before.values()) counts.set(m, (counts.get(m) ?? 0) + 1);
      const leaving = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
      const gone = s.members.find((m) => m.id === leaving)!;
      await replaceFile(s.membersFile, s.members.filter((m) => m !== gone).map((m) => `- '${m.id}'\n`).join(''));
      await until(async () => !(await poolMembers(s.homing)).includes(leaving), WAIT, 50);
      await until(async () => (await adminTarget(s.homing, 'docs', DOC_KEYS.find((k) => before.get(k) === leaving)!)) !== leaving, WAIT, 20);

      const goneRequests = gone.requests;
      const after = await checkRouting(`${proxy.name} after ${leaving} left`, s, p.port);
      assert.equal(gone.requests, goneRequests, 'the member that left gets no request');
      let moved = 0;
      for (const k of DOC_KEYS) {
        if (before.get(k) === leaving) {
          moved++;
          assert.notEqual(after.get(k), leaving);
        } else assert.equal(after.get(k), before.get(k), `key ${k} did not belong to the leaving member and must not move`);
      }
      assert.ok(moved > 0);
      assert.equal(s.fallback.requests, 0, 'nothing fell back');
    } finally {
      for (const c of cleanups.reverse()) await c();
    }
  });
}

test('nginx keeps upstream connections alive per member (balancer_by_lua + keepalive)', { timeout: 30_000 }, async () => {
  const cleanups: Cleanup[] = [];
  try {
    const s = await setup(cleanups, 3);
    const p = await startNginxIntegration({ respPort: s.respPort, fallback: s.fallback.id });
    cleanups.push(() => p.stop());
    const agent = new Agent({ connections: 1 });
    cleanups.push(() => agent.close());
    const n = 150;
    for (let i = 0; i < n; i++) {
      const a = await get(agent, p.port, `/ka/${i}`);
      assert.equal(a.status, 200);
    }
    const opened = s.members.reduce((a, m) => a + m.connections, 0);
    // nginx runs one worker per CPU, each with its own idle pool: at most a few per member.
    assert.ok(opened <= 3 * 8, `${opened} backend connections for ${n} requests: upstream keep-alive is not working`);
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
});

test('nginx: configure{ db = 1 } asks the second route of resp.routes (SELECT on each new connection)', { timeout: 30_000 }, async () => {
  const cleanups: Cleanup[] = [];
  try {
    const s = await setup(cleanups, 3);
    const p = await startNginxIntegration({ respPort: s.respPort, fallback: s.fallback.id, luaOptions: 'db = 1,' });
    cleanups.push(() => p.stop());
    const agent = new Agent({ connections: 3 });
    cleanups.push(() => agent.close());
    let differs = 0;
    const keys = DOC_KEYS.slice(0, 30);
    const answers = await mapLimit(keys, 3, (k) => get(agent, p.port, k));
    for (const [i, k] of keys.entries()) {
      const want = await adminTarget(s.homing, 'tenants', k); // route 1 of [docs, tenants], same key (the URI)
      if (want !== (await adminTarget(s.homing, 'docs', k))) differs++;
      assert.deepEqual([answers[i]!.status, answers[i]!.servedBy, answers[i]!.fallback], [200, want, undefined], `key ${k} on db 1`);
    }
    assert.ok(differs > 0, 'the two routes disagree on some keys (else db 1 is not really checked)');
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
});

/**
 * A fake RESP server for the failure cases: GET/HOMING.ROUTE answers depend on the key.
 *   /nil → nil · /bad-ip → 256.1.1.1:80 · /hostname → evil.example:80 · /port0 → 127.0.0.1:0
 *   /err → -ERR · /junk → an unparseable reply · /slow → no answer ever (the connection stays open) · /v6 → `v6` · other → `good`
 */
async function startFakeResp(good: string, cleanups: Cleanup[], v6?: string): Promise<{ port: number; commands: string[][] }> {
  const commands: string[][] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    let stalled = false;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const cmd = parseCommand(buf);
        if (!cmd) return;
        buf = buf.subarray(cmd.end);
        commands.push(cmd.args);
        if (stalled) continue;
        const name = cmd.args[0]!.toUpperCase();
        if (name === 'SELECT' || name === 'PING') {
          sock.write('+OK\r\n');
          continue;
        }
        const key = cmd.args.at(-1)!;
        const bulk = (s: string): string => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
        if (key === '/slow') stalled = true;
        else if (key === '/nil') sock.write('$-1\r\n');
        else if (key === '/bad-ip') sock.write(bulk('256.1.1.1:80'));
        else if (key === '/hostname') sock.write(bulk('evil.example:80'));
        else if (key === '/port0') sock.write(bulk('127.0.0.1:0'));
        else if (key === '/err') sock.write('-ERR no such route\r\n');
        else if (key === '/junk') sock.write('$x\r\n');
        else if (key === '/v6' && v6) sock.write(bulk(v6));
        else sock.write(bulk(good));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, commands };
}

/** A node:http server on [::1]:0 answering `{"id":"[::1]:port"}`; undefined when the box has no IPv6 loopback. */
async function startV6Backend(cleanups: Cleanup[]): Promise<string | undefined> {
  const server = createServer((_req, res) => {
    const text = JSON.stringify({ id });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
  let id = '';
  const ok = await new Promise<boolean>((r) => {
    server.once('error', () => r(false));
    server.listen(0, '::1', () => r(true));
  });
  if (!ok) return undefined;
  id = `[::1]:${(server.address() as net.AddressInfo).port}`;
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return id;
}

function parseCommand(buf: Buffer): { args: string[]; end: number } | null {
  let at = 0;
  const line = (): string | null => {
    const i = buf.indexOf('\r\n', at);
    if (i < 0) return null;
    const s = buf.toString('latin1', at, i);
    at = i + 2;
    return s;
  };
  const head = line();
  if (head === null) return null;
  if (!head.startsWith('*')) return { args: head.split(' '), end: at }; // inline command
  const n = Number(head.slice(1));
  const args: string[] = [];
  for (let i = 0; i < n; i++) {
    const l = line();
    if (l === null) return null;
    const len = Number(l.slice(1));
    if (buf.length < at + len + 2) return null;
    args.push(buf.toString('utf8', at, at + len));
    at += len + 2;
  }
  return { args, end: at };
}

for (const proxy of PROXIES) {
  test(`${proxy.name}: nil, invalid answers, errors, timeouts and homing down go to the fallback, promptly`, { timeout: 60_000 }, async () => {
    const cleanups: Cleanup[] = [];
    try {
      const s = await setup(cleanups, 2);
      const good = s.members[0]!;
      // A member on IPv6 loopback, when the box has one: "[::1]:port" answers must route too.
      const v6 = await startV6Backend(cleanups);
      const fake = await startFakeResp(good.id, cleanups, v6);
      const viaFake = await proxy.start({ respPort: fake.port, fallback: s.fallback.id });
      cleanups.push(() => viaFake.stop());
      const agent = new Agent({ connections: 2 });
      cleanups.push(() => agent.close());

      // The fake's normal answer routes (the failure cases below are not a broken setup).
      const ok = await get(agent, viaFake.port, '/fine');
      assert.deepEqual([ok.status, ok.servedBy, ok.target, ok.fallback], [200, good.id, good.id, undefined]);

      if (v6) {
        const a = await get(agent, viaFake.port, '/v6');
        assert.deepEqual([a.status, a.servedBy, a.target, a.fallback], [200, v6, v6, undefined], `${proxy.name}: an [IPv6]:port answer routes`);
      }

      const cases: [string, string][] = [
        ['/nil', 'nil'],
        ['/bad-ip', 'invalid'],
        ['/hostname', 'invalid'],
        ['/port0', 'invalid'],
        ['/err', 'error'],
        ['/junk', 'invalid'],
        ['/slow', 'timeout'],
        ['/fine-again', ''],
      ];
      for (const [path, reason] of cases) {
        const a = await get(agent, viaFake.port, path);
        if (reason === '') {
          // After a timed-out look-up the next one still works (the stalled connection is not reused).
          assert.deepEqual([a.status, a.servedBy, a.fallback], [200, good.id, undefined], `${proxy.name} ${path}`);
          continue;
        }
        assert.deepEqual(
          { status: a.status, servedBy: a.servedBy, target: a.target, fallback: a.fallback },
          { status: 200, servedBy: s.fallback.id, target: undefined, fallback: reason },
          `${proxy.name}: ${path} → fallback (${reason})`,
        );
        assert.ok(a.ms < 1500, `${proxy.name}: ${path} took ${a.ms} ms (look-up timeout ${TIMEOUT_MS} ms)`);
      }
      assert.ok(fake.commands.some((c) => c[0]!.toUpperCase() === 'GET' && c[1] === '/slow'), 'the slow look-up was really sent');

      // Real homing: an empty pool answers nil; homing down → unreachable.
      const viaHoming = await proxy.start({ respPort: s.respPort, fallback: s.fallback.id });
      cleanups.push(() => viaHoming.stop());
      const k = '/doc/1';
      const a1 = await get(agent, viaHoming.port, k);
      assert.deepEqual([a1.status, a1.servedBy, a1.fallback], [200, await adminTarget(s.homing, 'docs', k), undefined]);
      await replaceFile(s.membersFile, '[]\n');
      await until(async () => (await poolMembers(s.homing)).length === 0, WAIT, 50);
      const a2 = await get(agent, viaHoming.port, k);
      assert.deepEqual([a2.status, a2.servedBy, a2.fallback], [200, s.fallback.id, 'nil']);

      await s.stopHoming();
      for (let i = 0; i < 5; i++) {
        const a = await get(agent, viaHoming.port, `${k}?i=${i}`);
        assert.deepEqual([a.status, a.servedBy, a.fallback], [200, s.fallback.id, 'unreachable'], `${proxy.name} with homing down, request ${i}`);
        assert.ok(a.ms < 1500, `${proxy.name} with homing down took ${a.ms} ms`);
      }
    } finally {
      for (const c of cleanups.reverse()) await c();
    }
  });
}
