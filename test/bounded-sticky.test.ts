/**
 * Bounded loads through the real proxy: homing counts each member's requests in flight itself,
 * a key whose member is full goes to the next member on the ring for that one request, and the
 * next request for the key is home again as soon as its member is back under the bound. Real
 * node:http members that hold their answers until the test lets them go.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { startBackend, startTestHoming, until, type Backend } from './support/backends.js';
import { isResolution } from '../src/routing/route.js';

/** Answers held by each member (by id), released by the test. */
const held = new Map<string, ServerResponse[]>();
let backends: Backend[] = [];
let homing: Awaited<ReturnType<typeof startTestHoming>>;
const agent = new Agent({ connections: 16 });

before(async () => {
  for (let i = 0; i < 5; i++) {
    backends.push(
      await startBackend(`m${i}`, (_req, res, _body, b) => {
        res.setHeader('x-served-by', b.id);
        held.get(b.id)!.push(res);
      }),
    );
  }
  for (const b of backends) held.set(b.id, []);
  homing = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools: { p: { members: [${backends.map((b) => `'${b.id}'`).join(', ')}] } }
routes: [ { name: r, pool: p, hash: { key: 'header:x-key', algorithm: ring, boundedLoad: 1.25 } } ]
`);
});

after(async () => {
  for (const list of held.values()) for (const res of list) res.end('ok');
  await homing?.close();
  await agent.close();
  for (const b of backends) await b.close();
  backends = [];
});

/** Sends a request for `key`; resolves with the member that served it once the member lets it go. */
function send(key: string): Promise<string> {
  return request(homing.url + '/', { dispatcher: agent, headers: { 'x-key': key } }).then(async (r) => {
    await r.body.dump();
    assert.equal(r.statusCode, 200);
    return String(r.headers['x-served-by']);
  });
}

/** Lets the oldest answer `id` holds go. */
function releaseOne(id: string): void {
  held.get(id)!.shift()!.end('ok');
}

test('a key whose member is full goes to the next member on the ring for that request only, and is home again as soon as the member is under the bound', async () => {
  const route = homing.runtime.route('r')!;
  const at = (attempt: number): string => {
    const r = route.resolve('tenant-42', 'lookup', attempt);
    assert.ok(!(r instanceof Promise) && isResolution(r));
    return r.member.id;
  };
  const home = at(0);
  const next = at(1); // the next member on the ring, nobody being loaded
  const third = at(2);
  const inflight = () => [...held.values()].reduce((a, l) => a + l.length, 0);
  /** homing's own count of requests in flight to `id` (what the bound reads). */
  const counted = (id: string) => route.pool.live.get(id)!.inflight;

  // Nothing in flight: cap ceil(1.25 × 1 / 5) = 1, so the first request goes home…
  const first = send('tenant-42');
  await until(() => held.get(home)!.length === 1);
  // …and makes home full (1 in flight, cap ceil(1.25 × 2 / 5) = 1): the second goes to the next member.
  const second = send('tenant-42');
  await until(() => held.get(next)!.length === 1);
  // Both full now (cap ceil(1.25 × 3 / 5) = 1): the third goes one further, still along the ring.
  const third3 = send('tenant-42');
  await until(() => held.get(third)!.length === 1);
  assert.equal(inflight(), 3);

  // Home lets its request go: under the bound again, so the very next request is home again.
  releaseOne(home);
  assert.equal(await first, home);
  await until(() => counted(home) === 0);
  assert.equal(counted(next) + counted(third), 2);
  const fourth = send('tenant-42');
  await until(() => held.get(home)!.length === 1);
  assert.equal(held.get(next)!.length, 1);
  assert.equal(held.get(third)!.length, 1);

  for (const id of [next, third, home]) releaseOne(id);
  assert.deepEqual(await Promise.all([second, third3, fourth]), [next, third, home]);
  assert.equal(inflight(), 0);
  await until(() => counted(home) + counted(next) + counted(third) === 0);
  // Nothing in flight: every request for the key goes home, one after another.
  for (let i = 0; i < 5; i++) {
    const r = send('tenant-42');
    await until(() => held.get(home)!.length === 1);
    releaseOne(home);
    assert.equal(await r, home);
    await until(() => counted(home) === 0);
  }
});
