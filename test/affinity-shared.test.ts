import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, request } from 'undici';
import { startTestHoming, until, WAIT } from './support/backends.js';
import { pinAwayFromGuess, statefulCluster, type StatefulCluster } from './support/stateful.js';
import { freePort, respCommandLine, RespTestConnection, startRedis, type RedisService } from './support/services.js';

/** redis-server again on a given port (the shared tier must find it there by itself). */
async function restartRedisOn(port: number): Promise<{ stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'homing-redis-again-'));
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await until(async () => (await respCommandLine(port, 'PING').catch(() => '')) === '+PONG', WAIT, 50);
  return {
    stop: async () => {
      if (p.exitCode === null && p.signalCode === null) {
        const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
        p.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/**
 * One affinity route whose guess is the hash of the token: the same in every worker and instance,
 * so pinAwayFromGuess makes every token's first guess wrong and each token costs exactly one
 * redirect (a second one means a tier failed to share what the first learned). `missTimeout` (and
 * `shared.commandTimeout` below) is the test's deadline for the primary's or Redis's answer on a
 * local miss: wide, so a loaded box is not taken for a lost answer (it costs nothing when the
 * answer comes).
 */
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
      missTimeout: 5s
    hash: { key: 'header:authorization' }
`;
}

async function send(base: string, token: string): Promise<{ status: number; member: string }> {
  const r = await request(`${base}/x`, { headers: { authorization: token } });
  const text = await r.body.text();
  return { status: r.statusCode, member: r.statusCode === 200 ? JSON.parse(text).member : text };
}

/** Pin every token away from its guess, owners spread over the other members. */
async function pinAll(c: StatefulCluster, adminUrl: string, tokens: string[]): Promise<void> {
  for (const [i, t] of tokens.entries()) await pinAwayFromGuess(c, adminUrl, t, { nth: i });
}

function assertOneRedirectEach(c: StatefulCluster, tokens: string[], when: string): void {
  for (const t of tokens) assert.equal(c.redirects.get(t) ?? 0, 1, `${t}: ${c.redirects.get(t) ?? 0} redirects ${when}`);
}

test('workers: 2 — a key learned in one worker reaches the other: one redirect per token per box', async () => {
  const c = await statefulCluster(3);
  cleanups.push(() => c.close());
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'homing-aff-workers-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const adminPort = await freePort();
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  writeFileSync(join(dir, 'h.yaml'), yaml(c, port, `workers: 2\nadmin: 127.0.0.1:${adminPort}`));
  const workers = async (): Promise<{ pid: number; ready: boolean }[]> => {
    try {
      return ((await (await request(`${adminUrl}/status`)).body.json()) as { workers: { pid: number; ready: boolean }[] }).workers;
    } catch {
      return [];
    }
  };
  const proc = spawn(process.execPath, ['dist/cli/main.js', 'serve', '-c', join(dir, 'h.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await exited;
    }
  });
  const base = `http://127.0.0.1:${port}`;
  await until(async () => {
    const ws = await workers();
    return ws.length === 2 && ws.every((w) => w.ready);
  }, WAIT, 100);
  const tokens = Array.from({ length: 24 }, (_, i) => `Bearer w-${i}`);
  await pinAll(c, adminUrl, tokens);
  // Requests on several connections, so both workers see every token.
  const conns = Array.from({ length: 4 }, () => new Client(base, { pipelining: 1 }));
  cleanups.push(async () => {
    await Promise.all(conns.map((x) => x.close()));
  });
  const sendOn = async (conn: Client, t: string): Promise<string> => {
    const r = await conn.request({ path: '/x', method: 'GET', headers: { authorization: t } });
    const text = await r.body.text();
    assert.equal(r.statusCode, 200, `${text}\n${err}`);
    return (JSON.parse(text) as { member: string }).member;
  };
  for (let round = 0; round < 3; round++) {
    for (const t of tokens) {
      for (const conn of conns) assert.equal(await sendOn(conn, t), c.sessions.get(t));
    }
  }
  assertOneRedirectEach(c, tokens, 'on one box');

  // A worker that dies is replaced with an empty table: it asks the primary (which mirrors what
  // every worker learned) instead of guessing, so the box still pays no second redirect.
  const [victim] = await workers();
  process.kill(victim!.pid, 'SIGKILL');
  await until(async () => {
    const ws = await workers();
    return ws.length === 2 && ws.every((w) => w.ready && w.pid !== victim!.pid);
  }, WAIT, 100);
  // The victim's connections died with it; new ones reach both workers, the new one included.
  const fresh = Array.from({ length: 4 }, () => new Client(base, { pipelining: 1 }));
  cleanups.push(async () => {
    await Promise.all(fresh.map((x) => x.close()));
  });
  for (const t of tokens) {
    for (const conn of fresh) assert.equal(await sendOn(conn, t), c.sessions.get(t));
  }
  assertOneRedirectEach(c, tokens, 'after a worker was replaced');
});

test('two instances + Redis: one redirect per token across both; Redis down → no failures; back → sharing resumes', async () => {
  const c = await statefulCluster(3);
  cleanups.push(() => c.close());
  const redis: RedisService = await startRedis();
  cleanups.push(() => redis.stop());
  const shared = `shared: { redis: { url: '${redis.url}' }, commandTimeout: 5s }`;
  const h1 = await startTestHoming(yaml(c, 0, `${shared}\nadmin: 127.0.0.1:0`));
  const h2 = await startTestHoming(yaml(c, 0, shared));
  cleanups.push(() => h1.close());
  cleanups.push(() => h2.close());
  // Redis is never waited for by a request: wait here until both instances are connected.
  const bothUp = (): boolean => h1.runtime.sharedRedis!.up && h2.runtime.sharedRedis!.up;
  await until(bothUp);
  const tokens = Array.from({ length: 20 }, (_, i) => `Bearer r-${i}`);
  await pinAll(c, h1.adminUrl, tokens);
  for (let round = 0; round < 6; round++) {
    for (const t of tokens) {
      const r = await send(round % 2 ? h2.url : h1.url, t);
      assert.equal(r.status, 200);
      assert.equal(r.member, c.sessions.get(t));
    }
  }
  assertOneRedirectEach(c, tokens, 'across two instances');

  // Redis goes away: every request still succeeds (local tables, guesses and redirects).
  const port = redis.port;
  await redis.stop();
  const down = Array.from({ length: 10 }, (_, i) => `Bearer d-${i}`);
  await pinAll(c, h1.adminUrl, down);
  const t0 = Date.now();
  for (let round = 0; round < 4; round++) {
    for (const t of [...tokens.slice(0, 5), ...down]) {
      const r = await send(round % 2 ? h2.url : h1.url, t);
      assert.equal(r.status, 200);
      assert.equal(r.member, c.sessions.get(t));
    }
  }
  assert.ok(Date.now() - t0 < 20_000, 'requests slowed to a crawl while Redis was down');

  // Redis is back on the same port: both instances reconnect by themselves, and sharing resumes.
  const again = await restartRedisOn(port);
  cleanups.push(() => again.stop());
  await until(bothUp);
  const back = Array.from({ length: 10 }, (_, i) => `Bearer b-${i}`);
  await pinAll(c, h1.adminUrl, back);
  for (const t of back) assert.equal((await send(h1.url, t)).member, c.sessions.get(t));
  // h1's writes are fire and forget: wait until Redis holds each learned owner.
  const check = await RespTestConnection.connect(port);
  cleanups.push(() => check.close());
  for (const t of back) await until(async () => (await check.call('GET', `homing:aff:crest:${t}`)) === c.sessions.get(t));
  for (const t of back) {
    const r = await send(h2.url, t);
    assert.equal(r.member, c.sessions.get(t));
  }
  assertOneRedirectEach(c, back, 'after Redis came back (h2 must read what h1 learned)');
});
