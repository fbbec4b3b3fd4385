/**
 * The shared cache rule by rule (RFC 9111, with RFC 9110's conditional requests, RFC 5861's stale
 * extensions and RFC 9213's targeted fields): one test per rule, each named after it, against a
 * real origin whose answers the test scripts and whose renders it counts. What a client sees is
 * read from homing's `X-Homing` debug header (`cache=hit|miss|stale|revalidated|bypass`); time is
 * the cache's clock, which the test moves: nothing sleeps.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { OutgoingHttpHeaders } from 'node:http';
import { errorCode, until } from './support/backends.js';
import { fetchVia, startCachedHoming, startOrigin, stopAll, type CachedHoming, type CachedResponse, type Origin, type Script } from './support/cache.js';

after(stopAll);

/** An answer with `headers` and the body `#<render>` (none for 204 and 304). */
function answer(headers: Record<string, string | string[]> = {}, status = 200): Script {
  return (_req, res, n) => {
    // Repeated lines (two Expires, two Cache-Control) as arrays.
    res.writeHead(status, headers as OutgoingHttpHeaders);
    res.end(status === 204 || status === 304 ? undefined : `#${n}`);
  };
}

/**
 * A validating origin: `headers` with the entity tag `etag`, and to a request whose If-None-Match is
 * that tag a 304 with the tag and `on304` (a function of the render count when it says which).
 */
function validating(etag: string, headers: Record<string, string>, on304: Record<string, string> | ((n: number) => Record<string, string>) = {}): Script {
  return (req, res, n) => {
    if (req.headers['if-none-match'] !== etag) return answer({ ...headers, etag })(req, res, n);
    answer({ ...(typeof on304 === 'function' ? on304(n) : on304), etag }, 304)(req, res, n);
  };
}

/** An HTTP date `seconds` from the real now (the origin's clock). */
function httpDate(seconds: number): string {
  return new Date(Date.now() + seconds * 1000).toUTCString();
}

interface Rig {
  o: Origin;
  c: CachedHoming;
  /** GET (or `method`) `path` through homing. */
  get(path: string, headers?: Record<string, string>, method?: string): Promise<CachedResponse>;
  renders(path: string): number;
}

/** An origin with `scripts` and homing in front of it (`routeCache`: the route's `cache:`, `top`: more config). */
async function rig(scripts: Record<string, Script>, routeCache = '', top = ''): Promise<Rig> {
  const o = await startOrigin();
  for (const [p, s] of Object.entries(scripts)) o.script(p, s);
  const c = await startCachedHoming(o, routeCache, top);
  return {
    o,
    c,
    get: (path, headers = {}, method = 'GET') => fetchVia(c, path, { headers, method }),
    renders: (path) => o.renders.get(path) ?? 0,
  };
}

/** Ask twice: whether the second answer came from the store (and the origin rendered once). */
async function storedAfterOne(r: Rig, path: string, headers: Record<string, string> = {}): Promise<boolean> {
  const before = r.renders(path);
  await r.get(path, headers);
  const second = await r.get(path, headers);
  return second.cache === 'hit' && r.renders(path) === before + 1;
}

/** The stored answers at `paths` (stored now) stay fresh for `lifetime` seconds: hits 10 s before, fetched again 10 s after. */
async function assertLifetime(r: Rig, paths: readonly string[], lifetime: number): Promise<void> {
  r.c.advance(lifetime - 10);
  for (const p of paths) assert.equal((await r.get(p)).cache, 'hit', `${p} stale before ${lifetime} s`);
  r.c.advance(20);
  for (const p of paths) assert.equal((await r.get(p)).cache, 'miss', `${p} still fresh after ${lifetime} s`);
}

