/**
 * DirectoryTable, the cache in front of a directory, against a scripted in-test source (each call
 * waits until the test answers it) and a ManualClock: TTLs, refresh-ahead and back-off move with
 * the clock, never with sleeps. Only the per-call timeout runs on real timers (30 ms here).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/clock.js';
import { failOnUnhandledRejections } from './support/unhandled.js';
import { DirectoryKeyError, DirectoryTable } from '../src/routing/directory/index.js';
import type { DirectoryAnswer, DirectoryFailure, DirectoryObserver, DirectoryResult, DirectorySource, DirectoryTableOptions, UnavailableReason } from '../src/routing/directory/index.js';

failOnUnhandledRejections();

interface PendingCall {
  key: string;
  signal: AbortSignal;
  resolve(a: DirectoryAnswer | unknown): void;
  reject(e: unknown): void;
}

/** A directory whose every call waits until the test answers it. */
class ScriptedSource implements DirectorySource {
  readonly calls: PendingCall[] = [];
  lookup(key: string, signal: AbortSignal): Promise<DirectoryAnswer> {
    return new Promise((resolve, reject) => this.calls.push({ key, signal, resolve: resolve as (a: unknown) => void, reject }));
  }
  /** The only call not answered yet. */
  last(): PendingCall {
    const c = this.calls.at(-1);
    assert.ok(c, 'a directory call was made');
    return c;
  }
}

class Recorder implements DirectoryObserver {
  readonly counts: Record<string, number> = {};
  readonly errors: { reason: DirectoryFailure; key: string; value?: string }[] = [];
  readonly unavailables: UnavailableReason[] = [];
  gauge = -1;
  private inc(k: string): void {
    this.counts[k] = (this.counts[k] ?? 0) + 1;
  }
  hit(): void {
    this.inc('hit');
  }
  miss(): void {
    this.inc('miss');
  }
  coalesced(): void {
    this.inc('coalesced');
  }
  backoff(): void {
    this.inc('backoff');
  }
  negative(): void {
    this.inc('negative');
  }
  stale(): void {
    this.inc('stale');
  }
  refresh(): void {
    this.inc('refresh');
  }
  unavailable(reason: UnavailableReason): void {
    this.inc('unavailable');
    this.unavailables.push(reason);
  }
  error(reason: DirectoryFailure, key: string, value?: string): void {
    this.errors.push(value === undefined ? { reason, key } : { reason, key, value });
  }
  latency(): void {
    this.inc('latency');
  }
  entries(n: number): void {
    this.gauge = n;
  }
}

const tables: DirectoryTable[] = [];
after(() => {
  for (const t of tables) t.close();
});

function setup(opts: Partial<DirectoryTableOptions> = {}): { table: DirectoryTable; clock: ManualClock; src: ScriptedSource; obs: Recorder } {
  const clock = new ManualClock(1_000_000);
  const src = new ScriptedSource();
  const obs = new Recorder();
  // A long timeout: the scripted calls are answered by hand, never timed out, unless a test says so.
  const table = new DirectoryTable({ source: src, clock, ttl: 1000, negativeTtl: 100, staleIfError: 5000, timeout: 10_000, observer: obs, ...opts });
  tables.push(table);
  return { table, clock, src, obs };
}

function isPromise(r: unknown): r is Promise<DirectoryResult> {
  return r instanceof Promise;
}

/** The answer, which must have been given synchronously. */
function now(r: DirectoryResult | Promise<DirectoryResult>): DirectoryResult {
  assert.ok(!isPromise(r), 'answered synchronously, without a promise');
  return r;
}

/** The answer, which must have come as a promise. */
function later(r: DirectoryResult | Promise<DirectoryResult>): Promise<DirectoryResult> {
  assert.ok(isPromise(r), 'a promise: the directory had to be asked');
  return r;
}

/** Learn key → value through one directory call. */
async function learn(t: { table: DirectoryTable; src: ScriptedSource }, key: string, value: string, ttl?: number): Promise<void> {
  const p = later(t.table.get(key));
  t.src.last().resolve(ttl === undefined ? { found: value } : { found: value, ttl });
  assert.deepEqual(await p, { kind: 'found', value, stale: false });
}

