import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { echo, startBackend, startTestHoming, deadPort, until, WAIT, type Backend } from './support/backends.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function backends(n: number): Promise<Backend[]> {
  const bs = await Promise.all(Array.from({ length: n }, (_, i) => startBackend(`b${i}`)));
  for (const b of bs) cleanups.push(() => b.close());
  return bs;
}

async function homing(yaml: string) {
  const h = await startTestHoming(yaml);
  cleanups.push(() => h.close());
  return h;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) };
}

test('forwards with X-Forwarded-*, Via and a request id; strips client forwarding headers', async () => {
  const [b] = await backends(1);
  const h = await homing(`
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b!.id}'] } }
routes: [ { name: r, pool: p } ]
`);
  const r = await get(`${h.url}/a/b?c=d`, { 'x-forwarded-for': '6.6.6.6', 'x-request-id': 'abc-123', forwarded: 'for=6.6.6.6' });
  assert.equal(r.status, 200);
  assert.equal(r.json().url, '/a/b?c=d');
  const seen = b!.last!;
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.rawHeaders.filter((x) => x.toLowerCase() === 'x-forwarded-for').length, 1);
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-forwarded-host'], `127.0.0.1:${h.http!.port}`);
  assert.equal(seen.headers.via, '1.1 homing');
  assert.equal(seen.headers['x-request-id'], 'abc-123');
  assert.equal(seen.headers.forwarded, undefined);
  const r2 = await get(`${h.url}/`, { 'x-request-id': 'bad id\twith junk' });
  assert.equal(r2.status, 200);
  const generated = String(b!.last!.headers['x-request-id']);
  assert.match(generated, /^[0-9a-f]{16}-[0-9a-z]+$/);
  await get(`${h.url}/`);
  assert.notEqual(b!.last!.headers['x-request-id'], generated, 'two requests got the same generated id');
});

test('hash route: a key always lands on the member the admin look-up names, on two independent instances', async () => {
  const bs = await backends(4);
  const yaml = (alg: string) => `
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools: { p: { members: [${bs.map((b) => `'${b.id}'`).join(', ')}] } }
routes:
  - name: docs
    match: { pathRegex: '^/documents/(.*)$' }
    pool: p
    hash: { key: path:1, algorithm: ${alg} }
    debugHeader: true
`;
  for (const alg of ['ring', 'maglev', 'rendezvous']) {
    const h1 = await homing(yaml(alg));
    // Same members in another order: the answer must not depend on it.
    const h2 = await homing(yaml(alg).replace(bs.map((b) => `'${b.id}'`).join(', '), [...bs].reverse().map((b) => `'${b.id}'`).join(', ')));
    const landed = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const key = `doc-${i}`;
      const r1 = await get(`${h1.url}/documents/${key}`);
      const r2 = await get(`${h2.url}/documents/${key}`);
      const look = await get(`${h1.adminUrl}/api/v1/routes/docs/lookup?key=${key}`);
      assert.equal(r1.json().id, r2.json().id, `${alg}: instances disagree on ${key}`);
      assert.equal(r1.json().id, look.json().target, `${alg}: admin look-up disagrees on ${key}`);
      assert.equal(look.json().by, 'hash');
      assert.match(String(r1.headers['x-homing']), new RegExp(`route=docs; target=${r1.json().id}; by=hash`));
      landed.add(r1.json().id);
    }
    assert.ok(landed.size >= 3, `${alg}: 40 keys landed on only ${landed.size} members`);
  }
});

test('forged X-Homing, X-Accel-Redirect and hop-by-hop headers do not change routing', async () => {
  const bs = await backends(3);
  const h = await homing(`
listen: { http: 127.0.0.1:0 }
pools: { p: { members: [${bs.map((b) => `'${b.id}'`).join(', ')}] } }
routes:
  - { name: docs, match: { pathRegex: '^/d/(.*)$' }, pool: p, hash: { key: 'path:1' }, debugHeader: true }
`);
  for (let i = 0; i < 10; i++) {
    const plain = (await get(`${h.url}/d/k${i}`)).json().id;
    const other = bs.find((b) => b.id !== plain)!.id;
    const forged = await get(`${h.url}/d/k${i}`, {
      'x-homing': `route=docs; target=${other}; by=affinity`,
      'x-accel-redirect': `/internal_redirect/${other}/`,
      connection: 'keep-alive, x-homing, host',
      'x_forwarded_for': '1.2.3.4',
    });
    assert.equal(forged.json().id, plain);
    const seen = bs.find((b) => b.id === plain)!.last!;
    assert.equal(seen.headers['x-homing'], undefined);
    assert.equal(seen.headers['x-accel-redirect'], undefined);
    assert.equal(seen.headers['x_forwarded_for'], undefined);
  }
});