describe('RFC 9111 §3: storing responses', () => {
  test('RFC 9111 §3: GET is stored, and HEAD is answered from the stored GET with Content-Length and no body', async () => {
    const r = await rig({
      '/h': validating('"h"', { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }),
    });
    const g = await r.get('/h');
    assert.equal(g.text, '#1');
    assert.equal(g.cache, 'miss');
    const h = await r.get('/h', {}, 'HEAD');
    assert.equal(h.status, 200);
    assert.equal(h.cache, 'hit');
    assert.equal(h.headers['content-length'], '2');
    assert.equal(h.headers['content-type'], 'text/plain');
    assert.equal(h.body.length, 0);
    assert.equal((await r.get('/h')).cache, 'hit');
    assert.equal(r.renders('/h'), 1);
    // Stale: a HEAD revalidates it, and is answered from it.
    r.c.advance(120);
    const hs = await r.get('/h', {}, 'HEAD');
    assert.equal(hs.cache, 'revalidated');
    assert.equal(hs.headers['content-length'], '2');
    assert.equal(hs.body.length, 0);
    assert.equal(r.o.b.last!.method, 'HEAD');
    assert.equal((await r.get('/h')).cache, 'hit');
    assert.equal(r.renders('/h'), 2);
  });

  test('RFC 9111 §2: the key is the target URI: each query and each host its own entry, the host in any case', async () => {
    const r = await rig({ '/k': (req, res, n) => answer({ 'cache-control': 'max-age=60' })(req, res, n) });
    const asks: [string, Record<string, string>][] = [
      ['/k?x=1', {}],
      ['/k?x=2', {}],
      ['/k', {}],
      ['/k?x=1', { host: 'a.example' }],
      ['/k?x=1', { host: 'b.example' }],
    ];
    for (const [p, h] of asks) assert.equal((await r.get(p, h)).cache, 'miss', `${p} ${JSON.stringify(h)} hit another entry`);
    for (const [i, [p, h]] of asks.entries()) {
      const a = await r.get(p, h);
      assert.equal(a.cache, 'hit');
      assert.equal(a.text, `#${i + 1}`);
    }
    assert.equal((await r.get('/k?x=1', { host: 'A.Example' })).text, '#4');
  });

  test('RFC 9111 §4.2.2: status codes cacheable by default are stored with a heuristic lifetime, never without one', async () => {
    const statuses = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];
    const scripts: Record<string, Script> = {};
    for (const s of statuses) {
      // Last-Modified 1000 s before Date: a heuristic lifetime of 100 s.
      scripts[`/lm/${s}`] = (req, res, n) => answer({ 'last-modified': httpDate(-1000) }, s)(req, res, n);
      scripts[`/bare/${s}`] = answer({}, s);
    }
    const r = await rig(scripts);
    for (const s of statuses) {
      assert.ok(await storedAfterOne(r, `/lm/${s}`), `${s} with Last-Modified was not stored`);
      assert.ok(!(await storedAfterOne(r, `/bare/${s}`)), `${s} with no lifetime was stored`);
    }
    r.c.advance(90);
    for (const s of statuses) assert.equal((await r.get(`/lm/${s}`)).cache, 'hit', `${s} stale before 10 % of its age`);
    r.c.advance(20);
    for (const s of statuses) {
      const a = await r.get(`/lm/${s}`);
      assert.equal(a.status, s);
      assert.notEqual(a.cache, 'hit', `${s} served past its heuristic lifetime`);
    }
  });

  test('RFC 9111 §3: other status codes (302, 307) are stored only with an explicit lifetime', async () => {
    const r = await rig(
      {
        '/302/max-age': answer({ 'cache-control': 'max-age=60', location: '/elsewhere' }, 302),
        '/302/expires': (req, res, n) => answer({ expires: httpDate(60), location: '/elsewhere' }, 302)(req, res, n),
        '/302/heuristic': (req, res, n) => answer({ 'last-modified': httpDate(-1000), location: '/elsewhere' }, 302)(req, res, n),
        '/302/bare': answer({ location: '/elsewhere' }, 302),
        '/307/s-maxage': answer({ 'cache-control': 's-maxage=60', location: '/elsewhere' }, 307),
        '/307/bare': answer({ location: '/elsewhere' }, 307),
        // Storing is never required: homing keeps server errors out whatever their lifetime.
        '/500': answer({ 'cache-control': 'max-age=60' }, 500),
      },
      '{ ttl: 60s }',
    );
    assert.ok(await storedAfterOne(r, '/302/max-age'));
    assert.ok(await storedAfterOne(r, '/302/expires'));
    assert.ok(await storedAfterOne(r, '/307/s-maxage'));
    // Neither Last-Modified nor the route's ttl gives them a lifetime.
    assert.ok(!(await storedAfterOne(r, '/302/heuristic')));
    assert.ok(!(await storedAfterOne(r, '/302/bare')));
    assert.ok(!(await storedAfterOne(r, '/307/bare')));
    assert.ok(!(await storedAfterOne(r, '/500')));
    const hit = await r.get('/302/max-age');
    assert.equal(hit.status, 302);
    assert.equal(hit.headers.location, '/elsewhere');
  });

  test('RFC 9111 §3.3, §3.4: partial content is neither stored nor served: a Range request goes to the origin, a 206 is not stored', async () => {
    const r = await rig({
      '/full': answer({ 'cache-control': 'max-age=60', 'accept-ranges': 'bytes' }),
      '/part': answer({ 'cache-control': 'max-age=60', 'content-range': 'bytes 0-1/10' }, 206),
    });
    await r.get('/full');
    const ranged = await r.get('/full', { range: 'bytes=0-0' });
    assert.equal(ranged.cache, 'bypass');
    assert.equal(r.renders('/full'), 2);
    assert.equal((await r.get('/full')).cache, 'hit');
    assert.ok(!(await storedAfterOne(r, '/part')));
  });

  test('RFC 9111 §5.2.2.5, §5.2.1.5: no-store in the response or in the request keeps the answer out of the store', async () => {
    const r = await rig({ '/res': answer({ 'cache-control': 'no-store, max-age=60' }), '/req': answer({ 'cache-control': 'max-age=60' }) });
    assert.ok(!(await storedAfterOne(r, '/res')));
    await r.get('/req', { 'cache-control': 'no-store' });
    const next = await r.get('/req');
    assert.equal(next.cache, 'miss');
    assert.equal(next.text, '#2');
    assert.equal((await r.get('/req')).cache, 'hit');
    // In any case.
    r.c.advance(120);
    await r.get('/req', { 'cache-control': 'No-Store' });
    assert.equal((await r.get('/req')).cache, 'miss');
  });

  test('RFC 9111 §5.2.2.7: private in any form (private, private="", private="x" with private, PRIVATE) is never stored', async () => {
    const forms = ['private, max-age=60', 'max-age=60, private=""', 'max-age=60, private, private="x"', 'PRIVATE, max-age=60', 'max-age=60, private="set-cookie, x-user"'];
    const scripts: Record<string, Script> = {};
    forms.forEach((cc, i) => (scripts[`/p${i}`] = answer({ 'cache-control': cc })));
    const r = await rig(scripts);
    for (let i = 0; i < forms.length; i++) assert.ok(!(await storedAfterOne(r, `/p${i}`)), `stored with Cache-Control: ${forms[i]}`);
  });

  test('RFC 9111 §3.5: an answer to a request with Authorization is stored only with public, s-maxage or must-revalidate', async () => {
    const r = await rig({
      '/max-age': answer({ 'cache-control': 'max-age=60' }),
      '/public': answer({ 'cache-control': 'public, max-age=60' }),
      '/s-maxage': answer({ 'cache-control': 's-maxage=60' }),
      '/must-revalidate': answer({ 'cache-control': 'max-age=60, must-revalidate' }),
    });
    assert.ok(!(await storedAfterOne(r, '/max-age', { authorization: 'Bearer a' })));
    for (const p of ['/public', '/s-maxage', '/must-revalidate']) {
      await r.get(p, { authorization: 'Bearer a' });
      const other = await r.get(p, { authorization: 'Bearer b' });
      assert.equal(other.cache, 'hit', `${p} not stored`);
      assert.equal(other.text, '#1');
    }
  });

  test('RFC 9111 §3.1, §7.3: Set-Cookie is kept with the entry but never given to another principal unless public', async () => {
    const setCookie: Script = (req, res, n) => {
      const pub = req.url!.startsWith('/public');
      res.writeHead(200, { 'cache-control': pub ? 'public, max-age=60' : 's-maxage=60', 'set-cookie': `sid=${String(req.headers.authorization)}` });
      res.end(`#${n}`);
    };
    const r = await rig({ '/own': setCookie, '/public': setCookie }, '', "cache:\n  principal: { key: 'header:authorization', headers: [X-Region] }");
    assert.deepEqual((await r.get('/own', { authorization: 'alice' })).headers['set-cookie'], ['sid=alice']);
    const again = await r.get('/own', { authorization: 'alice' });
    assert.equal(again.cache, 'hit');
    assert.deepEqual(again.headers['set-cookie'], ['sid=alice'], 'the filler lost its own cookie');
    const bob = await r.get('/own', { authorization: 'bob' });
    assert.equal(bob.cache, 'hit');
    assert.equal(bob.headers['set-cookie'], undefined, 'alice’s cookie went to bob');
    const anon = await r.get('/own');
    assert.equal(anon.cache, 'hit');
    assert.equal(anon.headers['set-cookie'], undefined, 'alice’s cookie went to a caller with no principal');
    await r.get('/public', { authorization: 'alice' });
    const pub = await r.get('/public', { authorization: 'bob' });
    assert.equal(pub.cache, 'hit');
    assert.deepEqual(pub.headers['set-cookie'], ['sid=alice'], 'a public answer is the same for everyone, cookie included');
  });
});

