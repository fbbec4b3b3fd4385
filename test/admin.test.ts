import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { metricSum, openEvents } from './support/events.js';
import { echo, errorCode, parseResponses, rawRequest, startBackend, startTestHoming, until, type Backend, type Handler } from './support/backends.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function call(url: string, opts: { method?: 'GET' | 'DELETE'; token?: string } = {}) {
  const r = await request(url, { method: opts.method ?? 'GET', headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {} });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) };
}

/** Echo, and name the answering member as the session's owner (what an affinity route learns). */
const ownerEcho: Handler = (req, res, body, b) => {
  res.setHeader('x-session-node', b.id);
  echo(req, res, body, b);
};

async function setup(admin = '', moreRoutes = '') {
  const bs: Backend[] = [await startBackend('a', ownerEcho), await startBackend('b', ownerEcho)];
  for (const b of bs) cleanups.push(() => b.close());
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: ${admin || '127.0.0.1:0'}
pools: { p: { members: ['${bs[0]!.id}', '${bs[1]!.id}'] } }
routes:
  - { name: docs, match: { pathRegex: '^/d/(.*)$' }, pool: p, hash: { key: 'path:1', algorithm: maglev } }
${moreRoutes}
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

test('admin token: every endpoint but /healthz and the dashboard page needs the bearer token', async () => {
  const token = 'a-very-secret-admin-token';
  const { h } = await setup(`{ address: 127.0.0.1:0, token: ${token} }`);
  assert.equal((await call(`${h.adminUrl}/healthz`)).status, 200);
  const denied = await call(`${h.adminUrl}/status`);
  assert.equal(denied.status, 401);
  assert.equal(denied.json().error.code, 'HOMING_ERR_ADMIN_UNAUTHORIZED');
  assert.equal((await call(`${h.adminUrl}/status`, { token: 'wrong-token-of-some-length' })).status, 401);
  assert.equal((await call(`${h.adminUrl}/status`, { token })).status, 200);
});

/** One request written as raw bytes (no client normalises the target); the connection closes after it. */
async function raw(port: number, method: string, target: string, token?: string) {
  const text = await rawRequest(port, `${method} ${target} HTTP/1.1\r\nHost: admin\r\n${token ? `Authorization: Bearer ${token}\r\n` : ''}Connection: close\r\n\r\n`);
  const [r] = parseResponses(Buffer.from(text, 'latin1'), true);
  assert.ok(r, `${method} ${target}: no response: ${JSON.stringify(text)}`);
  return { status: r.status, body: r.body.toString() };
}

const STICKY = "  - { name: sticky, match: { path: /s/ }, pool: p, affinity: { key: 'header:x-user', owner: X-Session-Node } }";

/** Targets whose route name or key is not valid percent-encoded UTF-8, or that are no URL at all. */
const BAD_TARGETS: [string, string][] = [
  ['GET', '/api/v1/routes/%ZZ/lookup?key=a'],
  ['GET', '/api/v1/routes/%C0%AF/lookup?key=a'],
  ['GET', '/api/v1/routes/%E0%A4%A/share'],
  ['GET', '/api/v1/affinity/%C0%AF/k'],
  ['DELETE', '/api/v1/affinity/%ZZ/k'],
  ['GET', '/api/v1/affinity/sticky/%ZZ'],
  ['DELETE', '/api/v1/affinity/sticky/%C0%AF'],
  ['GET', '//['],
  ['GET', '//[/status'],
];

test('admin: a bad target, route name or key is 400 HOMING_ERR_ADMIN_BAD_REQUEST, never 500', async () => {
  const { h } = await setup('', STICKY);
  const port = h.adminAddress!.port;
  for (const [method, target] of BAD_TARGETS) {
    const r = await raw(port, method, target);
    assert.equal(r.status, 400, `${method} ${target}: ${r.body}`);
    assert.equal(errorCode(r.body), 'HOMING_ERR_ADMIN_BAD_REQUEST', `${method} ${target}`);
  }
  // The same endpoints with good encoding still answer (the 400s above are about the encoding).
  assert.equal((await raw(port, 'GET', '/api/v1/routes/docs/lookup?key=%ZZ')).status, 200, 'a query value is decoded leniently');
  assert.equal((await raw(port, 'GET', '/api/v1/routes/d%6Fcs/share')).status, 200);
  assert.equal(errorCode((await raw(port, 'GET', '/api/v1/affinity/sticky/nobody')).body), 'HOMING_ERR_ADMIN_NOT_FOUND');
});

test('admin token: checked before the target is parsed; a bad target without the token is 401 and tells nothing', async () => {
  const token = 'a-very-secret-admin-token';
  const { h } = await setup(`{ address: 127.0.0.1:0, token: ${token} }`, STICKY);
  const port = h.adminAddress!.port;
  for (const [method, target] of BAD_TARGETS) {
    const denied = await raw(port, method, target);
    assert.equal(denied.status, 401, `${method} ${target}: ${denied.body}`);
    assert.deepEqual(JSON.parse(denied.body), { error: { code: 'HOMING_ERR_ADMIN_UNAUTHORIZED', message: 'missing or wrong bearer token' } });
    const wrong = await raw(port, method, target, 'wrong-token-of-some-length');
    assert.equal(wrong.status, 401, `${method} ${target} with a wrong token`);
    const allowed = await raw(port, method, target, token);
    assert.equal(allowed.status, 400, `${method} ${target} with the token: ${allowed.body}`);
    assert.equal(errorCode(allowed.body), 'HOMING_ERR_ADMIN_BAD_REQUEST');
  }
  // Only /healthz itself is open; a spelling of it that needs parsing is not.
  assert.equal((await raw(port, 'GET', '/healthz')).status, 200);
  assert.equal((await raw(port, 'GET', '/healthz?probe=1')).status, 200);
  assert.equal((await raw(port, 'GET', '/./healthz')).status, 401);
  assert.equal((await raw(port, 'GET', '/./healthz', token)).status, 200);
});

test('admin affinity: DELETE of a key with no learned owner is 404, as GET is; of a learned one 200, then 404', async () => {
  const { h } = await setup('', STICKY);
  const key = 'alice smith/1';
  const at = `${h.adminUrl}/api/v1/affinity/sticky/${encodeURIComponent(key)}`;
  const before = await call(at, { method: 'DELETE' });
  assert.equal(before.status, 404, before.text);
  assert.equal(before.json().error.code, 'HOMING_ERR_ADMIN_NOT_FOUND');
  assert.equal((await call(at)).status, 404);

  const served = await request(`${h.url}/s/x`, { headers: { 'x-user': key } });
  const owner = ((await served.body.json()) as { id: string }).id;
  const got = await call(at);
  assert.equal(got.status, 200, got.text);
  assert.equal(got.json().owner, owner);

  const del = await call(at, { method: 'DELETE' });
  assert.equal(del.status, 200, del.text);
  assert.deepEqual(del.json(), { route: 'sticky', key, deleted: true, owner });
  assert.equal((await call(at)).status, 404, 'the owner was forgotten');
  const again = await call(at, { method: 'DELETE' });
  assert.equal(again.status, 404);
  assert.equal(again.json().error.code, 'HOMING_ERR_ADMIN_NOT_FOUND');
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
    assert.deepEqual([...names].sort(), ['homing_member_inflight', 'homing_member_up', 'homing_requests_total', 'homing_upstream_latency_seconds_bucket', 'homing_upstream_latency_seconds_count', 'homing_upstream_latency_seconds_sum'], id);
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

test('admin token: the dashboard page (no data in it) loads without the token; its event stream and every data endpoint need it', async () => {
  const token = 'a-very-secret-admin-token';
  const { h, bs } = await setup(`{ address: 127.0.0.1:0, token: ${token} }`);
  for (const path of ['/', '/dashboard', '/?view=1']) {
    const page = await call(`${h.adminUrl}${path}`);
    assert.equal(page.status, 200, path);
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.match(String(page.headers['content-security-policy']), /connect-src 'self'/);
    assert.match(String(page.headers['content-security-policy']), /frame-ancestors 'none'/);
    for (const b of bs) assert.ok(!page.text.includes(b.id), `${path} names member ${b.id}`);
    assert.ok(!page.text.includes(token));
    // Its script keeps the token in the tab's sessionStorage and sends it as a bearer.
    assert.match(page.text, /sessionStorage\.getItem\(KEY\)/);
    assert.match(page.text, /headers\.authorization = 'Bearer ' \+ token/);
  }
  for (const path of ['/status', '/metrics', '/api/v1/pools', '/api/v1/events', '/api/v1/routes/docs/share']) {
    const denied = await call(`${h.adminUrl}${path}`);
    assert.equal(denied.status, 401, path);
    assert.equal(denied.json().error.code, 'HOMING_ERR_ADMIN_UNAUTHORIZED');
  }
  const port = h.adminAddress!.port;
  assert.equal((await raw(port, 'POST', '/')).status, 401, 'only GET of the page is open');
  assert.equal((await raw(port, 'GET', '/./dashboard')).status, 401, 'a spelling of the page that needs parsing is not open');
  const wrong = await openEvents(h.adminUrl, 'wrong-token-of-some-length');
  assert.equal(wrong.status, 401);
  wrong.close();
  const ev = await openEvents(h.adminUrl, token);
  try {
    assert.equal(ev.status, 200);
    assert.match(ev.contentType, /^text\/event-stream/);
    const snap = await ev.next((e) => e.event === 'snapshot');
    assert.deepEqual(snap.data.status.routes.map((r: { name: string }) => r.name), ['docs', 'rest']);
  } finally {
    ev.close();
  }
});


test('admin events: a snapshot with 15 minutes of history, then every second a tick whose totals are what /metrics says; a member going down is told at once', async () => {
  // Members answer 500 to /d/err-…; health checks every second, one failure is down.
  const failing: Handler = (req, res, body, b) => {
    if (req.url!.startsWith('/d/err-')) {
      res.writeHead(500);
      res.end();
    } else echo(req, res, body, b);
  };
  const bs = [await startBackend('a', failing), await startBackend('b', failing)];
  for (const b of bs) cleanups.push(() => b.close());
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools:
  p:
    members: ['${bs[0]!.id}', '${bs[1]!.id}']
    health: { active: { path: /health, interval: 1s, timeout: 5s, fall: 1, rise: 1 } }
routes:
  - { name: docs, match: { pathRegex: '^/d/(.*)$' }, pool: p, hash: { key: 'path:1' } }
`);
  // A long check timeout: with fall: 1, a check slowed by a busy box would take a healthy member
  // down; the member taken down below refuses connections, so its check fails at once anyway.
  cleanups.push(() => h.close());
  const ev = await openEvents(h.adminUrl);
  cleanups.push(async () => ev.close());
  const snap = await ev.next((e) => e.event === 'snapshot');
  assert.equal(snap.data.history.interval, 1000);
  assert.equal(snap.data.history.capacity, 900, '15 minutes of one-second samples');
  assert.deepEqual(Object.keys(snap.data.shares), ['docs']);
  const first = await ev.next((e) => e.event === 'tick');

  for (let i = 0; i < 20; i++) assert.equal((await call(`${h.url}/d/k${i}`)).status, 200);
  for (let i = 0; i < 5; i++) assert.equal((await call(`${h.url}/d/err-${i}`)).status, 500);
  assert.equal((await call(`${h.url}/elsewhere`)).status, 404);

  // Every tick until the totals have it all; rates × seconds add up to the requests sent.
  const ticks = [first];
  while (ticks[ticks.length - 1]!.data.totals.routes.docs?.requests !== 25) ticks.push(await ev.next((e) => e.event === 'tick'));
  let requests = 0;
  let errors = 0;
  let p50: number | null = null;
  let p99: number | null = null;
  for (let i = 1; i < ticks.length; i++) {
    const [rps, eps, q50, q99] = ticks[i]!.data.routes.docs as [number, number, number | null, number | null];
    const dt = (ticks[i]!.data.t - ticks[i - 1]!.data.t) / 1000;
    requests += rps * dt;
    errors += eps * dt;
    if (q50 !== null) [p50, p99] = [q50, q99];
  }
  assert.ok(Math.abs(requests - 25) < 0.05, `requests/s × seconds = ${requests}`);
  assert.ok(Math.abs(errors - 5) < 0.05, `errors/s × seconds = ${errors}`);
  assert.ok(p50 !== null && p99 !== null && p50 > 0 && p99 >= p50, `p50 ${p50} p99 ${p99}`);

  const last = ticks[ticks.length - 1]!.data;
  const metrics = (await call(`${h.adminUrl}/metrics`)).text;
  assert.equal(last.totals.routes.docs.requests, metricSum(metrics, 'homing_requests_total', { route: 'docs' }));
  for (const b of bs) assert.equal(last.totals.members[b.id]?.requests ?? 0, metricSum(metrics, 'homing_requests_total', { member: b.id }), b.id);
  assert.deepEqual(last.totals.errors, [{ route: '', code: 'HOMING_ERR_NO_ROUTE', count: 1 }]);
  assert.equal(metricSum(metrics, 'homing_errors_total', { code: 'HOMING_ERR_NO_ROUTE' }), 1);
  assert.deepEqual(Object.keys(last.members).sort(), bs.map((b) => b.id).sort());
  assert.ok(last.status.pools[0].members.every((m: { up: boolean }) => m.up));

  // A member goes down: a pools event says so within one health interval (1s: the next check
  // fails at once, connection refused) and a margin for the event itself.
  const down = bs[0]!;
  const closed = Date.now();
  await down.close();
  const told = await ev.next((e) => e.event === 'pools' && e.data.pools[0].members.some((m: { id: string; up: boolean }) => m.id === down.id && !m.up), 5000);
  assert.ok(Date.now() - closed < 1000 + 500, `told after ${Date.now() - closed} ms`);
  assert.ok(told.data.pools[0].members.some((m: { id: string; up: boolean }) => m.id === bs[1]!.id && m.up));
});
