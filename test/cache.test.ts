/**
 * The shared response cache against real backends that count their renders: hits answered without
 * a backend, trusted vary headers that only the backend can set (a forged region never selects
 * another region's entry, and never reaches a backend), one backend request for 100 concurrent
 * misses, what is never served to another caller, the byte bound and the object limit, purges.
 * Time is a clock the test moves, never a sleep.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Redis } from 'ioredis';
import { errorCode, httpRequest, until } from './support/backends.js';
import { cacheOf, startCachedHoming, startOrigin, stopAll, type CachedHoming, type Origin } from './support/cache.js';
import { startRedis } from './support/services.js';

after(stopAll);

describe('trusted vary headers (the principal table)', () => {
  const REGION = 'x-character-region';
  const CORP = 'x-character-corp';
  /** Who each token is, as only the backend knows. */
  const who: Record<string, { region: string; corp: string }> = {
    'tok-a1': { region: 'r1', corp: 'c-alpha' },
    'tok-b1': { region: 'r1', corp: 'c-beta' },
    'tok-x2': { region: 'r2', corp: 'c-gamma' },
  };
  const top = `cache:
  principal: { key: 'header:authorization', headers: [X-Character-Region, X-Character-Corp], ttl: 10m }`;

  async function setup(): Promise<{ o: Origin; c: CachedHoming }> {
    const o = await startOrigin();
    o.script('/me', (req, res) => {
      const p = who[String(req.headers.authorization)]!;
      res.writeHead(200, { 'cache-control': 'private, no-store', [REGION]: p.region, [CORP]: p.corp, 'content-type': 'application/json' });
      res.end(JSON.stringify(p));
    });
    o.script('/market', (req, res, n) => {
      const p = who[String(req.headers.authorization)]!;
      res.writeHead(200, { 'cache-control': 's-maxage=60', vary: 'X-Character-Region', [REGION]: p.region, [CORP]: p.corp, 'content-type': 'text/plain' });
      res.end(`prices of ${p.region} #${n}`);
    });
    const c = await startCachedHoming(o, 'true', top);
    return { o, c };
  }

  test('a forged region never selects another region’s entry, cold or warm, and never reaches the backend', async () => {
    const { o, c } = await setup();
    // Region-1 caller fills the entry.
    const a = await httpRequest(`${c.url}/market`, { headers: { authorization: 'tok-a1' } });
    assert.equal(a.text, 'prices of r1 #1');
    assert.equal(cacheOf(a), 'miss');
    // Region-2 caller forging region 1: cold for its principal → goes to the backend, gets r2.
    const x = await httpRequest(`${c.url}/market`, { headers: { authorization: 'tok-x2', [REGION]: 'r1' } });
    assert.equal(x.text, 'prices of r2 #2');
    assert.equal(o.seen.at(-1)![REGION], undefined, 'the forged header reached the backend');
    // Warm: the backend told homing it is r2; the forged header still changes nothing.
    const x2 = await httpRequest(`${c.url}/market`, { headers: { authorization: 'tok-x2', [REGION]: 'r1' } });
    assert.equal(x2.text, 'prices of r2 #2');
    assert.equal(cacheOf(x2), 'hit');
    assert.equal(x2.headers[REGION], 'r2');
    assert.equal(o.renders.get('/market'), 2);
  });

  test('another caller of the same region hits once the backend told homing its region, with its own annotations', async () => {
    const { o, c } = await setup();
    await httpRequest(`${c.url}/market`, { headers: { authorization: 'tok-a1' } });
    // Nothing known of b1 yet: a miss that goes to the backend (which then teaches homing).
    const b0 = await httpRequest(`${c.url}/market`, { headers: { authorization: 'tok-b1' } });
    assert.equal(cacheOf(b0), 'miss');
    assert.equal(o.renders.get('/market'), 2);
    // A third caller of region 1, known from a private /me call, hits the entry at once.
    const d = await startCachedHoming(o, 'true', top);
    await httpRequest(`${d.url}/market`, { headers: { authorization: 'tok-a1' } });
    const me = await httpRequest(`${d.url}/me`, { headers: { authorization: 'tok-b1' } });
    assert.equal(me.status, 200);
    const hit = await httpRequest(`${d.url}/market`, { headers: { authorization: 'tok-b1' } });
    assert.equal(cacheOf(hit), 'hit');
    assert.equal(hit.text, 'prices of r1 #3');
    assert.equal(hit.headers[CORP], 'c-beta', 'the hit carried the filler’s corporation');
    assert.equal(hit.headers[REGION], 'r1');
  });

  test('a caller with no principal key never hits an entry that varies on a trusted header', async () => {
    const { o, c } = await setup();
    o.script('/open', (req, res, n) => {
      res.writeHead(200, { 'cache-control': 'public, max-age=60', vary: 'X-Character-Region', [REGION]: 'r1' });
      res.end(`open #${n}`);
    });
    await httpRequest(`${c.url}/open`, { headers: { authorization: 'tok-a1' } });
    const anon = await httpRequest(`${c.url}/open`, { headers: { [REGION]: 'r1' } });
    assert.equal(cacheOf(anon), 'miss');
    assert.equal(anon.text, 'open #2');
  });
});

