import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, request } from 'undici';
import { startTestHoming, until } from './support/backends.js';
import { statefulCluster, type StatefulCluster } from './support/stateful.js';
import { freePort, respCommandLine, startRedis, type RedisService } from './support/services.js';

/** redis-server again on a given port (the shared tier must find it there by itself). */
async function restartRedisOn(port: number): Promise<{ stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'homing-redis-again-'));
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await until(async () => (await respCommandLine(port, 'PING').catch(() => '')) === '+PONG', 10000, 50);
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        if (p.exitCode !== null) return resolve();
        p.once('exit', () => resolve());
        p.kill('SIGTERM');
      }),
  };
}

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function yaml(c: StatefulCluster, port: number | string, extra = ''): string {
  return `
listen: { http: 127.0.0.1:${port} }
log: { level: warn }
${extra}
pools: { eve: { members: [${c.backends.map((b) => `'${b.id}'`).join(', ')}] } }
routes:
  - name: crest
    pool: eve
    affinity:
      key: header:authorization
      redirect: { header: X-Accel-Redirect, prefix: /internal_redirect/, maxHops: 2 }
    balance: random
`;
}

async function send(base: string, token: string): Promise<{ status: number; member: string }> {
  const r = await request(`${base}/x`, { headers: { authorization: token } });
  const text = await r.body.text();
  return { status: r.statusCode, member: r.statusCode === 200 ? JSON.parse(text).member : text };
}

function pinAll(c: StatefulCluster, tokens: string[]): void {
  tokens.forEach((t, i) => c.sessions.set(t, c.backends[i % c.backends.length]!.id));
}

test('workers: 2 — a key learned in one worker reaches the other: at most one redirect per token per box', async () => {
  const c = await statefulCluster(3);
  cleanups.push(() => c.close());
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'homing-aff-workers-'));
  const adminPort = await freePort();
  writeFileSync(join(dir, 'h.yaml'), yaml(c, port, `workers: 2\nadmin: 127.0.0.1:${adminPort}`));
  const workers = async (): Promise<{ pid: number; ready: boolean }[]> => {
    try {
      return ((await (await request(`http://127.0.0.1:${adminPort}/status`)).body.json()) as { workers: { pid: number; ready: boolean }[] }).workers;
    } catch {
      return [];
    }
  };
  const proc = spawn(process.execPath, ['dist/cli/main.js', 'serve', '-c', join(dir, 'h.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  cleanups.push(() => void proc.kill('SIGTERM'));
  const base = `http://127.0.0.1:${port}`;
  await until(async () => (await send(base, 'Bearer warmup').catch(() => ({ status: 0 }))).status === 200, 15000, 100);
  const tokens = Array.from({ length: 24 }, (_, i) => `Bearer w-${i}`);
  pinAll(c, tokens);
  for (let round = 0; round < 6; round++) {
    for (const t of tokens) {
      const r = await send(base, t);
      assert.equal(r.status, 200, err);
      assert.equal(r.member, c.sessions.get(t));
    }
  }
  const total = [...c.redirects.values()].reduce((s, n) => s + n, 0);
  assert.ok(total > 0, 'no redirect exercised');
  for (const t of tokens) assert.ok((c.redirects.get(t) ?? 0) <= 1, `${t}: ${c.redirects.get(t)} redirects on one box`);

  // A worker that dies is replaced with an empty table: it asks the primary (which mirrors what
  // every worker learned) instead of guessing, so the box still pays no second redirect.
  const [victim] = await workers();
  process.kill(victim!.pid, 'SIGKILL');
  await until(async () => {
    const ws = await workers();
    return ws.length === 2 && ws.every((w) => w.ready && w.pid !== victim!.pid);
  }, 15000, 100);
  const conns = Array.from({ length: 4 }, () => new Client(base, { pipelining: 1 }));
  cleanups.push(async () => {
    await Promise.all(conns.map((x) => x.close()));
  });
  for (const t of tokens) {
    for (const conn of conns) {
      const r = await conn.request({ path: '/x', method: 'GET', headers: { authorization: t } });
      const body = JSON.parse(await r.body.text()) as { member: string };
      assert.equal(body.member, c.sessions.get(t));
    }
  }
  for (const t of tokens) assert.ok((c.redirects.get(t) ?? 0) <= 1, `${t}: ${c.redirects.get(t)} redirects after a worker was replaced`);
});

test('two instances + Redis: at most one redirect per token across both; Redis down → no failures; back → sharing resumes', async () => {
  const c = await statefulCluster(3);
  cleanups.push(() => c.close());
  const redis: RedisService = await startRedis();
  cleanups.push(() => redis.stop());
  const shared = `shared: { redis: { url: '${redis.url}' } }`;
  const h1 = await startTestHoming(yaml(c, 0, shared));
  const h2 = await startTestHoming(yaml(c, 0, shared));
  cleanups.push(() => h1.close());
  cleanups.push(() => h2.close());
  const tokens = Array.from({ length: 20 }, (_, i) => `Bearer r-${i}`);
  pinAll(c, tokens);
  for (let round = 0; round < 6; round++) {
    for (const t of tokens) {
      const r = await send(round % 2 ? h2.url : h1.url, t);
      assert.equal(r.status, 200);
      assert.equal(r.member, c.sessions.get(t));
    }
  }
  assert.ok([...c.redirects.values()].reduce((s, n) => s + n, 0) > 0, 'no redirect exercised');
  for (const t of tokens) assert.ok((c.redirects.get(t) ?? 0) <= 1, `${t}: ${c.redirects.get(t)} redirects across two instances`);

  // Redis goes away: every request still succeeds (local tables, guesses and redirects).
  const port = redis.port;
  await redis.stop();
  const down = Array.from({ length: 10 }, (_, i) => `Bearer d-${i}`);
  pinAll(c, down);
  const t0 = Date.now();
  for (let round = 0; round < 4; round++) {
    for (const t of [...tokens.slice(0, 5), ...down]) {
      const r = await send(round % 2 ? h2.url : h1.url, t);
      assert.equal(r.status, 200);
      assert.equal(r.member, c.sessions.get(t));
    }
  }
  assert.ok(Date.now() - t0 < 20_000, 'requests slowed to a crawl while Redis was down');

  // Redis is back on the same port: sharing resumes by itself.
  const again = await restartRedisOn(port);
  cleanups.push(() => again.stop());
  const back = Array.from({ length: 10 }, (_, i) => `Bearer b-${i}`);
  pinAll(c, back);
  await until(async () => {
    // Learn on h1, then h2 must answer from Redis without a second redirect.
    const probe = `Bearer probe-${Date.now()}`;
    c.sessions.set(probe, c.backends[0]!.id);
    await send(h1.url, probe);
    const before = c.redirects.get(probe) ?? 0;
    await new Promise((r) => setTimeout(r, 20));
    await send(h2.url, probe);
    return (c.redirects.get(probe) ?? 0) === before;
  }, 15000, 200);
  for (const t of back) await send(h1.url, t);
  await new Promise((r) => setTimeout(r, 50));
  for (const t of back) {
    const before = c.redirects.get(t) ?? 0;
    const r = await send(h2.url, t);
    assert.equal(r.member, c.sessions.get(t));
    assert.equal(c.redirects.get(t) ?? 0, before, `${t}: h2 redirected again after Redis came back`);
  }
});