describe('RFC 9111 §4.2: freshness', () => {
  test('RFC 9111 §4.2.1: s-maxage wins over max-age and Expires, max-age over Expires', async () => {
    const r = await rig({
      '/s': (req, res, n) => answer({ 'cache-control': 'max-age=10, s-maxage=100', expires: httpDate(5) })(req, res, n),
      '/m': (req, res, n) => answer({ 'cache-control': 'max-age=100', expires: httpDate(5) })(req, res, n),
      '/m-past': (req, res, n) => answer({ 'cache-control': 'max-age=100', expires: httpDate(-3600) })(req, res, n),
    });
    const paths = ['/s', '/m', '/m-past'];
    for (const p of paths) await r.get(p);
    await assertLifetime(r, paths, 100);
  });

  test('RFC 9111 §4.2.1: Expires counts from Date, not from the cache’s clock', async () => {
    // The origin's clock runs 1000 s ahead: Expires is 100 s after its Date, 1100 s after homing's now.
    const r = await rig({ '/e': (req, res, n) => answer({ date: httpDate(1000), expires: httpDate(1100) })(req, res, n) });
    await r.get('/e');
    await assertLifetime(r, ['/e'], 100);
  });

  test('RFC 9111 §5.3, §4.2.1: Expires: 0, an invalid date and two different Expires make the answer stale at once', async () => {
    const r = await rig({
      '/zero': answer({ expires: '0', etag: '"z"' }),
      '/invalid': answer({ expires: 'tomorrow at noon', etag: '"i"' }),
      '/zero-bare': answer({ expires: '0' }),
      '/two': (req, res, n) => answer({ expires: [httpDate(60), httpDate(120)], etag: '"t"' })(req, res, n),
    });
    for (const p of ['/zero', '/invalid', '/two']) {
      await r.get(p);
      const next = await r.get(p);
      assert.notEqual(next.cache, 'hit', `${p} served without asking the origin`);
      assert.ok(r.o.seen.at(-1)!['if-none-match'] !== undefined, `${p} was not kept to revalidate`);
    }
    assert.ok(!(await storedAfterOne(r, '/zero-bare')));
  });

  test('RFC 9111 §5.1: every hit carries Age, and the origin’s Age counts toward it', async () => {
    const r = await rig({ '/a': answer({ 'cache-control': 'max-age=60' }), '/aged': answer({ 'cache-control': 'max-age=60', age: '30' }) });
    await r.get('/a');
    await r.get('/aged');
    assert.equal((await r.get('/a')).headers.age, '0');
    assert.equal((await r.get('/aged')).headers.age, '30');
    r.c.advance(20);
    const a = await r.get('/a');
    assert.equal(a.cache, 'hit');
    assert.equal(a.headers.age, '20');
    const aged = await r.get('/aged');
    assert.equal(aged.cache, 'hit');
    assert.equal(aged.headers.age, '50');
    r.c.advance(15);
    // 65 s old against a lifetime of 60: stale, though homing has held it only 35 s.
    assert.equal((await r.get('/aged')).cache, 'miss');
    assert.equal((await r.get('/a')).cache, 'hit');
  });

  test('RFC 9111 §4.2.2: heuristic freshness only where allowed: 10 % of Last-Modified’s age, else the route’s ttl, never beside an explicit lifetime', async () => {
    const r = await rig(
      {
        '/lm': (req, res, n) => answer({ 'last-modified': httpDate(-1000) })(req, res, n),
        '/ttl': answer({}),
        '/explicit': (req, res, n) => answer({ 'cache-control': 'max-age=0', 'last-modified': httpDate(-1000) })(req, res, n),
        '/expired': (req, res, n) => answer({ expires: httpDate(-10), 'last-modified': httpDate(-1000) })(req, res, n),
        '/302': (req, res, n) => answer({ 'last-modified': httpDate(-1000), location: '/x' }, 302)(req, res, n),
        '/302-public': (req, res, n) => answer({ 'cache-control': 'public', 'last-modified': httpDate(-1000), location: '/x' }, 302)(req, res, n),
      },
      '{ ttl: 30s }',
    );
    for (const p of ['/lm', '/ttl', '/302-public']) assert.ok(await storedAfterOne(r, p), `${p} not stored`);
    for (const p of ['/explicit', '/expired', '/302']) assert.ok(!(await storedAfterOne(r, p)), `${p} given a heuristic lifetime`);
    r.c.advance(25);
    for (const p of ['/lm', '/ttl', '/302-public']) assert.equal((await r.get(p)).cache, 'hit', p);
    r.c.advance(10);
    assert.equal((await r.get('/ttl')).cache, 'miss', 'the route’s ttl was not the lifetime');
    assert.equal((await r.get('/lm')).cache, 'hit', 'Last-Modified did not win over the route’s ttl');
    r.c.advance(70);
    assert.equal((await r.get('/lm')).cache, 'miss');
  });

  test('RFC 9111 §5.2.1.4: a request’s no-cache sends a fresh entry to the origin', async () => {
    const r = await rig({ '/n': answer({ 'cache-control': 'max-age=60' }) });
    await r.get('/n');
    const n = await r.get('/n', { 'cache-control': 'no-cache' });
    assert.equal(n.cache, 'miss');
    assert.equal(n.text, '#2');
    assert.equal((await r.get('/n')).text, '#2');
  });

  test('RFC 9111 §5.4: Pragma: no-cache counts as no-cache only without Cache-Control', async () => {
    const r = await rig({ '/p': answer({ 'cache-control': 'max-age=60' }) });
    await r.get('/p');
    assert.equal((await r.get('/p', { pragma: 'no-cache' })).cache, 'miss');
    assert.equal(r.renders('/p'), 2);
    assert.equal((await r.get('/p', { pragma: 'no-cache', 'cache-control': 'max-stale' })).cache, 'hit');
    assert.equal(r.renders('/p'), 2);
  });

  test('RFC 9111 §5.2.1.1: a request’s max-age=0 revalidates, max-age=N accepts an entry no older than N', async () => {
    const r = await rig({ '/m': answer({ 'cache-control': 'max-age=600' }) });
    await r.get('/m');
    r.c.advance(30);
    assert.equal((await r.get('/m', { 'cache-control': 'max-age=60' })).cache, 'hit');
    const young = await r.get('/m', { 'cache-control': 'max-age=20' });
    assert.equal(young.cache, 'miss');
    assert.equal(young.text, '#2');
    r.c.advance(1);
    assert.equal((await r.get('/m', { 'cache-control': 'max-age=0' })).cache, 'miss');
    assert.equal(r.renders('/m'), 3);
  });

  test('RFC 9111 §5.2.1.2: max-stale accepts a stale entry, with no value any staleness, with one up to it', async () => {
    const r = await rig({ '/s': answer({ 'cache-control': 'max-age=10' }) });
    await r.get('/s');
    r.c.advance(30); // 20 s stale
    assert.equal((await r.get('/s', { 'cache-control': 'max-stale' })).cache, 'stale');
    assert.equal((await r.get('/s', { 'cache-control': 'max-stale=25' })).cache, 'stale');
    assert.equal(r.renders('/s'), 1);
    const strict = await r.get('/s', { 'cache-control': 'max-stale=15' });
    assert.equal(strict.cache, 'miss');
    assert.equal(strict.text, '#2');
  });

  test('RFC 9111 §5.2.1.3: min-fresh wants an entry fresh for at least that much longer', async () => {
    const r = await rig({ '/f': answer({ 'cache-control': 'max-age=60' }) });
    await r.get('/f');
    r.c.advance(30);
    assert.equal((await r.get('/f', { 'cache-control': 'min-fresh=20' })).cache, 'hit');
    assert.equal((await r.get('/f', { 'cache-control': 'min-fresh=40' })).cache, 'miss');
    assert.equal(r.renders('/f'), 2);
  });

  test('RFC 9111 §5.2.1.7: only-if-cached answers from the store or with 504, never from the origin', async () => {
    const r = await rig({ '/o': answer({ 'cache-control': 'max-age=60' }) });
    const none = await r.get('/o', { 'cache-control': 'only-if-cached' });
    assert.equal(none.status, 504);
    assert.match(String(none.headers['content-type']), /json/);
    assert.equal(errorCode(none.body), 'HOMING_ERR_NOT_CACHED');
    assert.equal(r.renders('/o'), 0);
    await r.get('/o');
    const hit = await r.get('/o', { 'cache-control': 'only-if-cached' });
    assert.equal(hit.cache, 'hit');
    assert.equal(hit.text, '#1');
    r.c.advance(120);
    assert.equal((await r.get('/o', { 'cache-control': 'only-if-cached' })).status, 504);
    assert.equal((await r.get('/o', { 'cache-control': 'only-if-cached, max-stale' })).cache, 'stale');
    assert.equal(r.renders('/o'), 1);
  });

  test('RFC 9111 §5.2.2.4: a response’s no-cache is stored and revalidated before every use', async () => {
    const r = await rig({
      '/n': validating('"n"', { 'cache-control': 'no-cache, max-age=60' }),
    });
    await r.get('/n');
    for (let i = 2; i <= 3; i++) {
      const a = await r.get('/n');
      assert.equal(a.cache, 'revalidated');
      assert.equal(a.text, '#1');
      assert.equal(r.o.seen.at(-1)!['if-none-match'], '"n"');
      assert.equal(r.renders('/n'), i);
    }
  });

  /** A fresh-for-10-s answer with `cc` that the origin revalidates (304) until `failing`, then answers 503. */
  async function neverStale(cc: string): Promise<{ r: Rig; fail(): void }> {
    let failing = false;
    const r = await rig({
      '/x': (req, res, n) => {
        (failing ? answer({}, 503) : validating('"x"', { 'cache-control': cc }))(req, res, n);
      },
    });
    return { r, fail: () => (failing = true) };
  }

  async function assertNeverServedStale(cc: string): Promise<void> {
    const { r, fail } = await neverStale(cc);
    await r.get('/x');
    r.c.advance(5);
    assert.equal((await r.get('/x')).cache, 'hit', 'fresh, yet not served');
    r.c.advance(10);
    const reval = await r.get('/x', { 'cache-control': 'max-stale=3600' });
    assert.equal(reval.cache, 'revalidated', 'served stale despite the directive');
    assert.equal(r.renders('/x'), 2);
    r.c.advance(15);
    fail();
    const err = await r.get('/x', { 'cache-control': 'max-stale=3600, stale-if-error=3600' });
    assert.equal(err.status, 503, 'served stale for an origin error despite the directive');
    assert.notEqual(err.cache, 'stale');
  }

  test('RFC 9111 §5.2.2.2: must-revalidate: served while fresh, never once stale (not for max-stale, not for stale-if-error)', async () => {
    await assertNeverServedStale('max-age=10, must-revalidate, stale-if-error=3600, stale-while-revalidate=3600');
  });

  test('RFC 9111 §5.2.2.8: proxy-revalidate binds a shared cache as must-revalidate does', async () => {
    await assertNeverServedStale('max-age=10, proxy-revalidate, stale-if-error=3600, stale-while-revalidate=3600');
  });

  test('RFC 9111 §5.2.2.10: s-maxage implies proxy-revalidate', async () => {
    await assertNeverServedStale('s-maxage=10, stale-if-error=3600, stale-while-revalidate=3600');
  });

  test('RFC 9111 §4.2.1: a max-age given twice with different values makes the answer stale', async () => {
    const r = await rig({
      '/dup': answer({ 'cache-control': 'max-age=60, max-age=120' }),
      '/dup-lines': answer({ 'cache-control': ['max-age=60', 'max-age=120'] }),
      '/same': answer({ 'cache-control': 'max-age=60, max-age=60' }),
    });
    assert.ok(!(await storedAfterOne(r, '/dup')));
    assert.ok(!(await storedAfterOne(r, '/dup-lines')));
    assert.ok(await storedAfterOne(r, '/same'));
  });

  test('RFC 9111 §1.2.2, §4.2.1: an invalid max-age (max-age=abc, max-age=-1) makes the answer stale', async () => {
    const r = await rig({
      '/abc': answer({ 'cache-control': 'max-age=abc' }),
      '/neg': answer({ 'cache-control': 'max-age=-1' }),
      '/abc-lm': (req, res, n) => answer({ 'cache-control': 'max-age=abc', 'last-modified': httpDate(-1000) })(req, res, n),
    });
    for (const p of ['/abc', '/neg']) assert.ok(!(await storedAfterOne(r, p)), p);
    // Stale, not heuristic: Last-Modified does not stand in for the broken lifetime.
    await r.get('/abc-lm');
    const next = await r.get('/abc-lm');
    assert.notEqual(next.cache, 'hit');
    assert.ok(r.o.seen.at(-1)!['if-modified-since'] !== undefined);
  });

  test('RFC 9111 §1.2.2: a delta-seconds past 2^31 counts as 2^31 seconds', async () => {
    const r = await rig({ '/huge': answer({ 'cache-control': 'max-age=99999999999999999999' }) });
    await r.get('/huge');
    r.c.advance(10 * 365 * 86400);
    assert.equal((await r.get('/huge')).cache, 'hit');
    r.c.advance(60 * 365 * 86400);
    assert.equal((await r.get('/huge')).cache, 'miss');
  });

  test('RFC 9111 §5.2: directive names are case-insensitive and quoted arguments are accepted', async () => {
    const r = await rig({
      '/upper': answer({ 'cache-control': 'Max-Age=60' }),
      '/shout': answer({ 'cache-control': 'PUBLIC, S-MAXAGE=60' }),
      '/quoted': answer({ 'cache-control': 'max-age="60"' }),
      '/nostore': answer({ 'cache-control': 'No-Store, max-age=60' }),
    });
    for (const p of ['/upper', '/shout', '/quoted']) assert.ok(await storedAfterOne(r, p), p);
    assert.ok(!(await storedAfterOne(r, '/nostore')));
  });

  test('RFC 9111 §5.2: commas inside a quoted argument do not split directives', async () => {
    const r = await rig({
      // Split at the quoted commas, this would read as private and as a second, conflicting max-age.
      '/ext': answer({ 'cache-control': 'community="a, private, max-age=0", max-age=60' }),
      '/no-cache': validating('"q"', { 'cache-control': 'no-cache="a,b", max-age=60' }),
    });
    assert.ok(await storedAfterOne(r, '/ext'));
    // A qualified no-cache is stored, and (taken as unqualified) revalidated before use.
    await r.get('/no-cache');
    assert.equal((await r.get('/no-cache')).cache, 'revalidated');
  });
});