describe('what is never served to another caller', () => {
  for (const [name, headers] of [
    ['private', { 'cache-control': 'private, max-age=60' }],
    ['private=""', { 'cache-control': 'max-age=60, private=""' }],
    ['no-store', { 'cache-control': 'no-store, max-age=60' }],
    ['Vary: *', { 'cache-control': 'max-age=60', vary: '*' }],
  ] as const) {
    test(`a ${name} answer is not stored`, async () => {
      const o = await startOrigin();
      o.script('/x', (req, res, n) => {
        res.writeHead(200, headers);
        res.end(`for ${String(req.headers.cookie)} #${n}`);
      });
      const c = await startCachedHoming(o);
      const a = await httpRequest(`${c.url}/x`, { headers: { cookie: 'u=1' } });
      const b = await httpRequest(`${c.url}/x`, { headers: { cookie: 'u=2' } });
      assert.equal(a.text, 'for u=1 #1');
      assert.equal(b.text, 'for u=2 #2');
    });
  }

  test('an answer to a request with Authorization is stored only when it says public, s-maxage or must-revalidate', async () => {
    const o = await startOrigin();
    o.script('/plain', (req, res, n) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end(`plain ${String(req.headers.authorization)} #${n}`);
    });
    o.script('/pub', (req, res, n) => {
      res.writeHead(200, { 'cache-control': 'public, max-age=60' });
      res.end(`pub #${n}`);
    });
    const c = await startCachedHoming(o);
    await httpRequest(`${c.url}/plain`, { headers: { authorization: 'one' } });
    const p2 = await httpRequest(`${c.url}/plain`, { headers: { authorization: 'two' } });
    assert.equal(p2.text, 'plain two #2');
    await httpRequest(`${c.url}/pub`, { headers: { authorization: 'one' } });
    const q2 = await httpRequest(`${c.url}/pub`, { headers: { authorization: 'two' } });
    assert.equal(q2.text, 'pub #1');
    assert.equal(cacheOf(q2), 'hit');
  });

  test('Set-Cookie is kept for its own principal and never given to another unless public', async () => {
    const o = await startOrigin();
    o.script('/c', (req, res, n) => {
      res.writeHead(200, { 'cache-control': 's-maxage=60', 'set-cookie': `sid=${String(req.headers.authorization)}` });
      res.end(`c #${n}`);
    });
    const c = await startCachedHoming(o, 'true', "cache:\n  principal: { key: 'header:authorization', headers: [X-Region] }");
    const a = await httpRequest(`${c.url}/c`, { headers: { authorization: 'alice' } });
    assert.deepEqual(a.headers['set-cookie'], ['sid=alice']);
    const again = await httpRequest(`${c.url}/c`, { headers: { authorization: 'alice' } });
    assert.equal(cacheOf(again), 'hit');
    assert.deepEqual(again.headers['set-cookie'], ['sid=alice']);
    const b = await httpRequest(`${c.url}/c`, { headers: { authorization: 'bob' } });
    assert.equal(cacheOf(b), 'hit');
    assert.equal(b.text, 'c #1');
    assert.equal(b.headers['set-cookie'], undefined, 'alice’s cookie went to bob');
  });
});

