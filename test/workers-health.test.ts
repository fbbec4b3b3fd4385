/**
 * With node:cluster workers, discovery and health run once on the box (in the primary) and the
 * workers follow it. These tests run the built CLI (`npm run build` first, as `npm test` does).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { echo, httpRequest, startBackend, startRawBackend, until, type Backend } from './support/backends.js';
import { serveCli, type Served } from './support/serve.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const serve = (body: string, workers: number): Promise<Served> => serveCli(body, workers, cleanups);

/** Which member answered a request on a fresh connection (cluster workers take connections in turn). */
async function memberOf(url: string): Promise<string> {
  const r = await httpRequest(`${url}/x`);
  return r.status === 200 ? (JSON.parse(r.text) as { member: string }).member : `HTTP ${r.status}`;
}

async function members(url: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await memberOf(url));
  return out;
}

async function isUp(s: Served, id: string): Promise<boolean | undefined> {
  return (await s.status())?.pools[0]?.members.find((m) => m.id === id)?.up;
}

/** A backend whose /health answers 500 while `sick()`; `checks` counts health checks. */
async function checked(name: string, sick: () => boolean = () => false): Promise<Backend & { checks: number }> {
  const b = Object.assign(
    await startBackend(name, (req, res, body, be) => {
      if (req.url !== '/health') return echo(req, res, body, be);
      b.checks++;
      res.writeHead(sick() ? 500 : 200).end();
    }),
    { checks: 0 },
  );
  cleanups.push(() => b.close());
  return b;
}

test('workers: 2 — active checks run once on the box: a member gets as many checks per interval as with workers: 1', async () => {
  const alone = await checked('alone');
  const boxed = await checked('boxed');
  const config = (b: Backend): string => `
pools: { p: { members: ['${b.id}'], health: { active: { path: /health, interval: 100ms, timeout: 1s, rise: 1, fall: 1 } } } }
routes: [ { name: r, pool: p } ]
`;
  await serve(config(alone), 1);
  await serve(config(boxed), 2);
  await until(() => alone.checks >= 2 && boxed.checks >= 2, 10000, 5);
  // The same span for both: until the workers: 1 process has made 15 more checks (~1.5 s).
  const from = [alone.checks, boxed.checks];
  const t0 = performance.now();
  await until(() => alone.checks >= from[0]! + 15, 20000, 5);
  const span = performance.now() - t0;
  const one = alone.checks - from[0]!;
  const two = boxed.checks - from[1]!;
  // One checker starts at most one check of a member per interval (setInterval never catches
  // up), plus the rounds in progress at either end of the span; three checkers make ~3 per interval.
  assert.ok(two <= span / 100 + 3, `${two} checks in ${Math.round(span)} ms with workers: 2: more than one checker`);
  assert.ok(two <= 2 * one + 2, `${two} checks with workers: 2 against ${one} with workers: 1 in the same ${Math.round(span)} ms`);
});

test('workers: 2 — a member the primary finds down is avoided by every worker, a replacing worker included; the box decides once', async () => {
  let sick = false;
  const a = await checked('a');
  const b = await checked('b', () => sick);
  const box = await serve(
    `
pools:
  p:
    members: ['${a.id}', '${b.id}']
    health: { active: { path: /health, interval: 100ms, timeout: 1s, rise: 1, fall: 3 } }
routes: [ { name: r, pool: p } ]
`,
    2,
  );
  assert.deepEqual(new Set(await members(box.url, 8)), new Set(['a', 'b']), box.stderr());
  sick = true;
  await until(async () => (await isUp(box, b.id)) === false, 10000, 20);
  // The primary's verdict reaches both workers (connections alternate between them).
  await until(async () => (await members(box.url, 20)).every((m) => m === 'a'), 5000, 20);

  // A worker that dies is replaced; the new one has the box's state before it serves.
  const victim = (await box.status())!.workers![0]!.pid;
  process.kill(victim, 'SIGKILL');
  await until(async () => {
    const ws = (await box.status())?.workers ?? [];
    return ws.length === 2 && ws.every((w) => w.ready && w.pid !== victim);
  }, 15000, 5);
  assert.deepEqual(await members(box.url, 20), Array(20).fill('a'), 'the replacing worker routed to a member the box knows is down');

  const downs = box.logs().filter((l) => l.msg === 'member down' && l.member === b.id);
  assert.equal(downs.length, 1, `one decision per box, not one per process:\n${JSON.stringify(downs)}`);

  sick = false;
  await until(async () => new Set(await members(box.url, 8)).size === 2, 10000, 20);
});

test('workers: 2 — failures seen by the workers reach the primary, which ejects the member for every worker', async () => {
  const a = await startBackend('a');
  cleanups.push(() => a.close());
  // Accepts and resets every connection: each request to it fails.
  const b = await startRawBackend((socket) => socket.destroy());
  cleanups.push(() => b.close());
  const box = await serve(
    `
pools:
  p:
    members: ['${a.id}', '${b.id}']
    health: { passive: { failures: 2, ejectFor: 1m } }
routes: [ { name: r, pool: p } ]
`,
    2,
  );
  await until(async () => {
    await memberOf(box.url);
    return (await isUp(box, b.id)) === false;
  }, 15000, 0);
  // Ejected in every worker: requests on both stop reaching it.
  await until(async () => {
    const before = b.connections;
    return (await members(box.url, 20)).every((m) => m === 'a') && b.connections === before;
  }, 5000, 20);
});
