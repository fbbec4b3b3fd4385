/**
 * Rolling restart of workers on a real `homing serve` (the built CLI) under steady load: one
 * worker at a time, each replaced only once its successor serves; not one request fails.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { httpRequest, startBackend, until } from './support/backends.js';
import { serveCli } from './support/serve.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const pids = async (adminUrl: string): Promise<number[]> =>
  ((JSON.parse((await httpRequest(`${adminUrl}/status`)).text) as { workers?: { pid: number; ready: boolean }[] }).workers ?? []).filter((w) => w.ready).map((w) => w.pid).sort();

for (const how of ['POST /api/v1/restart-workers', 'SIGUSR2']) {
  test(`rolling restart of 2 workers (${how}) under steady GET and POST load: every worker replaced, 0 failed requests`, async () => {
    const b = await startBackend('a');
    cleanups.push(() => b.close());
    const box = await serveCli(`pools: { p: { members: ['${b.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`, 2, cleanups);
    const before = await pids(box.adminUrl);
    assert.equal(before.length, 2);
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const loop = async (i: number): Promise<void> => {
      while (!stop) {
        const post = i % 2 === 1;
        try {
          const r = await httpRequest(`${box.url}/load/${i}`, post ? { method: 'POST', body: 'x'.repeat(2000) } : {});
          if (r.status === 200) ok++;
          else failures.push(`${r.status} ${r.text}`);
        } catch (e) {
          failures.push(String(e));
        }
      }
    };
    const loops = Array.from({ length: 6 }, (_, i) => loop(i));
    await until(() => ok >= 100);
    if (how === 'SIGUSR2') {
      box.proc.kill('SIGUSR2');
      await until(async () => {
        const now = await pids(box.adminUrl);
        return now.length === 2 && now.every((p) => !before.includes(p));
      });
    } else {
      const r = await httpRequest(`${box.adminUrl}/api/v1/restart-workers`, { method: 'POST', timeout: 60_000 });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(JSON.parse(r.text), { restarted: 2, failed: false });
    }
    const after = await pids(box.adminUrl);
    assert.equal(after.length, 2);
    for (const p of after) assert.ok(!before.includes(p), `worker ${p} was not replaced`);
    const mark = ok;
    await until(() => ok >= mark + 100);
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${ok + failures.length} requests failed`);
  });
}
