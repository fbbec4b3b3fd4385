/**
 * Header handling. Hostile headers go to a real
 * homing (port 0) over raw TCP; real backends (node:http, or raw TCP where the upstream must send
 * what node:http would refuse) record what arrives. Every test ends with a normal proxied request.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../src/config/load.js';
import {
  RawClient,
  assertProxies,
  errorCode,
  headerValues,
  oneRouteConfig,
  startRecordingBackend,
  startScriptedBackend,
  startTestHoming,
  type RawResponse,
  type RecordingBackend,
  type RecordingOptions,
  type SeenRequest,
} from './support/backends.js';

type Homing = Awaited<ReturnType<typeof startTestHoming>>;

async function setup(opts: RecordingOptions = {}, yaml?: (port: number) => string): Promise<{ b: RecordingBackend; h: Homing; port: number; close(): Promise<void> }> {
  const b = await startRecordingBackend('a', opts);
  const h = await startTestHoming(yaml ? yaml(b.port) : oneRouteConfig([b.port]));
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

/** Send one raw request on a fresh connection and return its (first final) answer. */
async function send(port: number, raw: string, opts: { waitClose?: boolean } = {}): Promise<{ res: RawResponse; c: RawClient; closed: boolean }> {
  const c = await RawClient.connect(port);
  c.write(raw);
  const rs = await c.waitResponses(1);
  const closed = opts.waitClose ? await c.waitClosed() : c.closed;
  c.destroy();
  assert.ok(rs[0], `no answer to ${JSON.stringify(raw.slice(0, 80))}: ${JSON.stringify(c.text.slice(0, 300))}`);
  return { res: rs[0], c, closed };
}