test('a GET with a body goes by the cache (its body may change the answer) and the connection stays usable', async () => {
  const o = await startOrigin();
  o.script('/q', (req, res, n) => {
    res.writeHead(200, { 'cache-control': 'max-age=60' });
    res.end(`q #${n}`);
  });
  const c = await startCachedHoming(o);
  await httpRequest(`${c.url}/q`);
  assert.equal(cacheOf(await httpRequest(`${c.url}/q`)), 'hit');
  for (const body of ['small', 'x'.repeat(200_000)]) {
    const r = await httpRequest(`${c.url}/q`, { body, headers: { 'content-type': 'text/plain', 'content-length': String(body.length) } });
    assert.equal(cacheOf(r), 'bypass');
    assert.match(r.text, /^q #\d+$/);
  }
});

describe('variants, herds and bounds', () => {
  test('Accept-Language variants are kept apart and neither evicts the other', async () => {
    const o = await startOrigin();
    o.script('/l', (req, res, n) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language' });
      res.end(`${String(req.headers['accept-language'])} #${n}`);
    });
    const c = await startCachedHoming(o);
    for (let round = 0; round < 2; round++) {
      assert.equal((await httpRequest(`${c.url}/l`, { headers: { 'accept-language': 'en' } })).text, 'en #1');
      assert.equal((await httpRequest(`${c.url}/l`, { headers: { 'accept-language': 'fr' } })).text, 'fr #2');
      assert.equal((await httpRequest(`${c.url}/l`, { headers: { 'accept-language': 'en , fr' } })).text.endsWith('#3'), true);
      // Whitespace around commas is not significant.
      assert.equal((await httpRequest(`${c.url}/l`, { headers: { 'accept-language': 'en,fr' } })).text, 'en , fr #3');
      // An absent header is its own variant.
      assert.equal((await httpRequest(`${c.url}/l`)).text, 'undefined #4');
    }
    assert.equal(o.renders.get('/l'), 4);
  });

  test('100 concurrent misses make one backend request', async () => {
    const o = await startOrigin();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    o.script('/slow', (req, res, n) => {
      void gate.then(() => {
        res.writeHead(200, { 'cache-control': 'max-age=60' });
        res.end(`slow #${n}`);
      });
    });
    const c = await startCachedHoming(o);
    const all = Promise.all(Array.from({ length: 100 }, () => httpRequest(`${c.url}/slow`)));
    // Every request has reached homing (and 99 wait) before the backend answers.
    const until = Date.now() + 20_000;
    while (o.renders.get('/slow') !== 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    release();
    const rs = await all;
    assert.equal(o.renders.get('/slow'), 1);
    for (const r of rs) assert.equal(r.text, 'slow #1');
  });

  test('a client that leaves while waiting for a fill leaves nothing that makes later misses wait', async () => {
    const o = await startOrigin();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // The member resets (every retry too) until the first client has its answer: that fill fails,
    // and a waiter then makes a fill of its own.
    let failing = true;
    o.script('/gone', (req, res, n) => {
      if (!failing) {
        res.writeHead(200, { 'cache-control': 'max-age=1' });
        res.end(`gone #${n}`);
        return;
      }
      void gate.then(() => res.socket?.destroy());
    });
    // Waiting on a fill left behind would outlast the requests' own deadline.
    const c = await startCachedHoming(o, '{ lock: 60s }');
    const first = httpRequest(`${c.url}/gone`);
    await until(() => (o.renders.get('/gone') ?? 0) >= 1);
    // A second client waits for the first's fill, then leaves before it is done.
    const waiter = request(`${c.url}/gone`);
    waiter.on('error', () => {});
    waiter.end();
    await until(() => c.h.runtime.cache!.fills.size === 1);
    await new Promise((r) => setTimeout(r, 50));
    waiter.destroy();
    release();
    assert.equal((await first).status, 502);
    failing = false;
    // Nothing left holds the resource: the next miss goes to the backend at once.
    await until(() => c.h.runtime.cache!.fills.size === 0);
    assert.match((await httpRequest(`${c.url}/gone`)).text, /^gone #\d+$/);
  });

  test('misses of an answer that cannot be stored do not wait for one another once it is known (hit-for-miss)', async () => {
    const o = await startOrigin();
    let held: (() => void)[] = [];
    o.script('/live', (req, res, n) => {
      // The first answer goes at once; later ones only when five are in flight together.
      const answer = (): void => {
        res.writeHead(200, { 'cache-control': 'no-store' });
        res.end(`live #${n}`);
      };
      if (n === 1) return answer();
      held.push(answer);
      if (held.length === 5) {
        for (const a of held) a();
        held = [];
      }
    });
    // Waiting for a fill would outlast the requests' own deadline.
    const c = await startCachedHoming(o, '{ lock: 60s }');
    assert.equal((await httpRequest(`${c.url}/live`)).text, 'live #1');
    const rs = await Promise.all(Array.from({ length: 5 }, () => httpRequest(`${c.url}/live`)));
    assert.deepEqual(rs.map((r) => cacheOf(r)), ['miss', 'miss', 'miss', 'miss', 'miss']);
    assert.equal(o.renders.get('/live'), 6);
  });

  test('the store never holds more than its byte bound; an answer over maxObject streams through unstored', async () => {
    const o = await startOrigin();
    o.script('/big', (req, res) => {
      const n = Number(new URL(req.url!, 'http://x').searchParams.get('n'));
      res.writeHead(200, { 'cache-control': 'max-age=600' });
      res.end(Buffer.alloc(n, 'x'));
    });
    const c = await startCachedHoming(o, '{ maxObject: 100KiB }', 'cache: { memory: 1MiB }');
    const store = c.h.runtime.cache!.store;
    for (let i = 0; i < 100; i++) {
      const r = await httpRequest(`${c.url}/big?n=${100_000}&i=${i}`);
      assert.equal(r.text.length, 100_000);
      assert.ok(store.bytes <= 1024 * 1024, `store holds ${store.bytes} bytes`);
    }
    const renders = o.renders.get('/big')!;
    const big = await httpRequest(`${c.url}/big?n=${200_000}`);
    assert.equal(big.text.length, 200_000);
    const big2 = await httpRequest(`${c.url}/big?n=${200_000}`);
    assert.equal(big2.text.length, 200_000);
    assert.equal(o.renders.get('/big'), renders + 2);
  });
});

describe('purges and sharing', () => {
  async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const r = await httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, json: JSON.parse(r.text) as Record<string, unknown> };
  }

  test('POST /api/v1/cache/purge by URL (every variant), prefix, tag and all; bad bodies get ADMIN_BAD_REQUEST', async () => {
    const o = await startOrigin();
    for (const p of ['/a', '/b/1', '/b/2', '/t']) {
      o.script(p, (req, res, n) => {
        res.writeHead(200, { 'cache-control': 'max-age=600', vary: 'Accept-Language', 'cache-tag': p === '/t' ? 'news, front' : 'other', 'surrogate-key': 'sk1 sk2' });
        res.end(`${p} ${String(req.headers['accept-language'])} #${n}`);
      });
    }
    const c = await startCachedHoming(o);
    const get = (p: string, lang?: string): Promise<string> => httpRequest(`${c.url}${p}`, { headers: lang ? { 'accept-language': lang } : {} }).then(cacheOf);
    const fill = async (): Promise<void> => {
      for (const p of ['/a', '/b/1', '/b/2', '/t']) for (const l of ['en', 'fr']) await get(p, l);
    };
    await fill();
    assert.equal(c.h.runtime.cache!.store.entries, 8);
    let r = await post(`${c.adminUrl}/api/v1/cache/purge`, { url: `${c.url}/a` });
    assert.equal(r.json.purged, 2);
    assert.equal(await get('/a', 'en'), 'miss');
    assert.equal(await get('/b/1', 'en'), 'hit');
    r = await post(`${c.adminUrl}/api/v1/cache/purge`, { prefix: `${c.url.slice('http://'.length)}/b/` });
    assert.equal(r.json.purged, 4);
    assert.equal(await get('/b/2', 'fr'), 'miss');
    r = await post(`${c.adminUrl}/api/v1/cache/purge`, { tag: 'news' });
    assert.equal(r.json.purged, 2);
    assert.equal(await get('/t', 'fr'), 'miss');
    const left = c.h.runtime.cache!.store.entries;
    r = await post(`${c.adminUrl}/api/v1/cache/purge`, { tag: 'sk2' });
    assert.equal(r.json.purged, left);
    await fill();
    r = await post(`${c.adminUrl}/api/v1/cache/purge`, { all: true });
    assert.equal(r.json.purged, 8);
    assert.equal(c.h.runtime.cache!.store.entries, 0);
    for (const bad of [{}, { url: 'ftp://x/y' }, { tag: '' }, { url: '/a', tag: 'x' }, { all: 1 }, 'not json']) {
      const res = await httpRequest(`${c.adminUrl}/api/v1/cache/purge`, { method: 'POST', body: typeof bad === 'string' ? bad : JSON.stringify(bad) });
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.equal(errorCode(res.text), 'HOMING_ERR_ADMIN_BAD_REQUEST');
    }
  });

  test('with shared.redis, principals learned by one instance select entries on another, and purges reach every instance', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.stop());
    const o = await startOrigin();
    o.script('/me', (req, res) => {
      res.writeHead(200, { 'cache-control': 'private', 'x-region': String(req.headers.authorization).slice(0, 2) });
      res.end('me');
    });
    o.script('/m', (req, res, n) => {
      res.writeHead(200, { 'cache-control': 's-maxage=600', vary: 'X-Region', 'x-region': String(req.headers.authorization).slice(0, 2) });
      res.end(`m #${n}`);
    });
    const top = `cache:
  principal: { key: 'header:authorization', headers: [X-Region] }
shared: { redis: { url: '${redis.url}' } }`;
    const one = await startCachedHoming(o, 'true', top);
    const two = await startCachedHoming(o, 'true', top);
    // Redis is a tier, not a dependency: what is learned while it is not (yet) connected stays local.
    await until(() => one.h.runtime.sharedRedis!.up && two.h.runtime.sharedRedis!.up);
    // Instance one learns who "r1-bob" is; instance two fills its own entry for region r1.
    await httpRequest(`${one.url}/me`, { headers: { authorization: 'r1-bob' } });
    await httpRequest(`${two.url}/m`, { headers: { authorization: 'r1-ann' } });
    // Instance two never saw bob: his region comes from Redis, and he hits ann's region entry.
    await until(async () => (await redisGet(redis.port, 'homing:principal:*')) > 0);
    const hit = await httpRequest(`${two.url}/m`, { headers: { authorization: 'r1-bob' } });
    assert.equal(cacheOf(hit), 'hit');
    assert.equal(hit.headers['x-region'], 'r1');
    // A purge on instance one empties instance two.
    assert.equal(two.h.runtime.cache!.store.entries, 1);
    await httpRequest(`${one.adminUrl}/api/v1/cache/purge`, { method: 'POST', body: '{"all":true}' });
    await until(() => two.h.runtime.cache!.store.entries === 0);
  });
});

