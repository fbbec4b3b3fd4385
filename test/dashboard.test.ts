/**
 * The admin dashboard in a real headless browser (Debian's chromium, driven by playwright-core)
 * against a real homing with an admin token: hash, affinity (real redirecting backends) and
 * directory routes (a real node:http directory), real backends, real traffic.
 *
 * Asserted: the page loads without the token and asks for it; a wrong token is refused; the right
 * one is kept in sessionStorage and survives a reload; after scripted traffic the numbers in the
 * page are those of /metrics (requests per route and member, affinity and directory counts); a
 * member going down turns red within one health interval; the page asks nothing of any other
 * origin. A screenshot is saved as test-output/dashboard.png.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { request } from 'undici';
import { startBackend, startTestHoming, until, type Backend } from './support/backends.js';
import { statefulCluster } from './support/stateful.js';
import { metricSum } from './support/events.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const SCREENSHOT = join('test-output', 'dashboard.png');
const TOKEN = 'dashboard-test-token-0123456789';
/** Active health interval of the pool whose member is taken down. */
const HEALTH_INTERVAL = 1000;

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers });
  return { status: r.statusCode, text: await r.body.text() };
}


/** `data-k` cell text per row selector, read from the page. */
function cells(page: Page, rows: Record<string, string[]>): Promise<Record<string, Record<string, string>>> {
  return page.evaluate((rs) => {
    const out: Record<string, Record<string, string>> = {};
    for (const [sel, ks] of Object.entries(rs)) {
      const tr = document.querySelector(sel);
      out[sel] = Object.fromEntries(ks.map((k) => [k, tr?.querySelector(`td[data-k="${k}"]`)?.textContent ?? '(none)']));
    }
    return out;
  }, rows);
}

