/**
 * The instance tier of learned affinity against a real redis-server on loopback: two
 * SharedAffinityStores (two homing instances) on one Redis; Redis stopped, hung and restarted
 * on the same port mid-test.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { Redis } from 'ioredis';
import { freePort, freePorts, respCommandLine } from './support/services.js';
import { AffinityMetrics, createAffinityStore, type AffinityTableStore, type SharedAffinityStore } from '../src/routing/affinity/index.js';
import { createSharedRedis, SharedRedis, type SharedConfig } from '../src/state/redis.js';
import { parseConfig } from '../src/config/load.js';

const A = '127.0.0.1:9101';
const B = '127.0.0.1:9102';
const C = '127.0.0.1:9103';

/**
 * redis-server on a given port (so a restart reuses it), no persistence, its own temp dir.
 * `extra` adds arguments (cluster mode); `sentinelOf` makes it a Sentinel watching that port.
 */
class RedisProcess {
  private child: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), 'homing-redis-'));
  constructor(
    readonly port: number,
    private readonly opts: { extra?: string[]; sentinelOf?: number } = {},
  ) {}

  async start(): Promise<void> {
    let args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--logfile', '', ...(this.opts.extra ?? [])];
    if (this.opts.sentinelOf !== undefined) {
      const conf = join(this.dir, 'sentinel.conf');
      writeFileSync(conf, `port ${this.port}\nbind 127.0.0.1\ndir ${this.dir}\nsentinel monitor main 127.0.0.1 ${this.opts.sentinelOf} 1\n`);
      args = [conf, '--sentinel'];
    }
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    this.child = child;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
      try {
        if ((await respCommandLine(this.port, 'PING', '127.0.0.1', 500)) === '+PONG') return;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error('redis-server did not answer PING');
      await sleep(25);
    }
  }

  signal(sig: NodeJS.Signals): void {
    this.child?.kill(sig);
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGCONT');
    c.kill('SIGKILL');
    await gone;
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `cond` until it holds or `ms` passes (never a blind sleep). */
async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** A homing instance's share of the test: its Redis clients, metrics, log lines and one store. */
class Instance {
  readonly registry = new Registry();
  readonly metrics = AffinityMetrics.of(this.registry);
  readonly lines: { level: number; msg: string }[] = [];
  readonly log: Logger;
  readonly redis: SharedRedis;
  readonly store: SharedAffinityStore;

  constructor(redis: string | SharedConfig['redis'], route = 'sessions') {
    this.log = pino({ level: 'info' }, { write: (s: string) => void this.lines.push(JSON.parse(s) as { level: number; msg: string }) });
    this.redis = new SharedRedis({ redis: typeof redis === 'string' ? { url: redis } : redis, prefix: 'homing:' }, { log: this.log, observer: this.metrics.redis });
    this.store = createAffinityStore({ route, ttl: 60_000, capacity: 1000, redis: this.redis, metrics: this.metrics, log: this.log }) as SharedAffinityStore;
  }

  warnings(match: RegExp): number {
    return this.lines.filter((l) => l.level === 40 && match.test(l.msg)).length;
  }

  async gauge(name: string): Promise<number | undefined> {
    const m = await this.registry.getSingleMetric(name)!.get();
    return m.values[0]?.value;
  }

  async errors(): Promise<number> {
    const m = await this.registry.getSingleMetric('homing_shared_redis_errors_total')!.get();
    return m.values.reduce((n, v) => n + v.value, 0);
  }

  async close(): Promise<void> {
    await this.store.close();
    await this.redis.close();
  }
}

/** Resolve a store answer that may or may not be a promise. */
async function owner(store: AffinityTableStore, key: string): Promise<string | undefined> {
  return await store.get(key);
}

describe('SharedAffinityStore on a real redis-server', () => {
  let server: RedisProcess;
  let url: string;
  let one: Instance;
  let two: Instance;
  let probe: Redis;

  before(async () => {
    server = new RedisProcess(await freePort());
    await server.start();
    url = `redis://127.0.0.1:${server.port}`;
    one = new Instance(url);
    two = new Instance(url);
    probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    probe.on('error', () => {});
    await waitFor(() => one.redis.up && two.redis.up, 'both instances connected');
  });

  after(async () => {
    await one?.close();
    await two?.close();
    probe?.disconnect();
    await server?.destroy();
  });

  test('a key learned by one instance is read through by the other, then answered locally', async () => {
    one.store.set('tok-1', A);
    await waitFor(async () => (await probe.get('homing:aff:sessions:tok-1')) === A, 'the SET in Redis');
    const ttl = await probe.pttl('homing:aff:sessions:tok-1');
    assert.ok(ttl > 55_000 && ttl <= 60_000, `PX is the route ttl, got ${ttl}`);
    const first = two.store.get('tok-1');
    assert.ok(first instanceof Promise, 'a local miss with Redis up reads through (a promise)');
    assert.equal(await first, A);
    assert.equal(two.store.get('tok-1'), A, 'then a synchronous local hit');
    // Within a few ms of rounding: PTTL is whole ms, the local clock is fractional.
    assert.ok(two.store.table.remainingTtl('tok-1') <= ttl + 5, 'the near-cache entry expires no later than Redis');
    assert.equal(await owner(two.store, 'unknown'), undefined);
  });

  test('shared.commandTimeout is the deadline of every command (250ms when absent)', async () => {
    const config = (extra: string) =>
      parseConfig(`listen: { http: 127.0.0.1:0 }\npools: { p: { members: [${A}] } }\nroutes: [ { name: r, pool: p } ]\nshared: { redis: { url: '${url}' }${extra} }\n`).shared;
    for (const [extra, ms] of [['', 250], [', commandTimeout: 3s', 3000]] as const) {
      const r = createSharedRedis(config(extra), { log: one.log })!;
      try {
        assert.equal((r.client as Redis).options.commandTimeout, ms);
      } finally {
        await r.close();
      }
    }
  });

  test('a reply that arrived while this process was busy past the read deadline still counts', async () => {
    one.store.set('tok-busy', A);
    await waitFor(async () => (await probe.get('homing:aff:sessions:tok-busy')) === A, 'the SET in Redis');
    // The command deadline far away: only read()'s own deadline is at stake.
    const r = new SharedRedis({ redis: { url }, prefix: 'homing:' }, { log: one.log, commandTimeout: 60_000 });
    try {
      await waitFor(() => r.up, 'the reader connected');
      const me = `addr=127.0.0.1:${(r.client as Redis).stream.localPort} `;
      // From the check phase, so the event loop's next step is its timers, then reading sockets
      // (as after a burst of requests handled in one turn).
      await new Promise((resolve) => setImmediate(resolve));
      const t0 = performance.now();
      const read = r.read('homing:aff:sessions:tok-busy', 5);
      // Busy, without yielding, past the deadline and until Redis has executed GET and PTTL and
      // written both replies (nothing left in its output buffers for this connection).
      for (;;) {
        const list = execFileSync('redis-cli', ['-p', String(server.port), 'CLIENT', 'LIST'], { encoding: 'utf8' });
        const line = list.split('\n').find((l) => l.includes(me)) ?? '';
        if (/ cmd=pttl /.test(line) && / obl=0 /.test(line) && / oll=0 /.test(line) && performance.now() - t0 > 20) break;
      }
      assert.equal((await read)?.value, A);
    } finally {
      await r.close();
    }
  });

  test('concurrent misses of one key share one Redis read', async () => {
    one.store.set('tok-many', B);
    await waitFor(async () => (await probe.get('homing:aff:sessions:tok-many')) === B, 'the SET in Redis');
    const answers = Array.from({ length: 20 }, () => two.store.get('tok-many'));
    assert.ok(answers[0] instanceof Promise);
    for (const a of answers) assert.equal(a, answers[0], 'the same promise');
    assert.equal(await answers[0], B);
    const text = await two.registry.metrics();
    assert.match(text, /homing_affinity_shared_reads_total\{route="sessions",result="hit"\} 2[0-9]/);
  });

  test('a delete in one instance drops the key from the other\'s near-cache (pub/sub) and from Redis', async () => {
    one.store.set('tok-del', A);
    await waitFor(async () => (await owner(two.store, 'tok-del')) === A, 'the other instance to learn it');
    assert.equal(two.store.peek('tok-del'), A);
    one.store.delete('tok-del');
    await waitFor(() => two.store.peek('tok-del') === undefined, 'the near-cache invalidation');
    assert.equal(await probe.exists('homing:aff:sessions:tok-del'), 0);
    assert.equal(await owner(two.store, 'tok-del'), undefined);
  });

  test('an owner that moves is updated in the other near-caches', async () => {
    one.store.set('tok-move', A);
    await waitFor(async () => (await owner(two.store, 'tok-move')) === A, 'the other instance to learn it');
    one.store.set('tok-move', B);
    await waitFor(() => two.store.peek('tok-move') === B, 'the move to reach the other instance');
  });

  test('a dropped owner leaves every near-cache, and Redis entries written before the drop are not read back', async () => {
    one.store.set('tok-d1', C);
    one.store.set('tok-d2', C);
    one.store.set('tok-keep', A);
    await waitFor(async () => (await owner(two.store, 'tok-d1')) === C, 'the other instance to learn tok-d1');
    // A member's entries are learned well before it fails; keep the two apart in time.
    await sleep(50);
    assert.equal(one.store.dropOwner(C), 2);
    await waitFor(() => two.store.peek('tok-d1') === undefined, 'the drop to reach the other instance');
    // tok-d2 is still in Redis (no reverse index there), but was written before the drop.
    assert.equal(await probe.get('homing:aff:sessions:tok-d2'), C);
    assert.equal(await owner(two.store, 'tok-d2'), undefined);
    await waitFor(async () => (await probe.exists('homing:aff:sessions:tok-d2')) === 0, 'the stale entry to be deleted from Redis');
    assert.equal(await owner(two.store, 'tok-keep'), A, 'other owners are untouched');
    one.store.set('tok-d3', C);
    await waitFor(async () => (await owner(two.store, 'tok-d3')) === C, 'an entry naming C written after the drop is shared again');
  });

  test('Redis hung (SIGSTOP): look-ups answer within the read timeout, then the circuit skips Redis', async () => {
    server.signal('SIGSTOP');
    try {
      const t0 = performance.now();
      const answers = [];
      for (let i = 0; i < 5; i++) answers.push(await owner(two.store, `hung-${i}`));
      const ms = performance.now() - t0;
      assert.deepEqual(answers, [undefined, undefined, undefined, undefined, undefined]);
      assert.ok(ms < 1000, `5 misses against a hung Redis took ${ms.toFixed(0)} ms`);
      await waitFor(() => !two.redis.up, 'the circuit to open');
      assert.equal(two.store.get('hung-x'), undefined, 'synchronous while the circuit is open');
      assert.equal(await two.gauge('homing_shared_redis_up'), 0);
      assert.equal(two.warnings(/unavailable/), 1);
    } finally {
      server.signal('SIGCONT');
    }
    await waitFor(() => two.redis.up, 'the circuit to close again after Redis resumes');
    assert.equal(two.warnings(/reachable again/), 1);
  });

  test('Redis stopped: get/set keep working locally, never throw or hang; restarted: sharing resumes by itself', async () => {
    const errorsBefore = await one.errors();
    const downWarnings = one.warnings(/unavailable/);
    await server.stop();
    await waitFor(() => !one.redis.up && !two.redis.up, 'both instances to see Redis down');
    assert.equal(await one.gauge('homing_shared_redis_up'), 0);

    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) {
      one.store.set(`down-${i}`, A);
      const got = one.store.get(`down-${i}`);
      assert.equal(got, A, 'local answers, synchronously');
      assert.equal(two.store.get(`down-${i}`), undefined, 'a miss is synchronous too while Redis is down');
    }
    one.store.delete('tok-1');
    const ms = performance.now() - t0;
    assert.ok(ms < 500, `3000 operations with Redis down took ${ms.toFixed(0)} ms`);
    assert.equal(one.store.pending, 1001, 'writes and deletes made while Redis was down wait in the backlog');

    // Several reconnection attempts fail meanwhile: counted, but one warning per transition.
    await waitFor(async () => (await one.errors()) >= errorsBefore + 3, 'connection errors to be counted');
    assert.equal(one.warnings(/unavailable/), downWarnings + 1, 'one warning for the outage, not one per attempt');

    await server.start();
    await waitFor(() => one.redis.up && two.redis.up, 'both instances to reconnect by themselves');
    assert.equal(await one.gauge('homing_shared_redis_up'), 1);
    assert.ok(one.warnings(/reachable again/) >= 1);

    // Learned during the outage, written when Redis came back.
    await waitFor(() => one.store.pending === 0, 'the backlog to drain');
    assert.equal(await owner(two.store, 'down-7'), A);
    assert.equal(await probe.exists('homing:aff:sessions:tok-1'), 0, 'a delete made during the outage reached Redis too');
    // New learning is shared again, and pub/sub works again (re-subscribed).
    one.store.set('after', B);
    await waitFor(async () => (await owner(two.store, 'after')) === B, 'a new key to be shared');
    one.store.delete('after');
    await waitFor(() => two.store.peek('after') === undefined, 'invalidations to flow again');
  });
});