describe('RFC 9111 §4.3: validation', () => {
  test('RFC 9111 §4.3.1: a stale entry is revalidated with If-None-Match from its ETag, If-Modified-Since from its Last-Modified', async () => {
    const lm = httpDate(-1000);
    const r = await rig({
      '/etag': answer({ 'cache-control': 'max-age=10', etag: '"v1"' }),
      '/lm': answer({ 'cache-control': 'max-age=10', 'last-modified': lm }),
      '/both': answer({ 'cache-control': 'max-age=10', etag: 'W/"w"', 'last-modified': lm }),
    });
    for (const p of ['/etag', '/lm', '/both']) await r.get(p, { 'if-none-match': '"client"' });
    r.c.advance(20);
    await r.get('/etag', { 'if-none-match': '"client"', 'if-modified-since': httpDate(-5) });
    let seen = r.o.seen.at(-1)!;
    assert.equal(seen['if-none-match'], '"v1"', 'the client’s validator went to the origin in place of the entry’s');
    assert.equal(seen['if-modified-since'], undefined);
    await r.get('/lm');
    seen = r.o.seen.at(-1)!;
    assert.equal(seen['if-modified-since'], lm);
    assert.equal(seen['if-none-match'], undefined);
    await r.get('/both');
    seen = r.o.seen.at(-1)!;
    assert.equal(seen['if-none-match'], 'W/"w"');
    assert.equal(seen['if-modified-since'], lm);
  });

  test('RFC 9111 §4.3.4: a 304 refreshes the stored head and the stored body is served', async () => {
    const r = await rig({
      '/v': validating('"v1"', { 'cache-control': 'max-age=10', 'x-version': 'a', 'content-type': 'text/plain' }, { 'cache-control': 'max-age=100', 'x-version': 'b' }),
    });
    await r.get('/v');
    r.c.advance(20);
    const v = await r.get('/v');
    assert.equal(v.status, 200);
    assert.equal(v.cache, 'revalidated');
    assert.equal(v.text, '#1');
    assert.equal(v.headers['x-version'], 'b');
    assert.equal(v.headers['content-type'], 'text/plain');
    assert.equal(v.headers['content-length'], '2');
    // Fresh again for the 304's max-age=100, with the 304's headers.
    r.c.advance(80);
    const hit = await r.get('/v');
    assert.equal(hit.cache, 'hit');
    assert.equal(hit.text, '#1');
    assert.equal(hit.headers['x-version'], 'b');
    assert.equal(hit.headers['cache-control'], 'max-age=100');
    assert.equal(hit.headers.age, '80');
    assert.equal(r.renders('/v'), 2);
  });

  test('RFC 9111 §4.3.2: a client’s conditional request for a stale entry is validated with the entry’s validators, and answered 304 when it matches', async () => {
    const r = await rig({
      '/c': validating('"c"', { 'cache-control': 'max-age=10' }, { 'cache-control': 'max-age=10' }),
    });
    await r.get('/c');
    r.c.advance(20);
    const mine = await r.get('/c', { 'if-none-match': '"c"' });
    assert.equal(mine.status, 304);
    assert.equal(mine.body.length, 0);
    r.c.advance(20);
    const old = await r.get('/c', { 'if-none-match': '"old"' });
    assert.equal(old.status, 200);
    assert.equal(old.cache, 'revalidated');
    assert.equal(old.text, '#1');
    assert.equal(r.o.seen.at(-1)!['if-none-match'], '"c"');
  });

  test('RFC 9111 §4.3.4, §3: a 304 whose head makes the stored answer unstorable (no-store, private) removes it from the store', async () => {
    const scripts: Record<string, Script> = {};
    for (const cc of ['no-store', 'private']) {
      scripts[`/${cc}`] = validating('"e"', { 'cache-control': 'max-age=10' }, { 'cache-control': cc });
    }
    const r = await rig(scripts);
    for (const p of ['/no-store', '/private']) {
      await r.get(p);
      r.c.advance(20);
      const validated = await r.get(p);
      assert.equal(validated.cache, 'revalidated');
      assert.equal(validated.text, '#1');
      const other = await r.get(p, { 'cache-control': 'max-stale' });
      assert.notEqual(other.cache, 'stale', `${p}: served from the store after the origin said ${p.slice(1)}`);
      assert.equal(r.renders(p), 3);
    }
  });

  test('RFC 9111 §4.3.3: a full answer to the conditional request replaces the entry', async () => {
    const r = await rig({ '/r': (req, res, n) => answer({ 'cache-control': 'max-age=10', etag: `"v${n}"` })(req, res, n) });
    await r.get('/r');
    r.c.advance(20);
    const fresh = await r.get('/r');
    assert.equal(fresh.cache, 'miss');
    assert.equal(fresh.text, '#2');
    assert.equal(r.o.seen.at(-1)!['if-none-match'], '"v1"');
    const hit = await r.get('/r');
    assert.equal(hit.cache, 'hit');
    assert.equal(hit.text, '#2');
    assert.equal(hit.headers.etag, '"v2"');
  });

  test('RFC 9111 §4.3.3: the stored answer a full answer supersedes is never used again, whether the new one varies differently or is not stored', async () => {
    const r = await rig({
      // Now varies on Accept-Language: stored as another variant.
      '/vary': (req, res, n) => answer(n === 1 ? { 'cache-control': 'max-age=10', etag: '"a"' } : { 'cache-control': 'max-age=60', etag: '"b"', vary: 'Accept-Language' })(req, res, n),
      // Now no-store: not stored at all.
      '/gone': (req, res, n) => answer(n === 1 ? { 'cache-control': 'max-age=10', etag: '"a"' } : { 'cache-control': 'no-store' })(req, res, n),
    });
    await r.get('/vary');
    await r.get('/gone');
    r.c.advance(20);
    assert.equal((await r.get('/vary', { 'accept-language': 'en' })).text, '#2');
    const en = await r.get('/vary', { 'accept-language': 'en' });
    assert.equal(en.cache, 'hit', 'the superseded answer still stood in front of the new variant');
    assert.equal(en.text, '#2');
    assert.equal((await r.get('/gone')).text, '#2');
    const old = await r.get('/gone', { 'cache-control': 'max-stale' });
    assert.notEqual(old.text, '#1', 'the superseded answer was served stale');
  });

  test('RFC 9110 §13.1.2, RFC 9111 §4.3.2: a client’s If-None-Match matching a fresh entry (weak comparison, *) is answered 304 by homing', async () => {
    const r = await rig({ '/t': answer({ 'cache-control': 'max-age=60', etag: '"x"', 'content-type': 'text/plain' }), '/w': answer({ 'cache-control': 'max-age=60', etag: 'W/"y"' }) });
    await r.get('/t');
    await r.get('/w');
    for (const [p, inm] of [['/t', '"x"'], ['/t', 'W/"x"'], ['/t', '*'], ['/t', '"a", "x"'], ['/w', '"y"'], ['/w', 'W/"y"']] as const) {
      const a = await r.get(p, { 'if-none-match': inm });
      assert.equal(a.status, 304, `${p} If-None-Match: ${inm}`);
      assert.equal(a.cache, 'hit');
      assert.equal(a.body.length, 0);
      assert.ok(a.headers.etag !== undefined);
      assert.equal(a.headers['cache-control'], 'max-age=60');
      assert.equal(a.headers['content-type'], undefined);
    }
    const other = await r.get('/t', { 'if-none-match': '"other"' });
    assert.equal(other.status, 200);
    assert.equal(other.text, '#1');
    assert.equal(r.renders('/t') + r.renders('/w'), 2);
  });

  test('RFC 9110 §13.1.3: a client’s If-Modified-Since no earlier than Last-Modified is answered 304 by homing', async () => {
    const lm = httpDate(-1000);
    const r = await rig({ '/m': answer({ 'cache-control': 'max-age=60', 'last-modified': lm, etag: '"m"' }) });
    await r.get('/m');
    for (const ims of [lm, httpDate(-500)]) {
      const a = await r.get('/m', { 'if-modified-since': ims });
      assert.equal(a.status, 304);
      assert.equal(a.body.length, 0);
      assert.equal(a.headers['last-modified'], lm);
    }
    assert.equal((await r.get('/m', { 'if-modified-since': httpDate(-2000) })).status, 200);
    // If-None-Match decides when both are given.
    assert.equal((await r.get('/m', { 'if-modified-since': lm, 'if-none-match': '"other"' })).status, 200);
    assert.equal(r.renders('/m'), 1);
  });
});

