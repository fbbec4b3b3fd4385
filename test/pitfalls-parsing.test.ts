/**
 * Request parsing and smuggling. Hostile bytes go over raw TCP to a real
 * homing (port 0) in front of real node:http backends (port 0); each test checks homing's answer,
 * what the backend received, and that homing still serves a normal request afterwards.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RawClient,
  assertProxies,
  errorCode,
  oneRouteConfig,
  startRecordingBackend,
  startTestHoming,
  until,
  type RawResponse,
  type RecordingBackend,
  type SeenRequest,
} from './support/backends.js';

type Homing = Awaited<ReturnType<typeof startTestHoming>>;

async function setup(yaml?: (port: number) => string): Promise<{ b: RecordingBackend; seen: SeenRequest[]; h: Homing; port: number; close(): Promise<void> }> {
  const b = await startRecordingBackend('a');
  const h = await startTestHoming(yaml ? yaml(b.port) : oneRouteConfig([b.port]));
  return {
    b,
    seen: b.seen,
    h,
    port: h.http!.port,
    async close() {
      await h.close();
      await b.close();
    },
  };
}

/** Send `data` on a fresh connection; wait for one final answer and (optionally) the close. */
async function exchange(port: number, data: string | Buffer, waitClose = true): Promise<{ c: RawClient; res: RawResponse | undefined; closed: boolean }> {
  const c = await RawClient.connect(port);
  c.write(data);
  const rs = await c.waitResponses(1);
  const closed = waitClose ? await c.waitClosed() : c.closed;
  c.destroy();
  return { c, res: rs[0], closed };
}

/** The answer is homing's own JSON 400 and the connection was closed. */
function assertRefused(r: { res: RawResponse | undefined; closed: boolean; c: RawClient }, what: string, status = 400, code = 'HOMING_ERR_BAD_REQUEST'): void {
  assert.ok(r.res, `${what}: expected an answer, got ${JSON.stringify(r.c.text)}`);
  assert.equal(r.res.status, status, `${what}: ${JSON.stringify(r.c.text)}`);
  assert.equal(errorCode(r.res.body), code, what);
  assert.ok(r.closed, `${what}: connection must be closed after the ${status}`);
  assert.equal(r.c.finalResponses().length, 1, `${what}: exactly one answer`);
}

const hex = (n: number): string => n.toString(16);

describe('DELETE/OPTIONS with Transfer-Encoding: chunked, no CL, a second request in the body', () => {
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

  for (const method of ['DELETE', 'OPTIONS']) {
    test(`${method}: body forwarded with intact framing, the smuggled request never reaches the backend`, async () => {
      const t = await setup();
      try {
        const raw = `${method} /res HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${hex(smuggled.length)}\r\n${smuggled}\r\n0\r\n\r\n`;
        const c = await RawClient.connect(t.port);
        c.write(raw);
        const rs = await c.waitResponses(1);
        assert.equal(rs.length, 1);
        assert.equal(rs[0]!.status, 200, c.text);
        // A later request on the same client connection and one on a fresh connection: only these show up.
        c.write('GET /after HTTP/1.1\r\nHost: x\r\n\r\n');
        const rs2 = await c.waitResponses(2);
        assert.equal(rs2.length, 2, c.text);
        c.destroy();
        await assertProxies(t.h.url, t.b);
        assert.deepEqual(t.seen.map((s) => `${s.method} ${s.url}`), [`${method} /res`, 'GET /after', 'GET /alive']);
        const up = t.seen[0]!;
        assert.ok(up.complete);
        assert.equal(up.body.toString('latin1'), smuggled, 'the upstream got the whole body as body');
        const cl = up.headers['content-length'];
        const te = up.headers['transfer-encoding'];
        assert.ok(te === 'chunked' || cl === String(smuggled.length), `framing upstream: CL=${cl} TE=${te}`);
        assert.notEqual(cl, '0');
      } finally {
        await t.close();
      }
    });

    test(`${method}: body still streaming when the request is forwarded (never CL:0 while the body follows)`, async () => {
      // Request buffering off: the body streams, so the request goes up before its end.
      const t = await setup((port) => oneRouteConfig([port], { route: 'requestBuffering: false' }));
      try {
        const c = await RawClient.connect(t.port);
        c.write(`${method} /res HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${hex(smuggled.length)}\r\n${smuggled}\r\n`);
        // The upstream request starts before the body has ended.
        await until(() => t.seen.length >= 1);
        c.write('0\r\n\r\n');
        const rs = await c.waitResponses(1);
        assert.equal(rs[0]?.status, 200, c.text);
        c.destroy();
        await assertProxies(t.h.url, t.b);
        assert.deepEqual(t.seen.map((s) => `${s.method} ${s.url}`), [`${method} /res`, 'GET /alive']);
        const up = t.seen[0]!;
        assert.equal(up.body.toString('latin1'), smuggled);
        assert.notEqual(up.headers['content-length'], '0', 'CL:0 with a body following is request smuggling');
        assert.ok(up.headers['transfer-encoding'] === 'chunked' || up.headers['content-length'] === String(smuggled.length));
      } finally {
        await t.close();
      }
    });
  }
});

