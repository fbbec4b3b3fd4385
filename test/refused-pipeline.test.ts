/**
 * After homing refuses a request with its own checks (and answers with `Connection: close`), no
 * further byte of that connection is acted on: a request pipelined behind the refused one in the
 * same write, or sent right after, never reaches a backend. For a framing refusal the next
 * request's boundary is undefined by definition; for the others the client broke the protocol and
 * the connection is done. Each case sends the refused request and `GET /SMUGGLED` in one write to
 * a real homing in front of a backend that records every request it receives.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RawClient,
  assertProxies,
  errorCode,
  oneRouteConfig,
  startRecordingBackend,
  startTestHoming,
  type RecordingBackend,
} from './support/backends.js';

type Homing = Awaited<ReturnType<typeof startTestHoming>>;

const SMUGGLED = 'GET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n';

const manyHeaders = (n: number): string => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');

/** Refused request → expected status and code. */
const cases: Record<string, { raw: string; status: number; code: string }> = {
  'two Host headers': { raw: 'GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n', status: 400, code: 'HOMING_ERR_BAD_REQUEST' },
  'Host: a@b': { raw: 'GET /a HTTP/1.1\r\nHost: a@b\r\n\r\n', status: 400, code: 'HOMING_ERR_BAD_REQUEST' },
  'OPTIONS *': { raw: 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n', status: 400, code: 'HOMING_ERR_BAD_REQUEST' },
  'a fragment in the target': { raw: 'GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n', status: 400, code: 'HOMING_ERR_BAD_REQUEST' },
  'a target climbing above the root': { raw: 'GET /../etc HTTP/1.1\r\nHost: x\r\n\r\n', status: 400, code: 'HOMING_ERR_BAD_REQUEST' },
  'no Host header': { raw: 'GET /a HTTP/1.1\r\n\r\n', status: 400, code: 'HOMING_ERR_BAD_REQUEST' },
  'Expect: foo': { raw: 'GET /a HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n\r\n', status: 417, code: 'HOMING_ERR_EXPECTATION_FAILED' },
  'Transfer-Encoding: identity, chunked': {
    raw: 'POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n',
    status: 400,
    code: 'HOMING_ERR_BAD_REQUEST',
  },
  '1,001 header lines': { raw: `GET /a HTTP/1.1\r\nHost: x\r\n${manyHeaders(1000)}\r\n`, status: 431, code: 'HOMING_ERR_HEADERS_TOO_LARGE' },
  'a Content-Length over maxBody': { raw: 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n', status: 413, code: 'HOMING_ERR_BODY_TOO_LARGE' },
  'POST with Transfer-Encoding: chunked on HTTP/1.0': {
    raw: 'POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    status: 400,
    code: 'HOMING_ERR_BAD_REQUEST',
  },
  'a websocket upgrade carrying a body': {
    raw: 'GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello',
    status: 400,
    code: 'HOMING_ERR_BAD_REQUEST',
  },
  'an upgrade other than websocket': {
    raw: 'GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n',
    status: 400,
    code: 'HOMING_ERR_BAD_REQUEST',
  },
};

describe('a refused request ends the connection: nothing pipelined behind it reaches a backend', () => {
  let b: RecordingBackend;
  let h: Homing;
  before(async () => {
    b = await startRecordingBackend('a');
    h = await startTestHoming(oneRouteConfig([b.port], { route: 'maxBody: 1KiB' }));
  });
  after(async () => {
    await h.close();
    await b.close();
  });

  for (const [name, c] of Object.entries(cases)) {
    for (const position of ['first', 'after a proxied request']) {
      test(`${name} (${position}): ${c.status} ${c.code}, close, /SMUGGLED never forwarded`, async () => {
        const seenBefore = b.seen.length;
        const client = await RawClient.connect(h.http!.port);
        const lead = position === 'first' ? '' : 'GET /lead HTTP/1.1\r\nHost: x\r\n\r\n';
        client.write(lead + c.raw + SMUGGLED);
        const closed = await client.waitClosed();
        // Anything still in flight would have reached the backend by the time homing closed; a
        // follow-up request on a fresh connection proves homing is fine and flushes the order.
        await assertProxies(h.url, b);
        const got = client.finalResponses();
        client.destroy();
        const urls = b.seen.slice(seenBefore).map((s) => s.url);
        assert.ok(!urls.includes('/SMUGGLED'), `forwarded after a refusal: ${JSON.stringify(urls)}`);
        assert.ok(closed, 'the connection is closed after the refusal');
        const expected = position === 'first' ? ['/alive'] : ['/lead', '/alive'];
        assert.deepEqual(urls, expected);
        const last = got[got.length - 1];
        assert.ok(last, `an answer: ${client.text}`);
        assert.equal(got.length, position === 'first' ? 1 : 2, client.text);
        if (position !== 'first') assert.equal(got[0]!.status, 200);
        assert.equal(last.status, c.status, client.text);
        assert.equal(errorCode(last.body), c.code);
      });
    }
  }

  test('bytes sent after the refusal, in a later write, are not acted on either', async () => {
    const seenBefore = b.seen.length;
    const client = await RawClient.connect(h.http!.port);
    client.write('GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n');
    client.write(SMUGGLED);
    await client.waitClosed();
    await assertProxies(h.url, b);
    client.destroy();
    assert.deepEqual(b.seen.slice(seenBefore).map((s) => s.url), ['/alive']);
  });
});