describe('RFC 9111 §4.4: invalidation', () => {
  /** A stored resource at each of `paths`, and what unsafe requests answer. */
  async function invalidationRig(unsafe: Script): Promise<Rig> {
    const scripts: Record<string, Script> = {};
    for (const p of ['/doc', '/doc/1', '/doc/2', '/list']) {
      scripts[p] = (req, res, n) => (req.method === 'GET' || req.method === 'HEAD' ? answer({ 'cache-control': 'max-age=600' }) : unsafe)(req, res, n);
    }
    return rig(scripts);
  }

  test('RFC 9111 §4.4: a successful POST, PUT, DELETE or PATCH (or any method not known to be safe) invalidates its URL', async () => {
    const r = await invalidationRig(answer({}, 204));
    for (const m of ['POST', 'PUT', 'DELETE', 'PATCH', 'PURGE', 'MKCOL', 'LOCK']) {
      await r.get('/doc');
      assert.equal((await r.get('/doc')).cache, 'hit');
      const u = await r.get('/doc', {}, m);
      assert.equal(u.status, 204);
      assert.equal(u.cache, 'bypass');
      assert.equal((await r.get('/doc')).cache, 'miss', `${m} left the entry`);
    }
    // Safe methods leave it.
    for (const m of ['OPTIONS', 'PROPFIND', 'REPORT']) {
      await r.get('/doc', {}, m);
      assert.equal((await r.get('/doc')).cache, 'hit', `${m} invalidated the entry`);
    }
  });

  test('RFC 9111 §4.4: it invalidates the same-origin URLs its Location and Content-Location name', async () => {
    let port = 0;
    let status = 201;
    const r = await invalidationRig((req, res, n) => answer({ location: '/doc/1', 'content-location': `http://127.0.0.1:${port}/doc/2` }, status)(req, res, n));
    port = Number(new URL(r.c.url).port);
    for (const s of [201, 303]) {
      status = s;
      for (const p of ['/doc/1', '/doc/2', '/doc']) await r.get(p);
      assert.equal((await r.get('/list', {}, 'POST')).status, s);
      assert.equal((await r.get('/doc/1')).cache, 'miss', `${s}: Location`);
      assert.equal((await r.get('/doc/2')).cache, 'miss', `${s}: Content-Location`);
      assert.equal((await r.get('/doc')).cache, 'hit', `${s}: an unnamed URL was invalidated`);
    }
  });

  test('RFC 9111 §4.4: a failed unsafe request (4xx, 5xx) invalidates nothing', async () => {
    let status = 403;
    const r = await invalidationRig((req, res, n) => answer({ location: '/doc/1' }, status)(req, res, n));
    await r.get('/doc');
    await r.get('/doc/1');
    for (const s of [403, 404, 409, 500, 503]) {
      status = s;
      assert.equal((await r.get('/doc', {}, 'POST')).status, s);
      assert.equal((await r.get('/doc')).cache, 'hit', `a ${s} invalidated its URL`);
      assert.equal((await r.get('/doc/1')).cache, 'hit', `a ${s} invalidated its Location`);
    }
  });

  test('RFC 9111 §4.4: a Location on another origin invalidates nothing', async () => {
    const r = await invalidationRig(answer({ location: 'http://other.example/doc/1', 'content-location': 'https://127.0.0.1/doc/2' }, 201));
    await r.get('/doc/1', { host: 'other.example' });
    await r.get('/doc/2');
    assert.equal((await r.get('/doc/1', { host: 'other.example' })).cache, 'hit');
    await r.get('/list', {}, 'POST');
    assert.equal((await r.get('/doc/1', { host: 'other.example' })).cache, 'hit', 'another host’s entry was invalidated');
    assert.equal((await r.get('/doc/2')).cache, 'hit', 'an https URL invalidated the http entry');
  });
});

