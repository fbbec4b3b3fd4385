import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startBackend, startTestHoming, type Backend } from './support/backends.js';

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
