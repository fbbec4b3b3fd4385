import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { startBackend, startTestHoming, type Backend } from './support/backends.js';
import { statefulCluster } from './support/stateful.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('RESP GET answers what the HTTP proxy and the admin look-up do, for hash and affinity routes', async () => {
  const bs: Backend[] = await Promise.all(['a', 'b', 'c', 'd'].map((n) => startBackend(n)));
  for (const b of bs) cleanups.push(() => b.close());
  const c = await statefulCluster(2);
  cleanups.push(() => c.close());
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
resp: { address: 127.0.0.1:0, routes: [documents, sessions] }
pools:
  docs: { members: [${bs.map((b) => `'${b.id}'`).join(', ')}] }
  eve: { members: [${c.backends.map((b) => `'${b.id}'`).join(', ')}] }
routes:
  - { name: documents, match: { pathRegex: '^/documents/(.*)$' }, pool: docs, hash: { key: 'path:1', algorithm: maglev } }
  - name: sessions
    match: { path: /s }
    pool: eve
    debugHeader: true
    affinity: { key: 'header:authorization', redirect: {} }
`);
  cleanups.push(() => h.close());
  const port = h.resp!.address().port;
  const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
  cleanups.push(async () => void redis.disconnect());
  await redis.connect();
  for (let i = 0; i < 30; i++) {
    const key = `doc-${i}`;
    const viaResp = await redis.get(key);
    const viaHttp = JSON.parse(await (await request(`${h.url}/documents/${key}`)).body.text()).id;
    const viaAdmin = ((await (await request(`${h.adminUrl}/api/v1/routes/documents/lookup?key=${key}`)).body.json()) as { target: string }).target;
    assert.equal(viaResp, viaHttp, key);
    assert.equal(viaResp, viaAdmin, key);
  }
  const keys = ['x', 'y', 'z'];
  assert.deepEqual(await redis.mget(...keys), await Promise.all(keys.map((k) => redis.get(k))));
  assert.equal(await redis.call('HOMING.ROUTE', 'documents', 'doc-1'), await redis.get('doc-1'));
  assert.deepEqual(((await redis.call('HOMING.MEMBERS', 'docs')) as string[]).sort(), bs.map((b) => b.id).sort());
  // db 1 is the affinity route. A key with no learned owner: every face tells the same guess,
  // the member a request with that key goes to first.
  await redis.select(1);
  const ids = c.backends.map((b) => b.id);
  for (let i = 0; i < 20; i++) {
    const token = `Bearer new-${i}`;
    const guess = await redis.get(token);
    assert.ok(guess !== null && ids.includes(guess), `${token}: ${guess}`);
    const viaAdmin = ((await (await request(`${h.adminUrl}/api/v1/routes/sessions/lookup?key=${encodeURIComponent(token)}`)).body.json()) as { target: string; by: string });
    assert.deepEqual([viaAdmin.target, viaAdmin.by], [guess, 'hash']);
    const r = await request(`${h.url}/s`, { headers: { authorization: token } });
    assert.match(String(r.headers['x-homing']), new RegExp(`target=${guess}; by=hash; cache=bypass; hops=0`), token);
    await r.body.text();
  }
  // A learned owner is the answer on every face, wherever the guess would land.
  const guess = await redis.get('Bearer t1');
  const owner = ids.find((id) => id !== guess)!;
  c.sessions.set('Bearer t1', owner);
  const r = await request(`${h.url}/s`, { headers: { authorization: 'Bearer t1' } });
  assert.match(String(r.headers['x-homing']), new RegExp(`target=${owner}; by=hash; cache=bypass; hops=1`));
  await r.body.text();
  assert.equal(await redis.get('Bearer t1'), owner);
  await assert.rejects(redis.select(2), /out of range/);
  // The real redis-cli works against it (async: the router runs in this very process).
  const out = (await promisify(execFile)('redis-cli', ['-p', String(port), 'GET', 'doc-3'], { encoding: 'utf8' })).stdout.trim();
  await redis.select(0);
  assert.equal(out, await redis.get('doc-3'));
});

test('RESP GET on a pool with no live member answers nil', async () => {
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
resp: { address: 127.0.0.1:0, route: r }
pools: { p: { discovery: { file: /dev/null } } }
routes: [ { name: r, pool: p, hash: { key: path } } ]
`).catch((e: Error) => e);
  // An empty member file is refused at start (a half-written file looks the same).
  assert.ok(h instanceof Error);
  const b = await startBackend('only');
  cleanups.push(() => b.close());
  const h2 = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
resp: { address: 127.0.0.1:0, route: r }
pools: { p: { members: ['${b.id}'], health: { passive: { failures: 1, ejectFor: 1m } } } }
routes: [ { name: r, pool: p, hash: { key: path } } ]
`);
  cleanups.push(() => h2.close());
  const redis = new Redis({ port: h2.resp!.address().port, host: '127.0.0.1', lazyConnect: true });
  cleanups.push(async () => void redis.disconnect());
  await redis.connect();
  assert.equal(await redis.get('/k'), b.id);
  await b.close();
  const res = await request(`${h2.url}/k`);
  await res.body.text();
  assert.equal(res.statusCode, 502);
  assert.equal(await redis.get('/k'), null);
});
