/**
 * The fast engine's moving deadline: never expires before its latest deadline, expires once it
 * stops moving, follows a deadline moved earlier, and does nothing once cleared.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Deadline } from '../src/proxy/fast/deadline.js';

// The deadline's timer is unref'd (it never holds a process open): this keeps the test's loop alive.
const alive = setInterval(() => {}, 1000);
after(() => clearInterval(alive));

function expiry(): { d: Deadline; fired: Promise<number>; count: () => number } {
  let n = 0;
  let resolve!: (t: number) => void;
  const fired = new Promise<number>((r) => (resolve = r));
  const d = new Deadline(() => {
    n++;
    resolve(performance.now());
  });
  return { d, fired, count: () => n };
}

test('moved forward again and again, it expires only after the last deadline', async () => {
  const { d, fired, count } = expiry();
  // Set every 10 ms for a 300 ms deadline; a gap as long as the deadline (a stalled box) lets it
  // expire in between, rightly: what must hold is that it never expires before the latest
  // deadline set before it did.
  const DEADLINE = 300;
  const sets: number[] = [];
  for (let i = 0; i < 12; i++) {
    sets.push(performance.now());
    d.set(DEADLINE);
    await sleep(10);
  }
  // The gaps between sets, and from the last set to now (the last sleep).
  const marks = [...sets, performance.now()];
  const kept = Math.max(...marks.slice(1).map((t, i) => t - marks[i]!)) < DEADLINE;
  if (kept) assert.equal(count(), 0, 'not expired while it kept moving');
  const at = await fired;
  const lastSet = Math.max(...sets.filter((t) => t <= at));
  assert.ok(at >= lastSet + DEADLINE, `expired ${(at - lastSet).toFixed(1)} ms after the last set before it (want ≥ ${DEADLINE})`);
  if (kept) assert.equal(count(), 1);
  d.dispose();
});

test('moved earlier, it expires at the earlier deadline', async () => {
  const { d, fired } = expiry();
  d.set(60_000);
  const t = performance.now();
  d.set(20);
  const at = await fired;
  assert.ok(at - t >= 20 && at - t < 5_000, `expired after ${(at - t).toFixed(1)} ms`);
});

test('cleared, it does not expire; set again, it does', async () => {
  const { d, fired, count } = expiry();
  d.set(10);
  d.clear();
  await sleep(40);
  assert.equal(count(), 0);
  d.set(10);
  await fired;
  assert.equal(count(), 1);
  d.set(10);
  d.dispose();
  await sleep(40);
  assert.equal(count(), 1, 'disposed: nothing more');
});