describe('RFC 9111 §4.1: Vary', () => {
  const echoLang: Script = (req, res, n) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', vary: n % 2 === 1 ? 'accept-language' : 'Accept-Language' });
    res.end(`${String(req.headers['accept-language'])} #${n}`);
  };

  test('RFC 9111 §4.1: a URL keeps any number of variants, each served to the requests that select it', async () => {
    const r = await rig({ '/l': echoLang });
    const langs = Array.from({ length: 20 }, (_, i) => `l${i}`);
    for (const l of langs) assert.equal((await r.get('/l', { 'accept-language': l })).cache, 'miss');
    for (const [i, l] of langs.entries()) {
      const a = await r.get('/l', { 'accept-language': l });
      assert.equal(a.cache, 'hit');
      assert.equal(a.text, `${l} #${i + 1}`);
    }
    assert.equal(r.renders('/l'), 20);
  });

  test('RFC 9111 §4.1: Vary: * is never served from the store', async () => {
    const r = await rig({ '/star': answer({ 'cache-control': 'max-age=60', vary: '*' }), '/list': answer({ 'cache-control': 'max-age=60', vary: 'Accept, *' }) });
    for (const p of ['/star', '/list']) {
      for (let i = 0; i < 3; i++) assert.notEqual((await r.get(p)).cache, 'hit');
      assert.equal(r.renders(p), 3);
    }
  });

  test('RFC 9111 §4.1: whitespace around commas in the selecting value does not matter; case and order do', async () => {
    const r = await rig({ '/l': echoLang });
    await r.get('/l', { 'accept-language': 'en,fr' });
    assert.equal((await r.get('/l', { 'accept-language': 'en , fr' })).cache, 'hit');
    assert.equal((await r.get('/l', { 'accept-language': '  en,\tfr ' })).cache, 'hit');
    assert.equal((await r.get('/l', { 'accept-language': 'fr,en' })).cache, 'miss');
    assert.equal((await r.get('/l', { 'accept-language': 'EN,fr' })).cache, 'miss');
    assert.equal(r.renders('/l'), 3);
  });

  test('RFC 9111 §4.1: header names in Vary are case-insensitive', async () => {
    // Renders alternate `Vary: accept-language` and `Vary: Accept-Language`: one selecting header.
    const r = await rig({ '/l': echoLang });
    await r.get('/l', { 'accept-language': 'en' });
    await r.get('/l', { 'accept-language': 'fr' });
    const en = await r.get('/l', { 'accept-language': 'en' });
    assert.equal(en.cache, 'hit');
    assert.equal(en.text, 'en #1');
    assert.equal((await r.get('/l', { 'accept-language': 'fr' })).text, 'fr #2');
    assert.equal(r.c.h.runtime.cache!.store.entries, 2);
  });

  test('RFC 9111 §4.1: a header absent from the request is its own variant (not the empty value)', async () => {
    const r = await rig({ '/l': echoLang });
    await r.get('/l');
    await r.get('/l', { 'accept-language': '' });
    const absent = await r.get('/l');
    assert.equal(absent.cache, 'hit');
    assert.equal(absent.text, 'undefined #1');
    const empty = await r.get('/l', { 'accept-language': '' });
    assert.equal(empty.cache, 'hit');
    assert.equal(empty.text, ' #2');
  });

  test('RFC 9111 §4.1: maxVariants caps the variants a URL keeps, the oldest going first', async () => {
    const r = await rig({ '/l': echoLang }, '', 'cache: { maxVariants: 3 }');
    for (const l of ['a', 'b', 'c', 'd']) await r.get('/l', { 'accept-language': l });
    assert.equal(r.c.h.runtime.cache!.store.entries, 3);
    for (const l of ['b', 'c', 'd']) assert.equal((await r.get('/l', { 'accept-language': l })).cache, 'hit', l);
    assert.equal((await r.get('/l', { 'accept-language': 'a' })).cache, 'miss');
    assert.equal(r.c.h.runtime.cache!.store.entries, 3);
  });
});

