/**
 * Graceful shutdown of a real `homing serve` process (the built CLI) on SIGTERM: requests in
 * flight finish and their answers close the connection, `/readyz` turns 503 at once, new
 * connections are refused, the process exits 0; a second signal stops it at once.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Agent, request } from 'undici';
import { httpRequest, startBackend, until, type Backend } from './support/backends.js';
import { serveCli } from './support/serve.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A backend that holds /slow answers until `release()`. */
async function slowBackend(): Promise<Backend & { held: number; release(): void }> {
  let waiting: (() => void)[] = [];
  const b = Object.assign(
    await startBackend('a', (req, res, _body, be) => {
      const answer = (): void => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`from ${be.id}`);
      };
      if (!req.url!.startsWith('/slow')) return answer();
      b.held++;
      waiting.push(answer);
    }),
    {
      held: 0,
      release(): void {
        const w = waiting;
        waiting = [];
        for (const f of w) f();
      },
    },
  );
  cleanups.push(() => b.close());
  return b;
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

test('SIGTERM: requests in flight finish (their answers close the connection), readyz 503 at once, new connections refused, exit 0', async () => {
  const b = await slowBackend();
  const box = await serveCli(`shutdown: { timeout: 20s }\npools: { p: { members: ['${b.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`, 1, cleanups);
  const agent = new Agent({ connections: 8 });
  cleanups.push(() => agent.close());
  // An idle kept-alive connection, then five requests held by the backend.
  assert.equal((await request(`${box.url}/fast`, { dispatcher: agent })).statusCode, 200);
  const inflight = Array.from({ length: 5 }, (_, i) =>
    request(`${box.url}/slow/${i}`, { dispatcher: agent }).then(async (r) => ({ status: r.statusCode, connection: r.headers.connection, text: await r.body.text() })),
  );
  await until(() => b.held === 5);
  box.proc.kill('SIGTERM');
  await until(async () => (await httpRequest(`${box.adminUrl}/readyz`).catch(() => ({ status: 0 }))).status === 503);
  const port = Number(new URL(box.url).port);
  await until(() => refused(port));
  b.release();
  const rs = await Promise.all(inflight);
  for (const r of rs) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.connection, 'close', 'an answer during the drain closes its connection');
  }
  assert.deepEqual(await box.exited, { code: 0, signal: null });
});

test('a second SIGTERM stops at once, whatever is still in flight', async () => {
  const b = await slowBackend();
  const box = await serveCli(`shutdown: { timeout: 60s }\npools: { p: { members: ['${b.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`, 1, cleanups);
  const held = request(`${box.url}/slow/forever`).catch((e: Error) => e);
  await until(() => b.held === 1);
  box.proc.kill('SIGTERM');
  await until(async () => (await httpRequest(`${box.adminUrl}/readyz`).catch(() => ({ status: 0 }))).status === 503);
  const t0 = performance.now();
  box.proc.kill('SIGTERM');
  const end = await box.exited;
  assert.ok(performance.now() - t0 < 10_000, 'the second signal did not stop it at once');
  assert.equal(end.code, 1);
  await held;
});