test('round-robin spreads over members; a refused member is retried elsewhere with no client error', async () => {
  const bs = await backends(2);
  const dead = await deadPort();
  const h = await homing(`
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['127.0.0.1:${dead}', ${bs.map((b) => `'${b.id}'`).join(', ')}] } }
routes: [ { name: r, pool: p, balance: round-robin } ]
`);
  for (let i = 0; i < 30; i++) assert.equal((await get(`${h.url}/x`)).status, 200);
  assert.equal(bs[0]!.requests + bs[1]!.requests, 30);
  assert.ok(bs[0]!.requests >= 10 && bs[1]!.requests >= 10, `uneven: ${bs[0]!.requests}/${bs[1]!.requests}`);
});

test('no live member: 503 JSON with its code, fast; all refused: 502 with its code', async () => {
  const dead1 = await deadPort();
  const dead2 = await deadPort();
  const h = await homing(`
listen: { http: 127.0.0.1:0 }
pools:
  p: { members: ['127.0.0.1:${dead1}', '127.0.0.1:${dead2}'], health: { passive: { failures: 1, ejectFor: 1m } } }
routes: [ { name: r, pool: p } ]
`);
  const first = await get(`${h.url}/`);
  assert.equal(first.status, 502);
  assert.equal(first.json().error.code, 'HOMING_ERR_UPSTREAM_CONNECT');
  const t0 = performance.now();
  const r = await get(`${h.url}/`);
  const ms = performance.now() - t0;
  assert.equal(r.status, 503);
  assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(r.json().error.code, 'HOMING_ERR_NO_LIVE_MEMBER');
  // No member is tried (each would refuse at once anyway): the answer waits on nothing.
  assert.ok(ms < 1000, `503 took ${ms} ms`);
});

test('no matching route: 404 JSON; upstream too slow: 504 JSON', async () => {
  const slow = await startBackend('slow', () => {
    /* never answers */
  });
  cleanups.push(() => slow.close());
  const h = await homing(`
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${slow.id}'] } }
routes: [ { name: r, match: { host: api.example.com }, pool: p, timeouts: { header: 300ms } } ]
`);
  const nr = await get(`${h.url}/`);
  assert.equal(nr.status, 404);
  assert.equal(nr.json().error.code, 'HOMING_ERR_NO_ROUTE');
  const t = await get(`${h.url}/`, { host: 'api.example.com' });
  assert.equal(t.status, 504);
  assert.equal(t.json().error.code, 'HOMING_ERR_UPSTREAM_TIMEOUT');
});

test('route matching: host (and wildcard), path prefix, regex and method, first match wins', async () => {
  const [a, b, c, d] = await backends(4);
  const h = await homing(`
listen: { http: 127.0.0.1:0 }
pools:
  a: { members: ['${a!.id}'] }
  b: { members: ['${b!.id}'] }
  c: { members: ['${c!.id}'] }
  d: { members: ['${d!.id}'] }
routes:
  - { name: posts, match: { method: [POST], path: /api }, pool: d }
  - { name: api, match: { host: '*.example.com', path: /api }, pool: a }
  - { name: re, match: { pathRegex: '^/u/[0-9]+$' }, pool: b }
  - { name: rest, pool: c }
`);
  assert.equal((await get(`${h.url}/api/x`, { host: 'eu.example.com:8080' })).json().member, 'b0');
  assert.equal((await get(`${h.url}/api/x`, { host: 'example.org' })).json().member, 'b2');
  assert.equal((await get(`${h.url}/u/42`)).json().member, 'b1');
  assert.equal((await get(`${h.url}/u/abc`)).json().member, 'b2');
  const p = await request(`${h.url}/api/x`, { method: 'POST', body: 'x', headers: { host: 'eu.example.com' } });
  assert.equal(JSON.parse(await p.body.text()).member, 'b3');
  // Dot segments are resolved before matching: /x/../api is /api.
  assert.equal((await get(`${h.url}/x/../api/y`, { host: 'eu.example.com' })).json().url, '/api/y');
});

test('upstream keep-alive: no connection churn across sequential and concurrent requests', async () => {
  // Answers after 300 ms, so each burst really has 32 requests in flight at once.
  const b = await startBackend('slowish', (req, res, body, be) => setTimeout(() => echo(req, res, body, be), 300));
  cleanups.push(() => b.close());
  const h = await homing(`
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b!.id}'] } }
routes: [ { name: r, pool: p } ]
`);
  for (let i = 0; i < 50; i++) await get(`${h.url}/`);
  assert.equal(b!.connections, 1);
  await Promise.all(Array.from({ length: 32 }, () => get(`${h.url}/`)));
  const afterBurst = b!.connections;
  assert.ok(afterBurst <= 33, `${afterBurst} connections for 32 concurrent requests`);
  await Promise.all(Array.from({ length: 32 }, () => get(`${h.url}/`)));
  assert.equal(b!.connections, afterBurst, 'a second burst of the same size opened new upstream connections');
});

