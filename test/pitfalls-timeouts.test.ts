/**
 * Timeouts and keep-alive. A real homing (port 0) in front of real
 * node:http backends (port 0, restarted on the same port where needed); raw TCP clients where the
 * client must misbehave. Every test ends with a normal proxied request.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { parseConfig } from '../src/config/load.js';
import {
  RawClient,
  assertProxies,
  errorCode,
  headerValues,
  httpRequest,
  oneRouteConfig,
  startRecordingBackend,
  startTestHoming,
  until,
  WAIT,
  type RecordingBackend,
  type RecordingOptions,
} from './support/backends.js';

type Homing = Awaited<ReturnType<typeof startTestHoming>>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One request on a kept-alive raw connection; returns the answer. */
async function onConn(c: RawClient, raw: string, n: number): Promise<ReturnType<RawClient['finalResponses']>[number]> {
  c.write(raw);
  const rs = await c.waitResponses(n, 4000);
  assert.ok(rs[n - 1], `no answer #${n}: ${JSON.stringify(c.text.slice(-300))}`);
  return rs[n - 1]!;
}

describe('upstream closes pooled sockets, upstream restarts', () => {
  test('backend closed and restarted on the same port: homing recovers without a restart', async () => {
    let b: RecordingBackend = await startRecordingBackend('first');
    const port = b.port;
    const h = await startTestHoming(oneRouteConfig([port]));
    try {
      for (let i = 0; i < 3; i++) assert.equal((await httpRequest(`${h.url}/warm${i}`)).status, 200);
      await b.close();
      const down = await httpRequest(`${h.url}/while-down`);
      assert.equal(down.status, 502, down.text);
      assert.equal(errorCode(down.body), 'HOMING_ERR_UPSTREAM_CONNECT');
      b = await startRecordingBackend('second', { port });
      // The very first request after the restart succeeds, and so do the next ones.
      for (let i = 0; i < 5; i++) {
        const r = await httpRequest(`${h.url}/after${i}`);
        assert.equal(r.status, 200, `request ${i} after the restart: ${r.text}`);
        assert.equal(JSON.parse(r.text).member, 'second');
      }
      await assertProxies(h.url, b);
    } finally {
      await h.close();
      await b.close();
    }
  });

  test('backend restarted between two requests (pooled socket now stale): the next GET succeeds', async () => {
    let b: RecordingBackend = await startRecordingBackend('first');
    const port = b.port;
    const h = await startTestHoming(oneRouteConfig([port], { pool: 'keepAliveTimeout: 30s' }));
    try {
      assert.equal((await httpRequest(`${h.url}/warm`)).status, 200);
      await b.close();
      b = await startRecordingBackend('second', { port });
      const r = await httpRequest(`${h.url}/after`);
      assert.equal(r.status, 200, r.text);
      assert.equal(JSON.parse(r.text).member, 'second');
      await assertProxies(h.url, b);
    } finally {
      await h.close();
      await b.close();
    }
  });

  test('with passive health: the member ejected while down comes back after ejectFor, no restart of homing', async () => {
    let b: RecordingBackend = await startRecordingBackend('first');
    const port = b.port;
    const h = await startTestHoming(oneRouteConfig([port], { pool: 'health: { passive: { failures: 1, ejectFor: 300ms } }' }));
    try {
      assert.equal((await httpRequest(`${h.url}/warm`)).status, 200);
      await b.close();
      const down = await httpRequest(`${h.url}/down`);
      assert.ok(down.status === 502 || down.status === 503, down.text);
      errorCode(down.body);
      b = await startRecordingBackend('second', { port });
      await until(async () => (await httpRequest(`${h.url}/probe`)).status === 200, WAIT, 50);
      await assertProxies(h.url, b);
    } finally {
      await h.close();
      await b.close();
    }
  });

  test('upstream closes a pooled socket just as homing reuses it: an idempotent GET is re-sent once, on a fresh connection', async () => {
    // Every request that arrives on an already-used connection is met with a close (the race of an
    // upstream idle timeout firing as the request is written).
    const b = await startRecordingBackend('a', {
      onRequest: (req, _res, s) => {
        if (s.onConnection > 1) {
          req.socket.destroy();
          return 'handled';
        }
        return undefined;
      },
    });
    const h = await startTestHoming(oneRouteConfig([b.port], { pool: 'connections: 1' }));
    try {
      const c = await RawClient.connect(h.http!.port);
      assert.equal((await onConn(c, 'GET /one HTTP/1.1\r\nHost: x\r\n\r\n', 1)).status, 200);
      const second = await onConn(c, 'GET /two HTTP/1.1\r\nHost: x\r\n\r\n', 2);
      c.destroy();
      assert.equal(second.status, 200, `stale pooled socket: ${second.body.toString()}`);
      const two = b.seen.filter((s) => s.url === '/two');
      assert.ok(two.length <= 2, 'one re-send at most');
      assert.equal(two[two.length - 1]!.onConnection, 1, 'the re-send goes on a fresh connection');
      const r = await httpRequest(`${h.url}/alive`);
      assert.equal(r.status, 200, r.text);
    } finally {
      await h.close();
      await b.close();
    }
  });

  test('idle-timeout ladder: homing drops idle upstream sockets before the backend does', async () => {
    const b = await startRecordingBackend('a', { keepAliveTimeout: 1500 });
    const h = await startTestHoming(oneRouteConfig([b.port], { pool: 'keepAliveTimeout: 300ms' }));
    try {
      const t0 = Date.now();
      assert.equal((await httpRequest(`${h.url}/one`)).status, 200);
      await until(() => b.closedConnections.has(b.seen[0]!.connection), WAIT, 10);
      const idle = Date.now() - t0;
      assert.ok(idle < 1200, `the upstream socket stayed pooled ${idle} ms, past the backend's own 1500 ms idle timeout`);
      const r = await httpRequest(`${h.url}/two`);
      assert.equal(r.status, 200);
      assert.notEqual(b.seen[1]!.connection, b.seen[0]!.connection);
    } finally {
      await h.close();
      await b.close();
    }
  });

  test('defaults keep the ladder: pool keepAliveTimeout < a Node backend’s default idle timeout', () => {
    const cfg = parseConfig(oneRouteConfig([9]), process.cwd(), 'test config');
    const nodeDefault = createServer().keepAliveTimeout;
    assert.ok(cfg.pools.p!.keepAliveTimeout < nodeDefault, `pool keepAliveTimeout ${cfg.pools.p!.keepAliveTimeout} ≥ Node's ${nodeDefault}`);
  });
});

