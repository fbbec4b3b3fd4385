import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startBackend, until, WAIT } from './support/backends.js';
import { freePorts } from './support/services.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function ok(url: string): Promise<boolean> {
  try {
    const r = await request(url);
    await r.body.text();
    return r.statusCode === 200;
  } catch {
    return false;
  }
}

/** How many workers the primary on `adminPort` says serve. */
async function readyWorkers(adminPort: number): Promise<number> {
  try {
    const r = await request(`http://127.0.0.1:${adminPort}/status`);
    const s = (await r.body.json()) as { workers?: { ready: boolean }[] };
    return (s.workers ?? []).filter((w) => w.ready).length;
  } catch {
    return 0;
  }
}

/** A backend and `homing serve` with workers: 2 on it (a hash route), stopped after the tests. */
async function startBox(): Promise<{ port: number; adminPort: number; proc: ChildProcess; stderr: () => string }> {
  const b = await startBackend('b');
  cleanups.push(() => b.close());
  const [port, adminPort] = (await freePorts(2)) as [number, number];
  const dir = mkdtempSync(join(tmpdir(), 'homing-workers-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'homing.yaml');
  writeFileSync(
    file,
    `
listen: { http: 127.0.0.1:${port} }
admin: 127.0.0.1:${adminPort}
workers: 2
log: { level: warn }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: r, pool: p, hash: { key: path } } ]
`,
  );
  const proc: ChildProcess = spawn(process.execPath, ['dist/cli/main.js', 'serve', '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  cleanups.push(() => {
    proc.kill('SIGTERM');
  });
  return { port, adminPort, proc, stderr: () => stderr };
}

test('workers: 2 processes share the listener, metrics are aggregated, a dead worker is replaced', async () => {
  const { port, adminPort, proc, stderr } = await startBox();
  // Both workers serve, and the primary knows it (it sums only the workers that said so).
  await until(async () => (await readyWorkers(adminPort)) === 2 && ok(`http://127.0.0.1:${port}/`), WAIT, 100);
  for (let i = 0; i < 40; i++) assert.ok(await ok(`http://127.0.0.1:${port}/k${i}`));
  const metrics = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
  const total = [...metrics.matchAll(/^homing_requests_total\{[^}]*\} (\d+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
  assert.ok(total >= 41, `aggregated metrics count ${total} requests:\n${metrics.slice(0, 500)}`);
  const [first] = children(proc.pid!);
  process.kill(first!, 'SIGKILL');
  await until(() => {
    const now = children(proc.pid!);
    return now.length === 2 && !now.includes(first!);
  }, WAIT, 100);
  await until(() => ok(`http://127.0.0.1:${port}/after`), WAIT, 50);
  for (let i = 0; i < 10; i++) assert.ok(await ok(`http://127.0.0.1:${port}/again${i}`), stderr());
});

test('workers: 2 — /metrics scraped while the workers start answers 200 every time (a starting worker is not asked)', async () => {
  const { port, adminPort, stderr } = await startBox();
  const admin = `http://127.0.0.1:${adminPort}`;
  /** The status of a scrape, or undefined while the admin does not listen yet. */
  const scrape = async (): Promise<{ status: number; body: string } | undefined> => {
    try {
      const r = await request(`${admin}/metrics`);
      return { status: r.statusCode, body: await r.body.text() };
    } catch {
      return undefined;
    }
  };
  // From the admin's first answer until both workers serve, and a little after: scrape in a loop.
  let scrapes = 0;
  const end = Date.now() + WAIT;
  for (let after = 0; after < 5; ) {
    assert.ok(Date.now() < end, `the workers did not both serve within ${WAIT} ms:\n${stderr()}`);
    const s = await scrape();
    if (s === undefined) {
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    scrapes++;
    assert.equal(s.status, 200, `scrape ${scrapes}: ${s.body}\n${stderr()}`);
    if ((await readyWorkers(adminPort)) === 2) after++;
  }
  assert.ok(scrapes >= 5);
  assert.ok(await ok(`http://127.0.0.1:${port}/x`));
  const s = await scrape();
  assert.match(s!.body, /^homing_requests_total\{[^}]*\} 1$/m);
});
