/**
 * Directory sources against real servers: a node:http directory on port 0 (hostile keys, garbage,
 * hung answers, keep-alive, Cache-Control) and a real redis-server (found, nil, garbage, down,
 * paused, restarted); each also behind a DirectoryTable on a ManualClock. Then the seed file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ManualClock } from '../src/clock.js';
import { DirectoryKeyError, DirectoryTable, type DirectoryAnswer } from '../src/routing/directory/index.js';
import { cacheTtl, HttpDirectorySource, parseAnswer, RedisDirectorySource, SeedFile } from '../src/directory/index.js';
import { deadPort, startRedis, type RedisService } from './support/services.js';
import { failOnUnhandledRejections } from './support/unhandled.js';

failOnUnhandledRejections();

/** Poll `cond` until it holds or `ms` passes (never a blind sleep). */
async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const never = new AbortController().signal;

/** Rejects with a DirectoryKeyError of this reason. */
async function rejectsWith(p: Promise<unknown>, reason: 'bad-answer' | 'bad-key', message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DirectoryKeyError, `a DirectoryKeyError, got ${String(e)}`);
    assert.equal(e.reason, reason);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** Rejects with a plain error (the directory's health: the table backs off). */
async function rejectsPlain(p: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof Error && !(e instanceof DirectoryKeyError), `a plain Error, got ${String(e)}`);
    assert.match(e.message, message);
    return true;
  });
}

/** How long `start()` takes to settle, timed from before it is called (a timeout it arms starts inside the measure). */
async function timed<T>(start: () => Promise<T>): Promise<{ ms: number; result: PromiseSettledResult<T> }> {
  const t = performance.now();
  const [result] = await Promise.allSettled([start()]);
  return { ms: performance.now() - t, result: result! };
}

// ---------------------------------------------------------------------------------------------
// A real HTTP directory.