test('store: redis shares answers between instances; purges and invalidations reach the shared store and every instance', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const o = await startOrigin();
  o.script('/s', (req, res, n) => {
    if (req.method === 'POST') {
      res.writeHead(204);
      return res.end();
    }
    res.writeHead(200, { 'cache-control': 'max-age=600', vary: 'Accept-Language', 'cache-tag': 'shop', etag: `"v${n}"` });
    res.end(Buffer.from([0, 255, 128, n]));
  });
  // Instances behind one name: the same Host reaches each (an answer's key includes its authority).
  const top = `cache: { store: redis }
shared: { redis: { url: '${redis.url}' } }`;
  const one = await startCachedHoming(o, 'true', top);
  const two = await startCachedHoming(o, 'true', top);
  await until(() => one.h.runtime.sharedRedis!.up && two.h.runtime.sharedRedis!.up);
  const a = await httpRequest(`${one.url}/s`, { headers: { host: 'shop.test', 'accept-language': 'en' } });
  assert.equal(cacheOf(a), 'miss');
  await until(async () => (await redisGet(redis.port, 'homing:cache:e:*')) === 1);
  // Instance two never asked the origin: the answer (binary body, head, validators) comes from Redis.
  const b = await httpRequest(`${two.url}/s`, { headers: { host: 'shop.test', 'accept-language': 'en' } });
  assert.equal(cacheOf(b), 'hit');
  assert.deepEqual([...b.body], [0, 255, 128, 1]);
  assert.equal(b.headers.etag, '"v1"');
  assert.equal(o.renders.get('/s'), 1);
  // Another variant is its own entry.
  assert.equal(cacheOf(await httpRequest(`${two.url}/s`, { headers: { host: 'shop.test', 'accept-language': 'fr' } })), 'miss');
  await until(async () => (await redisGet(redis.port, 'homing:cache:e:*')) === 2);
  // A purge by tag on one: gone from Redis and from two's memory.
  await httpRequest(`${one.adminUrl}/api/v1/cache/purge`, { method: 'POST', body: '{"tag":"shop"}' });
  await until(async () => (await redisGet(redis.port, 'homing:cache:e:*')) === 0 && two.h.runtime.cache!.store.entries === 0);
  // Refilled on two; a successful POST through one invalidates it everywhere.
  assert.equal(cacheOf(await httpRequest(`${two.url}/s`, { headers: { host: 'shop.test', 'accept-language': 'en' } })), 'miss');
  await until(async () => (await redisGet(redis.port, 'homing:cache:e:*')) === 1);
  const post = await httpRequest(`${one.url}/s`, { method: 'POST', body: 'x', headers: { host: 'shop.test', 'content-length': '1' } });
  assert.equal(post.status, 204);
  await until(async () => (await redisGet(redis.port, 'homing:cache:e:*')) === 0 && two.h.runtime.cache!.store.entries === 0);
});