describe('RFC 5861: serving stale', () => {
  test('RFC 5861 §3: stale-while-revalidate serves the stale entry at once and refreshes it once in the background', async () => {
    const r = await rig({ '/swr': answer({ 'cache-control': 'max-age=10, stale-while-revalidate=60' }) });
    await r.get('/swr');
    r.c.advance(20);
    const stale = await r.get('/swr');
    assert.equal(stale.cache, 'stale');
    assert.equal(stale.text, '#1');
    // The refresh is under way or done: every answer until it lands is the stale one, then the new.
    await until(async () => (await r.get('/swr')).cache === 'hit');
    const fresh = await r.get('/swr');
    assert.equal(fresh.cache, 'hit');
    assert.equal(fresh.text, '#2');
    assert.equal(r.renders('/swr'), 2);
    // Past the window it is fetched before it is served.
    r.c.advance(100);
    const late = await r.get('/swr');
    assert.equal(late.cache, 'miss');
    assert.equal(late.text, '#3');
  });

  test('RFC 5861 §3: a background revalidation answered 304 refreshes the entry', async () => {
    const r = await rig({
      '/swr': validating('"s"', { 'cache-control': 'max-age=10, stale-while-revalidate=60' }, (n) => ({ 'x-seen': String(n) })),
    });
    await r.get('/swr');
    r.c.advance(20);
    assert.equal((await r.get('/swr')).cache, 'stale');
    await until(async () => (await r.get('/swr')).cache === 'hit');
    const fresh = await r.get('/swr');
    assert.equal(fresh.text, '#1');
    assert.equal(fresh.headers['x-seen'], '2');
    assert.equal(r.renders('/swr'), 2);
  });

  test('RFC 5861 §3: a background refresh answered with a backend redirect leaves the entry for a later hit to refresh', async () => {
    const r = await rig({
      '/swr': (req, res, n) => answer(n === 2 ? { 'x-accel-redirect': '/elsewhere' } : { 'cache-control': 'max-age=10, stale-while-revalidate=600' })(req, res, n),
    });
    await r.get('/swr');
    r.c.advance(20);
    assert.equal((await r.get('/swr')).cache, 'stale');
    // Stale hits go on until one starts a refresh that lands.
    await until(async () => (await r.get('/swr')).cache === 'hit');
    assert.equal((await r.get('/swr')).text, '#3');
  });

  test('RFC 5861 §4: stale-if-error serves the stale entry for an origin 500, 502, 503 or 504 within its window, the error after it', async () => {
    let status = 200;
    const r = await rig({ '/sie': (req, res, n) => answer(status === 200 ? { 'cache-control': 'max-age=10, stale-if-error=60' } : {}, status)(req, res, n) });
    await r.get('/sie');
    r.c.advance(20);
    for (const s of [500, 502, 503, 504]) {
      status = s;
      const a = await r.get('/sie');
      assert.equal(a.status, 200, `${s} given to the client`);
      assert.equal(a.cache, 'stale');
      assert.equal(a.text, '#1');
    }
    r.c.advance(60);
    const late = await r.get('/sie');
    assert.equal(late.status, 504);
    assert.notEqual(late.cache, 'stale');
  });

  test('RFC 5861 §4, RFC 9111 §5.2.2.2: stale-if-error serves the stale entry while the origin is down, within its window only; an answer that needs confirmation gets a 504', async () => {
    const r = await rig({
      '/sie': answer({ 'cache-control': 'max-age=10, stale-if-error=60' }),
      '/asked': answer({ 'cache-control': 'max-age=10' }),
      '/must': answer({ 'cache-control': 'max-age=10, must-revalidate, stale-if-error=60' }),
      // Stored only with a validator (an answer to revalidate each time is useless without one).
      '/no-cache': validating('"v1"', { 'cache-control': 'max-age=60, no-cache' }),
    });
    for (const p of ['/sie', '/asked', '/must', '/no-cache']) await r.get(p);
    await r.o.b.close();
    r.c.advance(20);
    const a = await r.get('/sie');
    assert.equal(a.status, 200);
    assert.equal(a.cache, 'stale');
    assert.equal(a.text, '#1');
    // The request's own stale-if-error (RFC 5861 §4) allows it as well; must-revalidate never.
    assert.equal((await r.get('/asked', { 'cache-control': 'stale-if-error=60' })).cache, 'stale');
    assert.equal((await r.get('/asked')).status, 502);
    // RFC 9111 §5.2.2.2: an answer that may not be served unconfirmed, with no backend to confirm
    // it, is a 504 of its own (not the connect failure's 502), whatever the request allows.
    for (const p of ['/must', '/no-cache']) {
      const e = await r.get(p, { 'cache-control': 'stale-if-error=60, max-stale=3600' });
      assert.equal(e.status, 504, p);
      assert.equal(errorCode(e.body), 'HOMING_ERR_NOT_REVALIDATED', p);
      assert.notEqual(e.text, '#1', p);
    }
    r.c.advance(60);
    const late = await r.get('/sie');
    assert.equal(late.status, 502);
    assert.equal(errorCode(late.body), 'HOMING_ERR_UPSTREAM_CONNECT');
  });
});

