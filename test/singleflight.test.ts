import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleFlight, type Flight } from '../src/state/singleflight.js';

/** A promise the test settles by hand. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('SingleFlight', () => {
  test('concurrent look-ups of one key share one call; other keys get their own', async () => {
    const sf = new SingleFlight<string, number>();
    const started: string[] = [];
    const calls = new Map<string, ReturnType<typeof deferred<number>>>();
    const start = (key: string) => () => {
      started.push(key);
      const d = deferred<number>();
      calls.set(key, d);
      return d.promise;
    };
    const a = Array.from({ length: 5 }, () => sf.run('a', start('a')));
    const b = sf.run('b', start('b'));
    assert.deepEqual(started, ['a', 'b']);
    for (const p of a) assert.equal(p, a[0], 'every waiter gets the same promise');
    assert.equal(sf.size, 2);
    assert.equal(sf.get('a')?.waiters, 5);
    assert.equal(sf.get('b')?.waiters, 1);
    calls.get('a')!.resolve(1);
    calls.get('b')!.resolve(2);
    assert.deepEqual(await Promise.all(a), [1, 1, 1, 1, 1]);
    assert.equal(await b, 2);
  });

  test('a settled key is free: the next look-up starts a new call (nothing cached)', async () => {
    const sf = new SingleFlight<string, number>();
    let n = 0;
    assert.equal(await sf.run('k', async () => ++n), 1);
    assert.equal(sf.size, 0);
    assert.equal(sf.get('k'), undefined);
    assert.equal(await sf.run('k', async () => ++n), 2);
  });

  test('the key is freed before any waiter sees the outcome', async () => {
    const sf = new SingleFlight<string, string>();
    const d = deferred<string>();
    const p = sf.run('k', () => d.promise);
    d.resolve('x');
    await p;
    assert.equal(sf.get('k'), undefined);
    const e = deferred<string>();
    const q = sf.run('k', () => e.promise);
    e.reject(new Error('nope'));
    await assert.rejects(q);
    assert.equal(sf.get('k'), undefined);
  });

  test('a rejection reaches every waiter with the same error and leaves nothing behind', async () => {
    const sf = new SingleFlight<string, number>();
    const d = deferred<number>();
    const waiters = Array.from({ length: 3 }, () => sf.run('k', () => d.promise));
    const boom = new Error('backend down');
    d.reject(boom);
    for (const w of waiters) await assert.rejects(w, (e) => e === boom);
    assert.equal(sf.size, 0, 'no entry leaks on rejection');
    assert.equal(await sf.run('k', async () => 7), 7, 'the next look-up calls again');
  });

  test('a start that throws rejects its flight and frees the key', async () => {
    const sf = new SingleFlight<string, number>();
    const p = sf.run('k', () => {
      throw new Error('sync throw');
    });
    await assert.rejects(p, /sync throw/);
    assert.equal(sf.size, 0);
  });

  test('the starter sees its own flight: how many waited, and a synchronous re-entry joins it', async () => {
    const sf = new SingleFlight<string, number>();
    const d = deferred<number>();
    let seen: Flight<number> | undefined;
    let inner: Promise<number> | undefined;
    const outer = sf.run('k', (flight) => {
      seen = flight;
      inner = sf.run('k', () => Promise.resolve(-1));
      return d.promise.then((v) => v * flight.waiters);
    });
    assert.equal(inner, outer, 'a re-entry during start joins the flight');
    sf.run('k', () => Promise.resolve(-1));
    assert.equal(seen?.waiters, 3);
    assert.deepEqual([...sf.values()], [seen]);
    d.resolve(10);
    assert.equal(await outer, 30);
  });
});