class DirectoryServer {
  readonly seen: { url: string; headers: IncomingHttpHeaders; socket: Socket }[] = [];
  /** Connections accepted so far. */
  connections = 0;
  readonly open = new Set<Socket>();
  handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end('pod1');
  private server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      this.seen.push({ url: req.url ?? '', headers: req.headers, socket: req.socket });
      this.handler(req, res);
    });
    server.on('connection', (s: Socket) => {
      this.connections++;
      this.open.add(s);
      s.on('close', () => this.open.delete(s));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /**
   * The request for `path` arrived and its connection has been closed since (by the client: the
   * server never closes one mid-request).
   */
  closed(path: string): boolean {
    const req = [...this.seen].reverse().find((r) => r.url === path);
    return req !== undefined && !this.open.has(req.socket);
  }

  url(path = '/backend/{key}'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  answer(status: number, body: string, headers: Record<string, string> = {}): void {
    this.handler = (_req, res) => {
      res.writeHead(status, headers);
      res.end(body);
    };
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }
}

describe('HttpDirectorySource', () => {
  const dir = new DirectoryServer();
  const sources: HttpDirectorySource[] = [];
  const source = (opts: Partial<ConstructorParameters<typeof HttpDirectorySource>[0]> = {}): HttpDirectorySource => {
    const s = new HttpDirectorySource({ url: dir.url(), timeout: 2000, ...opts });
    sources.push(s);
    return s;
  };
  before(() => dir.start());
  after(async () => {
    for (const s of sources) await s.close();
    await dir.stop();
  });

  test('answers in every accepted form; 404 is "no such key"', async () => {
    const src = source();
    const cases: [string, string][] = [
      ['pod1', 'pod1'],
      ['  pod-2.eu_west\r\n', 'pod-2.eu_west'],
      ['10.0.0.5:8080\n', '10.0.0.5:8080'],
      ['[fd00::5]:8080', '[fd00::5]:8080'],
      ['{"pool":"pod3"}', 'pod3'],
      ['{ "target": "10.0.0.6:9000", "ttl": "ignored" }', '10.0.0.6:9000'],
    ];
    for (const [body, value] of cases) {
      dir.answer(200, body);
      assert.deepEqual(await src.lookup('k', never), { found: value }, JSON.stringify(body));
    }
    dir.answer(404, 'no such tenant');
    assert.deepEqual(await src.lookup('k', never), { unknown: true });
  });

  test('garbage answers are bad answers (key-specific: DirectoryKeyError), not directory errors', async () => {
    const src = source();
    for (const body of ['', '   \n', '<html><body>Oops</body></html>', '{"pool": "pod1"', '{not json}', '{"pool": 5}', '{"pool":"a","target":"b:1"}', '{"target":"no-port"}', '"pod1"', '["pod1"]', 'pod 1', 'pod1\u0000', '10.0.0.1:99999', 'ünïcödé']) {
      dir.answer(200, body);
      await rejectsWith(src.lookup('k', never), 'bad-answer');
    }
    dir.answer(200, '{oops', { 'content-type': 'application/json' });
    await rejectsWith(src.lookup('k', never), 'bad-answer', /invalid JSON/);
    dir.handler = (_req, res) => res.end(Buffer.from([0x70, 0x6f, 0x64, 0xff]));
    await rejectsWith(src.lookup('k', never), 'bad-answer', /not UTF-8/);
  });

  test('other statuses reject as directory errors', async () => {
    const src = source();
    for (const status of [500, 503, 302, 204, 400, 401, 410]) {
      dir.answer(status, status === 204 ? '' : 'pod1');
      await rejectsPlain(src.lookup('k', never), new RegExp(`HTTP ${status}`));
    }
  });

  test('hostile keys reach the directory as exactly one path segment that decodes back to the key', async () => {
    const src = source({ url: dir.url('/backend/{key}/info?v=1') });
    dir.answer(200, 'pod1');
    const keys = [
      '..',
      '.',
      '...',
      'a/b',
      '../../admin',
      '/',
      '//evil.example',
      'user@evil.example',
      '@',
      '%',
      '%2e%2e',
      '%2F..%2F',
      '?x=1',
      '#frag',
      'a b',
      'a\r\nX-Injected: 1',
      'a\nHost: evil',
      '\u0000\u0001\u001f\u007f',
      'ü',
      'テナント.例え.jp',
      '\u{1F600}',
      '\\..\\',
      ';a=b',
      'a'.repeat(1024),
      'é'.repeat(512),
    ];
    for (const key of keys) {
      const before = dir.seen.length;
      assert.deepEqual(await src.lookup(key, never), { found: 'pod1' }, JSON.stringify(key));
      assert.equal(dir.seen.length, before + 1);
      const { url, headers } = dir.seen.at(-1)!;
      assert.ok(url.startsWith('/backend/') && url.endsWith('/info?v=1'), `${JSON.stringify(key)} kept the path's structure: ${url}`);
      const segment = url.slice('/backend/'.length, -'/info?v=1'.length);
      assert.match(segment, /^[A-Za-z0-9\-_.!~*'()%]+$/, `${JSON.stringify(key)}: one segment of URL-safe characters: ${segment}`);
      assert.equal(decodeURIComponent(segment), key);
      assert.equal(headers.host, `127.0.0.1:${dir.port}`);
      assert.equal(headers['x-injected'], undefined);
    }
    // The dot segments are sent percent-encoded and never resolved.
    await src.lookup('..', never);
    assert.equal(dir.seen.at(-1)!.url, '/backend/%2E%2E/info?v=1');
    await src.lookup('.', never);
    assert.equal(dir.seen.at(-1)!.url, '/backend/%2E/info?v=1');
  });

  test('keys it cannot send faithfully are refused without a request: empty, too long, lone surrogates', async () => {
    const src = source();
    const before = dir.seen.length;
    await rejectsWith(src.lookup('', never), 'bad-key', /empty/);
    await rejectsWith(src.lookup('a'.repeat(1025), never), 'bad-key', /1025 bytes/);
    await rejectsWith(src.lookup('é'.repeat(513), never), 'bad-key', /1026 bytes/);
    await rejectsWith(src.lookup('a\uD800b', never), 'bad-key', /well-formed/);
    await rejectsWith(source({ maxKeyBytes: 8 }).lookup('123456789', never), 'bad-key');
    assert.equal(dir.seen.length, before, 'nothing reached the directory');
  });

  test('the URL template is checked', () => {
    const bad = ['http://h/x', 'http://h/{key}/{key}', 'http://{key}/x', 'ftp://h/{key}', 'http://u:p@h/{key}', 'http://h/x#{key}', 'not a url {key}'];
    for (const url of bad) assert.throws(() => new HttpDirectorySource({ url }), /directory url/, url);
    assert.throws(() => new HttpDirectorySource({ url: dir.url(), headers: { 'x-a': 'b\r\nX-Injected: 1' } }), /invalid header/);
    assert.equal(new HttpDirectorySource({ url: 'http://h:1/a?tenant={key}&x=1' }).pathFor('a&b=c'), '/a?tenant=a%26b%3Dc&x=1');
  });

  test('configured headers are sent', async () => {
    const src = source({ headers: { Authorization: 'Bearer s3cret' } });
    dir.answer(200, 'pod1');
    await src.lookup('k', never);
    assert.equal(dir.seen.at(-1)!.headers.authorization, 'Bearer s3cret');
  });

  test('connections are kept alive and reused across look-ups, 404s included', async () => {
    const src = source();
    // undici's pool may open a second connection while its first is still connecting: warm up.
    const start = dir.connections;
    for (let i = 0; i < 2; i++) await src.lookup(`warm${i}`, never);
    assert.ok(dir.connections - start <= 2);
    const before = dir.connections;
    for (let i = 0; i < 10; i++) {
      dir.answer(i % 2 ? 404 : 200, i % 2 ? 'not found' : 'pod1');
      await src.lookup(`k${i}`, never);
    }
    assert.equal(dir.connections - before, 0, 'no new connection');
  });

  test('1 MiB announced by Content-Length is refused before reading it', async () => {
    const src = source();
    dir.handler = (_req, res) => {
      res.writeHead(200, { 'content-length': String(1024 * 1024) });
      res.end(Buffer.alloc(1024 * 1024, 'x'));
    };
    const { ms, result } = await timed(() => rejectsWith(src.lookup('k', never), 'bad-answer', /larger than 4096 bytes/));
    assert.equal(result.status, 'fulfilled');
    assert.ok(ms < 1000, `refused after ${ms} ms`);
  });

  test('1 MiB of chunked garbage is cut off after 4 KiB: rejected quickly, the rest never sent', async () => {
    const src = source();
    let sent = 0;
    let closed = false;
    dir.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const chunk = Buffer.alloc(16 * 1024, 'g');
      const pump = (): void => {
        if (res.destroyed) return;
        if (sent >= 1024 * 1024) return void res.end();
        res.write(chunk);
        sent += chunk.length;
        setTimeout(pump, 5);
      };
      res.on('close', () => (closed = true));
      pump();
    };
    const { ms, result } = await timed(() => rejectsWith(src.lookup('k', never), 'bad-answer', /larger than 4096 bytes/));
    assert.equal(result.status, 'fulfilled');
    assert.ok(ms < 1000, `refused after ${ms} ms`);
    await waitFor(() => closed, 'the directory to see its answer cut off');
    assert.ok(sent < 1024 * 1024, `the client stopped reading: ${sent} bytes sent`);
  });

  test('a hung directory: the look-up rejects within its timeout and the socket is closed, not leaked', async () => {
    const src = source({ timeout: 100 });
    dir.handler = () => {}; // never answers
    const { ms, result } = await timed(() => rejectsPlain(src.lookup('hung', never), /no answer within 100 ms/));
    assert.equal(result.status, 'fulfilled');
    assert.ok(ms >= 90 && ms < 1500, `rejected after ${ms} ms`);
    await waitFor(() => dir.closed('/backend/hung'), 'the hung connection to be closed');
  });

  test('a head without its body times out the same way', async () => {
    const src = source({ timeout: 100 });
    dir.handler = (_req, res) => {
      res.writeHead(200, { 'content-length': '10' });
      res.write('po');
    };
    const { ms } = await timed(() => rejectsPlain(src.lookup('head-only', never), /no answer within 100 ms/));
    assert.ok(ms < 1500, `rejected after ${ms} ms`);
    await waitFor(() => dir.closed('/backend/head-only'), 'the connection to be closed');
  });

  test('the caller\'s abort signal ends the look-up and its connection', async () => {
    const src = source();
    dir.handler = () => {};
    const ac = new AbortController();
    const p = src.lookup('abort-me', ac.signal);
    await waitFor(() => dir.seen.some((r) => r.url === '/backend/abort-me'), 'the request to arrive');
    assert.equal(dir.closed('/backend/abort-me'), false);
    ac.abort();
    await rejectsPlain(p, /aborted/);
    await waitFor(() => dir.closed('/backend/abort-me'), 'the connection to be closed');
  });

  test('Cache-Control sets the ttl only with respectCacheControl', async () => {
    const plain = source();
    const respectful = source({ respectCacheControl: true });
    const cases: [string, number | undefined][] = [
      ['max-age=30', 30_000],
      ['public, max-age=0', 0],
      ['max-age="5"', 5000],
      ['no-store', 0],
      ['no-cache, max-age=60', 0],
      ['private', undefined],
      ['max-age=abc', undefined],
    ];
    for (const [cc, ttl] of cases) {
      dir.answer(200, 'pod1', { 'cache-control': cc });
      assert.deepEqual(await plain.lookup('k', never), { found: 'pod1' }, cc);
      assert.deepEqual(await respectful.lookup('k', never), ttl === undefined ? { found: 'pod1' } : { found: 'pod1', ttl }, cc);
    }
    assert.equal(cacheTtl(['max-age=1', 'no-store']), 0);
    assert.equal(cacheTtl(undefined), undefined);
  });

  describe('behind a DirectoryTable', () => {
    const setup = (opts: { respectCacheControl?: boolean; timeout?: number; validate?: (v: string) => boolean } = {}): { table: DirectoryTable; clock: ManualClock } => {
      const clock = new ManualClock();
      const src = source({ respectCacheControl: opts.respectCacheControl ?? false, timeout: 5000 });
      const table = new DirectoryTable({ source: src, clock, ttl: 60_000, negativeTtl: 5000, staleIfError: 3_600_000, timeout: opts.timeout ?? 2000, ...(opts.validate ? { validate: opts.validate } : {}) });
      after(() => table.close());
      return { table, clock };
    };

    test('concurrent misses make one HTTP request; then hits are synchronous and ask nothing', async () => {
      const { table } = setup();
      dir.answer(200, 'pod7');
      const before = dir.seen.length;
      const answers = await Promise.all(Array.from({ length: 20 }, () => table.get('tenant.example')));
      assert.equal(dir.seen.length - before, 1);
      assert.ok(answers.every((a) => a === answers[0]));
      assert.deepEqual(answers[0], { kind: 'found', value: 'pod7', stale: false });
      const hit = table.get('tenant.example');
      assert.ok(!(hit instanceof Promise));
      assert.equal(dir.seen.length - before, 1);
    });

    test('404 is cached for negativeTtl', async () => {
      const { table, clock } = setup();
      dir.answer(404, '');
      const before = dir.seen.length;
      assert.deepEqual(await table.get('ghost'), { kind: 'unknown' });
      assert.deepEqual(table.get('ghost'), { kind: 'unknown' });
      clock.advance(5000);
      dir.answer(200, 'pod1');
      assert.deepEqual(await table.get('ghost'), { kind: 'found', value: 'pod1', stale: false });
      assert.equal(dir.seen.length - before, 2);
    });

    test('a failing directory: stale served, then back-off without requests', async () => {
      const { table, clock } = setup();
      dir.answer(200, 'pod1');
      await table.get('t');
      clock.advance(60_000);
      dir.answer(500, 'boom');
      const before = dir.seen.length;
      assert.deepEqual(await table.get('t'), { kind: 'found', value: 'pod1', stale: true });
      const again = table.get('t');
      assert.deepEqual(again, { kind: 'found', value: 'pod1', stale: true }, 'synchronous while backing off');
      const miss = table.get('other');
      assert.ok(!(miss instanceof Promise) && miss.kind === 'unavailable' && miss.reason === 'backoff');
      assert.equal(dir.seen.length - before, 1, 'one request, then none while backing off');
    });

    test('a hung directory: unavailable within the table timeout, the call aborted and its socket closed', async () => {
      const { table } = setup({ timeout: 80 });
      dir.handler = () => {};
      const { ms, result } = await timed(() => Promise.resolve(table.get('slow')));
      assert.ok(dir.seen.some((r) => r.url === '/backend/slow'), 'the request was made');
      assert.ok(result.status === 'fulfilled');
      assert.deepEqual(result.value, { kind: 'unavailable', reason: 'timeout', message: 'the directory did not answer within 80 ms' });
      assert.ok(ms >= 70 && ms < 1500, `answered after ${ms} ms`);
      await waitFor(() => dir.closed('/backend/slow'), 'the aborted request\'s connection to be closed');
    });

    test('an answer validate() refuses is not cached: unavailable, reason invalid', async () => {
      const { table } = setup({ validate: (v) => v === 'pod1' });
      dir.answer(200, 'pod9');
      const r = await table.get('t');
      assert.equal(r.kind === 'unavailable' && r.reason, 'invalid');
      assert.equal(table.peek('t'), undefined);
    });

    test('Cache-Control: no-store is answered but never stored; max-age sets the lifetime', async () => {
      const { table, clock } = setup({ respectCacheControl: true });
      dir.answer(200, 'pod1', { 'cache-control': 'no-store' });
      const before = dir.seen.length;
      assert.equal((await table.get('t')).kind, 'found');
      assert.ok(table.get('t') instanceof Promise, 'not stored: asked again');
      await table.get('t');
      assert.equal(dir.seen.length - before, 2);
      dir.answer(200, 'pod2', { 'cache-control': 'max-age=2' });
      clock.advance(1);
      const r = table.get('t');
      assert.ok(r instanceof Promise);
      await r;
      assert.equal(table.peek('t')?.expiresIn, 2000);
    });
  });

  test('a directory that refuses connections: the table answers unavailable, then backs off without connecting', async () => {
    const refusing = createServer();
    let accepted = 0;
    refusing.on('connection', (s: Socket) => {
      accepted++;
      s.destroy();
    });
    await new Promise<void>((r) => refusing.listen(0, '127.0.0.1', r));
    const src = new HttpDirectorySource({ url: `http://127.0.0.1:${(refusing.address() as AddressInfo).port}/{key}`, timeout: 1000 });
    const clock = new ManualClock();
    const table = new DirectoryTable({ source: src, clock, timeout: 1000 });
    try {
      const r = await table.get('a');
      assert.equal(r.kind === 'unavailable' && r.reason, 'error');
      const seen = accepted;
      for (const k of ['b', 'c', 'd', 'a']) {
        const m = table.get(k);
        assert.ok(!(m instanceof Promise) && m.kind === 'unavailable' && m.reason === 'backoff');
      }
      assert.equal(accepted, seen, 'no connection while backing off');
      clock.advance(100);
      await table.get('b'); // the probe
      assert.ok(accepted > seen);
    } finally {
      table.close();
      await src.close();
      await new Promise((r) => refusing.close(r));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// A real redis-server.

describe('RedisDirectorySource', () => {
  let redis: RedisService;
  let admin: Redis;
  const sources: RedisDirectorySource[] = [];
  const source = (opts: Partial<ConstructorParameters<typeof RedisDirectorySource>[0]> = {}): RedisDirectorySource => {
    const s = new RedisDirectorySource({ url: redis.url, keyPrefix: 'tenant:', timeout: 1000, ...opts });
    sources.push(s);
    return s;
  };
  before(async () => {
    redis = await startRedis();
    admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    admin.on('error', () => {});
    await admin.connect();
  });
  after(async () => {
    for (const s of sources) await s.close();
    admin.disconnect();
    await redis.stop();
  });

  test('GET <prefix><key>: every accepted form; nil is "no such key"', async () => {
    const src = source();
    await admin.mset('tenant:a', 'pod1', 'tenant:b', ' 10.0.0.5:8080\n', 'tenant:c', '{"pool":"pod3"}', 'tenant:d', '{"target":"[::1]:7000"}', 'd', 'unprefixed');
    assert.deepEqual(await src.lookup('a', never), { found: 'pod1' });
    assert.deepEqual(await src.lookup('b', never), { found: '10.0.0.5:8080' });
    assert.deepEqual(await src.lookup('c', never), { found: 'pod3' });
    assert.deepEqual(await src.lookup('d', never), { found: '[::1]:7000' });
    assert.deepEqual(await src.lookup('nobody', never), { unknown: true });
  });

  test('keys are sent as they are (binary-safe), never split into other commands', async () => {
    const src = source();
    for (const key of ['a b', 'x\r\nDEL tenant:a', '..', '%2F', 'ü例😀', '\u0000\u0001']) {
      await admin.set(`tenant:${key}`, 'pod-odd');
      assert.deepEqual(await src.lookup(key, never), { found: 'pod-odd' }, JSON.stringify(key));
    }
    assert.equal(await admin.exists('tenant:a'), 1);
    await rejectsWith(src.lookup('', never), 'bad-key');
    await rejectsWith(src.lookup('k'.repeat(1025), never), 'bad-key');
    await rejectsWith(src.lookup('\uDC00', never), 'bad-key');
  });

  test('garbage values are bad answers', async () => {
    const src = source();
    for (const v of ['', '<html>', '{broken', '{"pool":1}', 'two words', 'x'.repeat(5000)]) {
      await admin.set('tenant:g', v);
      await rejectsWith(src.lookup('g', never), 'bad-answer', undefined);
    }
  });

  test('a paused Redis: the look-up rejects within its timeout', async () => {
    const src = source({ timeout: 150 });
    await src.lookup('a', never); // connected
    const pauser = new Redis(redis.url, { lazyConnect: true });
    pauser.on('error', () => {});
    await pauser.connect();
    await pauser.call('CLIENT', 'PAUSE', '700', 'ALL');
    pauser.disconnect();
    const { ms } = await timed(() => rejectsPlain(src.lookup('a', never), /timed out|no answer within 150 ms|Command timed out/));
    assert.ok(ms < 700, `rejected after ${ms} ms`);
    await waitFor(async () => (await src.lookup('a', never).catch(() => undefined)) !== undefined, 'Redis to answer again');
  });

  test('the abort signal ends a look-up', async () => {
    const src = source();
    const ac = new AbortController();
    ac.abort();
    await rejectsPlain(src.lookup('a', ac.signal), /aborted/);
  });

  test('nothing listening: the first look-up rejects at once, not after the timeout', async () => {
    const src = source({ url: `redis://127.0.0.1:${await deadPort()}`, timeout: 3000 });
    const errors: Error[] = [];
    const quiet = source({ url: `redis://127.0.0.1:${await deadPort()}`, timeout: 3000, onError: (e) => errors.push(e) });
    const { ms } = await timed(() => rejectsPlain(src.lookup('a', never), /directory redis redis:\/\/127\.0\.0\.1:\d+: /));
    assert.ok(ms < 1000, `rejected after ${ms} ms`);
    await rejectsPlain(quiet.lookup('a', never), /./);
    assert.ok(errors.length > 0 && /ECONNREFUSED/.test(errors[0]!.message), 'connection errors reach onError');
  });

  test('Redis down: look-ups reject at once; Redis back on the same port: they answer again', async () => {
    const own = await startRedis();
    const src = source({ url: own.url, timeout: 3000 });
    const setter = new Redis(own.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    setter.on('error', () => {});
    await setter.connect();
    await setter.set('tenant:x', 'pod1');
    setter.disconnect();
    assert.deepEqual(await src.lookup('x', never), { found: 'pod1' });
    await own.stop();
    const messages: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { ms, result } = await timed(() => src.lookup('x', never));
      assert.ok(result.status === 'rejected' && result.reason instanceof Error);
      messages.push(result.reason.message);
      assert.ok(ms < 1500, `rejected after ${ms} ms, not after the 3000 ms timeout`);
    }
    // Refused on the spot while ioredis reconnects, rather than waiting for the next attempt.
    assert.ok(messages.some((m) => /not connected \(reconnecting\)/.test(m)), messages.join('; '));
    const back = await startRedis({ port: own.port });
    try {
      const again = new Redis(back.url, { lazyConnect: true });
      again.on('error', () => {});
      await again.connect();
      await again.set('tenant:x', 'pod2');
      again.disconnect();
      await waitFor(async () => Object.hasOwn((await src.lookup('x', never).catch(() => undefined)) ?? {}, 'found'), 'the source to reconnect');
      assert.deepEqual(await src.lookup('x', never), { found: 'pod2' });
    } finally {
      await back.stop();
    }
  });

  test('behind a DirectoryTable: concurrent misses make one GET; hits none', async () => {
    const src = source();
    await admin.set('tenant:hot', 'pod5');
    const gets = async (): Promise<number> => Number(/cmdstat_get:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
    const table = new DirectoryTable({ source: src, clock: new ManualClock(), timeout: 1000 });
    try {
      await src.lookup('warm-up', never);
      const before = await gets();
      const answers = await Promise.all(Array.from({ length: 25 }, () => table.get('hot')));
      assert.deepEqual(answers[0], { kind: 'found', value: 'pod5', stale: false });
      assert.ok(answers.every((a) => a === answers[0]));
      for (let i = 0; i < 10; i++) table.get('hot');
      assert.equal((await gets()) - before, 1);
    } finally {
      table.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The seed file.

describe('SeedFile', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  async function seedFile(name: string, text: string): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'homing-seed-'));
    dirs.push(d);
    const file = join(d, name);
    await writeFile(file, text);
    return file;
  }
  async function replaceFile(file: string, text: string): Promise<void> {
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, text);
    await rename(tmp, file);
  }

  test('loads YAML and JSON maps into a table; edits apply; a bad edit keeps the last good seed, reported once', async () => {
    const file = await seedFile('tenants.yaml', 'a.example: pod1\nb.example: "10.0.0.2:8080"\n');
    const table = new DirectoryTable({ source: { lookup: () => Promise.resolve<DirectoryAnswer>({ unknown: true }) }, validate: (v) => v !== 'pod-gone' });
    const seed = new SeedFile(file, { pollMs: 25, debounceMs: 10 });
    const errors: Error[] = [];
    await seed.start(
      (entries) => table.seed(entries),
      (e) => errors.push(e),
    );
    try {
      assert.deepEqual(table.peek('a.example'), { value: 'pod1', source: 'seed', expiresIn: null, stale: false });
      assert.equal(table.peek('b.example')?.value, '10.0.0.2:8080');
      await replaceFile(file, 'a.example: pod2\nc.example: pod3\n');
      await waitFor(() => table.peek('c.example') !== undefined, 'the edit to apply');
      assert.equal(table.peek('a.example')?.value, 'pod2');
      assert.equal(table.peek('b.example'), undefined, 'gone from the file: gone from the table');
      // Bad edits: the form, the YAML, an empty file, and a pool the table does not know.
      await replaceFile(file, 'a.example: "pod 9"\n');
      await waitFor(() => errors.length === 1, 'the bad value to be reported');
      assert.match(errors[0]!.message, /directory seed .*tenants\.yaml: "a\.example": "pod 9" is neither a pool name nor host:port/);
      await replaceFile(file, 'a.example: [unclosed\n');
      await waitFor(() => errors.length === 2, 'the YAML error');
      assert.match(errors[1]!.message, /invalid YAML/);
      await replaceFile(file, '');
      await waitFor(() => errors.length === 3, 'the empty-file error');
      assert.match(errors[2]!.message, /file is empty \(write \{\} for an empty seed\)/);
      await replaceFile(file, 'a.example: pod-gone\n');
      await waitFor(() => errors.length === 4, 'the unknown pool');
      assert.match(errors[3]!.message, /no known pool or member: "a\.example" → "pod-gone"/);
      const polls = Date.now();
      await waitFor(() => Date.now() - polls > 120, 'a few polls');
      assert.equal(errors.length, 4, 'reported once');
      assert.equal(table.peek('a.example')?.value, 'pod2', 'the last good seed stands');
      assert.equal(table.peek('c.example')?.value, 'pod3');
      await replaceFile(file, '{}\n');
      await waitFor(() => table.size === 0, 'the empty seed to apply');
    } finally {
      await seed.stop();
      table.close();
    }
  });

  test('JSON seed; a bad file makes start reject, naming the file and the entry', async () => {
    const good = await seedFile('seed.json', '{"t1": "pod1", "t2": {"pool": "pod2"}}');
    await assert.rejects(new SeedFile(good).start(() => {}, () => {}), /seed\.json: "t2": expected a pool name or host:port, got object/);
    const list = await seedFile('seed.json', '["pod1"]');
    await assert.rejects(new SeedFile(list).start(() => {}, () => {}), /expected a map of key → pool name or host:port, got a list/);
    const ok = await seedFile('seed.json', '{"t1": "pod1", "t2": "[::1]:80"}');
    const s = new SeedFile(ok, { pollMs: 0, watch: false });
    let got: Map<string, string> | undefined;
    await s.start((m) => (got = m), () => {});
    assert.deepEqual([...got!], [['t1', 'pod1'], ['t2', '[::1]:80']]);
    await s.stop();
  });
});

test('parseAnswer: the shared answer forms', () => {
  assert.equal(parseAnswer(' pod1 '), 'pod1');
  assert.equal(parseAnswer('{"pool":"p"}'), 'p');
  assert.throws(() => parseAnswer('x'.repeat(4097)), /larger than 4096 bytes/);
  assert.throws(() => parseAnswer('{"target":" 1.2.3.4:5"}'), DirectoryKeyError);
});
