import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ManualClock } from '../src/clock.js';
import { ClusterBus, type AffinityReplica, type ClusterChannel } from '../src/state/cluster.js';
import { AffinityMetrics, AffinityTableStore, createAffinityStore, LocalAffinityTable, type ReplicaChannel, type ReplicaOp } from '../src/routing/affinity/index.js';

const log = pino({ level: 'silent' });
const A = '127.0.0.1:9101';
const B = '127.0.0.1:9102';
const C = '127.0.0.1:9103';

function table(opts: { ttl?: number; capacity?: number; clock?: ManualClock } = {}): LocalAffinityTable {
  return new LocalAffinityTable({ ttl: opts.ttl ?? 1000, capacity: opts.capacity ?? 100, clock: opts.clock ?? new ManualClock(0) });
}

describe('LocalAffinityTable', () => {
  test('get answers what set stored; delete forgets; unknown keys are undefined', () => {
    const t = table();
    assert.equal(t.get('tok'), undefined);
    t.set('tok', A);
    t.set('other', B);
    assert.equal(t.get('tok'), A);
    assert.equal(t.get('other'), B);
    assert.equal(t.size, 2);
    t.set('tok', C);
    assert.equal(t.get('tok'), C, 'set replaces the owner');
    assert.equal(t.size, 2);
    assert.equal(t.delete('tok'), true);
    assert.equal(t.delete('tok'), false);
    assert.equal(t.get('tok'), undefined);
    assert.equal(t.size, 1);
    t.verify();
  });

  test('keys of any length and characters, including empty and non-ASCII, are distinct', () => {
    const t = table();
    const keys = ['', 'a', 'ab', 'Bearer ' + 'x'.repeat(200), 'é', 'e\u0301', '\ud83d\ude00', 'a\u0000b', 'a\u0000c'];
    keys.forEach((k, i) => t.set(k, `127.0.0.1:${9000 + i}`));
    keys.forEach((k, i) => assert.equal(t.get(k), `127.0.0.1:${9000 + i}`, JSON.stringify(k)));
    t.verify();
  });

  test('an entry lives exactly ttl ms on the injected clock (no sleeping), a clock at 0 included', () => {
    const clock = new ManualClock(0);
    const t = table({ ttl: 1000, clock });
    t.set('tok', A);
    clock.advance(999);
    assert.equal(t.get('tok'), A);
    assert.equal(t.remainingTtl('tok'), 1);
    clock.advance(1);
    assert.equal(t.peek('tok'), undefined);
    assert.equal(t.has('tok'), false);
    assert.equal(t.size, 1, 'an expired entry stays counted until touched');
    assert.equal(t.get('tok'), undefined);
    assert.equal(t.size, 0, 'get removed the expired entry');
    t.verify();
  });

  test('expiry stays exact across months of uptime (32-bit expiries rebased) and long TTLs are capped', () => {
    const day = 86_400_000;
    const clock = new ManualClock(1234);
    const t = table({ ttl: 10 * day, capacity: 100, clock });
    t.set('kept', A);
    t.set('short', B, 5000);
    for (let d = 0; d < 80; d += 4) {
      clock.advance(4 * day);
      t.set('kept', A); // renewed every 4 days: never expires
      t.set(`day-${d}`, C);
    }
    t.set('late', A, 3000);
    clock.advance(2999);
    assert.equal(t.get('late'), A);
    assert.equal(t.remainingTtl('kept'), 10 * day - 2999);
    clock.advance(1);
    assert.equal(t.get('late'), undefined, 'expires at exactly its ttl after several rebases');
    assert.equal(t.get('short'), undefined);
    assert.equal(t.get('kept'), A);
    assert.equal(t.get('day-72'), C);
    assert.equal(t.get('day-64'), undefined, 'set 12 days ago with a 10-day ttl');
    const long = table({ ttl: 40 * day, clock });
    long.set('x', A);
    clock.advance(25 * day);
    assert.equal(long.get('x'), undefined, 'a 40-day ttl is capped at ~24.8 days');
    t.verify();
  });

  test('reads do not extend a lease; set and a per-entry ttl do', () => {
    const clock = new ManualClock(5);
    const t = table({ ttl: 1000, clock });
    t.set('read', A);
    t.set('short', A, 100);
    clock.advance(600);
    assert.equal(t.get('read'), A);
    assert.equal(t.get('short'), undefined, 'per-entry ttl of 100 ms');
    clock.advance(600);
    assert.equal(t.get('read'), undefined, 'reading at 600 ms did not renew it');
    t.set('renewed', A);
    clock.advance(900);
    t.set('renewed', A);
    clock.advance(900);
    assert.equal(t.get('renewed'), A);
  });

  test('learn reports added, unchanged, moved, and renews a lease only past half its life', () => {
    const clock = new ManualClock(0);
    const t = table({ ttl: 1000, clock });
    assert.equal(t.learn('tok', A), 'added');
    assert.equal(t.learn('tok', A), 'unchanged');
    clock.advance(400);
    assert.equal(t.learn('tok', A), 'unchanged', '600 ms left of 1000: no renewal');
    assert.equal(t.remainingTtl('tok'), 600);
    clock.advance(200);
    assert.equal(t.learn('tok', A), 'added', '400 ms left: renewed');
    assert.equal(t.remainingTtl('tok'), 1000);
    assert.equal(t.learn('tok', B), 'moved');
    assert.equal(t.get('tok'), B);
    clock.advance(1000);
    assert.equal(t.learn('tok', B), 'added', 'an expired entry is learned anew, not "unchanged"');
    assert.equal(t.get('tok'), B);
    t.verify();
  });

  test('at capacity the least recently used entry goes first; get counts as use, peek does not', () => {
    const t = table({ capacity: 3 });
    t.set('a', A);
    t.set('b', A);
    t.set('c', A);
    assert.equal(t.get('a'), A); // order now b, c, a
    assert.equal(t.peek('b'), A); // no effect on order
    t.set('d', B); // evicts b
    assert.equal(t.size, 3);
    assert.equal(t.peek('b'), undefined);
    assert.deepEqual([...t.entries()].map((e) => e[0]), ['c', 'a', 'd']);
    t.set('c', C); // an update is a use: order a, d, c
    t.set('e', B); // evicts a
    assert.deepEqual([...t.entries()].map((e) => e[0]), ['d', 'c', 'e']);
    t.verify();
  });

  test('dropOwner removes exactly that owner\'s keys and returns how many', () => {
    const t = table({ capacity: 1000 });
    for (let i = 0; i < 300; i++) t.set(`k${i}`, [A, B, C][i % 3]!);
    assert.equal(t.dropOwner(B), 100);
    assert.equal(t.dropOwner(B), 0);
    assert.equal(t.dropOwner('127.0.0.1:1'), 0);
    assert.equal(t.size, 200);
    for (let i = 0; i < 300; i++) assert.equal(t.get(`k${i}`), i % 3 === 1 ? undefined : [A, B, C][i % 3], `k${i}`);
    assert.equal(t.owners, 2);
    t.set('new', B);
    assert.deepEqual(t.keysOf(B), ['new'], 'a dropped owner can own keys again');
    t.verify();
  });

  test('the owner index stays exact through evictions, moves, expiry and deletes', () => {
    const clock = new ManualClock(0);
    const t = table({ capacity: 50, ttl: 1000, clock });
    const owners = [A, B, C];
    for (let i = 0; i < 500; i++) {
      t.set(`k${i % 120}`, owners[(i * 7) % 3]!);
      if (i % 11 === 0) t.delete(`k${(i * 5) % 120}`);
      if (i % 13 === 0) clock.advance(300);
      if (i % 17 === 0) t.get(`k${(i * 3) % 120}`);
    }
    t.verify();
    const byOwner = new Map<string, Set<string>>();
    for (const [k, o] of t.entries()) {
      let s = byOwner.get(o);
      if (!s) byOwner.set(o, (s = new Set()));
      s.add(k);
    }
    for (const o of owners) {
      const live = byOwner.get(o) ?? new Set();
      const indexed = new Set(t.keysOf(o).filter((k) => t.has(k)));
      assert.deepEqual(indexed, live, `reverse index of ${o}`);
    }
    const sizeBefore = t.size;
    const nB = t.keysOf(B).length;
    assert.equal(t.dropOwner(B), nB);
    assert.equal(t.size, sizeBefore - nB);
    for (const [, o] of t.entries()) assert.notEqual(o, B);
    t.verify();
  });

  test('matches a reference LRU+TTL model over random operations (index, lists, growth)', () => {
    // Short TTLs with frequent drops keep tables small; long TTLs with rare drops fill them past
    // the first slot and index doublings; many owners on a tiny table make evictions free owners.
    const configs = [
      { capacity: 8, keySpace: 20, ops: 3000, owners: 4, ttl: 500, drop: 0.02 },
      { capacity: 8, keySpace: 40, ops: 20_000, owners: 12, ttl: 1e9, drop: 0.002 },
      { capacity: 64, keySpace: 150, ops: 20_000, owners: 4, ttl: 500, drop: 0.02 },
      { capacity: 3000, keySpace: 6000, ops: 60_000, owners: 6, ttl: 1e9, drop: 0.0002 },
    ];
    for (const c of configs) {
      const clock = new ManualClock(0);
      const t = new LocalAffinityTable({ ttl: c.ttl, capacity: c.capacity, clock });
      const m = new ModelLru(c.capacity, c.ttl, clock);
      const rnd = lcg(c.capacity * 7919 + c.owners);
      const owners = Array.from({ length: c.owners }, (_, i) => `10.0.0.${i + 1}:1`);
      let largest = 0;
      for (let i = 0; i < c.ops; i++) {
        const k = `key-${Math.floor(rnd() * c.keySpace)}-${'x'.repeat(i % 3 === 0 ? 20 : 0)}`;
        const r = rnd();
        if (r < 0.45) {
          const o = owners[Math.floor(rnd() * owners.length)]!;
          t.set(k, o);
          m.set(k, o);
        } else if (r < 0.75) assert.equal(t.get(k), m.get(k), `get ${k} at op ${i}`);
        else if (r < 0.8) assert.equal(t.delete(k), m.delete(k), `delete ${k} at op ${i}`);
        else if (r < 0.8 + c.drop) {
          const o = owners[Math.floor(rnd() * owners.length)]!;
          assert.equal(t.dropOwner(o), m.dropOwner(o), `dropOwner at op ${i}`);
        } else if (r < 0.95) assert.equal(t.peek(k), m.peek(k), `peek ${k} at op ${i}`);
        else clock.advance(Math.floor(rnd() * 60));
        assert.equal(t.size, m.size, `size at op ${i}`);
        largest = Math.max(largest, t.size);
        if (i % 5000 === 0) t.verify();
      }
      if (c.capacity === 3000) assert.ok(largest > 2100, `the table filled past two slot doublings (largest ${largest})`);
      t.verify();
      assert.deepEqual(
        [...t.entries()].map(([k, o]) => [k, o]),
        m.live(),
        `contents and LRU order (${JSON.stringify(c)})`,
      );
      assert.equal(t.rejected, 0);
    }
  });

  test('purgeExpired removes expired entries and keeps the rest', () => {
    const clock = new ManualClock(0);
    const t = table({ ttl: 100, clock });
    t.set('old', A);
    clock.advance(60);
    t.set('young', B);
    clock.advance(50);
    assert.equal(t.purgeExpired(), 1);
    assert.equal(t.size, 1);
    assert.equal(t.get('young'), B);
    t.verify();
  });

  test('rejects an invalid ttl or capacity at construction, naming it', () => {
    assert.throws(() => new LocalAffinityTable({ ttl: 0, capacity: 1 }), /ttl/);
    assert.throws(() => new LocalAffinityTable({ ttl: 1000, capacity: 0 }), /capacity/);
    assert.throws(() => new LocalAffinityTable({ ttl: 1.5, capacity: 10 }), /ttl/);
  });
});