test('active health checks take a member out of the hash route and back in; only its keys move', async () => {
  let sick = false;
  const bs = await Promise.all(
    ['h0', 'h1', 'h2'].map((n, i) =>
      startBackend(n, (req, res, body, b) => {
        if (req.url === '/health') {
          res.writeHead(i === 1 && sick ? 500 : 200);
          res.end();
          return;
        }
        echo(req, res, body, b);
      }),
    ),
  );
  for (const b of bs) cleanups.push(() => b.close());
  const h = await homing(`
listen: { http: 127.0.0.1:0 }
pools:
  p:
    members: [${bs.map((b) => `'${b.id}'`).join(', ')}]
    health: { active: { path: /health, interval: 50ms, timeout: 500ms, rise: 1, fall: 1 } }
routes: [ { name: r, match: { pathRegex: '^/k/(.*)$' }, pool: p, hash: { key: 'path:1' } } ]
`);
  const keys = Array.from({ length: 60 }, (_, i) => `key${i}`);
  const owners = async () => Promise.all(keys.map(async (k) => (await get(`${h.url}/k/${k}`)).json().member as string));
  const before = await owners();
  assert.ok(before.includes('h1'));
  sick = true;
  await until(async () => !(await owners()).includes('h1'), WAIT, 50);
  const during = await owners();
  for (let i = 0; i < keys.length; i++) if (before[i] !== 'h1') assert.equal(during[i], before[i], `key ${keys[i]} moved though its member stayed up`);
  sick = false;
  await until(async () => (await owners()).join() === before.join(), WAIT, 50);
});

test('file discovery: editing the member file moves traffic without a restart', async () => {
  const { mkdtempSync, writeFileSync, renameSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const [a, b] = await backends(2);
  const dir = mkdtempSync(join(tmpdir(), 'homing-disc-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'members.yaml');
  writeFileSync(file, `- ${a!.id}\n`);
  const h = await homing(`
listen: { http: 127.0.0.1:0 }
pools: { p: { discovery: { file: ${file} } } }
routes: [ { name: r, pool: p } ]
`);
  assert.equal((await get(`${h.url}/`)).json().member, 'b0');
  writeFileSync(join(dir, 'tmp.yaml'), `- ${b!.id}\n`);
  renameSync(join(dir, 'tmp.yaml'), file);
  await until(async () => (await get(`${h.url}/`)).json().member === 'b1', WAIT, 50);
});

test('header and cookie keys read the raw headers like Node would (first Authorization wins, cookies joined)', async () => {
  const { compileKey, rawHeaderValue } = await import('../src/routing/keys.js');
  const raw = ['Authorization', 'Bearer a', 'X-Tenant', 'one', 'authorization', 'Bearer b', 'x-tenant', 'two', 'Cookie', 'sid=1', 'cookie', 'room=7'];
  assert.equal(rawHeaderValue(raw, 'authorization'), 'Bearer a');
  assert.equal(rawHeaderValue(raw, 'x-tenant'), 'one, two');
  const view = { method: 'GET', uri: '/', path: '/', host: 'h', match: null, headers: {}, header: (n: string) => rawHeaderValue(raw, n) };
  assert.equal(compileKey('header:Authorization')(view), 'Bearer a');
  assert.equal(compileKey('cookie:room')(view), '7');
  assert.equal(compileKey('header:x-missing')(view), undefined);
});

test('behind a trusted proxy the X-Forwarded-* chain is kept and appended; from anyone else it is replaced', async () => {
  const [b] = await backends(1);
  const trusted = await homing(`
listen: { http: 127.0.0.1:0, trustedProxies: ['127.0.0.0/8'] }
pools: { p: { members: ['${b!.id}'] } }
routes: [ { name: r, pool: p } ]
`);
  await get(`${trusted.url}/`, { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example.com' });
  assert.equal(b!.last!.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  assert.equal(b!.last!.headers['x-forwarded-proto'], 'https');
  assert.equal(b!.last!.headers['x-forwarded-host'], 'shop.example.com');
  // A forged proto value is not believed even from a trusted peer.
  await get(`${trusted.url}/`, { 'x-forwarded-proto': 'gopher' });
  assert.equal(b!.last!.headers['x-forwarded-proto'], 'http');
  const untrusted = await homing(`
listen: { http: 127.0.0.1:0, trustedProxies: ['10.0.0.0/8', '::1'] }
pools: { p: { members: ['${b!.id}'] } }
routes: [ { name: r, pool: p } ]
`);
  await get(`${untrusted.url}/`, { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https' });
  assert.equal(b!.last!.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(b!.last!.headers['x-forwarded-proto'], 'http');
  const { ConfigError, parseConfig } = await import('../src/config/load.js');
  assert.throws(() => parseConfig(`listen: { http: 127.0.0.1:0, trustedProxies: ['10.0.0.0/33'] }\npools: { p: { members: ['${b!.id}'] } }\nroutes: [ { name: r, pool: p } ]`), (e: unknown) => e instanceof ConfigError && /listen\.trustedProxies\[0\]/.test(e.message));
});
