/**
 * Odd answers from a member, written byte for byte by a raw-socket member: interim (1xx) answers
 * are handled as RFC 9110 says (103 Early Hints relayed to HTTP/1.1 clients, others dropped, the
 * final answer delivered; an unsolicited 100 Continue too on the fast engine, a 502 on undici, which
 * cannot read past it); a status that is not a status, or a transfer coding homing does not
 * decode, is a 502 with its code, never a hang or a cut connection.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { RawClient, errorCode, oneRouteConfig, startRawBackend, startTestHoming, type RawBackend } from './support/backends.js';

type Homing = Awaited<ReturnType<typeof startTestHoming>>;

/** What the member answers, by request path. */
const answers: Record<string, string> = {
  '/hints': 'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\nX-Accel-Redirect: /internal_redirect/127.0.0.1:1/x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal',
  '/processing': 'HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal',
  '/status-099': 'HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nno',
  '/status-600': 'HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nno',
  '/gzip-chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  '/continue': 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal',
};

function member(socket: Socket): void {
  let buf = '';
  socket.on('data', (c: Buffer) => {
    buf += c.toString('latin1');
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const path = buf.slice(0, buf.indexOf('\r\n')).split(' ')[1]!;
      buf = buf.slice(end + 4);
      socket.write(answers[path] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    }
  });
}

describe('interim and invalid answers from a member', () => {
  let m: RawBackend;
  let h: Homing;
  before(async () => {
    m = await startRawBackend(member);
    h = await startTestHoming(oneRouteConfig([m.port], { route: 'retries: 0' }));
  });
  after(async () => {
    await h.close();
    await m.close();
  });

  async function ask(path: string, version = '1.1'): Promise<RawClient> {
    const c = await RawClient.connect(h.http!.port);
    c.write(`GET ${path} HTTP/${version}\r\nHost: x\r\n\r\n`);
    await c.waitResponses(1, 10_000);
    c.destroy();
    return c;
  }

  test('103 Early Hints reaches an HTTP/1.1 client before the final answer, without backend-protocol headers', async () => {
    const c = await ask('/hints');
    const rs = c.responses();
    assert.deepEqual(rs.map((r) => r.status), [103, 200], c.text);
    assert.match(c.text, /^HTTP\/1\.1 103 Early Hints\r\n[^]*link: <\/style\.css>; rel=preload; as=style\r\n/i);
    assert.doesNotMatch(c.text, /x-accel-redirect/i);
    assert.equal(rs[1]!.body.toString(), 'final');
  });

  test('an HTTP/1.0 client gets the final answer only (1xx does not exist in HTTP/1.0)', async () => {
    const c = await ask('/hints', '1.0');
    assert.deepEqual(c.responses().map((r) => r.status), [200], c.text);
  });

  test('102 Processing (twice) is dropped and the final answer delivered', async () => {
    const c = await ask('/processing');
    assert.deepEqual(c.responses().map((r) => r.status), [200], c.text);
    assert.equal(c.finalResponses()[0]!.body.toString(), 'final');
  });

  test('an unsolicited 100 Continue: the final answer (fast engine), or 502 HOMING_ERR_UPSTREAM_BAD_RESPONSE (node engine: undici refuses it)', async () => {
    const c = await ask('/continue');
    const [r] = c.finalResponses();
    assert.ok(r, c.text);
    if (h.runtime.config.engine === 'fast') {
      assert.deepEqual(c.responses().map((x) => x.status), [200], c.text);
      assert.equal(r.body.toString(), 'final');
    } else {
      assert.equal(r.status, 502, c.text);
      assert.equal(errorCode(r.body), 'HOMING_ERR_UPSTREAM_BAD_RESPONSE');
    }
  });

  for (const path of ['/status-099', '/status-600', '/gzip-chunked']) {
    test(`${path}: 502 HOMING_ERR_UPSTREAM_BAD_RESPONSE, not a hang or a cut connection`, async () => {
      const c = await ask(path);
      const [r] = c.finalResponses();
      assert.ok(r, c.text);
      assert.equal(r.status, 502, c.text);
      assert.equal(errorCode(r.body), 'HOMING_ERR_UPSTREAM_BAD_RESPONSE');
    });
  }
});