describe('AffinityTableStore (process and worker tiers)', () => {
  class RecordingChannel implements ReplicaChannel {
    readonly sent: [ReplicaOp, string, string | undefined][] = [];
    detached = false;
    publish(op: ReplicaOp, key: string, owner?: string): void {
      this.sent.push([op, key, owner]);
    }
    detach(): void {
      this.detached = true;
    }
  }

  test('get answers synchronously on a hit and on a miss (no promise without a shared tier)', () => {
    const store = createAffinityStore({ route: 'r', ttl: 1000, capacity: 10, log });
    store.set('tok', A);
    const hit = store.get('tok');
    const miss = store.get('nope');
    assert.equal(hit, A);
    assert.equal(miss, undefined);
    assert.equal(store.size, 1);
  });

  test("a route's missTimeout is its wait for the primary's answer (attach's queryTimeout)", async () => {
    class RecordingBus extends ClusterBus {
      readonly attached: [string, { queryTimeout?: number } | undefined][] = [];
      override attach(route: string, table: AffinityReplica, opts?: { queryTimeout?: number }): ClusterChannel {
        this.attached.push([route, opts]);
        return super.attach(route, table, opts);
      }
    }
    const bus = new RecordingBus();
    const stores = [
      createAffinityStore({ route: 'slow', ttl: 1000, capacity: 10, cluster: bus, log, missTimeout: 1500 }),
      createAffinityStore({ route: 'plain', ttl: 1000, capacity: 10, cluster: bus, log }),
    ];
    assert.deepEqual(bus.attached, [
      ['slow', { queryTimeout: 1500 }],
      ['plain', { queryTimeout: undefined }],
    ]);
    for (const s of stores) await s.close();
  });

  test('sibling workers hear of new, renewed, moved, deleted and dropped entries, not of repeats', async () => {
    const clock = new ManualClock(0);
    const ch = new RecordingChannel();
    const t = new LocalAffinityTable({ ttl: 1000, capacity: 10, clock });
    const store = new AffinityTableStore({ route: 'r', table: t, cluster: ch });
    store.set('tok', A);
    store.set('tok', A);
    store.set('tok', A);
    clock.advance(600);
    store.set('tok', A); // past half its life: renewed, told
    store.set('tok', B); // moved
    store.delete('tok');
    store.set('x', C);
    assert.equal(store.dropOwner(C), 1);
    assert.deepEqual(ch.sent, [
      ['set', 'tok', A],
      ['set', 'tok', A],
      ['set', 'tok', B],
      ['del', 'tok', undefined],
      ['set', 'x', C],
      ['drop', '', C],
    ]);
    await store.close();
    assert.equal(ch.detached, true);
  });
});

