/**
 * The shared response cache against real backends that count their renders: hits answered without
 * a backend, trusted vary headers that only the backend can set (a forged region never selects
 * another region's entry, and never reaches a backend), one backend request for 100 concurrent
 * misses, what is never served to another caller, the byte bound and the object limit, purges.
 * Time is a clock the test moves, never a sleep.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { httpRequest } from './support/backends.js';
import { cacheOf, startCachedHoming, startOrigin, stopAll, type CachedHoming, type Origin } from './support/cache.js';

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