describe('DirectoryTable: caching', () => {
  test('a miss asks the directory once; the answer is then returned synchronously, the same object every time', async () => {
    const t = setup();
    const p = later(t.table.get('tenant-a'));
    assert.equal(t.src.calls.length, 1);
    assert.equal(t.src.last().key, 'tenant-a');
    t.src.last().resolve({ found: 'pod1' });
    const first = await p;
    assert.deepEqual(first, { kind: 'found', value: 'pod1', stale: false });
    const hit = now(t.table.get('tenant-a'));
    assert.equal(hit, first, 'the cached result object is reused (no allocation per hit)');
    assert.equal(now(t.table.get('tenant-a')), first);
    assert.equal(t.src.calls.length, 1);
    assert.deepEqual(t.obs.counts, { miss: 1, latency: 1, hit: 2 });
    assert.equal(t.obs.gauge, 1);
    assert.deepEqual(t.table.peek('tenant-a'), { value: 'pod1', source: 'directory', expiresIn: 1000, stale: false });
  });

  test('concurrent misses for one key make exactly one call, and every waiter gets the same answer', async () => {
    const t = setup();
    const waiting = Array.from({ length: 50 }, () => later(t.table.get('k')));
    later(t.table.get('other'));
    assert.deepEqual(
      t.src.calls.map((c) => c.key),
      ['k', 'other'],
    );
    t.src.calls[0]!.resolve({ found: '10.0.0.1:8080' });
    const answers = await Promise.all(waiting);
    assert.ok(answers.every((a) => a === answers[0]), 'one answer object shared by all waiters');
    assert.deepEqual(answers[0], { kind: 'found', value: '10.0.0.1:8080', stale: false });
    assert.equal(t.obs.counts.miss, 2);
    assert.equal(t.obs.counts.coalesced, 49);
    t.src.calls[1]!.resolve({ unknown: true });
  });

  test('concurrent failures are shared too: one call, one error, every waiter unavailable', async () => {
    const t = setup();
    const waiting = Array.from({ length: 5 }, () => later(t.table.get('k')));
    t.src.last().reject(new Error('connection refused'));
    const answers = await Promise.all(waiting);
    assert.equal(t.src.calls.length, 1);
    for (const a of answers) assert.deepEqual(a, { kind: 'unavailable', reason: 'error', message: 'connection refused' });
    assert.equal(t.obs.errors.length, 1);
    assert.equal(t.obs.counts.unavailable, 5);
  });

  test('an entry expires after ttl: asked again, then cached again', async () => {
    const t = setup({ refreshAhead: 1 });
    await learn(t, 'k', 'pod1');
    t.clock.advance(999);
    assert.equal(now(t.table.get('k')).kind, 'found');
    t.clock.advance(1);
    const p = later(t.table.get('k'));
    assert.equal(t.src.calls.length, 2);
    t.src.last().resolve({ found: 'pod2' });
    assert.deepEqual(await p, { kind: 'found', value: 'pod2', stale: false });
    assert.deepEqual(now(t.table.get('k')), { kind: 'found', value: 'pod2', stale: false });
  });

  test('a negative answer is cached for negativeTtl, then asked again', async () => {
    const t = setup({ refreshAhead: 1 });
    const p = later(t.table.get('nobody'));
    t.src.last().resolve({ unknown: true });
    assert.deepEqual(await p, { kind: 'unknown' });
    t.clock.advance(99);
    assert.deepEqual(now(t.table.get('nobody')), { kind: 'unknown' });
    assert.equal(t.src.calls.length, 1);
    assert.deepEqual(t.table.peek('nobody'), { value: null, source: 'directory', expiresIn: 1, stale: false });
    t.clock.advance(1);
    const again = later(t.table.get('nobody'));
    assert.equal(t.src.calls.length, 2);
    t.src.last().resolve({ found: 'pod3' });
    assert.deepEqual(await again, { kind: 'found', value: 'pod3', stale: false });
    assert.equal(t.obs.counts.negative, 2, 'the first answer and the cached one');
  });

  test('a ttl from the source overrides the table ttl', async () => {
    const t = setup({ refreshAhead: 1 });
    await learn(t, 'k', 'pod1', 50);
    t.clock.advance(49);
    now(t.table.get('k'));
    t.clock.advance(1);
    later(t.table.get('k'));
    t.src.last().resolve({ found: 'pod1', ttl: 60_000 });
  });

  test('ttl 0 ("do not cache") answers the requests that asked, stores nothing and drops what was held', async () => {
    const t = setup({ refreshAhead: 1 });
    await learn(t, 'k', 'pod1');
    t.clock.advance(1000);
    const waiting = [later(t.table.get('k')), later(t.table.get('k'))];
    t.src.last().resolve({ found: 'pod2', ttl: 0 });
    for (const r of await Promise.all(waiting)) assert.deepEqual(r, { kind: 'found', value: 'pod2', stale: false });
    assert.equal(t.table.peek('k'), undefined);
    assert.equal(t.table.size, 0);
    later(t.table.get('k'));
    assert.equal(t.src.calls.length, 3, 'asked again');
    t.src.last().resolve({ found: 'pod2', ttl: 0 });
  });

  test('capacity is enforced least-recently-used first; peek does not count as a use', async () => {
    const t = setup({ capacity: 3 });
    for (const k of ['a', 'b', 'c']) await learn(t, k, `pod-${k}`);
    now(t.table.get('a')); // a is now the most recently used; b the least
    t.table.peek('b');
    await learn(t, 'd', 'pod-d');
    assert.equal(t.table.peek('b'), undefined, 'b evicted');
    for (const k of ['a', 'c', 'd']) assert.equal(t.table.peek(k)?.value, `pod-${k}`);
    assert.equal(t.table.size, 3);
    assert.equal(t.obs.gauge, 3);
    // Pins do not count against capacity and are never evicted.
    t.table.set('pinned', 'pod-p');
    await learn(t, 'e', 'pod-e');
    assert.equal(t.table.peek('pinned')?.value, 'pod-p');
    assert.equal(t.table.peek('c'), undefined, 'c, now the least recently used directory entry, evicted');
    assert.equal(t.table.size, 4);
  });
});