test('store: redis writes an answer after its indexes, so a purge that can see the answer also finds it', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const o = await startOrigin();
  o.script('/w', (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=600', 'cache-tag': 'a, b' });
    res.end('w');
  });
  const one = await startCachedHoming(o, 'true', `cache: { store: redis }
shared: { redis: { url: '${redis.url}' } }`);
  await until(() => one.h.runtime.sharedRedis!.up);
  // Every command the real Redis runs, in its order.
  const watcher = new Redis({ port: redis.port, host: '127.0.0.1' });
  t.after(() => watcher.disconnect());
  const monitor = await watcher.monitor();
  t.after(() => monitor.disconnect());
  const seen: string[][] = [];
  monitor.on('monitor', (_time: string, args: string[]) => seen.push(args));
  assert.equal(cacheOf(await httpRequest(`${one.url}/w`)), 'miss');
  await until(async () => (await redisGet(redis.port, 'homing:cache:e:*')) === 1);
  await until(() => seen.some(([cmd, key]) => cmd!.toLowerCase() === 'set' && key!.startsWith('homing:cache:e:')));
  const at = (cmd: string, prefix: string): number[] => seen.flatMap(([c, key], i) => (c!.toLowerCase() === cmd && key!.startsWith(prefix) ? [i] : []));
  const entry = at('set', 'homing:cache:e:');
  assert.equal(entry.length, 1);
  assert.equal(at('hset', 'homing:cache:r:').length, 1);
  assert.equal(at('sadd', 'homing:cache:t:').length, 2);
  for (const i of [...at('hset', 'homing:cache:r:'), ...at('sadd', 'homing:cache:t:')]) assert.ok(i < entry[0]!, `an index written after the answer: ${JSON.stringify(seen)}`);
});

/** How many keys match `pattern` in the Redis on `port`. */
async function redisGet(port: number, pattern: string): Promise<number> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
  await r.connect();
  try {
    return (await r.keys(pattern)).length;
  } finally {
    r.disconnect();
  }
}
