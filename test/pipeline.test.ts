/**
 * The request pipeline and the one resolver, against real homing and real node:http members:
 * every face (HTTP, RESP, admin) gives the same answer without moving a balancer; routes over
 * several pools fail over in order with each pool's own options; upstream options stay per route
 * when routes share members; backend-protocol headers never reach a client on any route; a
 * redirect outside the pool is refused the same way for a plain request and an upgrade.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import {
  RawClient,
  deadPort,
  errorCode,
  httpRequest,
  startBackend,
  startBlackhole,
  startTestHoming,
  type Backend,
} from './support/backends.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function backends(n: number, handler?: Parameters<typeof startBackend>[1]): Promise<Backend[]> {
  const bs = await Promise.all(Array.from({ length: n }, (_, i) => startBackend(String.fromCharCode(97 + i), handler)));
  for (const b of bs) cleanups.push(() => b.close());
  return bs;
}

async function homing(yaml: string): Promise<Awaited<ReturnType<typeof startTestHoming>>> {
  const h = await startTestHoming(yaml);
  cleanups.push(() => h.close());
  return h;
}

async function lookup(adminUrl: string, route: string, key: string): Promise<{ target: string | null; by: string | null; pool: string | null }> {
  const r = await httpRequest(`${adminUrl}/api/v1/routes/${route}/lookup?key=${encodeURIComponent(key)}`);
  return JSON.parse(r.text) as { target: string | null; by: string | null; pool: string | null };
}

describe('one resolver: HTTP, RESP and admin agree, and a look-up never moves a balancer', () => {
  test('a round-robin route: look-ups tell where the next request goes; requests still take turns', async () => {
    const bs = await backends(3);
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
resp: { address: 127.0.0.1:0, route: rr }
pools: { p: { members: [${bs.map((b) => `'${b.id}'`).join(', ')}] } }
routes: [ { name: rr, pool: p, balance: round-robin } ]
`);
    const redis = new Redis({ port: h.resp!.address().port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    cleanups.push(async () => void redis.disconnect());
    await redis.connect();
    const served: string[] = [];
    for (let i = 0; i < 9; i++) {
      // Ask every face several times: none of them may advance the rotation.
      const told = await redis.get(`k${i}`);
      assert.equal(await redis.get('other'), told);
      const viaAdmin = await lookup(h.adminUrl, 'rr', `k${i}`);
      assert.deepEqual(viaAdmin, { ...viaAdmin, target: told, by: 'balance', pool: 'p' });
      const r = await httpRequest(`${h.url}/x`);
      const id = (JSON.parse(r.text) as { id: string }).id;
      assert.equal(id, told, `request ${i} went elsewhere than the look-ups said`);
      served.push(id);
    }
    // The same rotation a route without look-ups follows: each member in turn, a b c a b c …
    assert.equal(new Set(served.slice(0, 3)).size, 3, served.join(' '));
    for (let i = 3; i < served.length; i++) assert.equal(served[i], served[i - 3], served.join(' '));
  });

  test('a hash route and an affinity-only route: the same member over every face, before and after learning', async () => {
    const bs = await backends(3);
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
resp: { address: 127.0.0.1:0, routes: [h, a] }
pools: { p: { members: [${bs.map((b) => `'${b.id}'`).join(', ')}] } }
routes:
  - { name: h, match: { path: /h }, pool: p, hash: { key: 'query:k', algorithm: ring }, debugHeader: true }
  - { name: a, match: { path: /a }, pool: p, affinity: { key: 'query:k' }, debugHeader: true }
`);
    const redis = new Redis({ port: h.resp!.address().port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    cleanups.push(async () => void redis.disconnect());
    await redis.connect();
    for (const [db, route] of [[0, 'h'], [1, 'a']] as const) {
      await redis.select(db);
      for (let i = 0; i < 15; i++) {
        const key = `key-${i}`;
        const told = await redis.get(key);
        assert.ok(told && bs.some((b) => b.id === told), `${route} ${key}: ${told}`);
        assert.equal((await lookup(h.adminUrl, route, key)).target, told);
        const r = await httpRequest(`${h.url}/${route}?k=${key}`);
        assert.equal((JSON.parse(r.text) as { id: string }).id, told, `${route} ${key}`);
        assert.match(String(r.headers['x-homing']), /by=hash/);
        assert.equal(await redis.get(key), told, 'after the request (learned on the affinity route) the answer holds');
      }
    }
    // Once learned, the owner is the answer on the affinity route: by=affinity everywhere.
    const learned = await lookup(h.adminUrl, 'a', 'key-0');
    assert.equal(learned.by, 'affinity');
    const r = await httpRequest(`${h.url}/a?k=key-0`);
    assert.match(String(r.headers['x-homing']), new RegExp(`target=${learned.target}; by=affinity`));
  });
});

describe('routes over several pools', () => {
  test('failover in order: the backup pool only while the primary has no live member, each with its own pool options', async () => {
    // The primary answers only once two requests are with it at the same time (or after 5 s), so
    // concurrent requests need several connections there whatever the machine's speed.
    let held: (() => void)[] = [];
    const [primary, backup] = await backends(2, (req, res, _body, b) => {
      const answer = (): void => {
        const text = JSON.stringify({ id: b.id });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      if (b.name !== 'a') return void setTimeout(answer, 20);
      held.push(answer);
      if (held.length >= 2) {
        for (const f of held) f();
        held = [];
      } else setTimeout(() => held.includes(answer) && (held.splice(held.indexOf(answer), 1), answer()), 5000);
    });
    const dead = await deadPort();
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools:
  primary:
    members: ['${primary!.id}', '127.0.0.1:${dead}']
    health: { passive: { failures: 1, ejectFor: 1h } }
  backup:
    members: ['${backup!.id}']
    connections: 1
routes: [ { name: r, pools: [primary, backup], balance: round-robin, debugHeader: true } ]
`);
    // Both pools live: everything goes to the primary (its dead member is ejected on first failure, the request retried).
    const first = await Promise.all(Array.from({ length: 6 }, () => httpRequest(`${h.url}/x`)));
    for (const r of first) assert.equal((JSON.parse(r.text) as { id: string }).id, primary!.id, r.text);
    assert.equal(backup!.requests, 0);
    assert.ok(primary!.connections > 1, 'the primary pool keeps its default connection limit');
    const look = await lookup(h.adminUrl, 'r', 'x');
    assert.deepEqual([look.target, look.pool], [primary!.id, 'primary']);
    // The primary's last member goes away: the backup pool takes over, with its own limit of one connection.
    await primary!.close();
    const second = await Promise.all(Array.from({ length: 6 }, () => httpRequest(`${h.url}/y`)));
    for (const r of second) assert.equal((JSON.parse(r.text) as { id: string }).id, backup!.id, r.text);
    assert.equal(backup!.connections, 1, 'the backup pool opened more connections than its limit');
    const after = await lookup(h.adminUrl, 'r', 'x');
    assert.deepEqual([after.target, after.pool], [backup!.id, 'backup']);
  });

  test('a redirect may name a member of any of the route’s pools, and nothing else', async () => {
    const outside = await backends(1);
    let target = '';
    const [a, b] = await backends(2, (req, res, _body, be) => {
      if (be.name === 'a' && req.url!.startsWith('/go')) {
        res.writeHead(200, { 'x-accel-redirect': `/internal_redirect/${target}/there`, 'content-length': 0 });
        return res.end();
      }
      const text = JSON.stringify({ id: be.id, url: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { one: { members: ['${a!.id}'] }, two: { members: ['${b!.id}'] } }
routes: [ { name: r, pools: [one, two], affinity: { key: 'query:t', redirect: {} } } ]
`);
    target = b!.id;
    const ok = await httpRequest(`${h.url}/go?t=1`);
    assert.deepEqual(JSON.parse(ok.text), { id: b!.id, url: '/there' });
    target = outside[0]!.id;
    const refused = await httpRequest(`${h.url}/go?t=2`);
    assert.equal(refused.status, 502);
    assert.equal(errorCode(refused.body), 'HOMING_ERR_REDIRECT_TARGET');
    assert.equal(outside[0]!.requests, 0);
  });
});

describe('upstream options are per route, even on shared members', () => {
  test('timeouts.connect: a short one times out on time while a long one on the same member still waits', async () => {
    const hole = await startBlackhole();
    cleanups.push(() => hole.close());
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${hole.id}'] } }
routes:
  - { name: slow, match: { path: /slow }, pool: p, retries: 0, timeouts: { connect: 30s } }
  - { name: fast, match: { path: /fast }, pool: p, retries: 0, timeouts: { connect: 300ms } }
`);
    // The slow route dispatches first: with one undici pool per member it would impose its 30 s.
    let slowDone = false;
    const slow = httpRequest(`${h.url}/slow`, { timeout: 60_000 }).finally(() => (slowDone = true));
    const t0 = performance.now();
    const fast = await httpRequest(`${h.url}/fast`, { timeout: 20_000 });
    const took = performance.now() - t0;
    assert.equal(fast.status, 504, fast.text);
    assert.equal(errorCode(fast.body), 'HOMING_ERR_UPSTREAM_TIMEOUT');
    assert.ok(took < 10_000, `the 300 ms connect timeout took ${Math.round(took)} ms`);
    assert.equal(slowDone, false, 'the 30 s connect timeout answered early');
    await h.close();
    await slow.catch(() => undefined);
  });
});

describe('backend-protocol headers never reach a client, on any route', () => {
  test('a hash route refuses a member’s X-Accel-Redirect (502, logged) and strips owner headers', async () => {
    const [m] = await backends(1, (req, res) => {
      if (req.url === '/redirect') {
        res.writeHead(200, { 'x-accel-redirect': '/internal_redirect/127.0.0.1:1/secret', 'content-length': 2 });
        return res.end('no');
      }
      res.writeHead(200, { 'x-session-node': '127.0.0.1:1', 'content-length': 2, 'x-kept': 'yes' });
      res.end('ok');
    });
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${m!.id}'] } }
routes:
  - { name: sessions, match: { path: /sessions }, pool: p, affinity: { key: 'header:authorization', owner: X-Session-Node } }
  - { name: docs, match: { path: / }, pool: p, hash: { key: path } }
`);
    const r = await httpRequest(`${h.url}/redirect`);
    assert.equal(r.status, 502);
    assert.equal(errorCode(r.body), 'HOMING_ERR_REDIRECT_TARGET');
    assert.equal(r.headers['x-accel-redirect'], undefined);
    const plain = await httpRequest(`${h.url}/plain`);
    assert.equal(plain.status, 200);
    assert.equal(plain.text, 'ok');
    assert.equal(plain.headers['x-session-node'], undefined, 'an owner header of another route leaked');
    assert.equal(plain.headers['x-kept'], 'yes');
  });

  test('a redirect outside the pool is refused the same way for a plain request and an upgrade', async () => {
    const [m] = await backends(1, (_req, res) => {
      res.writeHead(200, { 'x-accel-redirect': '/internal_redirect/169.254.169.254:80/latest/meta-data', 'content-length': 0 });
      res.end();
    });
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${m!.id}'] } }
routes: [ { name: r, pool: p, affinity: { key: 'header:authorization', redirect: {} } } ]
`);
    const plain = await httpRequest(`${h.url}/ws`, { headers: { authorization: 't' } });
    const c = await RawClient.connect(h.http!.port);
    c.write('GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    const [up] = await c.waitResponses(1, 10_000);
    c.destroy();
    assert.ok(up, c.text);
    assert.deepEqual([plain.status, errorCode(plain.body)], [502, 'HOMING_ERR_REDIRECT_TARGET']);
    assert.deepEqual([up.status, errorCode(up.body)], [502, 'HOMING_ERR_REDIRECT_TARGET']);
  });
});