describe('DirectoryTable: refresh-ahead', () => {
  test('a hit past refreshAhead of the life answers at once from the cache and starts one background refresh', async () => {
    const t = setup(); // ttl 1000, refreshAhead 0.8
    await learn(t, 'hot', 'pod1');
    t.clock.advance(799);
    now(t.table.get('hot'));
    assert.equal(t.src.calls.length, 1, 'not yet');
    t.clock.advance(1);
    assert.deepEqual(now(t.table.get('hot')), { kind: 'found', value: 'pod1', stale: false });
    assert.equal(t.src.calls.length, 2, 'one refresh started');
    for (let i = 0; i < 20; i++) now(t.table.get('hot'));
    assert.equal(t.src.calls.length, 2, 'at most one refresh in flight per key');
    t.src.last().resolve({ found: 'pod2' });
    await Promise.resolve();
    await Promise.resolve();
    assert.deepEqual(now(t.table.get('hot')), { kind: 'found', value: 'pod2', stale: false });
    // The refreshed entry lives a full ttl from the refresh: past the old expiry, still a sync hit.
    t.clock.advance(500);
    now(t.table.get('hot'));
    assert.equal(t.src.calls.length, 2);
    assert.equal(t.obs.counts.refresh, 1);
    assert.equal(t.obs.counts.miss, 1, 'no request ever waited after the first');
  });

  test('a failed refresh keeps the entry until it expires, and is not retried on every hit', async () => {
    const t = setup();
    await learn(t, 'hot', 'pod1');
    t.clock.advance(800);
    now(t.table.get('hot'));
    t.src.last().reject(new DirectoryKeyError('bad-answer', 'garbage'));
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 5; i++) assert.deepEqual(now(t.table.get('hot')), { kind: 'found', value: 'pod1', stale: false });
    assert.equal(t.src.calls.length, 2);
    t.clock.advance(200);
    later(t.table.get('hot'));
    assert.equal(t.src.calls.length, 3, 'asked again once expired');
    t.src.last().resolve({ found: 'pod1' });
  });

  test('refresh-ahead also renews a negative answer', async () => {
    const t = setup();
    const p = later(t.table.get('k'));
    t.src.last().resolve({ unknown: true });
    await p;
    t.clock.advance(80);
    assert.deepEqual(now(t.table.get('k')), { kind: 'unknown' });
    assert.equal(t.src.calls.length, 2);
    t.src.last().resolve({ found: 'pod-new' });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(now(t.table.get('k')), { kind: 'found', value: 'pod-new', stale: false });
  });
});