describe('AffinityMetrics', () => {
  test('hits, misses, redirects, hop histogram and entries reach the registry', async () => {
    const registry = new Registry();
    const metrics = AffinityMetrics.of(registry);
    assert.equal(AffinityMetrics.of(registry), metrics, 'one per registry');
    const route = { name: 'crest' };
    const store = createAffinityStore({ route: 'crest', ttl: 1000, capacity: 10, metrics, log });
    store.set('a', A);
    store.set('b', B);
    metrics.hit(route);
    metrics.hit(route);
    metrics.miss(route);
    // Request 1: one redirect; request 2: two (the proxy reports each hop with its rank).
    metrics.redirect(route, 1);
    metrics.redirect(route, 1);
    metrics.redirect(route, 2);
    const text = await registry.metrics();
    assert.match(text, /^homing_affinity_hits_total\{route="crest"\} 2$/m);
    assert.match(text, /^homing_affinity_misses_total\{route="crest"\} 1$/m);
    assert.match(text, /^homing_redirects_total\{route="crest"\} 3$/m);
    assert.match(text, /^homing_redirect_hops_bucket\{le="1",route="crest"\} 1$/m);
    assert.match(text, /^homing_redirect_hops_bucket\{le="2",route="crest"\} 2$/m);
    assert.match(text, /^homing_redirect_hops_bucket\{le="\+Inf",route="crest"\} 2$/m);
    assert.match(text, /^homing_redirect_hops_sum\{route="crest"\} 3$/m);
    assert.match(text, /^homing_redirect_hops_count\{route="crest"\} 2$/m);
    assert.match(text, /^homing_affinity_entries\{route="crest"\} 2$/m);
    assert.match(text, /^homing_shared_redis_up 0$/m);
    await store.close();
    assert.doesNotMatch(await registry.metrics(), /^homing_affinity_entries\{route="crest"\}/m, 'a closed store leaves the gauge');
  });
});

