/**
 * Request and response bodies. A real homing (port 0) between raw TCP
 * clients and real node:http backends (raw TCP where the upstream must misbehave); each test checks
 * what the backend received, what the client received, and that homing still proxies afterwards.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import {
  RawClient,
  assertProxies,
  errorCode,
  headerValues,
  oneRouteConfig,
  startRecordingBackend,
  startScriptedBackend,
  startTestHoming,
  until,
  type RecordingBackend,
  type RecordingOptions,
} from './support/backends.js';

type Homing = Awaited<ReturnType<typeof startTestHoming>>;

async function setup(opts: RecordingOptions = {}, route?: string): Promise<{ b: RecordingBackend; h: Homing; port: number; close(): Promise<void> }> {
  const b = await startRecordingBackend('a', opts);
  const h = await startTestHoming(oneRouteConfig([b.port], route ? { route } : {}));
  return {
    b,
    h,
    port: h.http!.port,
    async close() {
      await h.close();
      await b.close();
    },
  };
}

/** Every value of header `name` (lower-case) in a raw [name, value, …] list. */
function rawAll(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Answer normally for /alive, otherwise run `fn` (the test's misbehaviour). */
function unlessAlive(fn: NonNullable<RecordingOptions['onRequest']>): NonNullable<RecordingOptions['onRequest']> {
  return (req, res, s, b) => (req.url === '/alive' ? undefined : fn(req, res, s, b));
}

describe('client aborts mid-upload', () => {
  const variants: [string, string, (n: number) => string, string | undefined][] = [
    ['Content-Length upload, streamed route', 'Content-Length: 100000\r\n', (n) => 'u'.repeat(n), undefined],
    ['chunked upload, streamed route', 'Transfer-Encoding: chunked\r\n', (n) => `${n.toString(16)}\r\n${'u'.repeat(n)}\r\n`, 'requestBuffering: false'],
    ['Content-Length upload over maxReplayBody, redirect route', 'Content-Length: 100000\r\n', (n) => 'u'.repeat(n), 'affinity: { key: header:x-k, redirect: {}, maxReplayBody: 1KiB }'],
  ];
  for (const [name, framing, chunk, route] of variants) {
    test(`${name}: upstream request destroyed (never completed, socket not pooled), no crash`, async () => {
      const t = await setup({}, route);
      try {
        const c = await RawClient.connect(t.port);
        c.write(`POST /upload HTTP/1.1\r\nHost: x\r\nX-K: k1\r\n${framing}\r\n`);
        c.write(chunk(4000));
        await until(() => (t.b.seen[0]?.body.length ?? 0) >= 4000);
        c.destroy();
        const s = t.b.seen[0]!;
        // The upstream request ends abnormally: its body never completes (no 0\r\n\r\n, no full CL).
        await until(() => s.closed && t.b.closedConnections.has(s.connection));
        assert.equal(s.complete, false, 'the upstream saw a complete body the client never sent');
        assert.ok(s.body.length < 100000);
        await assertProxies(t.h.url, t.b);
        assert.notEqual(t.b.seen[t.b.seen.length - 1]!.connection, s.connection, 'the aborted upstream socket must not be reused');
        assert.equal(t.b.seen.filter((x) => x.url === '/upload').length, 1, 'no replay of the aborted upload');
      } finally {
        await t.close();
      }
    });
  }

  test('Content-Length upload under maxReplayBody on a redirect route: nothing reaches the upstream', async () => {
    const t = await setup({}, 'affinity: { key: header:x-k, redirect: {} }');
    try {
      const c = await RawClient.connect(t.port);
      c.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n');
      c.write('u'.repeat(4000));
      await sleep(100);
      c.destroy();
      await sleep(200);
      assert.equal(t.b.seen.length, 0, 'a buffered upload that never finished must not be sent');
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('client aborts while the upstream is answering slowly: upstream response aborted, no crash', async () => {
    let upstreamRes: ServerResponse | undefined;
    const t = await setup({
      onRequest: unlessAlive((_req, res) => {
        upstreamRes = res;
        res.writeHead(200, { 'content-length': '1000000' });
        res.write('x'.repeat(1000));
        return 'handled';
      }),
    });
    try {
      const c = await RawClient.connect(t.port);
      c.write('POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
      await until(() => c.received > 1000);
      c.destroy();
      await until(() => upstreamRes !== undefined && upstreamRes.destroyed);
      await until(() => t.b.closedConnections.has(t.b.seen[0]!.connection));
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });
});

describe('upstream resets', () => {
  test('GET, upstream resets before the head → 502 JSON with Connection: close', async () => {
    const t = await setup({ onRequest: unlessAlive((req) => void req.socket.destroy()) });
    try {
      const c = await RawClient.connect(t.port);
      c.write('GET /r HTTP/1.1\r\nHost: x\r\n\r\n');
      const [res] = await c.waitResponses(1);
      c.destroy();
      assert.equal(res?.status, 502, c.text);
      assert.equal(errorCode(res.body), 'HOMING_ERR_UPSTREAM_RESET');
      assert.deepEqual(headerValues(res, 'connection'), ['close']);
      assert.ok(t.b.seen.length <= 3, 'at most `retries` (2) re-sends of an idempotent request');
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('POST, upstream resets after reading the body, before the head → 502 JSON, Connection: close, no replay', async () => {
    const t = await setup({ onEnd: (req, res) => (req.url === '/alive' ? void res.end('ok') : void req.socket.destroy()) });
    try {
      const c = await RawClient.connect(t.port);
      c.write('POST /r HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
      const [res] = await c.waitResponses(1);
      assert.equal(res?.status, 502, c.text);
      assert.equal(errorCode(res.body), 'HOMING_ERR_UPSTREAM_RESET');
      assert.deepEqual(headerValues(res, 'connection'), ['close']);
      assert.ok(await c.waitClosed());
      assert.equal(t.b.seen.filter((s) => s.url === '/r').length, 1);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('upstream resets mid-body (Content-Length): client connection cut, body never looks complete', async () => {
    const t = await setup({
      onRequest: unlessAlive((req, res) => {
        res.writeHead(200, { 'content-length': '100000' });
        res.write('y'.repeat(1000), () => setTimeout(() => req.socket.destroy(), 50));
        return 'handled';
      }),
    });
    try {
      const c = await RawClient.connect(t.port);
      c.write('GET /mid HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.ok(await c.waitClosed(), 'the client connection must be closed');
      const rs = c.responses();
      assert.equal(rs.length, 1);
      assert.equal(rs[0]!.status, 200);
      assert.equal(rs[0]!.complete, false, 'a truncated body must not look whole');
      assert.ok(rs[0]!.body.length < 100000);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('upstream resets mid-body (chunked): no chunk terminator, no clean end', async () => {
    const t = await setup({
      onRequest: unlessAlive((req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first chunk;');
        res.write('second chunk;', () => setTimeout(() => req.socket.destroy(), 50));
        return 'handled';
      }),
    });
    try {
      const c = await RawClient.connect(t.port);
      c.write('GET /mid HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.ok(await c.waitClosed(), 'the client connection must be closed');
      const rs = c.responses();
      assert.equal(rs.length, 1);
      assert.equal(rs[0]!.status, 200);
      assert.equal(rs[0]!.framing, 'chunked');
      assert.equal(rs[0]!.complete, false, 'homing sent the last chunk of a body the upstream never finished');
      assert.ok(!c.text.includes('\r\n0\r\n\r\n'));
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('upstream answers 413 before reading a large body → the 413 is relayed, not a 502', async () => {
    const t = await setup(
      {
        onRequest: unlessAlive((_req, res) => {
          const body = '{"upstream":"too large"}';
          res.writeHead(413, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
          res.end(body);
          return 'handled';
        }),
      },
      'maxBody: 100MiB',
    );
    try {
      const size = 16 * 1024 * 1024;
      const c = await RawClient.connect(t.port);
      c.write(`POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`);
      c.write(Buffer.alloc(size, 'x'));
      const [res] = await c.waitResponses(1);
      c.destroy();
      assert.equal(res?.status, 413, c.text.slice(0, 300));
      assert.equal(res.body.toString(), '{"upstream":"too large"}');
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  // undici surfaces the EPIPE of the body write before it parses the 413 head already received
  // (undici, not homing): the client then gets a clean 502 with its code and Connection: close,
  // never a hang or a half answer. Either answer is safe; the keep-alive variant above relays 413.
  test(
    'upstream answers 413 with Connection: close and stops reading → the 413, or a clean 502 that closes',
    async () => {
      const t = await setup(
        {
          onRequest: unlessAlive((_req, res) => {
            const body = '{"upstream":"too large"}';
            res.writeHead(413, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
            res.end(body);
            return 'handled';
          }),
        },
        'maxBody: 100MiB',
      );
      try {
        const size = 8 * 1024 * 1024;
        const c = await RawClient.connect(t.port);
        c.write(`POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`);
        c.write(Buffer.alloc(size, 'x'));
        const [res] = await c.waitResponses(1);
        c.destroy();
        assert.ok(res, c.text.slice(0, 300));
        if (res.status !== 413) {
          assert.equal(res.status, 502, c.text.slice(0, 300));
          assert.match(res.body.toString(), /"code":"HOMING_ERR_UPSTREAM_(RESET|CONNECT)"/);
          assert.match(c.text, /connection: close/i);
        }
        await assertProxies(t.h.url, t.b);
      } finally {
        await t.close();
      }
    },
  );
});

describe('a client that never reads a 200 MB response', () => {
  test('backpressure reaches the upstream: its writes stall, homing RSS stays bounded, abort on close', async () => {
    const total = 200 * 1024 * 1024;
    let written = 0;
    let upstreamClosed = false;
    let upstreamFinished = false;
    const t = await setup({
      onRequest: unlessAlive((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
        const chunk = Buffer.alloc(256 * 1024, 'z');
        res.on('close', () => {
          upstreamClosed = true;
          upstreamFinished = res.writableFinished;
        });
        const pump = (): void => {
          while (written < total && !res.destroyed) {
            written += chunk.length;
            if (!res.write(chunk)) {
              res.once('drain', pump);
              return;
            }
          }
          if (written >= total) res.end();
        };
        pump();
        return 'handled';
      }),
    });
    try {
      global.gc?.();
      const rss0 = process.memoryUsage().rss;
      const c = await RawClient.connect(t.port);
      c.socket.pause(); // never read
      c.write('GET /huge HTTP/1.1\r\nHost: x\r\n\r\n');
      // Wait until the upstream's writes stop advancing (stable over 400 ms).
      await until(async () => {
        const w = written;
        await sleep(400);
        return w > 0 && written === w;
      }, 8000, 1);
      const stalledAt = written;
      assert.ok(stalledAt < 64 * 1024 * 1024, `the upstream wrote ${(stalledAt / 1048576).toFixed(1)} MiB to a client that reads nothing`);
      assert.ok(stalledAt < total);
      const growth = process.memoryUsage().rss - rss0;
      assert.ok(growth < 96 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);
      // Still stalled a little later (not just slow).
      await sleep(300);
      assert.ok(written - stalledAt <= 1024 * 1024);
      // The client goes away: the upstream response is aborted, not left paused forever.
      c.destroy();
      await until(() => upstreamClosed);
      assert.equal(upstreamFinished, false);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });
});

describe('trailers are dropped, never merged into headers', () => {
  test('upstream trailers Transfer-Encoding, X-Forwarded-For, X-Checksum: body relayed whole, trailers dropped', async () => {
    const t = await setup({
      onRequest: unlessAlive((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'Transfer-Encoding, X-Forwarded-For, X-Checksum' });
        res.write('hello ');
        res.write('world');
        res.addTrailers({ 'Transfer-Encoding': 'chunked', 'X-Forwarded-For': '6.6.6.6', 'X-Checksum': 'abc' });
        res.end();
        return 'handled';
      }),
    });
    try {
      const c = await RawClient.connect(t.port);
      c.write('GET /t HTTP/1.1\r\nHost: x\r\n\r\n');
      const [res] = await c.waitResponses(1);
      c.destroy();
      assert.equal(res?.status, 200, c.text);
      assert.equal(res.body.toString(), 'hello world');
      assert.deepEqual(res.trailers, [], `trailers relayed: ${JSON.stringify(res.trailers)}`);
      for (const name of ['x-forwarded-for', 'x-checksum', 'trailer']) assert.deepEqual(headerValues(res, name), [], `${name} in the head`);
      assert.ok(!c.text.includes('6.6.6.6'));
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('upstream trailer Content-Length: never merged; the body is relayed (or the connection cut, never a clean wrong end)', async () => {
    const t = await setup({
      onRequest: unlessAlive((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'Content-Length' });
        res.write('hello world');
        res.addTrailers({ 'Content-Length': '5' });
        res.end();
        return 'handled';
      }),
    });
    try {
      const c = await RawClient.connect(t.port);
      c.write('GET /t HTTP/1.1\r\nHost: x\r\n\r\n');
      await until(() => c.closed || c.finalResponses().length === 1);
      c.destroy();
      const [res] = c.responses();
      assert.equal(res?.status, 200);
      assert.deepEqual(headerValues(res, 'content-length'), [], 'the trailer became a header');
      assert.deepEqual(res.trailers, []);
      if (res.complete) assert.equal(res.body.toString(), 'hello world');
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('upstream trailer line without a colon: never relayed; the client gets the body or a cut connection', async () => {
    const up = await startScriptedBackend((head) =>
      head.startsWith('GET /alive')
        ? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
        : 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nNoColonHere\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n',
    );
    const h = await startTestHoming(oneRouteConfig([up.port]));
    try {
      const c = await RawClient.connect(h.http!.port);
      c.write('GET /t HTTP/1.1\r\nHost: x\r\n\r\n');
      await c.waitResponses(1).catch(() => {});
      await until(() => c.closed || c.finalResponses().length === 1);
      c.destroy();
      assert.ok(!c.text.includes('NoColonHere'));
      assert.ok(!c.text.includes('6.6.6.6'));
      const rs = c.responses();
      if (rs[0]?.complete) {
        assert.equal(rs[0].body.toString(), 'hello');
        assert.deepEqual(rs[0].trailers, []);
      }
      const ok = await RawClient.connect(h.http!.port);
      ok.write('GET /alive HTTP/1.1\r\nHost: x\r\n\r\n');
      const [r2] = await ok.waitResponses(1);
      ok.destroy();
      assert.equal(r2?.status, 200);
    } finally {
      await h.close();
      await up.close();
    }
  });

  test('request trailers X-Forwarded-For, X-Checksum: body forwarded, trailers dropped, headers untouched', async () => {
    const t = await setup();
    try {
      const c = await RawClient.connect(t.port);
      c.write(
        'POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Forwarded-For, X-Checksum\r\n\r\n' +
          '5\r\nhello\r\n0\r\nX-Forwarded-For: 6.6.6.6\r\nX-Checksum: abc\r\n\r\n',
      );
      const [res] = await c.waitResponses(1);
      c.destroy();
      assert.equal(res?.status, 200, c.text);
      const s = t.b.seen[0]!;
      assert.ok(s.complete);
      assert.equal(s.body.toString(), 'hello');
      assert.deepEqual(s.trailers, {}, `trailers forwarded: ${JSON.stringify(s.trailers)}`);
      assert.deepEqual(rawAll(s.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
      assert.equal(s.headers['x-checksum'], undefined);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('request trailers Content-Length, Transfer-Encoding: refused (400) or dropped, never merged', async () => {
    const t = await setup();
    try {
      for (const trailer of ['Content-Length: 0', 'Transfer-Encoding: chunked']) {
        const c = await RawClient.connect(t.port);
        c.write(`POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n${trailer}\r\n\r\n`);
        const [res] = await c.waitResponses(1);
        c.destroy();
        if (res?.status === 400) {
          assert.equal(errorCode(res.body), 'HOMING_ERR_BAD_REQUEST');
        } else {
          assert.equal(res?.status, 200, c.text);
          const s = t.b.seen[t.b.seen.length - 1]!;
          assert.equal(s.body.toString(), 'hello');
          assert.deepEqual(s.trailers, {});
        }
      }
      await assertProxies(t.h.url, t.b);
      for (const s of t.b.seen) if (s.url === '/t' && s.complete) assert.equal(s.body.toString(), 'hello');
    } finally {
      await t.close();
    }
  });

  test('request trailer line without a colon → 400, the upstream never gets a complete request', async () => {
    const t = await setup();
    try {
      const c = await RawClient.connect(t.port);
      c.write('POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nNoColonHere\r\n\r\n');
      assert.ok(await c.waitClosed());
      const rs = c.finalResponses();
      assert.equal(rs.length, 1, c.text);
      assert.equal(rs[0]!.status, 400);
      assert.equal(errorCode(rs[0]!.body), 'HOMING_ERR_BAD_REQUEST');
      await assertProxies(t.h.url, t.b);
      assert.equal(t.b.seen.filter((s) => s.url === '/t' && s.complete).length, 0);
    } finally {
      await t.close();
    }
  });
});

describe('Expect: 100-continue', () => {
  for (const [name, route] of [
    ['streamed route', undefined],
    ['redirect route (body buffered first)', 'affinity: { key: header:x-k, redirect: {} }'],
  ] as const) {
    test(`${name}: 100 Continue, then the body goes up without Expect; no hang`, async () => {
      const t = await setup({}, route);
      try {
        const c = await RawClient.connect(t.port);
        c.write('POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n');
        await until(() => c.responses().some((r) => r.status === 100));
        c.write('hello');
        const [res] = await c.waitResponses(1);
        c.destroy();
        assert.equal(res?.status, 200, c.text);
        const s = t.b.seen[0]!;
        assert.equal(s.body.toString(), 'hello');
        assert.equal(s.headers.expect, undefined, 'Expect must not be forwarded (undici rejects it)');
        await assertProxies(t.h.url, t.b);
      } finally {
        await t.close();
      }
    });
  }

  test('Expect: 100-continue with a body over maxBody → 413 JSON at once, nothing forwarded', async () => {
    const t = await setup({}, 'maxBody: 1KiB');
    try {
      const c = await RawClient.connect(t.port);
      c.write('POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n');
      const [res] = await c.waitResponses(1);
      c.destroy();
      assert.equal(res?.status, 413, c.text);
      assert.equal(errorCode(res.body), 'HOMING_ERR_BODY_TOO_LARGE');
      assert.equal(t.b.seen.length, 0);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('Expect other than 100-continue → 417 JSON, nothing forwarded', async () => {
    const t = await setup();
    try {
      const c = await RawClient.connect(t.port);
      c.write('POST /e HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\nhello');
      const [res] = await c.waitResponses(1);
      c.destroy();
      assert.equal(res?.status, 417, c.text);
      assert.equal(errorCode(res.body), 'HOMING_ERR_EXPECTATION_FAILED');
      assert.equal(t.b.seen.length, 0);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });
});