test('dashboard in chromium: token field, numbers as /metrics has them, a member down turns red within one health interval', async () => {
  assert.ok(CHROMIUM, 'no chromium: scripts/install-system-deps.sh installs it');
  const web: Backend[] = [await startBackend('x'), await startBackend('y')];
  for (const b of web) cleanups.push(() => b.close());
  const sessions = await statefulCluster(2);
  cleanups.push(() => sessions.close());
  const directory = createServer((req, res) => {
    const host = decodeURIComponent(req.url!.slice('/tenants/'.length));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(host.startsWith('t1.') ? 'pa' : 'pb');
  });
  await new Promise<void>((r) => directory.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => directory.close(() => r())));
  const dirPort = (directory.address() as { port: number }).port;
  // One failed check marks a member down (fall: 1). The checks run in this process, which the
  // browser's driver keeps busy: a short check timeout would take a healthy member down now and
  // then. The member taken down below refuses connections, so its check fails at once anyway.
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: { address: 127.0.0.1:0, token: ${TOKEN} }
pools:
  web:
    members: ['${web[0]!.id}', '${web[1]!.id}']
    health: { active: { path: /health, interval: ${HEALTH_INTERVAL}ms, timeout: 5s, fall: 1, rise: 1 } }
  pa: { members: ['${web[0]!.id}'] }
  pb: { members: ['${web[1]!.id}'] }
  s: { members: ['${sessions.backends[0]!.id}', '${sessions.backends[1]!.id}'] }
routes:
  - { name: docs, match: { pathRegex: '^/d/(.*)$' }, pool: web, hash: { key: 'path:1' } }
  - { name: sessions, match: { path: /s/ }, pool: s, affinity: { key: 'header:authorization', redirect: {} } }
  - name: tenants
    match: { path: /t/ }
    pools: [pa, pb]
    directory: { key: host, lookup: { url: 'http://127.0.0.1:${dirPort}/tenants/{key}' } }
  - { name: cached, match: { path: /c/ }, pool: web, cache: { ttl: 60s } }
`);
  cleanups.push(() => h.close());
  const admin = h.adminUrl;
  const auth = { authorization: `Bearer ${TOKEN}` };

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM });
  cleanups.push(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
  const origins = new Set<string>();
  page.on('request', (r) => origins.add(new URL(r.url()).origin));
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  // The page loads without the token and asks for it; a wrong one is refused.
  await page.goto(`${admin}/`);
  await page.locator('#tokenForm').waitFor({ state: 'visible' });
  assert.match(await page.locator('#tokenMsg').textContent() ?? '', /needs its token/);
  await page.fill('#token', 'not-the-token-at-all-0000');
  await page.click('#tokenForm button[type=submit]');
  await page.waitForFunction(() => /refused/.test(document.getElementById('tokenMsg')!.textContent ?? ''));
  await page.fill('#token', TOKEN);
  await page.click('#tokenForm button[type=submit]');
  await page.locator('tr[data-route="docs"]').waitFor();
  assert.equal(await page.locator('#tokenForm').isVisible(), false);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('homing.adminToken')), TOKEN);

  // Each session lives on the member homing does not guess for it: its first request is redirected.
  const users = ['ann', 'bob', 'cid'];
  for (const user of users) {
    const look = JSON.parse((await get(`${admin}/api/v1/routes/sessions/lookup?key=${encodeURIComponent(`Bearer ${user}`)}`, auth)).text) as { target: string };
    sessions.sessions.set(`Bearer ${user}`, sessions.backends.find((b) => b.id !== look.target)!.id);
  }

  // Scripted traffic on each pattern.
  for (let i = 0; i < 12; i++) assert.equal((await get(`${h.url}/d/k${i}`)).status, 200);
  for (const user of users) for (let i = 0; i < 3; i++) assert.equal((await get(`${h.url}/s/${i}`, { authorization: `Bearer ${user}` })).status, 200);
  for (const host of ['t1.example.com', 't2.example.com']) for (let i = 0; i < 4; i++) assert.equal((await get(`${h.url}/t/${i}`, { host })).status, 200);
  for (let i = 0; i < 5; i++) assert.equal((await get(`${h.url}/c/${i % 2}`)).status, 200);

  const metrics = (await get(`${admin}/metrics`, auth)).text;
  const rows: Record<string, string[]> = {
    '#routes tr[data-route="docs"]': ['requests'],
    '#routes tr[data-route="sessions"]': ['requests'],
    '#routes tr[data-route="tenants"]': ['requests'],
    '#affinity tr[data-route="sessions"]': ['hits', 'misses', 'redirects'],
    '#directory tr[data-route="tenants"]': ['hit', 'miss'],
    '#cache tr[data-route="cached"]': ['hit', 'miss', 'ratio'],
  };
  const want: Record<string, Record<string, string>> = {
    '#routes tr[data-route="docs"]': { requests: String(metricSum(metrics, 'homing_requests_total', { route: 'docs' })) },
    '#routes tr[data-route="sessions"]': { requests: String(metricSum(metrics, 'homing_requests_total', { route: 'sessions' })) },
    '#routes tr[data-route="tenants"]': { requests: String(metricSum(metrics, 'homing_requests_total', { route: 'tenants' })) },
    '#affinity tr[data-route="sessions"]': {
      hits: String(metricSum(metrics, 'homing_affinity_hits_total', { route: 'sessions' })),
      misses: String(metricSum(metrics, 'homing_affinity_misses_total', { route: 'sessions' })),
      redirects: String(metricSum(metrics, 'homing_redirects_total', { route: 'sessions' })),
    },
    '#directory tr[data-route="tenants"]': {
      hit: String(metricSum(metrics, 'homing_directory_lookups_total', { route: 'tenants', outcome: 'hit' })),
      miss: String(metricSum(metrics, 'homing_directory_lookups_total', { route: 'tenants', outcome: 'miss' })),
    },
    '#cache tr[data-route="cached"]': {
      hit: String(metricSum(metrics, 'homing_cache_requests_total', { route: 'cached', outcome: 'hit' })),
      miss: String(metricSum(metrics, 'homing_cache_requests_total', { route: 'cached', outcome: 'miss' })),
      ratio: '60.0%',
    },
  };
  for (const b of [...web, ...sessions.backends]) {
    rows[`#members tr[data-member="${b.id}"]`] = ['requests'];
    want[`#members tr[data-member="${b.id}"]`] = { requests: String(metricSum(metrics, 'homing_requests_total', { member: b.id })) };
  }
  // The traffic was what it was meant to be (so the comparison below compares something).
  assert.equal(want['#routes tr[data-route="docs"]']!.requests, '12');
  assert.equal(want['#affinity tr[data-route="sessions"]']!.misses, '3');
  assert.equal(want['#directory tr[data-route="tenants"]']!.miss, '2');
  assert.equal(want['#affinity tr[data-route="sessions"]']!.hits, '6');
  assert.equal(want['#affinity tr[data-route="sessions"]']!.redirects, '3');
  assert.equal(want['#cache tr[data-route="cached"]']!.hit, '3');
  assert.equal(want['#cache tr[data-route="cached"]']!.miss, '2');
  await page.waitForFunction(
    ([rs, w]) => {
      for (const [sel, ks] of Object.entries(rs)) {
        const tr = document.querySelector(sel);
        for (const k of ks) if (tr?.querySelector(`td[data-k="${k}"]`)?.textContent !== w[sel]![k]) return false;
      }
      return true;
    },
    [rows, want] as const,
    { timeout: 10_000 },
  ).catch(async () => assert.deepEqual(await cells(page, rows), want, 'the page never showed what /metrics says'));
  assert.deepEqual(await cells(page, rows), want);
  assert.equal((await get(`${admin}/metrics`, auth)).text.includes(`homing_requests_total{route="docs"`), true);

  // A reload keeps the token (this tab's sessionStorage): no question asked.
  await page.reload();
  await page.locator('tr[data-route="docs"]').waitFor();
  assert.equal(await page.locator('#tokenForm').isVisible(), false);

  // A member goes down: red within one health interval (its next check fails at once).
  const health = page.locator(`#members tr[data-pool="web"][data-member="${web[0]!.id}"] td[data-k="health"]`);
  assert.equal(await health.textContent(), 'up');
  const closed = Date.now();
  await web[0]!.close();
  await health.and(page.locator('.down')).waitFor({ timeout: 10_000 });
  const took = Date.now() - closed;
  assert.ok(took < HEALTH_INTERVAL + 500, `red after ${took} ms`);
  // The live stream re-renders rows: read the colour of the row as it is now, until it is red.
  const red = async (): Promise<boolean> => (await health.evaluate((el) => getComputedStyle(el).backgroundColor).catch(() => '')) === 'rgb(204, 0, 0)';
  await until(red, 5000, 20);
  assert.equal(await health.textContent(), 'down');

  mkdirSync('test-output', { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.deepEqual([...origins], [admin], 'the page loads nothing from any other origin');
  assert.deepEqual(pageErrors, []);
});
