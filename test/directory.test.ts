/**
 * Directory routing end to end: a real homing asks a real directory (a node:http service on port
 * 0, or a real redis-server) which pod holds a tenant (by Host), caches the answer, and keeps
 * routing when the directory is slow, down or wrong. Pods are real node:http members.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { errorCode, httpRequest, startBackend, startTestHoming, until, type Backend } from './support/backends.js';
import { startRedis } from './support/services.js';
import { serveCli } from './support/serve.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A directory service: GET /backend/<key> → the answer `answers` holds (a function of the key), counting calls. */
interface Directory {
  url: string;
  calls: Map<string, number>;
  total(): number;
  /** Decoded path segment of every call, in order. */
  asked: string[];
  answer: (key: string) => { status: number; body?: string; hang?: boolean; wait?: Promise<void>; headers?: Record<string, string> };
  close(): Promise<void>;
}

async function startDirectory(answer: Directory['answer']): Promise<Directory> {
  const sockets = new Set<Socket>();
  const d = { calls: new Map<string, number>(), asked: [] as string[], answer } as Directory;
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const raw = req.url!.slice('/backend/'.length);
    const key = decodeURIComponent(raw);
    d.asked.push(raw);
    d.calls.set(key, (d.calls.get(key) ?? 0) + 1);
    const a = d.answer(key);
    if (a.hang) return;
    const send = (): void => {
      res.writeHead(a.status, { 'content-type': 'text/plain', ...a.headers });
      res.end(a.body ?? '');
    };
    if (a.wait) void a.wait.then(send);
    else send();
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  d.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/backend/{key}`;
  d.total = () => [...d.calls.values()].reduce((a, b) => a + b, 0);
  d.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      for (const s of sockets) s.destroy();
    });
  cleanups.push(() => d.close());
  return d;
}

async function pods(n: number): Promise<Backend[]> {
  const bs = await Promise.all(Array.from({ length: n }, (_, i) => startBackend(`pod${i}`)));
  for (const b of bs) cleanups.push(() => b.close());
  return bs;
}

function config(bs: Backend[], lookup: string, extra = '', top = ''): string {
  return `
log: { level: silent }
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
${top}
pools:
${bs.map((b, i) => `  pod${i}: { members: ['${b.id}'] }`).join('\n')}
routes:
  - name: tenants
    match: { path: / }
    pools: [${bs.map((_, i) => `pod${i}`).join(', ')}]
    debugHeader: true
    directory:
      key: host
      lookup: ${lookup}
${extra}
`;
}

async function homing(yaml: string): Promise<Awaited<ReturnType<typeof startTestHoming>>> {
  const h = await startTestHoming(yaml);
  cleanups.push(() => h.close());
  return h;
}

/** GET / with a Host; the member id that answered (or the error code). */
async function ask(url: string, host: string, dispatcher?: Agent): Promise<{ status: number; id?: string; code?: string; by?: string }> {
  const r = await request(`${url}/`, { headers: { host }, dispatcher });
  const text = await r.body.text();
  const by = /by=(\w+)/.exec(String(r.headers['x-homing'] ?? ''))?.[1];
  if (r.statusCode === 200) return { status: 200, id: (JSON.parse(text) as { id: string }).id, by };
  return { status: r.statusCode, code: errorCode(text) };
}

const podOf = (host: string): number => Number(/(\d+)/.exec(host)![1]) % 3;

describe('directory over HTTP', () => {
  test('every host lands on its pod; 10k requests over 100 hosts make one directory call per host', async () => {
    const bs = await pods(3);
    const dir = await startDirectory((key) => ({ status: 200, body: `pod${podOf(key)}` }));
    const h = await homing(config(bs, `{ url: '${dir.url}', timeout: 2s }`));
    const agent = new Agent({ connections: 16 });
    cleanups.push(() => agent.close());
    const hosts = Array.from({ length: 100 }, (_, i) => `tenant${i}.example.com`);
    let done = 0;
    const worker = async (w: number): Promise<void> => {
      for (let i = w; i < 10_000; i += 16) {
        const host = hosts[i % hosts.length]!;
        const r = await ask(h.url, `${host}:8080`, agent);
        assert.equal(r.status, 200, `${host}: ${r.code}`);
        assert.equal(r.id, bs[podOf(host)]!.id, host);
        assert.equal(r.by, 'directory');
        done++;
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    assert.equal(done, 10_000);
    // The host is the key (lower-cased, no port), asked once each.
    assert.equal(dir.calls.size, 100);
    assert.equal(dir.total(), 100, `${dir.total()} directory calls`);
  });

  test('200 concurrent first requests for one host make exactly one call, and every one is answered', async () => {
    const bs = await pods(3);
    let release = (): void => {};
    const gate = new Promise<void>((r) => (release = r));
    const dir = await startDirectory(() => ({ status: 200, body: 'pod2', wait: gate }));
    const h = await homing(config(bs, `{ url: '${dir.url}', timeout: 20s }`));
    const agent = new Agent({ connections: 200 });
    cleanups.push(() => agent.close());
    const all = Promise.all(Array.from({ length: 200 }, () => ask(h.url, 'herd.example.com', agent)));
    // The directory holds its answer until every request is waiting on the one call.
    await until(async () => (await lookups(h.adminUrl)).coalesced === 199);
    release();
    const rs = await all;
    assert.equal(dir.total(), 1);
    for (const r of rs) assert.equal(r.id, bs[2]!.id);
  });

  test('an unknown host is a 404 asked once per negativeTtl; a bad answer is a 502, never a connection to it', async () => {
    const bs = await pods(3);
    const stranger = await startBackend('stranger');
    cleanups.push(() => stranger.close());
    const answers: Record<string, { status: number; body?: string }> = {
      'nobody.example.com': { status: 404 },
      'outside.example.com': { status: 200, body: stranger.id },
      'metadata.example.com': { status: 200, body: '169.254.169.254:80' },
      'nopool.example.com': { status: 200, body: 'pod9' },
      'json.example.com': { status: 200, body: '{"pool": ' },
      'garbage.example.com': { status: 200, body: 'x'.repeat(1024 * 1024) },
      'both.example.com': { status: 200, body: '{"pool":"pod0","target":"' + bs[1]!.id + '"}' },
      'target.example.com': { status: 200, body: JSON.stringify({ target: bs[1]!.id }) },
      'pool.example.com': { status: 200, body: JSON.stringify({ pool: 'pod2' }) },
    };
    const dir = await startDirectory((key) => answers[key] ?? { status: 500 });
    const h = await homing(config(bs, `{ url: '${dir.url}', timeout: 2s }`, '      negativeTtl: 1h'));
    for (let i = 0; i < 20; i++) {
      const r = await ask(h.url, 'nobody.example.com');
      assert.deepEqual([r.status, r.code], [404, 'HOMING_ERR_DIRECTORY_UNKNOWN_KEY']);
    }
    assert.equal(dir.calls.get('nobody.example.com'), 1, 'a negative answer is cached');
    for (const host of ['outside.example.com', 'metadata.example.com', 'nopool.example.com', 'json.example.com', 'garbage.example.com', 'both.example.com']) {
      const r = await ask(h.url, host);
      assert.deepEqual([r.status, r.code], [502, 'HOMING_ERR_DIRECTORY_BAD_ANSWER'], host);
    }
    assert.equal(stranger.requests, 0, 'homing connected to an address the directory named outside the pools');
    assert.equal((await ask(h.url, 'target.example.com')).id, bs[1]!.id);
    assert.equal((await ask(h.url, 'pool.example.com')).id, bs[2]!.id);
  });

  test('hostile hosts never reach the directory URL raw', async () => {
    const bs = await pods(3);
    const dir = await startDirectory(() => ({ status: 200, body: 'pod1' }));
    const h = await homing(config(bs, `{ url: '${dir.url}', timeout: 2s }`));
    // Refused by homing before any look-up (not a host).
    for (const host of ['a/b', 'a@b', 'a%2fb', 'a\\b', 'ünïcode.example', 'a b']) {
      const r = await httpRequest(`${h.url}/`, { headers: { host } }).catch((e: Error) => ({ status: -1, text: e.message, body: Buffer.alloc(0) }));
      assert.ok(r.status === 400 || r.status === -1, `${JSON.stringify(host)}: ${r.status} ${r.text}`);
    }
    // Hosts homing takes are asked as exactly one path segment.
    for (const host of ['..', '.', 'x..y', 'under_score.example']) {
      const before = dir.asked.length;
      const r = await ask(h.url, host);
      assert.equal(r.status, 200, `${host}: ${r.code}`);
      const seg = dir.asked[before]!;
      assert.ok(!seg.includes('/') && decodeURIComponent(seg) === host, `${host} asked as ${seg}`);
    }
    // A host longer than the directory takes: refused, nothing asked.
    const before = dir.total();
    const long = `${'a'.repeat(1100)}.example`;
    const r = await httpRequest(`${h.url}/`, { headers: { host: long } });
    assert.equal(r.status, 400, r.text);
    assert.equal(dir.total(), before);
  });

  test('the directory down or hung: cached hosts keep routing at once, unknown ones get 503 within the timeout', async () => {
    const bs = await pods(3);
    const dir = await startDirectory((key) => ({ status: 200, body: `pod${podOf(key)}` }));
    const h = await homing(config(bs, `{ url: '${dir.url}', timeout: 1500ms }`));
    const known = ['t1.example.com', 't2.example.com'];
    for (const host of known) assert.equal((await ask(h.url, host)).status, 200);
    for (const mode of ['hung', 'stopped']) {
      if (mode === 'hung') dir.answer = () => ({ status: 200, hang: true });
      else await dir.close();
      for (const host of known) {
        const t0 = performance.now();
        const r = await ask(h.url, host);
        assert.equal(r.id, bs[podOf(host)]!.id, `${mode}: ${host}`);
        // Far below the 1.5 s look-up timeout: a cached host never waits on the directory.
        assert.ok(performance.now() - t0 < 1000, `${mode}: a cached host waited ${Math.round(performance.now() - t0)} ms`);
      }
      const t0 = performance.now();
      const r = await ask(h.url, `new-${mode}.example.com`);
      assert.deepEqual([r.status, r.code], [503, 'HOMING_ERR_DIRECTORY_UNAVAILABLE'], mode);
      assert.ok(performance.now() - t0 < 1500 + 3000, `${mode}: 503 after ${Math.round(performance.now() - t0)} ms`);
    }
  });

  test('a moved tenant: followed at once after DELETE, and within one ttl without it; PUT sets an entry by hand', async () => {
    const bs = await pods(3);
    const where = new Map<string, string>([['moving.example.com', 'pod0']]);
    const dir = await startDirectory((key) => ({ status: 200, body: where.get(key) ?? 'pod1' }));
    const h = await homing(config(bs, `{ url: '${dir.url}', timeout: 2s }`, '      ttl: 1s\n      refreshAhead: 1'));
    assert.equal((await ask(h.url, 'moving.example.com')).id, bs[0]!.id);
    where.set('moving.example.com', 'pod2');
    // Still cached…
    assert.equal((await ask(h.url, 'moving.example.com')).id, bs[0]!.id);
    const admin = `${h.adminUrl}/api/v1/directory/tenants/moving.example.com`;
    const got = JSON.parse((await httpRequest(admin)).text) as { value: string; source: string };
    assert.deepEqual([got.value, got.source], ['pod0', 'directory']);
    assert.equal((await httpRequest(admin, { method: 'DELETE' })).status, 200);
    assert.equal((await httpRequest(admin, { method: 'DELETE' })).status, 404);
    assert.equal((await ask(h.url, 'moving.example.com')).id, bs[2]!.id, 'followed at once after DELETE');
    // Without DELETE: within one ttl (1 s) the next answer is asked for.
    where.set('moving.example.com', 'pod1');
    await until(async () => (await ask(h.url, 'moving.example.com')).id === bs[1]!.id, 5000, 50);
    // PUT: an operator pins a tenant; validated against the route's pools.
    const put = await httpRequest(admin, { method: 'PUT', body: JSON.stringify({ target: bs[0]!.id }) });
    assert.equal(put.status, 200, put.text);
    assert.equal((await ask(h.url, 'moving.example.com')).id, bs[0]!.id);
    const bad = await httpRequest(admin, { method: 'PUT', body: '10.0.0.1:80' });
    assert.deepEqual([bad.status, errorCode(bad.body)], [400, 'HOMING_ERR_ADMIN_BAD_REQUEST']);
  });

  test('a seed file routes with zero directory calls, and is reloaded when it changes', async () => {
    const bs = await pods(3);
    const dir = await startDirectory(() => ({ status: 500 }));
    const tmp = mkdtempSync(join(tmpdir(), 'homing-dir-seed-'));
    cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));
    const seed = join(tmp, 'tenants.yaml');
    writeFileSync(seed, `seeded-a.example.com: pod0\nseeded-b.example.com: ${bs[2]!.id}\n`);
    const h = await homing(config(bs, `{ url: '${dir.url}', timeout: 2s }`, `      seed: ${seed}`));
    assert.equal((await ask(h.url, 'seeded-a.example.com')).id, bs[0]!.id);
    assert.equal((await ask(h.url, 'seeded-b.example.com')).id, bs[2]!.id);
    assert.equal(dir.total(), 0);
    writeFileSync(join(tmp, 'next.yaml'), 'seeded-a.example.com: pod1\n');
    renameSync(join(tmp, 'next.yaml'), seed);
    await until(async () => (await ask(h.url, 'seeded-a.example.com')).id === bs[1]!.id, 10_000, 50);
    assert.equal(dir.total(), 0);
  });

  test('RESP GET <host> answers the member a request for that host goes to', async () => {
    const bs = await pods(3);
    const dir = await startDirectory((key) => (key === 'ghost' ? { status: 404 } : { status: 200, body: `pod${podOf(key)}` }));
    const h = await homing(config(bs, `{ url: '${dir.url}', timeout: 2s }`, '', 'resp: { address: 127.0.0.1:0, route: tenants }'));
    const redis = new Redis({ port: h.resp!.address().port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
    cleanups.push(() => void redis.disconnect());
    await redis.connect();
    for (let i = 0; i < 12; i++) {
      const host = `r${i}.example.com`;
      const told = await redis.get(host);
      assert.equal(told, bs[podOf(host)]!.id);
      assert.equal((await ask(h.url, host)).id, told);
    }
    assert.equal(await redis.get('ghost'), null);
  });
});

describe('directory in Redis', () => {
  test('GET <keyPrefix><host>: found, nil (unknown), Redis down (cached hosts keep routing)', async () => {
    const bs = await pods(3);
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const client = new Redis(redis.url, { lazyConnect: true });
    cleanups.push(() => void client.disconnect());
    await client.connect();
    for (let i = 0; i < 6; i++) await client.set(`tenant:t${i}.example.com`, i % 2 ? `pod${i % 3}` : JSON.stringify({ pool: `pod${i % 3}` }));
    const h = await homing(config(bs, `{ redis: { url: '${redis.url}', keyPrefix: 'tenant:' }, timeout: 500ms }`));
    for (let i = 0; i < 6; i++) assert.equal((await ask(h.url, `t${i}.example.com`)).id, bs[i % 3]!.id);
    const r = await ask(h.url, 'missing.example.com');
    assert.deepEqual([r.status, r.code], [404, 'HOMING_ERR_DIRECTORY_UNKNOWN_KEY']);
    await redis.stop();
    for (let i = 0; i < 6; i++) assert.equal((await ask(h.url, `t${i}.example.com`)).id, bs[i % 3]!.id);
    const down = await ask(h.url, 'new.example.com');
    assert.deepEqual([down.status, down.code], [503, 'HOMING_ERR_DIRECTORY_UNAVAILABLE']);
  });
});

/** The route's look-ups by outcome, from /metrics. */
async function lookups(adminUrl: string): Promise<Record<string, number>> {
  const text = (await httpRequest(`${adminUrl}/metrics`)).text;
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^homing_directory_lookups_total\{route="tenants",outcome="(\w+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

describe('one directory call per key for a box and for a fleet', () => {
  test('workers: 2 ask the directory once per host; a DELETE in the primary reaches every worker', async () => {
    const bs = await pods(3);
    const where = new Map<string, string>();
    const dir = await startDirectory((key) => ({ status: 200, body: where.get(key) ?? `pod${podOf(key)}` }));
    const body = config(bs, `{ url: '${dir.url}', timeout: 2s }`)
      .replace(/log: \{ level: silent \}\nlisten: \{ http: 127\.0\.0\.1:0 \}\nadmin: 127\.0\.0\.1:0\n/, '');
    const box = await serveCli(body, 2, cleanups);
    const hosts = Array.from({ length: 20 }, (_, i) => `w${i}.example.com`);
    // Fresh connections: the workers take them in turn, so each host is asked through both.
    for (let round = 0; round < 4; round++) {
      for (const host of hosts) {
        const r = await httpRequest(`${box.url}/`, { headers: { host } });
        assert.equal(r.status, 200, r.text);
        assert.equal((JSON.parse(r.text) as { id: string }).id, bs[podOf(host)]!.id, host);
      }
    }
    assert.equal(dir.total(), hosts.length, `${dir.total()} directory calls for ${hosts.length} hosts on a box of two workers`);
    // The tenant moves; the operator forgets it in the primary (admin): every worker follows.
    where.set('w1.example.com', 'pod0');
    assert.equal((await httpRequest(`${box.adminUrl}/api/v1/directory/tenants/w1.example.com`, { method: 'DELETE' })).status, 200);
    await until(async () => {
      const seen = await Promise.all(Array.from({ length: 6 }, () => httpRequest(`${box.url}/`, { headers: { host: 'w1.example.com' } })));
      return seen.every((r) => (JSON.parse(r.text) as { id: string }).id === bs[0]!.id);
    });
  });

  test('two instances sharing Redis: an answer one got serves the other; a DELETE on one is followed by both', async () => {
    const bs = await pods(3);
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const where = new Map<string, string>();
    const dir = await startDirectory((key) => (key.startsWith('nobody') ? { status: 404 } : { status: 200, body: where.get(key) ?? `pod${podOf(key)}` }));
    const yaml = config(bs, `{ url: '${dir.url}', timeout: 2s }`, '', `shared: { redis: { url: '${redis.url}' } }`);
    const h1 = await homing(yaml);
    const h2 = await homing(yaml);
    // Both instances connected to Redis (and subscribed) before the test relies on it.
    for (const h of [h1, h2]) await until(async () => /homing_shared_redis_up 1/.test((await httpRequest(`${h.adminUrl}/metrics`)).text));
    const hosts = Array.from({ length: 10 }, (_, i) => `s${i}.example.com`);
    for (const host of hosts) assert.equal((await ask(h1.url, host)).id, bs[podOf(host)]!.id);
    assert.equal((await ask(h1.url, 'nobody.example.com')).status, 404);
    const calls = dir.total();
    assert.equal(calls, hosts.length + 1);
    // The second instance: every answer (and the "no such key") comes from Redis.
    await until(async () => {
      for (const host of hosts) assert.equal((await ask(h2.url, host)).id, bs[podOf(host)]!.id);
      assert.equal((await ask(h2.url, 'nobody.example.com')).status, 404);
      return true;
    });
    assert.equal(dir.total(), calls, 'the second instance asked the directory again');
    // A tenant moves: DELETE on h1 is published; h2 follows at once too.
    where.set('s1.example.com', 'pod0');
    assert.equal((await httpRequest(`${h1.adminUrl}/api/v1/directory/tenants/s1.example.com`, { method: 'DELETE' })).status, 200);
    assert.equal((await ask(h1.url, 's1.example.com')).id, bs[0]!.id);
    await until(async () => (await ask(h2.url, 's1.example.com')).id === bs[0]!.id);
  });
});