describe('POST and a reset after bytes were sent → 502, never replayed', () => {
  async function twoMembers(onRequest: RecordingOptions['onRequest'], route = 'retries: 2'): Promise<{ a: RecordingBackend; b: RecordingBackend; h: Homing; close(): Promise<void>; posts(): number }> {
    const a = await startRecordingBackend('a', { onRequest });
    const b = await startRecordingBackend('b', { onRequest });
    const h = await startTestHoming(oneRouteConfig([a.port, b.port], { route }));
    return {
      a,
      b,
      h,
      posts: () => [...a.seen, ...b.seen].filter((s) => s.method === 'POST').length,
      async close() {
        await h.close();
        await a.close();
        await b.close();
      },
    };
  }

  for (const [name, route] of [
    ['streamed body', 'retries: 2'],
    ['body buffered for replay (redirect route)', 'retries: 2, affinity: { key: header:x-k, redirect: {}, maxReplayBody: 4MiB }'],
  ] as const) {
    test(`${name}: backend destroys the socket after reading part of the body → 502 with a code, exactly one request`, async () => {
      const t = await twoMembers((req, _res, s) => {
        if (req.method !== 'POST') return undefined;
        req.on('data', () => {
          if (s.body.length > 0) req.socket.destroy();
        });
        return 'handled';
      }, route);
      try {
        const size = 2 * 1024 * 1024;
        const c = await RawClient.connect(t.h.http!.port);
        c.write(`POST /pay HTTP/1.1\r\nHost: x\r\nX-K: k\r\nContent-Length: ${size}\r\n\r\n`);
        c.write(Buffer.alloc(size, 'p'));
        const [res] = await c.waitResponses(1);
        c.destroy();
        assert.equal(res?.status, 502, `expected a 502 answer, got ${JSON.stringify(c.text.slice(0, 200))} (closed: ${c.closed})`);
        assert.equal(errorCode(res.body), 'HOMING_ERR_UPSTREAM_RESET');
        assert.deepEqual(headerValues(res, 'connection'), ['close']);
        await sleep(200);
        assert.equal(t.posts(), 1, 'the POST was replayed');
        const r = await httpRequest(`${t.h.url}/alive`);
        assert.equal(r.status, 200, r.text);
      } finally {
        await t.close();
      }
    });

    test(`${name}: backend reads the whole body, then resets → 502 with a code, exactly one request`, async () => {
      const t = await twoMembers((req) => {
        if (req.method !== 'POST') return undefined;
        req.on('end', () => req.socket.destroy());
        return 'handled';
      }, route);
      try {
        const c = await RawClient.connect(t.h.http!.port);
        c.write('POST /pay HTTP/1.1\r\nHost: x\r\nX-K: k\r\nContent-Length: 11\r\n\r\nhello world');
        const [res] = await c.waitResponses(1);
        c.destroy();
        assert.equal(res?.status, 502, `expected a 502 answer, got ${JSON.stringify(c.text.slice(0, 200))} (closed: ${c.closed})`);
        assert.equal(errorCode(res.body), 'HOMING_ERR_UPSTREAM_RESET');
        await sleep(200);
        assert.equal(t.posts(), 1, 'the POST was replayed');
        const r = await httpRequest(`${t.h.url}/alive`);
        assert.equal(r.status, 200);
      } finally {
        await t.close();
      }
    });
  }

  test('POST on a pooled socket the upstream closes as it is reused → 502, not re-sent', async () => {
    const b = await startRecordingBackend('a', {
      onRequest: (req, _res, s) => {
        if (s.onConnection > 1) {
          req.socket.destroy();
          return 'handled';
        }
        return undefined;
      },
    });
    const h = await startTestHoming(oneRouteConfig([b.port], { pool: 'connections: 1' }));
    try {
      const c = await RawClient.connect(h.http!.port);
      assert.equal((await onConn(c, 'POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello', 1)).status, 200);
      c.write('POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
      const rs = await c.waitResponses(2);
      c.destroy();
      assert.equal(rs[1]?.status, 502, `expected a 502 answer, got ${JSON.stringify(c.text.slice(-300))}`);
      assert.equal(errorCode(rs[1]!.body), 'HOMING_ERR_UPSTREAM_RESET');
      await sleep(200);
      assert.equal(b.seen.filter((s) => s.url === '/two').length, 1, 'a POST must not be re-sent');
      const r = await httpRequest(`${h.url}/alive`);
      assert.equal(r.status, 200);
    } finally {
      await h.close();
      await b.close();
    }
  });
});

describe('listener timeouts in the right order', () => {
  test('configured keepAliveTimeout < headersTimeout ≤ requestTimeout are what the server uses', async () => {
    const b = await startRecordingBackend('a');
    const h = await startTestHoming(oneRouteConfig([b.port], { listen: 'keepAliveTimeout: 1s, headersTimeout: 2s, requestTimeout: 3s' }));
    try {
      for (const l of h.listeners) {
        assert.equal(l.server.keepAliveTimeout, 1000);
        assert.equal(l.server.headersTimeout, 2000);
        assert.equal(l.server.requestTimeout, 3000);
      }
      await assertProxies(h.url, b);
    } finally {
      await h.close();
      await b.close();
    }
  });

  test('a config that breaks the order is refused', () => {
    for (const listen of [
      'keepAliveTimeout: 5s, headersTimeout: 5s, requestTimeout: 10s',
      'keepAliveTimeout: 6s, headersTimeout: 5s, requestTimeout: 10s',
      'keepAliveTimeout: 1s, headersTimeout: 5s, requestTimeout: 4s',
    ]) {
      assert.throws(() => parseConfig(oneRouteConfig([9], { listen }), process.cwd(), 'test config'), /keepAliveTimeout|headersTimeout|requestTimeout/, listen);
    }
  });

  test('defaults sit behind a load balancer: keepAliveTimeout above a 60 s LB idle timeout', () => {
    const cfg = parseConfig(oneRouteConfig([9]), process.cwd(), 'test config');
    assert.ok(cfg.listen.keepAliveTimeout > 60_000);
    assert.ok(cfg.listen.headersTimeout > cfg.listen.keepAliveTimeout);
    assert.ok(cfg.listen.headersTimeout <= cfg.listen.requestTimeout);
  });

  test('an idle client connection is closed by homing after keepAliveTimeout, not before', async () => {
    const b = await startRecordingBackend('a');
    const h = await startTestHoming(oneRouteConfig([b.port], { listen: 'keepAliveTimeout: 600ms, headersTimeout: 2s, requestTimeout: 3s' }));
    try {
      const c = await RawClient.connect(h.http!.port);
      assert.equal((await onConn(c, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 1)).status, 200);
      const t0 = Date.now();
      assert.ok(await c.waitClosed(), 'idle connection never closed');
      const idle = Date.now() - t0;
      c.destroy();
      assert.ok(idle >= 450 && idle < 2500, `closed after ${idle} ms, keepAliveTimeout is 600 ms`);
      await assertProxies(h.url, b);
    } finally {
      await h.close();
      await b.close();
    }
  });
});

describe('headers trickled one byte a second', () => {
  const listen = 'keepAliveTimeout: 500ms, headersTimeout: 1500ms, requestTimeout: 3s';

  async function trickle(port: number, prefix: string, slow = 'X-Slow: ' + 'a'.repeat(100)): Promise<{ closedAfter: number; c: RawClient }> {
    const c = await RawClient.connect(port);
    c.write(prefix);
    const t0 = Date.now();
    let i = 0;
    const timer = setInterval(() => c.write(slow[i++ % slow.length]!), 1000);
    try {
      const closed = await c.waitClosed();
      assert.ok(closed, 'a connection trickling its head must be closed');
      return { closedAfter: Date.now() - t0, c };
    } finally {
      clearInterval(timer);
      c.destroy();
    }
  }

  test('trickled head on a new connection: closed at headersTimeout, nothing forwarded', async () => {
    const b = await startRecordingBackend('a');
    const h = await startTestHoming(oneRouteConfig([b.port], { listen }));
    try {
      const { closedAfter, c } = await trickle(h.http!.port, 'GET /slow HTTP/1.1\r\nHost: x\r\n');
      assert.ok(closedAfter >= 1200 && closedAfter < 4000, `closed after ${closedAfter} ms, headersTimeout is 1500 ms`);
      for (const r of c.finalResponses()) assert.ok(r.status === 408 || r.status === 400, `answer ${r.status}`);
      assert.equal(b.seen.length, 0);
      await assertProxies(h.url, b);
    } finally {
      await h.close();
      await b.close();
    }
  });

  test('trickled request line: closed at headersTimeout', async () => {
    const b = await startRecordingBackend('a');
    const h = await startTestHoming(oneRouteConfig([b.port], { listen }));
    try {
      const { closedAfter } = await trickle(h.http!.port, 'G', 'ET /' + 'a'.repeat(100));
      assert.ok(closedAfter >= 1200 && closedAfter < 4000, `closed after ${closedAfter} ms`);
      assert.equal(b.seen.length, 0);
      await assertProxies(h.url, b);
    } finally {
      await h.close();
      await b.close();
    }
  });

  test('trickled head of a second request on a kept-alive connection: closed in bounded time', async () => {
    const b = await startRecordingBackend('a');
    const h = await startTestHoming(oneRouteConfig([b.port], { listen }));
    try {
      const c = await RawClient.connect(h.http!.port);
      assert.equal((await onConn(c, 'GET /first HTTP/1.1\r\nHost: x\r\n\r\n', 1)).status, 200);
      c.write('GET /second HTTP/1.1\r\nHost: x\r\n');
      const t0 = Date.now();
      const slow = 'X-Slow: ' + 'a'.repeat(100);
      let i = 0;
      const timer = setInterval(() => c.write(slow[i++ % slow.length]!), 1000);
      const closed = await c.waitClosed();
      clearInterval(timer);
      c.destroy();
      assert.ok(closed, 'never closed');
      assert.ok(Date.now() - t0 < 4000, `closed after ${Date.now() - t0} ms`);
      assert.equal(b.seen.filter((s) => s.url === '/second').length, 0);
      await assertProxies(h.url, b);
    } finally {
      await h.close();
      await b.close();
    }
  });
});