describe('RFC 9213: targeted cache control', () => {
  test('RFC 9213 §2.1: CDN-Cache-Control wins over Cache-Control and Expires', async () => {
    const r = await rig({
      '/longer': answer({ 'cdn-cache-control': 'max-age=100', 'cache-control': 'max-age=10' }),
      '/no-store': answer({ 'cdn-cache-control': 'no-store', 'cache-control': 'public, max-age=60' }),
      '/over-private': answer({ 'cdn-cache-control': 'max-age=60', 'cache-control': 'private, no-store', expires: '0' }),
      '/empty': answer({ 'cdn-cache-control': '', 'cache-control': 'max-age=60' }),
      // Expires is set aside with Cache-Control: a public answer with no lifetime takes the heuristic one.
      '/public': (req, res, n) => answer({ 'cdn-cache-control': 'public', expires: '0', 'last-modified': httpDate(-1000) })(req, res, n),
    });
    assert.ok(await storedAfterOne(r, '/longer'));
    assert.ok(!(await storedAfterOne(r, '/no-store')));
    const p = await r.get('/over-private');
    assert.equal((await r.get('/over-private')).cache, 'hit');
    // What the client (a browser) is told is left alone.
    assert.equal(p.headers['cache-control'], 'private, no-store');
    // An empty targeted field is no field: Cache-Control applies.
    assert.ok(await storedAfterOne(r, '/empty'));
    assert.ok(await storedAfterOne(r, '/public'));
    await assertLifetime(r, ['/longer'], 100);
  });

  test('Homing-Cache-Control wins over CDN-Cache-Control and Cache-Control, and never reaches the client', async () => {
    const r = await rig({
      '/h': answer({ 'homing-cache-control': 'max-age=100', 'cdn-cache-control': 'no-store', 'cache-control': 'private' }),
      '/off': answer({ 'homing-cache-control': 'no-store', 'cdn-cache-control': 'max-age=60', 'cache-control': 'max-age=60' }),
    });
    const miss = await r.get('/h');
    const hit = await r.get('/h');
    assert.equal(hit.cache, 'hit');
    for (const a of [miss, hit]) {
      assert.equal(a.headers['homing-cache-control'], undefined, `passed on (${a.cache})`);
      assert.equal(a.headers['cache-control'], 'private');
      assert.equal(a.headers['cdn-cache-control'], 'no-store');
    }
    r.c.advance(90);
    assert.equal((await r.get('/h')).cache, 'hit');
    assert.ok(!(await storedAfterOne(r, '/off')));
    const post = await r.get('/h', {}, 'POST');
    assert.equal(post.cache, 'bypass');
    assert.equal(post.headers['homing-cache-control'], undefined, 'passed on (bypass)');
    // Nor on a route that does not cache.
    const plain = await fetchVia(await startCachedHoming(r.o, 'false'), '/h');
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['homing-cache-control'], undefined, 'passed on (a route without cache)');
  });
});

describe('shared-cache pitfalls', () => {
  test('a client’s X-Forwarded-Host never poisons the entry another client receives', async () => {
    const r = await rig({
      '/page': (req, res, n) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/html' });
        res.end(`<script src="//${String(req.headers['x-forwarded-host'])}/app.js"></script> #${n}`);
      },
    });
    const evil = await r.get('/page', { 'x-forwarded-host': 'evil.example', forwarded: 'host=evil.example', 'x-forwarded-proto': 'evil', 'x-forwarded-port': '6666' });
    const victim = await r.get('/page');
    assert.equal(victim.cache, 'hit');
    for (const a of [evil, victim]) assert.doesNotMatch(a.text, /evil/);
    assert.equal(r.o.seen.at(-1)!['x-forwarded-host'], `127.0.0.1:${new URL(r.c.url).port}`);
    assert.doesNotMatch(JSON.stringify(r.o.seen), /evil|6666/, 'a client’s forwarding header reached the origin');
  });

  test('a Host header naming another port never poisons the entry of the host’s real port', async () => {
    const r = await rig({
      '/page': (req, res, n) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/html' });
        res.end(`<a href="//${String(req.headers['x-forwarded-host'])}/next">next</a> #${n}`);
      },
    });
    const port = new URL(r.c.url).port;
    const evil = await r.get('/page', { host: `127.0.0.1:6666` });
    assert.match(evil.text, /6666/);
    const victim = await r.get('/page', { host: `127.0.0.1:${port}` });
    assert.doesNotMatch(victim.text, /6666/, 'the entry another client receives names the attacker’s port');
    assert.equal((await r.get('/page', { host: `127.0.0.1:${port}` })).cache, 'hit');
  });

  test('behind a trusted proxy, the forwarded host and scheme the origin is told are part of the key', async () => {
    const o = await startOrigin();
    o.script('/page', (req, res, n) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end(`${String(req.headers['x-forwarded-proto'])}://${String(req.headers['x-forwarded-host'])} #${n}`);
    });
    const c = await startCachedHoming(o, '', '', "trustedProxies: ['127.0.0.1']");
    const asks = [
      { 'x-forwarded-host': 'www.example', 'x-forwarded-proto': 'https' },
      { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' },
      { 'x-forwarded-host': 'www.example', 'x-forwarded-proto': 'http' },
    ];
    for (const h of asks) await fetchVia(c, '/page', { headers: h });
    for (const h of asks) {
      const a = await fetchVia(c, '/page', { headers: h });
      assert.equal(a.cache, 'hit');
      assert.match(a.text, new RegExp(`^${h['x-forwarded-proto']}://${h['x-forwarded-host']} `));
    }
  });

  test('the extension does not decide: /account/x.css answered with private HTML is not stored', async () => {
    const r = await rig({
      '/account/x.css': (req, res, n) => {
        res.writeHead(200, { 'cache-control': 'private', 'content-type': 'text/html' });
        res.end(`<h1>account of ${String(req.headers.cookie)}</h1> #${n}`);
      },
    });
    await r.get('/account/x.css', { cookie: 'sid=victim' });
    const attacker = await r.get('/account/x.css');
    assert.notEqual(attacker.cache, 'hit');
    assert.doesNotMatch(attacker.text, /victim/);
    assert.equal(r.c.h.runtime.cache!.store.entries, 0);
  });

  test('a response varying on a header every client sends differently cannot grow the store past maxVariants', async () => {
    const r = await rig(
      {
        '/ua': (req, res, n) => {
          res.writeHead(200, { 'cache-control': 'max-age=600', vary: 'User-Agent' });
          res.end(`#${n}`);
        },
      },
      '',
      'cache: { maxVariants: 8 }',
    );
    const store = r.c.h.runtime.cache!.store;
    let peak = 0;
    for (let i = 0; i < 200; i++) {
      await r.get('/ua', { 'user-agent': `client/${i}` });
      peak = Math.max(peak, store.entries);
    }
    assert.equal(peak, 8);
    assert.equal(r.renders('/ua'), 200);
  });
});