describe('DirectoryTable: failures', () => {
  test('on a directory error an entry expired less than staleIfError ago is served, marked stale', async () => {
    const t = setup({ refreshAhead: 1 });
    await learn(t, 'k', 'pod1');
    t.clock.advance(1000 + 4999);
    assert.deepEqual(t.table.peek('k'), { value: 'pod1', source: 'directory', expiresIn: -4999, stale: true });
    const p = later(t.table.get('k'));
    t.src.last().reject(new Error('HTTP 503'));
    assert.deepEqual(await p, { kind: 'found', value: 'pod1', stale: true });
    assert.equal(t.obs.counts.stale, 1);
    assert.deepEqual(t.obs.errors, [{ reason: 'error', key: 'k' }]);
  });

  test('past staleIfError nothing is served: unavailable', async () => {
    const t = setup({ refreshAhead: 1 });
    await learn(t, 'k', 'pod1');
    t.clock.advance(1000 + 5000);
    assert.equal(t.table.peek('k'), undefined);
    const p = later(t.table.get('k'));
    assert.equal(t.table.size, 0, 'the dead entry is dropped');
    t.src.last().reject(new Error('HTTP 503'));
    assert.deepEqual(await p, { kind: 'unavailable', reason: 'error', message: 'HTTP 503' });
  });

  test('a negative answer is not served stale', async () => {
    const t = setup({ refreshAhead: 1 });
    const p = later(t.table.get('k'));
    t.src.last().resolve({ unknown: true });
    await p;
    t.clock.advance(100);
    const q = later(t.table.get('k'));
    t.src.last().reject(new Error('down'));
    assert.equal((await q).kind, 'unavailable');
  });

  test('a directory that never answers: unavailable within the timeout, and the call is aborted', async () => {
    const t = setup({ timeout: 30 });
    const started = performance.now();
    const r = await later(t.table.get('k'));
    const took = performance.now() - started;
    assert.deepEqual(r, { kind: 'unavailable', reason: 'timeout', message: 'the directory did not answer within 30 ms' });
    assert.ok(took >= 25 && took < 1000, `answered after ${took} ms`);
    assert.equal(t.src.last().signal.aborted, true, 'the source was told to stop');
    assert.deepEqual(t.obs.errors, [{ reason: 'timeout', key: 'k' }]);
    // A late answer after the timeout changes nothing.
    t.src.last().resolve({ found: 'late' });
    await new Promise((r) => setImmediate(r));
    assert.equal(t.table.peek('k'), undefined);
  });

  test('a timeout with a stale entry serves the stale entry', async () => {
    const t = setup({ timeout: 30, refreshAhead: 1 });
    await learn(t, 'k', 'pod1');
    t.clock.advance(1500);
    assert.deepEqual(await later(t.table.get('k')), { kind: 'found', value: 'pod1', stale: true });
  });

  test('a bad answer is not cached, serves the stale entry, and does not back off', async () => {
    const t = setup({ refreshAhead: 1 });
    await learn(t, 'k', 'pod1');
    t.clock.advance(1000);
    const p = later(t.table.get('k'));
    t.src.last().reject(new DirectoryKeyError('bad-answer', 'answer is not a pool name or host:port', '<html>'));
    assert.deepEqual(await p, { kind: 'found', value: 'pod1', stale: true });
    assert.deepEqual(t.obs.errors, [{ reason: 'bad-answer', key: 'k', value: '<html>' }]);
    // No back-off: another key is asked at once.
    later(t.table.get('other'));
    assert.equal(t.src.last().key, 'other');
    t.src.last().resolve({ found: 'pod2' });
  });

  test('an answer validate() refuses is an error with its value: not cached, stale served, no back-off', async () => {
    const pools = new Set(['pod1', 'pod2']);
    const t = setup({ refreshAhead: 1, validate: (v) => pools.has(v) });
    await learn(t, 'k', 'pod1');
    t.clock.advance(1000);
    const p = later(t.table.get('k'));
    t.src.last().resolve({ found: 'pod9' });
    assert.deepEqual(await p, { kind: 'found', value: 'pod1', stale: true });
    assert.deepEqual(t.obs.errors, [{ reason: 'invalid', key: 'k', value: 'pod9' }]);
    const q = later(t.table.get('fresh-key'));
    t.src.last().resolve({ found: 'pod9' });
    const r = await q;
    assert.equal(r.kind, 'unavailable');
    assert.equal(r.kind === 'unavailable' && r.reason, 'invalid');
    assert.equal(t.table.peek('fresh-key'), undefined);
    // A validate that throws counts as refusing.
    const u = setup({
      validate: () => {
        throw new Error('boom');
      },
    });
    const s = later(u.table.get('k'));
    u.src.last().resolve({ found: 'pod1' });
    assert.equal((await s).kind, 'unavailable');
  });

  test('sources that throw synchronously, reject with anything, or resolve garbage never leak a rejection', async () => {
    const cases: { name: string; lookup: DirectorySource['lookup']; reason: DirectoryFailure }[] = [
      {
        name: 'throws',
        lookup: () => {
          throw new Error('sync boom');
        },
        reason: 'error',
      },
      { name: 'rejects a string', lookup: () => Promise.reject('nope' as unknown as Error), reason: 'error' },
      { name: 'rejects undefined', lookup: () => Promise.reject(undefined as unknown as Error), reason: 'error' },
      { name: 'resolves {}', lookup: () => Promise.resolve({} as DirectoryAnswer), reason: 'bad-answer' },
      { name: 'resolves an empty value', lookup: () => Promise.resolve({ found: '' }), reason: 'bad-answer' },
      { name: 'resolves a negative ttl', lookup: () => Promise.resolve({ found: 'p', ttl: -1 }), reason: 'bad-answer' },
      { name: 'resolves null', lookup: () => Promise.resolve(null as unknown as DirectoryAnswer), reason: 'bad-answer' },
      { name: 'returns no promise', lookup: () => ({ found: 'p' }) as unknown as Promise<DirectoryAnswer>, reason: 'error' },
    ];
    for (const c of cases) {
      const obs = new Recorder();
      const table = new DirectoryTable({ source: { lookup: c.lookup }, clock: new ManualClock(), timeout: 10_000, observer: obs });
      tables.push(table);
      const r = await table.get('k');
      if (c.name === 'returns no promise') {
        // Promise.resolve() adopts a plain value: it counts as the answer it is.
        assert.deepEqual(r, { kind: 'found', value: 'p', stale: false }, c.name);
        continue;
      }
      assert.equal(r.kind, 'unavailable', c.name);
      assert.equal(r.kind === 'unavailable' && r.reason, c.reason, c.name);
      table.close();
    }
  });
});

