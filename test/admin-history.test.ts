/**
 * The dashboard's history (src/admin/history.ts): the Prometheus text it reads, the latency
 * quantiles it interpolates, its 15-minute rings, and what it does when counters restart or a
 * member leaves. Fed with /metrics-shaped text at chosen times (no clock involved).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { History, parsePrometheus, quantile } from '../src/admin/history.js';

test('parsePrometheus: names, escaped label values, +Inf and comments', () => {
  const text = ['# HELP x y', '# TYPE x counter', 'x{route="a\\"b",member="c\\\\d",le="+Inf"} 3', 'y 4.5', 'broken line here', ''].join('\n');
  assert.deepEqual(parsePrometheus(text), [
    { name: 'x', labels: { route: 'a"b', member: 'c\\d', le: '+Inf' }, value: 3 },
    { name: 'y', labels: {}, value: 4.5 },
  ]);
});

test('quantile: interpolated inside the bucket, the last finite bound past it, null without observations', () => {
  const b = (pairs: [number, number][]) => new Map(pairs);
  assert.ok(Math.abs(quantile(0.5, b([[0.1, 0], [0.2, 10], [Infinity, 10]]))! - 0.15) < 1e-12);
  assert.equal(quantile(0.99, b([[0.1, 5], [0.2, 5], [Infinity, 10]])), 0.2);
  assert.equal(quantile(0.5, b([[0.1, 0], [Infinity, 0]])), null);
});

function metrics(requests: Record<string, number>, fivexx = 0, inflight = 0): string {
  const lines = Object.entries(requests).map(([m, n]) => `homing_requests_total{route="r",member="${m}",status="200"} ${n}`);
  lines.push(`homing_requests_total{route="r",member="m1",status="502"} ${fivexx}`);
  lines.push(`homing_member_inflight{pool="p",member="m1"} ${inflight}`);
  return lines.join('\n');
}

test('History: rates from counter deltas over the elapsed time, totals as read, 900 one-second samples kept', () => {
  const h = new History();
  const topo = { routes: [{ name: 'r', members: ['m1', 'm2'] }], members: new Set(['m1', 'm2']) };
  const t0 = 1_000_000;
  const first = h.add(t0, metrics({ m1: 10, m2: 0 }), topo);
  assert.deepEqual(first.routes.r, [null, null, null, null, 0], 'the first sample has nothing to compare with');
  const second = h.add(t0 + 2000, metrics({ m1: 30, m2: 4 }, 6, 3), topo);
  assert.deepEqual(second.routes.r, [15, 3, null, null, 3]);
  assert.deepEqual(second.members.m2, [2, 0, null, null, 0]);
  assert.deepEqual(second.totals.routes.r, { requests: 40, errors: 0 });
  for (let i = 1; i <= 1000; i++) h.add(t0 + 2000 + i * 1000, metrics({ m1: 30 + i, m2: 4 }, 6), topo);
  const json = h.toJSON();
  assert.equal(json.capacity, 900);
  assert.equal(json.times.length, 900);
  assert.equal(json.times[899], t0 + 2000 + 1000 * 1000);
  assert.equal((json.routes.r as { rps: number[] }).rps.length, 900);
  assert.deepEqual((json.routes.r as { rps: number[] }).rps.slice(-2), [1, 1]);
});

test('History: a counter that went down (a worker restarted) counts from zero, never negative; a member that left loses its series', () => {
  const h = new History();
  const both = { routes: [{ name: 'r', members: ['m1', 'm2'] }], members: new Set(['m1', 'm2']) };
  h.add(0, metrics({ m1: 100, m2: 1 }), both);
  const after = h.add(1000, metrics({ m1: 7, m2: 1 }), both);
  assert.equal(after.members.m1![0], 7);
  const one = { routes: [{ name: 'r', members: ['m1'] }], members: new Set(['m1']) };
  const later = h.add(2000, metrics({ m1: 8 }), one);
  assert.deepEqual(Object.keys(later.members), ['m1']);
  assert.deepEqual(Object.keys(h.toJSON().members), ['m1']);
  // A member that joins later is aligned with the timeline (nulls before it came).
  const three = { routes: [{ name: 'r', members: ['m1', 'm3'] }], members: new Set(['m1', 'm3']) };
  h.add(3000, metrics({ m1: 8 }), three);
  assert.deepEqual((h.toJSON().members as Record<string, { rps: (number | null)[] }>).m3!.rps, [null, null, null, 0]);
});
