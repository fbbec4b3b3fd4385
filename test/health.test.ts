import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pino, type Logger } from 'pino';
import { ManualClock } from '../src/clock.js';
import type { Member } from '../src/members/member.js';
import { Pool } from '../src/members/pool.js';
import { ActiveHealthCheck, HealthTracker, PassiveHealth, PoolHealth, type CheckResult } from '../src/health/index.js';

/** Poll `cond` until it holds or `ms` passes (never a blind sleep). */
async function waitFor(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

type Mode = 'ok' | '500' | 'hang' | '204';

/** A real backend on port 0 whose health answer the test switches. */
class Backend {
  mode: Mode = 'ok';
  hits = 0;
  inflight = 0;
  maxInflight = 0;
  readonly sockets = new Set<Socket>();
  connectionHeaders: (string | undefined)[] = [];
  private server: Server;
  port = 0;

  constructor() {
    this.server = createServer((req, res) => {
      this.hits++;
      this.connectionHeaders.push(req.headers.connection);
      this.inflight++;
      this.maxInflight = Math.max(this.maxInflight, this.inflight);
      res.on('close', () => this.inflight--);
      if (this.mode === 'hang') return; // accept, read, never answer
      res.writeHead(this.mode === '500' ? 500 : this.mode === '204' ? 204 : 200).end(this.mode === '204' ? undefined : 'ok');
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get id(): string {
    return `127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

interface Transition {
  id: string;
  up: boolean;
  reason: string;
}

function recorder(): { transitions: Transition[]; onTransition: (m: Member, up: boolean, reason: string) => void } {
  const transitions: Transition[] = [];
  return { transitions, onTransition: (m, up, reason) => transitions.push({ id: m.id, up, reason }) };
}

const liveIds = (pool: Pool): string[] => pool.live.members.map((m) => m.id);

// Check timeouts are long (5 s) unless the test is about timeouts: a check slowed by a busy box must
// not mark a healthy member down (refused connections and bad statuses fail at once anyway).
describe('active health checks', () => {
  test('members start up; fall failures (HTTP 500) mark down, rise successes mark up again', async () => {
    const a = await new Backend().listen();
    const b = await new Backend().listen();
    const pool = new Pool('p', [
      { host: '127.0.0.1', port: a.port, weight: 1 },
      { host: '127.0.0.1', port: b.port, weight: 1 },
    ]);
    const rec = recorder();
    const tracker = new HealthTracker(pool, rec.onTransition);
    // Consecutive failed checks of `a` seen when it went down, to prove `fall` is honoured.
    let failedInARow = 0;
    let failedWhenDown = -1;
    let okInARow = 0;
    let okWhenUp = -1;
    const onCheck = (r: CheckResult): void => {
      if (r.member.id !== a.id) return;
      failedInARow = r.healthy ? 0 : failedInARow + 1;
      okInARow = r.healthy ? okInARow + 1 : 0;
      if (failedWhenDown < 0 && !pool.isUp(a.id)) failedWhenDown = failedInARow;
      if (failedWhenDown >= 0 && okWhenUp < 0 && pool.isUp(a.id)) okWhenUp = okInARow;
    };
    const active = new ActiveHealthCheck(tracker, { path: '/health', interval: 20, timeout: 500, rise: 2, fall: 3 }, { onCheck });
    assert.deepEqual(liveIds(pool).length, 2, 'a new pool serves at once');
    active.start();
    await waitFor(() => a.hits >= 2, 'a few checks');
    assert.equal(pool.isUp(a.id), true);

    a.mode = '500';
    await waitFor(() => !pool.isUp(a.id), 'a to be marked down');
    assert.equal(failedWhenDown, 3, 'down after exactly `fall` consecutive failures');
    assert.deepEqual(liveIds(pool), [b.id]);

    a.mode = 'ok';
    await waitFor(() => pool.isUp(a.id), 'a to come back');
    assert.equal(okWhenUp, 2, 'up after exactly `rise` consecutive successes');
    assert.deepEqual(rec.transitions.map((t) => [t.id, t.up]), [[a.id, false], [a.id, true]]);
    assert.match(rec.transitions[0]!.reason, /active: 3 consecutive failed checks \(last: HTTP 500\)/);
    assert.match(rec.transitions[1]!.reason, /active: 2 consecutive successful checks/);
    assert.equal(pool.isUp(b.id), true);

    await active.stop();
    tracker.close();
    await a.close();
    await b.close();
  });

  test('a closed backend (connection refused) is marked down', async () => {
    const a = await new Backend().listen();
    const pool = new Pool('p', [{ host: '127.0.0.1', port: a.port, weight: 1 }]);
    const rec = recorder();
    const tracker = new HealthTracker(pool, rec.onTransition);
    const active = new ActiveHealthCheck(tracker, { path: '/', interval: 20, timeout: 5000, rise: 1, fall: 2 });
    active.start();
    await waitFor(() => a.hits >= 1, 'a first check');
    await a.close();
    await waitFor(() => !pool.isUp(a.id), 'the closed member to be marked down');
    assert.equal(pool.live.size, 0);
    assert.match(rec.transitions[0]!.reason, /ECONNREFUSED/);
    await active.stop();
    tracker.close();
  });

  test('a backend that never answers fails by timeout, and checks of one member never overlap', async () => {
    const a = await new Backend().listen();
    a.mode = 'hang';
    const pool = new Pool('p', [{ host: '127.0.0.1', port: a.port, weight: 1 }]);
    const rec = recorder();
    const tracker = new HealthTracker(pool, rec.onTransition);
    // interval far below timeout: a naive checker would pile up requests.
    const active = new ActiveHealthCheck(tracker, { path: '/', interval: 10, timeout: 80, rise: 1, fall: 2 });
    active.start();
    await waitFor(() => !pool.isUp(a.id), 'the silent member to be marked down');
    assert.match(rec.transitions[0]!.reason, /timed out after 80ms/);
    assert.equal(a.maxInflight, 1, 'at most one check in flight per member');
    await active.stop();
    tracker.close();
    await a.close();
  });

  test('checks use their own connection (Connection: close), never a kept-alive one', async () => {
    const a = await new Backend().listen();
    const pool = new Pool('p', [{ host: '127.0.0.1', port: a.port, weight: 1 }]);
    const tracker = new HealthTracker(pool);
    const active = new ActiveHealthCheck(tracker, { path: '/', interval: 1000, timeout: 5000, rise: 1, fall: 1 });
    await active.round();
    await active.round();
    assert.equal(a.hits, 2);
    assert.deepEqual(a.connectionHeaders, ['close', 'close']);
    await waitFor(() => a.sockets.size === 0, 'the check connections to close');
    await active.stop();
    tracker.close();
    await a.close();
  });

  test('expectStatus replaces the 2xx/3xx rule', async () => {
    const a = await new Backend().listen();
    const pool = new Pool('p', [{ host: '127.0.0.1', port: a.port, weight: 1 }]);
    const tracker = new HealthTracker(pool);
    const active = new ActiveHealthCheck(tracker, { path: '/', interval: 1000, timeout: 5000, rise: 1, fall: 1, expectStatus: [204] });
    await active.round();
    assert.equal(pool.isUp(a.id), false, '200 is not in expectStatus');
    a.mode = '204';
    await active.round();
    assert.equal(pool.isUp(a.id), true);
    await active.stop();
    tracker.close();
    await a.close();
  });

  test('members added and removed by discovery are checked and forgotten', async () => {
    const a = await new Backend().listen();
    const bad = await new Backend().listen();
    bad.mode = '500';
    const spec = (b: Backend): { host: string; port: number; weight: number } => ({ host: '127.0.0.1', port: b.port, weight: 1 });
    const pool = new Pool('p', [spec(a)]);
    const tracker = new HealthTracker(pool);
    const active = new ActiveHealthCheck(tracker, { path: '/', interval: 1000, timeout: 5000, rise: 1, fall: 1 });
    await active.round();
    assert.equal(bad.hits, 0);

    pool.setMembers([spec(a), spec(bad)]);
    assert.equal(pool.isUp(bad.id), true, 'a discovered member starts up');
    await active.round();
    assert.equal(bad.hits, 1, 'the new member is checked');
    assert.deepEqual(liveIds(pool), [a.id]);

    // Removed while down (the live set does not change), then back: it starts afresh, up.
    pool.setMembers([spec(a)]);
    await active.round();
    assert.equal(bad.hits, 1, 'a removed member is no longer checked');
    pool.setMembers([spec(a), spec(bad)]);
    assert.equal(pool.isUp(bad.id), true);
    assert.equal(tracker.isDown('active', bad.id), false, 'no stale verdict for a member that came back');
    await active.round();
    assert.equal(pool.isUp(bad.id), false, 'and is judged again on its own checks');

    await active.stop();
    tracker.close();
    await a.close();
    await bad.close();
  });

  test('stop aborts a check in flight and no verdict follows', async () => {
    const a = await new Backend().listen();
    a.mode = 'hang';
    const pool = new Pool('p', [{ host: '127.0.0.1', port: a.port, weight: 1 }]);
    const tracker = new HealthTracker(pool);
    const active = new ActiveHealthCheck(tracker, { path: '/', interval: 1000, timeout: 5000, rise: 1, fall: 1 });
    active.start();
    await waitFor(() => a.hits === 1, 'the check to reach the backend');
    const t = Date.now();
    await active.stop();
    assert.ok(Date.now() - t < 1000, 'stop does not wait for the timeout');
    assert.equal(pool.isUp(a.id), true);
    tracker.close();
    await a.close();
  });
});

describe('passive ejection', () => {
  function setup(failures = 3, ejectFor = 30_000): { pool: Pool; m: Member; other: Member; clock: ManualClock; passive: PassiveHealth; tracker: HealthTracker; transitions: Transition[] } {
    const pool = new Pool('p', [
      { host: '10.0.0.1', port: 80, weight: 1 },
      { host: '10.0.0.2', port: 80, weight: 1 },
    ]);
    const rec = recorder();
    const tracker = new HealthTracker(pool, rec.onTransition);
    const clock = new ManualClock(1000);
    const passive = new PassiveHealth(tracker, { failures, ejectFor }, clock);
    return { pool, m: pool.members.get('10.0.0.1:80')!, other: pool.members.get('10.0.0.2:80')!, clock, passive, tracker, transitions: rec.transitions };
  }

  test('ejects after N consecutive failures and re-admits after ejectFor, with a fresh count', () => {
    const { pool, m, other, clock, passive, tracker, transitions } = setup(3, 30_000);
    passive.failure(m, 'ECONNRESET');
    passive.failure(m, 'ECONNRESET');
    assert.equal(pool.isUp(m.id), true, 'two failures are not enough');
    passive.failure(m, 'ECONNRESET');
    assert.equal(pool.isUp(m.id), false, 'the third ejects');
    assert.deepEqual(liveIds(pool), [other.id]);
    assert.match(transitions[0]!.reason, /passive: 3 consecutive failed requests \(last: ECONNRESET\); ejected for 30000ms/);

    passive.failure(m); // late failures of requests already in flight do not extend the ejection
    clock.advance(29_999);
    passive.tick();
    assert.equal(pool.isUp(m.id), false, 'still ejected 1 ms before the end');
    clock.advance(1);
    passive.tick();
    assert.equal(pool.isUp(m.id), true, 're-admitted at ejectFor');
    assert.deepEqual(transitions.map((t) => t.up), [false, true]);

    passive.failure(m);
    passive.failure(m);
    assert.equal(pool.isUp(m.id), true, 'a fresh chance: the old count is gone');
    passive.failure(m);
    assert.equal(pool.isUp(m.id), false);
    passive.stop();
    tracker.close();
  });

  test('a success resets the failure count', () => {
    const { pool, m, passive, tracker } = setup(3);
    passive.failure(m);
    passive.failure(m);
    passive.success(m);
    assert.equal(passive.failureCount(m.id), 0);
    passive.failure(m);
    passive.failure(m);
    assert.equal(pool.isUp(m.id), true, 'only two in a row since the success');
    passive.failure(m);
    assert.equal(pool.isUp(m.id), false);
    passive.stop();
    tracker.close();
  });

  test('failures of one member do not count against another', () => {
    const { pool, m, other, passive, tracker } = setup(2);
    passive.failure(m);
    passive.failure(other);
    assert.equal(pool.live.size, 2);
    passive.stop();
    tracker.close();
  });

  test('the re-admission timer fires on its own (system clock)', async () => {
    const pool = new Pool('p', [{ host: '10.0.0.1', port: 80, weight: 1 }]);
    const tracker = new HealthTracker(pool);
    const passive = new PassiveHealth(tracker, { failures: 1, ejectFor: 30 });
    passive.failure(pool.members.members[0]!);
    assert.equal(pool.live.size, 0);
    await waitFor(() => pool.live.size === 1, 're-admission by the timer');
    passive.stop();
    tracker.close();
  });

  test('a member that leaves the pool while ejected comes back fresh', () => {
    const { pool, m, passive, tracker } = setup(1);
    passive.failure(m);
    assert.equal(pool.isUp(m.id), false);
    const all = pool.members.members.map((x) => ({ host: x.host, port: x.port, weight: x.weight }));
    pool.setMembers(all.filter((s) => s.host !== m.host));
    pool.setMembers(all);
    assert.equal(pool.isUp(m.id), true);
    assert.equal(passive.isEjected(m.id), false);
    assert.equal(tracker.isAnyDown(m.id), false);
    passive.stop();
    tracker.close();
  });
});

describe('HealthTracker: active and passive combined', () => {
  test('live only when neither says down; only combined flips are reported', () => {
    const pool = new Pool('p', [{ host: '10.0.0.1', port: 80, weight: 1 }]);
    const id = '10.0.0.1:80';
    const rec = recorder();
    const tracker = new HealthTracker(pool, rec.onTransition);
    const clock = new ManualClock();
    const passive = new PassiveHealth(tracker, { failures: 1, ejectFor: 1000 }, clock);

    tracker.set('active', id, true, 'active: down');
    passive.failure(pool.members.get(id)!);
    assert.equal(pool.isUp(id), false);
    clock.advance(1000);
    passive.tick();
    assert.equal(pool.isUp(id), false, 'the end of an ejection does not override a failing active check');
    tracker.set('active', id, false, 'active: up');
    assert.equal(pool.isUp(id), true);

    passive.failure(pool.members.get(id)!);
    tracker.set('active', id, false, 'active: up again');
    assert.equal(pool.isUp(id), false, 'a passing active check does not cut an ejection short');
    clock.advance(1000);
    passive.tick();
    assert.equal(pool.isUp(id), true);

    assert.deepEqual(rec.transitions.map((t) => [t.up, t.reason]), [
      [false, 'active: down'],
      [true, 'active: up'],
      [false, 'passive: 1 consecutive failed requests (last: request failed); ejected for 1000ms'],
      [true, 'passive: ejection of 1000ms ended'],
    ]);
    passive.stop();
    tracker.close();
  });

  test('a new tracker lifts down marks left by a replaced one (config reload)', () => {
    const pool = new Pool('p', [{ host: '10.0.0.1', port: 80, weight: 1 }]);
    const old = new HealthTracker(pool);
    old.set('active', '10.0.0.1:80', true, 'active: down');
    old.close();
    assert.equal(pool.live.size, 0);
    const rec = recorder();
    const next = new HealthTracker(pool, rec.onTransition);
    assert.equal(pool.live.size, 1, 'nothing would ever lift the old mark');
    assert.deepEqual(rec.transitions.map((t) => t.up), [true]);
    next.close();
  });

  test('PoolHealth wires both from the config; without passive config, failure() is a no-op', async () => {
    const a = await new Backend().listen();
    const pool = new Pool('p', [{ host: '127.0.0.1', port: a.port, weight: 1 }]);
    const clock = new ManualClock();
    const rec = recorder();
    const health = new PoolHealth(pool, { active: { path: '/health', interval: 60_000, timeout: 5000, rise: 1, fall: 1 }, passive: { failures: 2, ejectFor: 5000 } }, { clock, onTransition: rec.onTransition });
    health.start();
    await waitFor(() => a.hits >= 1, 'the first check, run at start');
    const m = pool.members.get(a.id)!;
    health.failure(m, 'ECONNREFUSED');
    health.success(m);
    health.failure(m, 'ECONNREFUSED');
    assert.equal(pool.isUp(a.id), true);
    health.failure(m, 'ECONNREFUSED');
    assert.equal(pool.isUp(a.id), false, 'ejected although active checks pass');
    clock.advance(5000);
    health.passive!.tick();
    assert.equal(pool.isUp(a.id), true);
    await health.stop();

    const noPassive = new PoolHealth(pool, undefined);
    noPassive.start();
    for (let i = 0; i < 100; i++) noPassive.failure(m);
    assert.equal(pool.isUp(a.id), true);
    await noPassive.stop();
    await a.close();
  });
});

/** A pino logger whose lines the test reads. */
function captureLog(): { log: Logger; lines: { msg: string; member?: string; pool?: string; err?: { message: string } }[] } {
  const lines: { msg: string }[] = [];
  const log = pino({ level: 'error' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) });
  return { log, lines };
}

/** Records unhandled rejections until `stop` (which returns them). */
function watchUnhandled(): { stop(): unknown[] } {
  const seen: unknown[] = [];
  const on = (reason: unknown): void => void seen.push(reason);
  process.on('unhandledRejection', on);
  return {
    stop: () => {
      process.off('unhandledRejection', on);
      return seen;
    },
  };
}

describe('a throw in a health round or a pool listener ends nothing', () => {
  const spec = (b: Backend): { host: string; port: number; weight: number } => ({ host: '127.0.0.1', port: b.port, weight: 1 });

  test('a check whose outcome cannot be applied is logged; the other members are checked and rounds go on', async () => {
    const a = await new Backend().listen();
    const b = await new Backend().listen();
    b.mode = '500';
    const pool = new Pool('p', [spec(a), spec(b)]);
    const tracker = new HealthTracker(pool);
    const { log, lines } = captureLog();
    const unhandled = watchUnhandled();
    const onCheck = (r: CheckResult): void => {
      if (r.member.id === a.id) throw new Error('metrics exporter broke');
    };
    const active = new ActiveHealthCheck(tracker, { path: '/', interval: 20, timeout: 5000, rise: 1, fall: 1 }, { onCheck, log });
    await active.round();
    assert.equal(pool.isUp(b.id), false, 'the other member was checked and judged');
    const failed = (): number => lines.filter((l) => l.msg === 'health check outcome could not be applied' && l.member === a.id).length;
    assert.equal(failed(), 1);
    assert.equal(lines[0]!.err?.message, 'metrics exporter broke');
    // From the timer too: every round throws, and the rounds go on.
    active.start();
    await waitFor(() => failed() >= 4, 'more rounds, each logging the throw');
    await active.stop();
    tracker.close();
    assert.deepEqual(unhandled.stop(), []);
    await a.close();
    await b.close();
  });

  test('a pool listener that throws is logged; the other listeners still run and the change stands', () => {
    const { log, lines } = captureLog();
    const pool = new Pool('p', [{ host: '10.0.0.1', port: 80, weight: 1 }, { host: '10.0.0.2', port: 80, weight: 1 }], log);
    const seen: string[] = [];
    pool.onChange(() => void seen.push('first'));
    pool.onChange(() => {
      throw new Error('listener bug');
    });
    pool.onChange((p) => void seen.push(`third: ${liveIds(p).join(',')}`));
    assert.doesNotThrow(() => pool.setUp('10.0.0.1:80', false));
    assert.deepEqual(seen, ['first', 'third: 10.0.0.2:80']);
    assert.deepEqual(liveIds(pool), ['10.0.0.2:80']);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.msg, 'pool change listener failed');
    assert.equal(lines[0]!.pool, 'p');
    assert.equal(lines[0]!.err?.message, 'listener bug');
  });

  test('a pool listener that throws on a health transition: the checker goes on and the other listeners hear it', async () => {
    const a = await new Backend().listen();
    const b = await new Backend().listen();
    const { log } = captureLog();
    const pool = new Pool('p', [spec(a), spec(b)], log);
    const unhandled = watchUnhandled();
    pool.onChange(() => {
      throw new Error('listener bug');
    });
    const heard: string[][] = [];
    pool.onChange((p) => void heard.push(liveIds(p)));
    const tracker = new HealthTracker(pool);
    const active = new ActiveHealthCheck(tracker, { path: '/', interval: 20, timeout: 5000, rise: 1, fall: 1 }, { log });
    active.start();
    await waitFor(() => a.hits >= 1, 'a first check');
    a.mode = '500';
    await waitFor(() => heard.some((ids) => !ids.includes(a.id)), 'the other listener to hear a go down');
    a.mode = 'ok';
    await waitFor(() => pool.isUp(a.id), 'a to come back: the checker still runs');
    await active.stop();
    tracker.close();
    assert.deepEqual(unhandled.stop(), []);
    await a.close();
    await b.close();
  });
});
