import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { echo, startBackend, startTestHoming, until, type Backend } from './support/backends.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function call(url: string, opts: { method?: 'GET' | 'DELETE'; token?: string } = {}) {
  const r = await request(url, { method: opts.method ?? 'GET', headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {} });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) };
}

async function setup(extra = '') {
  const bs: Backend[] = [await startBackend('a'), await startBackend('b')];
  for (const b of bs) cleanups.push(() => b.close());
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: ${extra || '127.0.0.1:0'}
pools: { p: { members: ['${bs[0]!.id}', '${bs[1]!.id}'] } }
routes:
  - { name: docs, match: { pathRegex: '^/d/(.*)$' }, pool: p, hash: { key: 'path:1', algorithm: maglev } }
  - { name: rest, pool: p }
`);
  cleanups.push(() => h.close());
  return { h, bs };
}

test('admin: health, readiness, status, pools, look-up, share, metrics and the dashboard', async () => {
  const { h, bs } = await setup();
  assert.equal((await call(`${h.adminUrl}/healthz`)).json().status, 'ok');
  assert.equal((await call(`${h.adminUrl}/readyz`)).status, 200);
  const status = (await call(`${h.adminUrl}/status`)).json();
  assert.deepEqual(status.routes.map((r: { name: string }) => r.name), ['docs', 'rest']);
  assert.equal(status.routes[0].strategy, 'hash:maglev');
  const pools = (await call(`${h.adminUrl}/api/v1/pools`)).json().pools;
  assert.deepEqual(pools[0].members.map((m: { id: string; up: boolean }) => [m.id, m.up]).sort(), bs.map((b) => [b.id, true]).sort());
  const look = (await call(`${h.adminUrl}/api/v1/routes/docs/lookup?key=abc`)).json();
  assert.equal(look.pool, 'p');
  assert.equal(look.by, 'hash');
  const r = await call(`${h.url}/d/abc`);
  assert.equal(r.json().id, look.target);
  const share = (await call(`${h.adminUrl}/api/v1/routes/docs/share`)).json().share;
  const total = Object.values(share as Record<string, number>).reduce((s, v) => s + v, 0);
  assert.ok(Math.abs(total - 1) < 1e-9);
  assert.equal((await call(`${h.adminUrl}/api/v1/routes/nope/lookup?key=x`)).json().error.code, 'HOMING_ERR_ADMIN_NOT_FOUND');
  const missing = await call(`${h.adminUrl}/api/v1/routes/docs/lookup`);
  assert.equal(missing.status, 400);
  assert.equal(missing.json().error.code, 'HOMING_ERR_ADMIN_BAD_REQUEST');
  assert.equal((await call(`${h.adminUrl}/api/v1/affinity/docs/k`)).json().error.code, 'HOMING_ERR_ADMIN_BAD_REQUEST');
  const metrics = (await call(`${h.adminUrl}/metrics`)).text;
  assert.match(metrics, new RegExp(`homing_requests_total\\{route="docs",member="${look.target.replace(/\./g, '\\.')}",status="200"\\} 1`));
  assert.match(metrics, /homing_upstream_latency_seconds_count\{route="docs",member="[^"]+"\} 1/);
  assert.match(metrics, /homing_member_up\{pool="p",member="[^"]+"\} 1/);
  const dash = await call(`${h.adminUrl}/`);
  assert.equal(dash.status, 200);
  assert.match(String(dash.headers['content-type']), /text\/html/);
  assert.match(dash.text, /<title>homing<\/title>/);
  assert.equal((await call(`${h.adminUrl}/nothing-here`)).status, 404);
});

test('admin token: everything but /healthz needs the bearer token', async () => {
  const token = 'a-very-secret-admin-token';
  const { h } = await setup(`{ address: 127.0.0.1:0, token: ${token} }`);
  assert.equal((await call(`${h.adminUrl}/healthz`)).status, 200);
  const denied = await call(`${h.adminUrl}/status`);
  assert.equal(denied.status, 401);
  assert.equal(denied.json().error.code, 'HOMING_ERR_ADMIN_UNAUTHORIZED');
  assert.equal((await call(`${h.adminUrl}/status`, { token: 'wrong-token-of-some-length' })).status, 401);
  assert.equal((await call(`${h.adminUrl}/status`, { token })).status, 200);
});

test('metrics: a member removed from the watched member file takes its series with it, even a request that ends after it left', async () => {
  let release = (): void => {};
  const held = new Promise<void>((r) => (release = r));
  const a = await startBackend('a');
  const b = await startBackend('b', (req, res, body, be) => {
    if (req.url!.startsWith('/d/hold')) void held.then(() => echo(req, res, body, be));
    else echo(req, res, body, be);
  });
  cleanups.push(() => a.close());
  cleanups.push(() => b.close());
  const dir = mkdtempSync(join(tmpdir(), 'homing-metrics-members-'));
  const file = join(dir, 'members.yaml');
  writeFileSync(file, `- ${a.id}\n- ${b.id}\n`);
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools: { p: { discovery: { file: ${file} } } }
routes: [ { name: docs, match: { pathRegex: '^/d/(.*)$' }, pool: p, hash: { key: 'path:1' } } ]
`);
  cleanups.push(() => h.close());
  const keyOn = async (id: string, prefix: string): Promise<string> => {
    for (let i = 0; ; i++) if ((await call(`${h.adminUrl}/api/v1/routes/docs/lookup?key=${prefix}${i}`)).json().target === id) return `${prefix}${i}`;
  };
  assert.equal((await call(`${h.url}/d/${await keyOn(a.id, 'a')}`)).status, 200);
  assert.equal((await call(`${h.url}/d/${await keyOn(b.id, 'b')}`)).status, 200);
  const series = (text: string, id: string): string[] => text.split('\n').filter((l) => l.startsWith('homing_') && l.includes(`member="${id}"`));
  const before = (await call(`${h.adminUrl}/metrics`)).text;
  for (const id of [a.id, b.id]) {
    const names = new Set(series(before, id).map((l) => l.split('{')[0]));
    assert.deepEqual([...names].sort(), ['homing_member_up', 'homing_requests_total', 'homing_upstream_latency_seconds_bucket', 'homing_upstream_latency_seconds_count', 'homing_upstream_latency_seconds_sum'], id);
  }

  // A request to b is in flight when b leaves the pool.
  const hold = `/d/${await keyOn(b.id, 'hold')}`;
  const late = call(`${h.url}${hold}`);
  await until(() => b.last?.url === hold);
  writeFileSync(join(dir, 'next.yaml'), `- ${a.id}\n`);
  renameSync(join(dir, 'next.yaml'), file);
  await until(async () => series((await call(`${h.adminUrl}/metrics`)).text, b.id).length === 0, 8000, 50);
  release();
  assert.equal((await late).status, 200);
  const after = (await call(`${h.adminUrl}/metrics`)).text;
  assert.deepEqual(series(after, b.id), [], 'nothing left of the departed member');
  assert.equal(series(after, a.id).length, series(before, a.id).length, 'the member that stayed keeps its series');
});