describe('CL + TE, two TE lines, TE split over lines or obs-fold → 400 and close', () => {
  const cases: Record<string, string> = {
    'CL and TE together': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n',
    'TE and CL together (TE first)': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n',
    'two TE lines: chunked, chunked': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'TE: chunked, chunked on one line': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n',
    'two TE lines: chunked then identity': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    'two TE lines: identity then chunked': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    'two TE lines: gzip then chunked (coding homing cannot forward)': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    'TE obs-fold (value on the next line)': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n',
    'TE obs-fold (list split over lines)': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n0\r\n\r\n',
    'two Content-Length lines (different)': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
    'two Content-Length lines (same)': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello',
  };
  for (const [name, raw] of Object.entries(cases)) {
    test(name, async () => {
      const t = await setup();
      try {
        const r = await exchange(t.port, raw);
        assertRefused(r, name);
        assert.equal(t.seen.length, 0, `nothing may reach the backend, saw ${t.seen.map((s) => s.url).join(',')}`);
        await assertProxies(t.h.url, t.b);
      } finally {
        await t.close();
      }
    });
  }
});

describe('malformed header lines → 400 (strict parser, no insecureHTTPParser)', () => {
  test('listeners are built without insecureHTTPParser', async () => {
    const t = await setup();
    try {
      for (const l of t.h.listeners) assert.notEqual((l.server as unknown as { insecureHTTPParser?: boolean }).insecureHTTPParser, true);
    } finally {
      await t.close();
    }
  });

  const cases: Record<string, string> = {
    'space before the colon (Content-Length : 5)': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello',
    'leading space before the first header (Content-Length)': 'POST / HTTP/1.1\r\n Content-Length: 5\r\nHost: x\r\n\r\nhello',
    'leading space before Content-Length (obs-fold onto Host)': 'POST / HTTP/1.1\r\nHost: x\r\n Content-Length: 5\r\n\r\nhello',
    'bare CR as line end': 'POST / HTTP/1.1\r\nHost: x\rContent-Length: 5\r\n\r\nhello',
    'header line ending in LF only': 'POST / HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nhello',
    'whole head with LF line ends': 'GET / HTTP/1.1\nHost: x\n\n',
    'tab before the colon': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length\t: 5\r\n\r\nhello',
    'NUL in a header value': 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n',
    'CL with a sign (+5)': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello',
    'CL as a list (5, 5)': 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello',
  };
  for (const [name, raw] of Object.entries(cases)) {
    test(name, async () => {
      const t = await setup();
      try {
        const r = await exchange(t.port, raw);
        assertRefused(r, name);
        assert.equal(t.seen.length, 0);
        await assertProxies(t.h.url, t.b);
      } finally {
        await t.close();
      }
    });
  }
});