/** Run a node:cluster fixture (test/fixtures/<name>.ts); its last stdout line, parsed. */
async function runClusterFixture(name: string): Promise<{ r: Record<string, unknown>; line: string }> {
  const fixture = fileURLToPath(new URL(`./fixtures/${name}.ts`, import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(null);
    }, 60_000);
    child.on('exit', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  assert.equal(code, 0, `fixture exit code; stderr:\n${err}\nstdout:\n${out}`);
  const line = out.trim().split('\n').pop()!;
  return { r: JSON.parse(line) as Record<string, unknown>, line };
}

describe('ClusterBus (node:cluster workers)', () => {
  test('an entry learned, deleted or dropped in one worker reaches the other and the primary, batched', async () => {
    const { r, line } = await runClusterFixture('affinity-cluster');
    assert.equal(r.bSawSet, true, line);
    assert.equal(r.bSizeAfterSet, 501);
    assert.equal(r.primaryMirrorOk, true, 'the primary relays and keeps its own mirror');
    assert.ok((r.aSentMessages as number) <= 3, `501 ops in ${String(r.aSentMessages)} IPC messages: batched per tick`);
    assert.equal(r.bSawDelete, true);
    assert.equal(r.bSawDrop, true);
    assert.equal(r.bSizeAfterDrop, 250);
    assert.equal(r.primaryMirrorAfterDrop, 250);
  });

  test("a worker busy past its question's deadline still takes the primary's answer waiting in the channel", async () => {
    const { r, line } = await runClusterFixture('cluster-query');
    assert.equal(r.owner, '127.0.0.1:9101', line);
  });
});

/** The semantics LocalAffinityTable must have, written the obvious way (Map order = LRU order). */
class ModelLru {
  private readonly map = new Map<string, { owner: string; exp: number }>();
  constructor(
    private readonly capacity: number,
    private readonly ttl: number,
    private readonly clock: ManualClock,
  ) {}
  get size(): number {
    return this.map.size;
  }
  get(k: string): string | undefined {
    const e = this.map.get(k);
    if (!e) return undefined;
    this.map.delete(k);
    if (e.exp <= this.clock.now()) return undefined;
    this.map.set(k, e);
    return e.owner;
  }
  peek(k: string): string | undefined {
    const e = this.map.get(k);
    return e && e.exp > this.clock.now() ? e.owner : undefined;
  }
  set(k: string, owner: string): void {
    if (this.map.has(k)) this.map.delete(k);
    else if (this.map.size >= this.capacity) this.map.delete(this.map.keys().next().value!);
    this.map.set(k, { owner, exp: this.clock.now() + this.ttl });
  }
  delete(k: string): boolean {
    return this.map.delete(k);
  }
  dropOwner(o: string): number {
    let n = 0;
    for (const [k, e] of this.map) if (e.owner === o && this.map.delete(k)) n++;
    return n;
  }
  live(): [string, string][] {
    const now = this.clock.now();
    return [...this.map].filter(([, e]) => e.exp > now).map(([k, e]) => [k, e.owner]);
  }
}

/** Deterministic random numbers in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