describe('SharedAffinityStore over Sentinel and over Cluster', () => {
  const servers: RedisProcess[] = [];
  const instances: Instance[] = [];

  after(async () => {
    for (const i of instances) await i.close();
    for (const s of servers) await s.destroy();
  });

  async function sharesBetweenTwo(make: () => Instance): Promise<void> {
    const one = make();
    const two = make();
    instances.push(one, two);
    await waitFor(() => one.redis.up && two.redis.up, 'both instances connected');
    // The subscriber connection comes up on its own schedule: wait until an invalidation gets through.
    let n = 0;
    await waitFor(async () => {
      const k = `probe-${n++}`;
      one.store.set(k, A);
      if ((await owner(two.store, k)) !== A) return false;
      one.store.delete(k);
      await new Promise((r) => setTimeout(r, 100));
      return two.store.peek(k) === undefined;
    }, 'the subscriber to receive invalidations', 15_000);
    for (let i = 0; i < 20; i++) one.store.set(`tok-${i}`, A);
    await waitFor(async () => (await owner(two.store, 'tok-19')) === A, 'the last key to be readable');
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => owner(two.store, `tok-${i}`)));
    assert.deepEqual(got, Array.from({ length: 20 }, () => A), 'every key, whatever its slot');
    for (let i = 0; i < 20; i++) one.store.delete(`tok-${i}`);
    await waitFor(() => Array.from({ length: 20 }, (_, i) => two.store.peek(`tok-${i}`)).every((o) => o === undefined), 'every invalidation');
  }

  test('with { sentinels, name }: the master is found through Sentinel and state is shared', async () => {
    const [pm, ps] = await freePorts(2);
    const main = new RedisProcess(pm!);
    servers.push(main);
    await main.start();
    const sentinel = new RedisProcess(ps!, { sentinelOf: pm! });
    servers.push(sentinel);
    await sentinel.start();
    await sharesBetweenTwo(() => new Instance({ sentinels: [{ host: '127.0.0.1', port: ps! }], name: 'main' }));
  });

  test('with { cluster }: keys spread over three masters and state is shared', async () => {
    const ports = await freePorts(3);
    // Each node's cluster bus gets a port of its own: by default it is the client port + 10000,
    // which nothing reserved (a port another process may hold).
    const buses = await freePorts(3);
    for (const [i, p] of ports.entries()) {
      const node = new RedisProcess(p, { extra: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(buses[i])] });
      servers.push(node);
      await node.start();
    }
    await new Promise<void>((resolve, reject) =>
      execFile('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], (err) => (err ? reject(err) : resolve())),
    );
    await waitFor(() => clusterOk(ports[0]!), 'cluster_state:ok');
    await sharesBetweenTwo(() => new Instance({ cluster: ports.map((port) => ({ host: '127.0.0.1', port })) }));
  });
});

/** CLUSTER INFO says cluster_state:ok (a bulk reply: read it whole with a short-lived client). */
async function clusterOk(port: number): Promise<boolean> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => {});
  try {
    await c.connect();
    return String(await c.cluster('INFO')).includes('cluster_state:ok');
  } catch {
    return false;
  } finally {
    c.disconnect();
  }
}