describe('chunk framing abuse → 400/close, memory bounded', () => {
  test('1 MB chunk extension: refused and closed before the extension ends, backend never gets a complete request', async () => {
    const t = await setup();
    try {
      const c = await RawClient.connect(t.port);
      c.write('POST /ext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;');
      // One megabyte of extension, and never the CRLF that would end it: a parser that buffered the
      // extension would wait for more; a bounded one gives up and closes.
      const ext = Buffer.alloc(1024 * 1024, 'a');
      const rssBefore = process.memoryUsage().rss;
      c.write(ext);
      assert.ok(await c.waitClosed(), 'homing must close the connection');
      const rs = c.responses();
      if (rs.length > 0) {
        assert.ok(rs[0]!.status === 400 || rs[0]!.status === 413, c.text.slice(0, 200));
        errorCode(rs[0]!.body);
      }
      c.destroy();
      assert.ok(process.memoryUsage().rss - rssBefore < 64 * 1024 * 1024, 'memory stays bounded');
      await assertProxies(t.h.url, t.b);
      assert.equal(t.seen.filter((s) => s.complete && s.url !== '/alive').length, 0, 'no complete request upstream');
    } finally {
      await t.close();
    }
  });

  test('1 MB chunk extension: answer is homing JSON 400/413 with Connection: close', async () => {
    const t = await setup();
    try {
      const c = await RawClient.connect(t.port);
      c.write(Buffer.concat([Buffer.from('POST /ext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;'), Buffer.alloc(1024 * 1024, 'a'), Buffer.from('\r\nx\r\n0\r\n\r\n')]));
      await c.waitClosed();
      const rs = c.responses();
      assert.equal(rs.length, 1, `one answer expected, got ${JSON.stringify(c.text.slice(0, 300))}`);
      assert.ok(rs[0]!.status === 400 || rs[0]!.status === 413);
      assert.ok(['HOMING_ERR_BAD_REQUEST', 'HOMING_ERR_BODY_TOO_LARGE'].includes(errorCode(rs[0]!.body)));
      c.destroy();
      await assertProxies(t.h.url, t.b);
      assert.equal(t.seen.filter((s) => s.complete && s.url !== '/alive').length, 0);
    } finally {
      await t.close();
    }
  });

  const cases: Record<string, string> = {
    'LF-only chunk-size line': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n',
    'LF-only after chunk data': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n',
    'space after the chunk size': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n',
    'non-hex chunk size': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5g\r\nhello\r\n0\r\n\r\n',
    'chunk size overflowing 64 bits': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n',
    'last chunk with LF-only ending': 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\n\n',
  };
  for (const [name, raw] of Object.entries(cases)) {
    test(name, async () => {
      const t = await setup();
      try {
        const c = await RawClient.connect(t.port);
        c.write(raw);
        assert.ok(await c.waitClosed(), `${name}: connection must be closed`);
        const rs = c.finalResponses();
        assert.equal(rs.length, 1, `${name}: one answer, got ${JSON.stringify(c.text)}`);
        assert.equal(rs[0]!.status, 400, c.text);
        assert.equal(errorCode(rs[0]!.body), 'HOMING_ERR_BAD_REQUEST');
        c.destroy();
        await assertProxies(t.h.url, t.b);
        // The head may have gone upstream before the bad chunk arrived; its body must never complete.
        assert.equal(t.seen.filter((s) => s.complete && s.url !== '/alive').length, 0, `${name}: no complete request upstream`);
      } finally {
        await t.close();
      }
    });
  }
});

