/**
 * The response cache with node:cluster workers (`homing serve`, workers: 2): each worker holds its
 * own store, principals learned in one worker reach the other through the primary, and a purge
 * made on the admin API (served by the primary) empties every worker.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { httpRequest, until } from './support/backends.js';
import { serveCli } from './support/serve.js';
import { startOrigin, stopAll } from './support/cache.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await stopAll();
});

/** A metric's value summed over the workers (the primary's /metrics aggregates them). */
async function metric(adminUrl: string, name: string): Promise<number> {
  const text = (await httpRequest(`${adminUrl}/metrics`)).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{}`));
  return line === undefined ? NaN : Number(line.split(' ').at(-1));
}

test('workers: principals cross workers, purges reach every worker', async () => {
  const o = await startOrigin();
  o.script('/me', (req, res) => {
    res.writeHead(200, { 'cache-control': 'private, no-store', 'x-region': 'r9' });
    res.end('me');
  });
  o.script('/x', (req, res, n) => {
    res.writeHead(200, { 'cache-control': 'max-age=600' });
    res.end(`x #${n}`);
  });
  const s = await serveCli(
    `pools: { p: { members: ['${o.b.id}'] } }
routes: [ { name: r, pool: p, cache: true } ]
cache: { principal: { key: 'header:authorization', headers: [X-Region] } }
`,
    2,
    cleanups,
  );
  await httpRequest(`${s.url}/me`, { headers: { authorization: 'bob' } });
  // Learned in the worker that served /me, relayed to the other.
  await until(async () => (await metric(s.adminUrl, 'homing_cache_principals')) === 2);
  // Fresh connections spread over both workers until each holds /x.
  await until(async () => {
    await httpRequest(`${s.url}/x`);
    return (await metric(s.adminUrl, 'homing_cache_entries')) === 2;
  });
  const renders = o.renders.get('/x')!;
  assert.equal(renders, 2);
  const r = await httpRequest(`${s.adminUrl}/api/v1/cache/purge`, { method: 'POST', body: JSON.stringify({ url: `${s.url}/x` }) });
  assert.equal(r.status, 200);
  await until(async () => (await metric(s.adminUrl, 'homing_cache_entries')) === 0);
});
