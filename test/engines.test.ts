/**
 * The two engines side by side: `engine: fast` serves plain HTTP from its own listener, and what a
 * client reads from it is what node:http writes — the same framing (Content-Length, chunked, none
 * for HEAD/204/304, until-close for HTTP/1.0), the same Connection handling, the same answers to
 * pipelined requests in order (with bodies, behind a slow answer, behind an answer that did not wait
 * for its upload). Each case runs on both engines against one real node:http member, raw clients.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Server as HttpServer } from 'node:http';
import { RawClient, startRecordingBackend, startTestHoming, type RecordingBackend } from './support/backends.js';
import { FastServer } from '../src/proxy/fast/listener.js';

type Homing = Awaited<ReturnType<typeof startTestHoming>>;

const ENGINES = ['node', 'fast'] as const;

describe('engine: node and engine: fast answer alike', () => {
  let b: RecordingBackend;
  const h: Record<string, Homing> = {};
  before(async () => {
    b = await startRecordingBackend('a', {
      onRequest: (req, res) => {
        // Answers before reading its upload (the client is still sending).
        if (req.url !== '/early') return undefined;
        res.writeHead(413, { 'content-length': 2 });
        res.end('no');
        return 'handled';
      },
      onEnd: (req, res, s) => {
        if (req.url === '/slow') return void setTimeout(() => res.end('slow'), 200);
        if (req.url === '/204') return void res.writeHead(204).end();
        if (req.url === '/304') return void res.writeHead(304, { etag: '"e"' }).end();
        if (req.url === '/chunked') {
          res.write('abc');
          return void res.end('def');
        }
        if (req.url === '/member-closes') return void res.writeHead(200, { connection: 'close' }).end('bye');
        const text = JSON.stringify({ url: req.url, bytes: s.body.length });
        res.writeHead(200, { 'content-length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
    });
    for (const engine of ENGINES) {
      h[engine] = await startTestHoming(`
engine: ${engine}
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: r, pool: p, requestBuffering: false } ]
`);
    }
  });
  after(async () => {
    for (const x of Object.values(h)) await x.close();
    await b.close();
  });

  test('engine: fast listens with its own server, engine: node with node:http', () => {
    assert.ok(h.fast!.listeners[0]!.server instanceof FastServer);
    assert.ok(h.node!.listeners[0]!.server instanceof HttpServer);
  });

  /**
   * What a raw client reads for `raw` (Date values blanked), and whether the connection closed.
   * `answers`: how many to wait for; 0: wait for the close instead (an answer to HEAD, whose length
   * the test's parser cannot know).
   */
  async function read(engine: string, raw: string, answers: number): Promise<{ text: string; closed: boolean }> {
    const c = await RawClient.connect(h[engine]!.http!.port);
    c.write(raw);
    if (answers > 0) await c.waitResponses(answers, 10_000);
    const closed = await c.waitClosed(answers > 0 ? 300 : 10_000);
    c.destroy();
    return { text: c.text.replace(/^(date: ).*$/gim, '$1-'), closed };
  }

  const cases: Record<string, [string, number]> = {
    'HTTP/1.0 without keep-alive: Content-Length, then close': ['GET /a HTTP/1.0\r\nHost: x\r\n\r\n', 1],
    'HTTP/1.0 with keep-alive: kept while framed by length; a chunked answer read until close': [
      'GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /chunked HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n',
      2,
    ],
    '204, 304 without a body; chunked; a member closing its connection; keep-alive throughout': [
      ['GET /204', 'GET /304', 'GET /chunked', 'GET /member-closes', 'GET /after'].map((l) => `${l} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''),
      5,
    ],
    'HEAD: the member’s Content-Length, no body': ['HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 0],
    'Connection: close from the client: the answer closes': ['GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 1],
  };
  for (const [name, [raw, answers]] of Object.entries(cases)) {
    test(name, async () => {
      const node = await read('node', raw, answers);
      const fast = await read('fast', raw, answers);
      // Same bytes but for header order: each answer's status line, header set and body.
      const norm = (t: string): string[] =>
        t.split(/(?=HTTP\/1\.1 \d{3})/).map((a) => {
          const [head, ...body] = a.split('\r\n\r\n');
          const [status, ...lines] = head!.split('\r\n');
          return `${status}\n${lines.map((l) => l.toLowerCase()).sort().join('\n')}\n\n${body.join('\r\n\r\n')}`;
        });
      assert.deepEqual(norm(fast.text), norm(node.text));
      assert.equal(fast.closed, node.closed);
    });
  }

  for (const engine of ENGINES) {
    test(`${engine}: pipelined requests with bodies, behind a slow answer and an answer that did not wait for its upload, answered in order`, async () => {
      const c = await RawClient.connect(h[engine]!.http!.port);
      const big = 'z'.repeat(300_000);
      c.write(`GET /slow HTTP/1.1\r\nHost: x\r\n\r\nPOST /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloPOST /early HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n`);
      await new Promise((r) => setTimeout(r, 50));
      c.write(`${big}POST /p2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /last HTTP/1.1\r\nHost: x\r\n\r\n`);
      const rs = await c.waitResponses(5, 10_000);
      c.destroy();
      assert.deepEqual(
        rs.map((r) => `${r.status} ${r.body.toString()}`),
        ['200 slow', '200 {"url":"/p1","bytes":5}', '413 no', '200 {"url":"/p2","bytes":3}', '200 {"url":"/last","bytes":0}'],
      );
    });
  }
});