/** Every value of header `name` (case-insensitive) in a raw [name, value, …] list. */
function rawValues(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

function lastSeen(b: RecordingBackend): SeenRequest {
  const s = b.seen[b.seen.length - 1];
  assert.ok(s, 'the backend saw no request');
  return s;
}

describe('Connection-nominated headers stripped before homing adds its own', () => {
  test('Connection: close, X-Forwarded-For, X-Forwarded-Host, Authorization, … cannot remove what homing sets', async () => {
    const t = await setup();
    try {
      const { res } = await send(
        t.port,
        'GET /b6 HTTP/1.1\r\nHost: x\r\n' +
          'Connection: close, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, Via, X-Request-Id, Authorization, Host, Cookie, X-Secret-Hop\r\n' +
          'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nAuthorization: Bearer t0k\r\nCookie: sid=1\r\nX-Secret-Hop: 1\r\nX-Kept: yes\r\n\r\n',
      );
      assert.equal(res.status, 200);
      const s = lastSeen(t.b);
      assert.equal(s.url, '/b6');
      assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-for'), ['127.0.0.1'], 'exactly one X-Forwarded-For, homing’s');
      assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-host'), ['x']);
      assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-proto'), ['http']);
      assert.deepEqual(rawValues(s.rawHeaders, 'host'), ['x']);
      assert.equal(rawValues(s.rawHeaders, 'via').length, 1);
      assert.match(rawValues(s.rawHeaders, 'via')[0]!, /1\.1 homing/);
      assert.equal(rawValues(s.rawHeaders, 'x-request-id').length, 1);
      assert.deepEqual(rawValues(s.rawHeaders, 'authorization'), ['Bearer t0k'], 'a client may not nominate away Authorization');
      assert.deepEqual(rawValues(s.rawHeaders, 'cookie'), ['sid=1']);
      assert.deepEqual(rawValues(s.rawHeaders, 'x-secret-hop'), [], 'a nominated header is hop-by-hop: removed');
      assert.deepEqual(rawValues(s.rawHeaders, 'x-kept'), ['yes']);
      const conn = rawValues(s.rawHeaders, 'connection').join(',').toLowerCase();
      assert.ok(!/x-forwarded|authorization|x-secret-hop/.test(conn), `client Connection tokens forwarded: ${conn}`);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('Connection: Content-Length, Transfer-Encoding cannot strip the body framing upstream', async () => {
    const t = await setup();
    try {
      for (const [framing, body] of [
        ['Content-Length: 5\r\n', 'hello'],
        ['Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'],
      ] as const) {
        const { res } = await send(t.port, `POST /b6 HTTP/1.1\r\nHost: x\r\nConnection: Content-Length, Transfer-Encoding, keep-alive\r\n${framing}\r\n${body}`);
        assert.equal(res.status, 200);
        const s = lastSeen(t.b);
        assert.ok(s.complete);
        assert.equal(s.body.toString(), 'hello');
        assert.ok(s.headers['content-length'] === '5' || s.headers['transfer-encoding'] === 'chunked', JSON.stringify(s.headers));
      }
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('upstream Connection-nominated response headers are removed downstream', async () => {
    const t = await setup({
      onEnd: (_req, res) => {
        res.writeHead(200, ['Connection', 'X-Internal, keep-alive', 'X-Internal', 'secret', 'X-Public', 'ok', 'Content-Length', '2']);
        res.end('ok');
      },
    });
    try {
      const { res } = await send(t.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(res.status, 200);
      assert.deepEqual(headerValues(res, 'x-internal'), []);
      assert.deepEqual(headerValues(res, 'x-public'), ['ok']);
      assert.ok(!headerValues(res, 'connection').join(',').toLowerCase().includes('x-internal'));
    } finally {
      await t.close();
    }
  });
});

describe('static hop-by-hop set removed both ways', () => {
  test('request: Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Proxy-Authorization, HTTP2-Settings, Expect never reach the upstream', async () => {
    const t = await setup();
    try {
      const { res } = await send(
        t.port,
        'GET /b7 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, HTTP2-Settings\r\nKeep-Alive: timeout=5, max=1000\r\nProxy-Connection: keep-alive\r\n' +
          'TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\nX-Kept: 1\r\n\r\n',
      );
      assert.equal(res.status, 200, 'undici would throw on a forwarded keep-alive/upgrade: homing must strip them first');
      const s = lastSeen(t.b);
      for (const h of ['keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'http2-settings', 'proxy-authorization', 'transfer-encoding', 'expect']) {
        assert.deepEqual(rawValues(s.rawHeaders, h), [], `${h} forwarded upstream`);
      }
      // The only Connection upstream is undici's own.
      for (const v of rawValues(s.rawHeaders, 'connection')) assert.match(v, /^(keep-alive|close)$/i);
      assert.deepEqual(rawValues(s.rawHeaders, 'x-kept'), ['1']);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('response: Keep-Alive, Proxy-Connection, Proxy-Authenticate, Trailer, Upgrade, TE from the upstream never reach the client', async () => {
    const body = 'hello';
    const up = await startScriptedBackend(
      () =>
        'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=1, max=7\r\nProxy-Connection: keep-alive\r\nProxy-Authenticate: Basic realm="up"\r\n' +
        `Trailer: X-T\r\nUpgrade: h2c\r\nTE: trailers\r\nHTTP2-Settings: AAA\r\nX-Hop: 1\r\nX-Public: ok\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    const h = await startTestHoming(oneRouteConfig([up.port]));
    try {
      const { res } = await send(h.http!.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), body);
      for (const name of ['proxy-connection', 'proxy-authenticate', 'trailer', 'upgrade', 'te', 'http2-settings', 'x-hop']) {
        assert.deepEqual(headerValues(res, name), [], `${name} relayed to the client`);
      }
      // homing's own connection management may add Keep-Alive; the upstream's value must not pass.
      assert.ok(!headerValues(res, 'keep-alive').some((v) => v.includes('max=7')), 'upstream Keep-Alive relayed');
      assert.ok(!headerValues(res, 'connection').some((v) => /x-hop/i.test(v)));
      assert.deepEqual(headerValues(res, 'x-public'), ['ok']);
      // The client connection stays usable.
      const again = await send(h.http!.port, 'GET /again HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(again.res.status, 200);
    } finally {
      await h.close();
      await up.close();
    }
  });
});

describe('forwarding and homing control headers from the client are overwritten', () => {
  test('client X-Forwarded-*, Forwarded, X-Real-IP, Via, X-Homing, internal protocol headers: upstream sees one copy, homing’s', async () => {
    const t = await setup({}, (port) => `
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['127.0.0.1:${port}'] } }
routes:
  - name: r
    match: { path: / }
    pool: p
    debugHeader: true
    affinity: { key: header:authorization, redirect: { header: X-Route-To }, owner: X-Owner }
cache: { principal: { key: header:authorization, headers: [X-Character-Region] } }
`);
    try {
      const { res } = await send(
        t.port,
        'GET /b8 HTTP/1.1\r\nHost: shop.example:8080\r\n' +
          'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7, 8.8.8.8\r\nx-forwarded-for: 9.9.9.9\r\n' +
          'X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nForwarded: for=6.6.6.6;host=evil.example;proto=https\r\n' +
          'X-Real-IP: 6.6.6.6\r\nVia: 1.0 client-side\r\nX-Homing: route=forged\r\n' +
          'X-Accel-Redirect: /internal_redirect/127.0.0.1:1/x\r\nX-Route-To: /internal_redirect/127.0.0.1:1/x\r\nX-Owner: 127.0.0.1:1\r\nX-Character-Region: forged\r\n\r\n',
      );
      assert.equal(res.status, 200);
      const s = lastSeen(t.b);
      assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
      assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-host'), ['shop.example:8080']);
      assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-proto'), ['http']);
      for (const name of ['x-forwarded-port', 'forwarded', 'x-real-ip']) {
        const v = rawValues(s.rawHeaders, name);
        assert.ok(v.length <= 1 && !v.some((x) => /6\.6\.6\.6|evil|443|https/.test(x)), `${name}: ${JSON.stringify(v)}`);
      }
      assert.equal(rawValues(s.rawHeaders, 'via').length, 1);
      assert.match(rawValues(s.rawHeaders, 'via')[0]!, /1\.1 homing$/);
      for (const name of ['x-homing', 'x-accel-redirect', 'x-route-to', 'x-owner', 'x-character-region']) {
        assert.deepEqual(rawValues(s.rawHeaders, name), [], `${name} (homing control header) forwarded`);
      }
      // Downstream, X-Homing is homing's own, once.
      const xh = headerValues(res, 'x-homing');
      assert.equal(xh.length, 1);
      assert.match(xh[0]!, /^route=r; /);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('X-Request-Id: a valid client id is kept once; an invalid one is replaced', async () => {
    const t = await setup();
    try {
      await send(t.port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123_DEF.4\r\nX-Request-Id: second\r\n\r\n');
      let ids = rawValues(lastSeen(t.b).rawHeaders, 'x-request-id');
      assert.equal(ids.length, 1, JSON.stringify(ids));
      for (const bad of ['<script>alert(1)</script>', 'a b', 'x'.repeat(300), '"quoted"']) {
        await send(t.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${bad}\r\n\r\n`);
        ids = rawValues(lastSeen(t.b).rawHeaders, 'x-request-id');
        assert.equal(ids.length, 1);
        assert.notEqual(ids[0], bad);
        assert.match(ids[0]!, /^[A-Za-z0-9._:\-/+=]{1,128}$/);
      }
      await send(t.port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123_DEF.4\r\n\r\n');
      assert.deepEqual(rawValues(lastSeen(t.b).rawHeaders, 'x-request-id'), ['abc-123_DEF.4']);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });
});

describe('underscore spellings', () => {
  test('X_Forwarded_For, X-Auth_Request_Email, X_Real_IP, X_Homing are not forwarded', async () => {
    const t = await setup();
    try {
      const { res } = await send(
        t.port,
        'GET /b9 HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nX-Auth_Request_Email: admin@example.com\r\nX_Real_IP: 6.6.6.6\r\nX_Homing: forged\r\nX_Accel_Redirect: /internal_redirect/127.0.0.1:1/\r\nX-Fine: 1\r\n\r\n',
      );
      assert.equal(res.status, 200);
      const s = lastSeen(t.b);
      for (let i = 0; i < s.rawHeaders.length; i += 2) {
        assert.ok(!s.rawHeaders[i]!.includes('_'), `underscore header forwarded: ${s.rawHeaders[i]}`);
        assert.ok(!/6\.6\.6\.6|admin@example\.com|forged/.test(s.rawHeaders[i + 1]!), `value smuggled via ${s.rawHeaders[i]}`);
      }
      assert.deepEqual(rawValues(s.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
      assert.deepEqual(rawValues(s.rawHeaders, 'x-fine'), ['1']);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });
});

describe('Set-Cookie lines stay separate', () => {
  test('three Set-Cookie from the upstream are three lines downstream, values intact', async () => {
    const cookies = ['a=1; Path=/; HttpOnly', 'b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Secure', 'c=3, still-c; SameSite=Lax'];
    const t = await setup({
      onEnd: (_req, res) => {
        res.setHeader('set-cookie', cookies);
        res.setHeader('content-length', '2');
        res.end('ok');
      },
    });
    try {
      const { res } = await send(t.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(res.status, 200);
      assert.deepEqual(headerValues(res, 'set-cookie'), cookies);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });
});

describe('oversized heads', () => {
  const big: Record<string, string> = {
    '17 KB cookie': `GET / HTTP/1.1\r\nHost: x\r\nCookie: s=${'c'.repeat(17 * 1024)}\r\n\r\n`,
    'thousands of headers (over 16 KiB)': `GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`,
    'one 20 KB header value': `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20 * 1024)}\r\n\r\n`,
    '20 KB request line': `GET /${'p'.repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`,
  };
  for (const [name, raw] of Object.entries(big)) {
    test(`${name} → 431 JSON, connection closed, nothing forwarded`, async () => {
      const t = await setup();
      try {
        const { res, closed } = await send(t.port, raw, { waitClose: true });
        assert.equal(res.status, 431);
        assert.equal(errorCode(res.body), 'HOMING_ERR_HEADERS_TOO_LARGE');
        assert.ok(closed, 'connection closed after 431');
        assert.equal(t.b.seen.length, 0);
        await assertProxies(t.h.url, t.b);
      } finally {
        await t.close();
      }
    });
  }

  test('thousands of tiny headers under 16 KiB → 431 (never silently truncated to the first 2000)', async () => {
    const t = await setup();
    try {
      // 3000 headers in ~15 KB: under the size limit, over any sane count (Node drops headers past
      // server.maxHeadersCount = 2000 without an error).
      const raw = `GET / HTTP/1.1\r\nHost: x\r\n${'a:1\r\n'.repeat(3000)}\r\n`;
      assert.ok(raw.length < 16 * 1024);
      const { res } = await send(t.port, raw, { waitClose: true });
      assert.equal(res.status, 431, `got ${res.status}; upstream saw ${t.b.seen[0] ? t.b.seen[0].rawHeaders.length / 2 : 0} headers`);
      assert.equal(errorCode(res.body), 'HOMING_ERR_HEADERS_TOO_LARGE');
      assert.equal(t.b.seen.length, 0);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  test('a 12 KB cookie is under the limit: forwarded intact', async () => {
    const t = await setup();
    try {
      const cookie = `s=${'c'.repeat(12 * 1024)}`;
      const { res } = await send(t.port, `GET / HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
      assert.equal(res.status, 200);
      assert.equal(lastSeen(t.b).headers.cookie, cookie);
    } finally {
      await t.close();
    }
  });

  const upstreamHeads: [string, [string, string] | null][] = [
    ['one 20 KB header', ['X-Big', 'b'.repeat(20 * 1024)]],
    ['a 17 KB Set-Cookie', ['Set-Cookie', `s=${'c'.repeat(17 * 1024)}`]],
    ['2000 headers', null],
  ];
  for (const [name, header] of upstreamHeads) {
    test(`upstream response head over 16 KiB (${name}) → 502 JSON`, async () => {
      const t = await setup({
        onEnd: (req, res) => {
          if (req.url === '/alive') {
            res.end('ok');
            return;
          }
          if (header) res.setHeader(header[0], header[1]);
          else for (let i = 0; i < 2000; i++) res.setHeader(`x-h${i}`, 'vvvv');
          res.end('ok');
        },
      });
      try {
        const { res } = await send(t.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
        assert.equal(res.status, 502);
        assert.equal(errorCode(res.body), 'HOMING_ERR_UPSTREAM_BAD_RESPONSE');
        await assertProxies(t.h.url, t.b);
      } finally {
        await t.close();
      }
    });
  }
});

describe('CR/LF/NUL never reach a header homing writes', () => {
  for (const [name, ch] of [
    ['NUL', '\x00'],
    ['bare CR', '\r'],
    ['bare LF (header injection)', '\nSet-Cookie: injected=1'],
    ['SOH', '\x01'],
    ['DEL', '\x7f'],
  ] as const) {
    test(`upstream header value with ${name} → 502 JSON, nothing of it relayed`, async () => {
      const up = await startScriptedBackend((head) =>
        head.startsWith('GET /alive') ? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok' : `HTTP/1.1 200 OK\r\nX-Bad: a${ch}b\r\nContent-Length: 2\r\n\r\nok`,
      );
      const h = await startTestHoming(oneRouteConfig([up.port]));
      try {
        const { res, c } = await send(h.http!.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
        assert.ok(!c.text.includes('injected'), 'injected header relayed');
        assert.ok(!c.text.includes(`a${ch}b`), 'bad value relayed');
        assert.equal(res.status, 502, c.text);
        assert.equal(errorCode(res.body), 'HOMING_ERR_UPSTREAM_BAD_RESPONSE');
        const ok = await send(h.http!.port, 'GET /alive HTTP/1.1\r\nHost: x\r\n\r\n');
        assert.equal(ok.res.status, 200);
      } finally {
        await h.close();
        await up.close();
      }
    });
  }

  test('upstream obs-fold in a response header → 502, or relayed without the fold', async () => {
    const up = await startScriptedBackend((head) =>
      head.startsWith('GET /alive') ? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok' : 'HTTP/1.1 200 OK\r\nX-Folded: a\r\n Set-Cookie: injected=1\r\nContent-Length: 2\r\n\r\nok',
    );
    const h = await startTestHoming(oneRouteConfig([up.port]));
    try {
      const { res, c } = await send(h.http!.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.ok(!/\r\n[ \t]/.test(c.text.split('\r\n\r\n')[0]!), 'a folded line relayed');
      assert.deepEqual(headerValues(res, 'set-cookie'), []);
      if (res.status !== 200) {
        assert.equal(res.status, 502);
        assert.equal(errorCode(res.body), 'HOMING_ERR_UPSTREAM_BAD_RESPONSE');
      }
      const ok = await send(h.http!.port, 'GET /alive HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(ok.res.status, 200);
    } finally {
      await h.close();
      await up.close();
    }
  });

  test('Host values that would carry CR/LF into X-Forwarded-Host are refused', async () => {
    const t = await setup();
    try {
      for (const host of ['x%0d%0aSet-Cookie:%20a=1', 'x%0aevil', 'x%00']) {
        const { res } = await send(t.port, `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
        assert.equal(res.status, 400, host);
        assert.equal(errorCode(res.body), 'HOMING_ERR_BAD_REQUEST');
      }
      for (const raw of ['GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n', 'GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n']) {
        const { res } = await send(t.port, raw);
        assert.equal(res.status, 400);
        assert.equal(errorCode(res.body), 'HOMING_ERR_BAD_REQUEST');
      }
      assert.equal(t.b.seen.length, 0);
      await assertProxies(t.h.url, t.b);
    } finally {
      await t.close();
    }
  });

  /** Two members that each redirect `/start` to the other one, with `target` as the path. */
  async function redirecting(target: string): Promise<{ a: RecordingBackend; b: RecordingBackend; h: Homing; close(): Promise<void> }> {
    const ids: string[] = [];
    const mk = (i: number): RecordingOptions => ({
      onRequest: (req, res) => {
        if (req.url !== '/start') return undefined;
        res.writeHead(200, { 'x-accel-redirect': `/internal_redirect/${ids[1 - i]}${target}`, 'content-length': '0' });
        res.end();
        return 'handled';
      },
    });
    const a = await startRecordingBackend('a', mk(0));
    const b = await startRecordingBackend('b', mk(1));
    ids.push(a.id, b.id);
    const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${a.id}', '${b.id}'], health: { passive: { failures: 1, ejectFor: 1m } } } }
routes: [ { name: r, match: { path: / }, pool: p, affinity: { key: header:x-k, redirect: {} }, timeouts: { connect: 500ms, header: 2s, body: 2s } } ]
`);
    return {
      a,
      b,
      h,
      async close() {
        await h.close();
        await a.close();
        await b.close();
      },
    };
  }

  test('backend redirect target with percent-encoded CR LF: forwarded still encoded, nothing injected', async () => {
    const t = await redirecting('/x%0d%0aSet-Cookie:%20a=1');
    try {
      const { res, c } = await send(t.h.http!.port, 'GET /start HTTP/1.1\r\nHost: x\r\nX-K: k1\r\n\r\n');
      assert.equal(res.status, 200, c.text);
      const hop = [...t.a.seen, ...t.b.seen].filter((s) => s.url !== '/start');
      assert.equal(hop.length, 1);
      assert.equal(hop[0]!.url, '/x%0d%0aSet-Cookie:%20a=1');
      assert.equal(hop[0]!.headers['set-cookie'], undefined);
      assert.deepEqual(headerValues(res, 'set-cookie'), []);
    } finally {
      await t.close();
    }
  });

  for (const [name, target] of [
    ['a space', '/x y'],
    ['a tab', '/x\ty'],
  ] as const) {
    test(`backend redirect target with ${name} → 502 HOMING_ERR_REDIRECT_TARGET, the target member not blamed`, async () => {
      const t = await redirecting(target);
      try {
        const { res, c } = await send(t.h.http!.port, 'GET /start HTTP/1.1\r\nHost: x\r\nX-K: k1\r\n\r\n');
        assert.equal(res.status, 502, c.text);
        assert.equal(errorCode(res.body), 'HOMING_ERR_REDIRECT_TARGET');
        assert.equal([...t.a.seen, ...t.b.seen].filter((s) => s.url !== '/start').length, 0);
        // A bad redirect says nothing about the health of the member it names: both still serve.
        for (let i = 0; i < 4; i++) {
          const r = await send(t.h.http!.port, `GET /alive${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
          assert.equal(r.res.status, 200, r.c.text);
        }
        assert.ok(t.a.seen.some((s) => s.url.startsWith('/alive')) && t.b.seen.some((s) => s.url.startsWith('/alive')), 'a member was ejected because of a bad redirect');
      } finally {
        await t.close();
      }
    });
  }

  const base = (route: string, extra = ''): string => `
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['127.0.0.1:9'] } }
routes: [ { name: r, match: { path: / }, pool: p${route} } ]
${extra}`;
  for (const [name, yaml] of [
    ['affinity.redirect.header with CR LF', base(', affinity: { key: header:a, redirect: { header: "X-Route\\r\\nSet-Cookie: a=1" } }')],
    ['affinity.redirect.header with NUL', base(', affinity: { key: header:a, redirect: { header: "X-Route\\0" } }')],
    ['affinity.redirect.prefix with CR LF', base(', affinity: { key: header:a, redirect: { prefix: "/r\\r\\n/" } }')],
    ['affinity.owner with LF', base(', affinity: { key: header:a, owner: "X-Owner\\nX-Evil" }')],
    ['affinity.owner with a space', base(', affinity: { key: header:a, owner: "X Owner" }')],
    ['cache.principal.headers with CR LF', base('', 'cache: { principal: { key: header:a, headers: ["X-Region\\r\\nX-Evil: 1"] } }')],
  ] as const) {
    test(`config: ${name} is rejected`, () => {
      // The same config with a clean value is valid, so the rejection is about the bad characters.
      assert.doesNotThrow(() => parseConfig(base(', affinity: { key: header:a, redirect: { header: X-Route, prefix: /r/ }, owner: X-Owner }', 'cache: { principal: { key: header:a, headers: [X-Region] } }'), process.cwd(), 'test config'));
      assert.throws(() => parseConfig(yaml, process.cwd(), 'test config'), /invalid config|header|token|CR|LF/i);
    });
  }
});