describe('request targets and Host: route on the normalised path, upstream = configured origin', () => {
  /** Two backends: `internal` behind host internal.example, `public` behind /public on any host. */
  async function twoRoutes(): Promise<{ pub: { b: RecordingBackend; seen: SeenRequest[] }; int: { b: RecordingBackend; seen: SeenRequest[] }; h: Homing; close(): Promise<void> }> {
    const pb = await startRecordingBackend('public');
    const ib = await startRecordingBackend('internal');
    const pub = { b: pb, seen: pb.seen };
    const int = { b: ib, seen: ib.seen };
    const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
pools:
  pub: { members: ['127.0.0.1:${pub.b.port}'] }
  int: { members: ['127.0.0.1:${int.b.port}'] }
routes:
  - { name: internal, match: { host: internal.example, path: / }, pool: int, timeouts: { connect: 500ms, header: 2s, body: 2s } }
  - { name: public, match: { path: /public }, pool: pub, timeouts: { connect: 500ms, header: 2s, body: 2s } }
`);
    return {
      pub,
      int,
      h,
      async close() {
        await h.close();
        await pub.b.close();
        await int.b.close();
      },
    };
  }

  test('absolute-form GET http://victim/admin: routed by its authority, sent in origin-form to the configured member', async () => {
    const t = await twoRoutes();
    try {
      const r = await exchange(t.h.http!.port, 'GET http://internal.example/admin?x=1 HTTP/1.1\r\nHost: public.example\r\n\r\n', false);
      assert.equal(r.res?.status, 200, r.c.text);
      assert.equal(t.pub.seen.length, 0);
      assert.equal(t.int.seen.length, 1);
      const s = t.int.seen[0]!;
      assert.equal(s.url, '/admin?x=1', 'origin-form upstream, never the absolute URL');
      // Routing and the upstream agree on the host: exactly one Host, the one routing used.
      const hosts = s.rawHeaders.filter((_, i) => i % 2 === 0 && s.rawHeaders[i]!.toLowerCase() === 'host');
      assert.equal(hosts.length, 1);
      assert.equal(s.headers.host, 'internal.example');
    } finally {
      await t.close();
    }
  });

  test('absolute-form to a host no route serves → 404, nothing forwarded, no connection to that host', async () => {
    const t = await twoRoutes();
    try {
      const r = await exchange(t.h.http!.port, 'GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: public.example\r\n\r\n', false);
      assert.equal(r.res?.status, 404, r.c.text);
      assert.equal(errorCode(r.res!.body), 'HOMING_ERR_NO_ROUTE');
      assert.equal(t.pub.seen.length + t.int.seen.length, 0);
      await assertProxies(t.h.url, t.pub.b, '/public/alive');
    } finally {
      await t.close();
    }
  });

  test('absolute-form with a malformed authority → 400', async () => {
    const t = await twoRoutes();
    try {
      for (const target of ['http://a%0d%0ab/public', 'http://internal.example:80:80/x', 'http://user@internal.example/x', 'ftp://internal.example/x']) {
        const r = await exchange(t.h.http!.port, `GET ${target} HTTP/1.1\r\nHost: public.example\r\n\r\n`, false);
        assert.equal(r.res?.status, 400, `${target}: ${r.c.text}`);
        assert.equal(errorCode(r.res!.body), 'HOMING_ERR_BAD_REQUEST');
      }
      assert.equal(t.pub.seen.length + t.int.seen.length, 0);
      await assertProxies(t.h.url, t.pub.b, '/public/alive');
    } finally {
      await t.close();
    }
  });

  test('dot segments and encoded dots cannot climb out of a route prefix (ACL on the normalised path)', async () => {
    const t = await twoRoutes();
    try {
      for (const target of ['/public/../admin', '/public/%2e%2e/admin', '/public/%2E%2E/admin', '/public/.%2e/admin', '//public/../admin', '/public/./../admin']) {
        const r = await exchange(t.h.http!.port, `GET ${target} HTTP/1.1\r\nHost: public.example\r\n\r\n`, false);
        assert.equal(r.res?.status, 404, `${target}: ${r.c.text}`);
        assert.equal(errorCode(r.res!.body), 'HOMING_ERR_NO_ROUTE');
      }
      for (const target of ['/..', '/../etc/passwd', '/%2e%2e/x']) {
        const r = await exchange(t.h.http!.port, `GET ${target} HTTP/1.1\r\nHost: public.example\r\n\r\n`, false);
        assert.equal(r.res?.status, 400, `${target}: ${r.c.text}`);
        assert.equal(errorCode(r.res!.body), 'HOMING_ERR_BAD_REQUEST');
      }
      assert.equal(t.pub.seen.length + t.int.seen.length, 0);
      // The normalised path is also what goes upstream.
      const r = await exchange(t.h.http!.port, 'GET /public/a/../b/./c HTTP/1.1\r\nHost: public.example\r\n\r\n', false);
      assert.equal(r.res?.status, 200);
      assert.equal(t.pub.seen[0]!.url, '/public/b/c');
      await assertProxies(t.h.url, t.pub.b, '/public/alive');
    } finally {
      await t.close();
    }
  });

  test('GET //10.0.0.1/ goes to the configured member as a path, with the client Host', async () => {
    const t = await setup();
    try {
      const r = await exchange(t.port, 'GET //10.0.0.1/x HTTP/1.1\r\nHost: x\r\n\r\n', false);
      assert.equal(r.res?.status, 200, r.c.text);
      assert.equal(t.seen.length, 1);
      const s = t.seen[0]!;
      assert.ok(s.url.startsWith('/') && !s.url.startsWith('//'), `upstream path must not be protocol-relative: ${s.url}`);
      assert.ok(s.url.includes('10.0.0.1'), s.url);
      assert.equal(s.headers.host, 'x');
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('GET /\\evil.com goes to the configured member with the client Host (or is refused)', async () => {
    const t = await setup();
    try {
      const r = await exchange(t.port, 'GET /\\evil.com HTTP/1.1\r\nHost: x\r\n\r\n', false);
      if (r.res?.status === 400) {
        assert.equal(errorCode(r.res.body), 'HOMING_ERR_BAD_REQUEST');
        assert.equal(t.seen.length, 0);
      } else {
        assert.equal(r.res?.status, 200, r.c.text);
        assert.equal(t.seen.length, 1);
        const s = t.seen[0]!;
        assert.ok(s.url === '/\\evil.com' || s.url === '/%5Cevil.com', s.url);
        assert.equal(s.headers.host, 'x', 'never a Host taken from the path');
      }
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  const hostCases: Record<string, string> = {
    'duplicate Host': 'GET / HTTP/1.1\r\nHost: x\r\nHost: evil.example\r\n\r\n',
    'duplicate Host, same value': 'GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n',
    'missing Host': 'GET / HTTP/1.1\r\n\r\n',
    'Host as a list': 'GET / HTTP/1.1\r\nHost: x, evil.example\r\n\r\n',
    'Host with userinfo': 'GET / HTTP/1.1\r\nHost: evil.example@x\r\n\r\n',
    'Host with a bad port': 'GET / HTTP/1.1\r\nHost: x:80:80\r\n\r\n',
    'Host with a space': 'GET / HTTP/1.1\r\nHost: x evil.example\r\n\r\n',
    'absolute-form plus two Hosts': 'GET http://x/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n',
  };
  for (const [name, raw] of Object.entries(hostCases)) {
    test(`${name} → 400`, async () => {
      const t = await setup();
      try {
        const r = await exchange(t.port, raw, false);
        assert.equal(r.res?.status, 400, `${name}: ${r.c.text}`);
        assert.equal(errorCode(r.res!.body), 'HOMING_ERR_BAD_REQUEST');
        assert.equal(t.seen.length, 0);
        await assertProxies(t.h.url, t.b);
      } finally {
        await t.close();
      }
    });
  }
});
