/**
 * Reloads under steady load: keep-alive GETs and POSTs with bodies through homing while its config
 * is reloaded every second (a member added and removed in turn, a route's strategy changed), with
 * an invalid config pushed half-way; and a reload of a `workers: 2` box (the built CLI) under load.
 * Not one request may fail or be reset, every worker must switch, and the learned affinity of a
 * route the reloads leave alone must keep every entry.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { httpRequest, until, type Backend } from './support/backends.js';
import { metricSum } from './support/events.js';
import { serveCli } from './support/serve.js';
import { ownerBackends, startFromFile, steadyLoad, type LoadRequest } from './support/reload.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const backends = (...names: string[]): Promise<Backend[]> => ownerBackends(cleanups, ...names);

const SESSIONS = 40;
const BODY = 'x'.repeat(2048);

/** GETs and POSTs (2 KiB bodies, echoed back as a byte count) to the `web` route and, keyed by session, the `sessions` route. */
function nextRequest(loop: number, n: number): LoadRequest {
  const post = (loop + n) % 2 === 1;
  const session = loop % 2 === 0;
  const path = session ? '/s/cart' : `/w/${(loop * 7919 + n) % 1000}`;
  return {
    method: post ? 'POST' : 'GET',
    path,
    headers: session ? { 'x-session': `k${(loop * 31 + n) % SESSIONS}` } : {},
    body: post ? BODY : undefined,
    check: (_status, text) => {
      const j = JSON.parse(text) as { bytes: number; url: string };
      return j.bytes !== (post ? BODY.length : 0) || j.url !== path ? `the member saw ${j.bytes} bytes at ${j.url}` : undefined;
    },
  };
}

/** The owner of each session key (admin API). */
async function owners(adminUrl: string): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (let k = 0; k < SESSIONS; k++) {
    const r = await httpRequest(`${adminUrl}/api/v1/affinity/sessions/k${k}`);
    out.set(`k${k}`, r.status === 200 ? (JSON.parse(r.text) as { owner: string }).owner : undefined);
  }
  return out;
}

const STRATEGIES = ['balance: round-robin', 'balance: least-connections', "hash: { key: path, algorithm: ring }", 'balance: power-of-two-choices'];

test('20 s of keep-alive GET and POST load while the config is reloaded every second: 0 failed requests, affinity kept', async (t) => {
  const [a, b, c, d, e] = await backends('a', 'b', 'c', 'd', 'e');
  const config = (i: number): string =>
    'listen: { http: 127.0.0.1:0 }\nadmin: 127.0.0.1:0\nlog: { level: silent }\n' +
    `pools:\n  web: { members: ['${a!.id}', '${b!.id}'${i % 2 === 1 ? `, '${c!.id}'` : ''}] }\n  sticky: { members: ['${d!.id}', '${e!.id}'] }\n` +
    'routes:\n' +
    "  - { name: sessions, match: { path: /s/ }, pool: sticky, affinity: { key: 'header:x-session', owner: X-Session-Node } }\n" +
    `  - { name: web, match: { path: /w/ }, pool: web, ${STRATEGIES[i % STRATEGIES.length]} }\n`;
  const s = await startFromFile(config(0), cleanups);
  const load = steadyLoad(s.url, { loops: 8, everyMs: 10, next: nextRequest });
  // Warm: every session key learned before the first reload.
  await until(async () => [...(await owners(s.adminUrl)).values()].every((o) => o !== undefined));
  const learned = await owners(s.adminUrl);
  const started = Date.now();
  const okAtStart = load.ok;
  let generation = 1;
  for (let i = 1; i <= 20; i++) {
    // One reload a second.
    const wait = started + i * 1000 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (i === 10) {
      s.write(config(i).replace('pool: web,', 'pool: nowhere,'));
      const bad = await s.reload();
      assert.equal(bad.status, 422, JSON.stringify(bad.json));
      assert.equal(bad.json.generation, generation, 'an invalid config changes nothing');
    }
    s.write(config(i));
    const r = await s.reload();
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.generation, ++generation);
  }
  const seconds = (Date.now() - started) / 1000;
  const sent = load.ok - okAtStart;
  await load.stop();
  assert.deepEqual(load.failures.slice(0, 5), [], `${load.failures.length} of ${load.ok + load.failures.length} requests failed`);
  assert.ok(sent / seconds >= 100, `only ${Math.round(sent / seconds)} requests/s`);
  // The reloads took effect: the member that came and went served, the last strategy is in force.
  assert.ok(c!.requests > 0, 'the added member never served');
  const status = await s.status();
  assert.equal(status.config!.generation, 21);
  assert.equal(status.routes.find((r) => r.name === 'web')!.strategy, 'balance:round-robin', STRATEGIES[20 % STRATEGIES.length]);
  // The affinity route was left alone: every key still has the owner it had before the reloads.
  assert.deepEqual(await owners(s.adminUrl), learned);
  const metrics = (await httpRequest(`${s.adminUrl}/metrics`)).text;
  assert.equal(metricSum(metrics, 'homing_config_reloads_total', { result: 'ok' }), 20);
  assert.equal(metricSum(metrics, 'homing_config_reloads_total', { result: 'error' }), 1);
  assert.ok(metricSum(metrics, 'homing_affinity_hits_total', { route: 'sessions' }) > 0);
  t.diagnostic(`${Math.round(sent / seconds)} requests/s through 20 reloads, ${load.ok} answered`);
});

test('workers: 2 (the CLI) reloaded under load: every worker switches, 0 failed requests', async () => {
  const [a, b] = await backends('a', 'b');
  const body = (members: string): string => `pools: { web: { members: [${members}] }, sticky: { members: ['${a!.id}'] } }\nroutes:\n  - { name: sessions, match: { path: /s/ }, pool: sticky, affinity: { key: 'header:x-session' } }\n  - { name: web, pool: web }\n`;
  const box = await serveCli(body(`'${a!.id}'`), 2, cleanups);
  const load = steadyLoad(box.url, { loops: 6, everyMs: 10, next: nextRequest });
  await until(() => load.ok >= 200);
  writeFileSync(box.file, box.head + body(`'${a!.id}', '${b!.id}'`));
  const r = await httpRequest(`${box.adminUrl}/api/v1/reload`, { method: 'POST', timeout: 60_000 });
  assert.equal(r.status, 200, r.text);
  const answer = JSON.parse(r.text) as { generation: number; hash: string; workers: { pid: number; generation: number; hash: string }[] };
  assert.equal(answer.generation, 2);
  assert.equal(answer.workers.length, 2);
  for (const w of answer.workers) assert.deepEqual([w.generation, w.hash], [2, answer.hash], `worker ${w.pid}`);
  const status = (await box.status())!;
  assert.equal(status.config!.generation, 2);
  assert.deepEqual(
    status.workers!.map((w) => [w.ready, w.generation, w.hash]),
    [
      [true, 2, answer.hash],
      [true, 2, answer.hash],
    ],
  );
  // The new member serves.
  await until(() => b!.requests >= 20);
  const mark = load.ok;
  await until(() => load.ok >= mark + 200);
  await load.stop();
  assert.deepEqual(load.failures.slice(0, 5), [], `${load.failures.length} of ${load.ok + load.failures.length} requests failed`);
});