describe('DirectoryTable: back-off', () => {
  test('after a failure the directory is not asked until the back-off ends; misses answer at once', async () => {
    const t = setup();
    const p = later(t.table.get('a'));
    t.src.last().reject(new Error('ECONNREFUSED'));
    await p;
    // First delay: between 50 and 100 ms (100 ms with jitter down to half).
    for (const k of ['b', 'c', 'a']) {
      const r = now(t.table.get(k));
      assert.equal(r.kind, 'unavailable');
      assert.equal(r.kind === 'unavailable' && r.reason, 'backoff');
      assert.match(r.kind === 'unavailable' ? r.message : '', /1 in a row, last: ECONNREFUSED/);
    }
    t.clock.advance(49);
    now(t.table.get('b'));
    assert.equal(t.src.calls.length, 1, 'not asked while backing off');
    assert.equal(t.obs.counts.backoff, 4);
    t.clock.advance(51);
    // Back-off over: one probe at a time; other misses still answer at once.
    const probe = later(t.table.get('b'));
    assert.equal(t.src.calls.length, 2);
    assert.equal(now(t.table.get('c')).kind, 'unavailable');
    const joined = later(t.table.get('b'));
    assert.equal(t.src.calls.length, 2, 'the same key joins the probe');
    t.src.last().reject(new Error('ECONNREFUSED'));
    assert.equal((await probe).kind, 'unavailable');
    assert.equal(await joined, await probe);
    // Second failure in a row: 100..200 ms.
    t.clock.advance(99);
    now(t.table.get('c'));
    assert.equal(t.src.calls.length, 2);
    t.clock.advance(101);
    const ok = later(t.table.get('c'));
    t.src.last().resolve({ found: 'pod1' });
    assert.equal((await ok).kind, 'found');
    // Healthy again: concurrent misses of other keys are asked at once.
    later(t.table.get('x'));
    later(t.table.get('y'));
    assert.equal(t.src.calls.length, 5);
    t.src.calls[3]!.resolve({ unknown: true });
    t.src.calls[4]!.resolve({ unknown: true });
  });

  test('the delay doubles up to max', async () => {
    const t = setup({ backoff: { min: 100, max: 400 } });
    const fail = async (key: string): Promise<void> => {
      const p = later(t.table.get(key));
      t.src.last().reject(new Error('down'));
      await p;
    };
    await fail('a'); // 50..100
    t.clock.advance(100);
    await fail('a'); // 100..200
    t.clock.advance(200);
    await fail('a'); // 200..400
    t.clock.advance(400);
    await fail('a'); // capped: 200..400
    t.clock.advance(199);
    assert.equal(now(t.table.get('a')).kind, 'unavailable');
    t.clock.advance(201);
    later(t.table.get('a'));
    assert.equal(t.src.calls.length, 5);
    t.src.last().resolve({ found: 'p' });
  });

  test('while backing off, an expired entry within staleIfError is served stale synchronously', async () => {
    const t = setup({ refreshAhead: 1 });
    await learn(t, 'k', 'pod1');
    t.clock.advance(1000);
    const p = later(t.table.get('other'));
    t.src.last().reject(new Error('down'));
    await p;
    const r = now(t.table.get('k'));
    assert.deepEqual(r, { kind: 'found', value: 'pod1', stale: true });
    assert.equal(now(t.table.get('k')), r, 'the stale result object is reused');
    assert.equal(t.src.calls.length, 2);
  });

  test('calls in flight when an outage starts count as one failure', async () => {
    const t = setup();
    const ps = ['a', 'b', 'c', 'd'].map((k) => later(t.table.get(k)));
    for (const c of t.src.calls) c.reject(new Error('timeout'));
    await Promise.all(ps);
    // Four failures, counted once: the first delay (≤ 100 ms), not the fourth (≤ 800 ms).
    t.clock.advance(100);
    later(t.table.get('e'));
    assert.equal(t.src.calls.length, 5);
    t.src.last().resolve({ found: 'p' });
  });

  test('refresh-ahead is not started while backing off; once the back-off ends the refresh is the probe', async () => {
    const t = setup({ ttl: 10_000 }); // refresh from 8000 ms
    await learn(t, 'hot', 'pod1');
    t.clock.advance(7990);
    const p = later(t.table.get('cold'));
    t.src.last().reject(new Error('down'));
    await p; // backing off until 8040..8090
    t.clock.advance(20);
    assert.deepEqual(now(t.table.get('hot')), { kind: 'found', value: 'pod1', stale: false });
    assert.equal(t.src.calls.length, 2, 'no refresh while backing off');
    t.clock.advance(100);
    assert.deepEqual(now(t.table.get('hot')), { kind: 'found', value: 'pod1', stale: false });
    assert.equal(t.src.calls.length, 3, 'the refresh went out as the probe');
    assert.equal(now(t.table.get('cold')).kind, 'unavailable', 'one probe at a time');
    t.src.last().resolve({ found: 'pod1' });
    await new Promise((r) => setImmediate(r));
    later(t.table.get('cold'));
    assert.equal(t.src.calls.length, 4, 'healthy again after the probe succeeded');
    t.src.last().resolve({ unknown: true });
  });
});

describe('DirectoryTable: seed and manual entries', () => {
  test('set pins a value: answered synchronously, never expires, never asks the directory', () => {
    const t = setup();
    t.table.set('k', 'pod1');
    t.clock.advance(365 * 86_400_000);
    assert.deepEqual(now(t.table.get('k')), { kind: 'found', value: 'pod1', stale: false });
    assert.equal(t.src.calls.length, 0);
    assert.deepEqual(t.table.peek('k'), { value: 'pod1', source: 'manual', expiresIn: null, stale: false });
  });

  test('set replaces a directory-learned entry; delete forgets it', async () => {
    const t = setup();
    await learn(t, 'k', 'pod1');
    t.table.set('k', 'pod2');
    assert.deepEqual(now(t.table.get('k')), { kind: 'found', value: 'pod2', stale: false });
    assert.equal(t.table.delete('k'), true);
    assert.equal(t.table.delete('k'), false);
    assert.equal(t.table.peek('k'), undefined);
    later(t.table.get('k'));
    t.src.last().resolve({ found: 'pod1' });
  });

  test('seed replaces the seeded entries; directory-learned entries stay; manual entries win', async () => {
    const t = setup();
    await learn(t, 'learned', 'pod9');
    await learn(t, 'k2', 'pod9');
    t.table.seed(new Map([['k1', 'pod1'], ['k2', 'pod2'], ['k3', 'pod3']]));
    assert.equal(t.table.peek('k2')?.source, 'seed', 'a seed entry replaces a learned one');
    t.table.set('k3', 'manual3');
    t.table.seed(new Map([['k2', 'pod2b'], ['k3', 'pod3b'], ['k4', 'pod4']]));
    assert.equal(t.table.peek('k1'), undefined, 'gone from the seed: removed');
    assert.equal(t.table.peek('k2')?.value, 'pod2b');
    assert.deepEqual(t.table.peek('k3'), { value: 'manual3', source: 'manual', expiresIn: null, stale: false });
    assert.equal(t.table.peek('k4')?.value, 'pod4');
    assert.equal(t.table.peek('learned')?.source, 'directory');
    assert.equal(t.obs.gauge, 4);
    // Deleting the manual pin brings the seed's value back.
    assert.equal(t.table.delete('k3'), true);
    assert.deepEqual(t.table.peek('k3'), { value: 'pod3b', source: 'seed', expiresIn: null, stale: false });
    // Deleting a seed entry removes it until a seed lists it again.
    t.table.delete('k4');
    assert.equal(t.table.peek('k4'), undefined);
    t.table.seed(new Map([['k4', 'pod4']]));
    assert.equal(t.table.peek('k4')?.value, 'pod4');
    assert.equal(t.table.peek('k2'), undefined);
    assert.equal(t.src.calls.length, 2);
  });

  test('set and seed refuse values validate() refuses, changing nothing', () => {
    const t = setup({ validate: (v) => v.startsWith('pod') });
    t.table.seed(new Map([['a', 'pod1']]));
    assert.throws(() => t.table.seed(new Map([['a', 'pod2'], ['b', 'nope']])), /1 entry names no known pool or member: "b" → "nope"/);
    assert.equal(t.table.peek('a')?.value, 'pod1');
    assert.equal(t.table.peek('b'), undefined);
    assert.throws(() => t.table.set('c', 'nope'), /no known pool/);
    assert.throws(() => t.table.set('c', ''), /non-empty strings/);
    assert.throws(() => t.table.set('', 'pod1'), /non-empty strings/);
    assert.equal(t.table.size, 1);
  });

  test('an answer in flight when the key is set or deleted is returned but not stored', async () => {
    const t = setup();
    const p = later(t.table.get('k'));
    t.table.set('k', 'manual');
    t.src.last().resolve({ found: 'from-directory' });
    assert.deepEqual(await p, { kind: 'found', value: 'from-directory', stale: false });
    assert.equal(t.table.peek('k')?.value, 'manual');
    t.table.delete('k');
    const q = later(t.table.get('k'));
    t.table.delete('k');
    t.src.last().resolve({ found: 'old' });
    await q;
    assert.equal(t.table.peek('k'), undefined);
  });
});

describe('DirectoryTable: close', () => {
  test('close ends calls in flight (unavailable, closed, source aborted); later misses are not asked', async () => {
    const t = setup();
    await learn(t, 'cached', 'pod1');
    const p = later(t.table.get('k'));
    t.table.close();
    assert.deepEqual(await p, { kind: 'unavailable', reason: 'closed', message: 'directory table closed' });
    assert.equal(t.src.last().signal.aborted, true);
    assert.deepEqual(now(t.table.get('other')), { kind: 'unavailable', reason: 'closed', message: 'directory table closed' });
    assert.equal(now(t.table.get('cached')).kind, 'found', 'what is cached still answers');
    assert.equal(t.src.calls.length, 2);
  });

  test('options are checked', () => {
    const source = new ScriptedSource();
    assert.throws(() => new DirectoryTable({ source, ttl: -1 }), /ttl must be/);
    assert.throws(() => new DirectoryTable({ source, refreshAhead: 1.5 }), /refreshAhead/);
    assert.throws(() => new DirectoryTable({ source, capacity: 0 }), /capacity/);
    assert.throws(() => new DirectoryTable({ source, timeout: 0 }), /timeout/);
  });
});
