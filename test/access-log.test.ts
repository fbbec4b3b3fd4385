/**
 * The access log: one line per request (JSON fields or nginx's combined), written to a file by a
 * real homing in front of real backends; refusals, failures, aborted answers, websocket tunnels,
 * redirect hops, sampling, and reopening the file after logrotate moved it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequestRaw, type ServerResponse } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { parseConfig, ConfigError } from '../src/config/load.js';
import { AccessLog, combinedString } from '../src/proxy/access-log.js';
import { ACCESS_LOG_FIELDS } from '../src/config/schema.js';
import { serveCli } from './support/serve.js';
import { deadPort, httpRequest, rawRequest, startBackend, startTestHoming, until, type Backend } from './support/backends.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

type Line = Record<string, unknown>;

function tempFile(name = 'access.log'): string {
  const dir = mkdtempSync(join(tmpdir(), 'homing-access-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, name);
}

function textOf(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

function linesOf(file: string): Line[] {
  return textOf(file)
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
}

/** The log's lines once it has at least `n` (written asynchronously: waited for, never slept on). */
async function waitLines(file: string, n: number): Promise<Line[]> {
  await until(() => linesOf(file).length >= n);
  return linesOf(file);
}

async function homingWith(members: (number | string)[], accessLog: string, route = '', top = '') {
  const ms = members.map((m) => `'${typeof m === 'number' ? `127.0.0.1:${m}` : m}'`).join(', ');
  const h = await startTestHoming(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: [${ms}] } }
routes:
  - { name: r, match: { path: /app }, pool: p, maxBody: 1KiB, timeouts: { connect: 500ms, header: 2s, body: 2s }${route ? `, ${route}` : ''} }
accessLog: ${accessLog}
${top}`);
  cleanups.push(() => h.close());
  return h;
}

async function backend(name = 'a', handler?: Parameters<typeof startBackend>[1]): Promise<Backend> {
  const b = await startBackend(name, handler);
  cleanups.push(() => b.close());
  return b;
}

test('a proxied request: one JSON line with its id, client, method, path, status, bytes, times, route, pool, member, by, cache, hops', async () => {
  const b = await backend();
  const file = tempFile();
  const h = await homingWith([b.port], `{ to: ${file} }`);
  const r = await httpRequest(`${h.url}/app/x?token=secret`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } });
  assert.equal(r.status, 200);
  const [line] = await waitLines(file, 1);
  assert.ok(line);
  assert.equal(line.id, b.last!.headers['x-request-id'], 'the id is the X-Request-Id the member was sent');
  assert.match(String(line.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(line.client, '127.0.0.1');
  assert.equal(line.method, 'POST');
  assert.equal(line.path, '/app/x', 'the query is left out by default');
  assert.equal(line.status, 200);
  assert.equal(line.bytesIn, 5);
  assert.equal(line.bytesOut, r.body.length);
  assert.equal(typeof line.ms, 'number');
  assert.equal(typeof line.upstreamMs, 'number');
  assert.ok((line.upstreamMs as number) <= (line.ms as number));
  assert.equal(line.route, 'r');
  assert.equal(line.pool, 'p');
  assert.equal(line.member, b.id);
  assert.equal(line.by, 'balance');
  assert.equal(line.cache, 'bypass');
  assert.equal(line.hops, 0);
  assert.equal(line.error, undefined);
  assert.equal(line.aborted, undefined);
  assert.equal(line.trace, undefined, 'no trace id without a valid incoming traceparent or tracing');
  assert.deepEqual(Object.keys(line), ['time', 'id', 'client', 'method', 'path', 'status', 'bytesIn', 'bytesOut', 'ms', 'upstreamMs', 'route', 'pool', 'member', 'by', 'cache', 'hops']);
});

test('query: true keeps the query; fields picks the fields and their order; a client X-Request-Id is the id', async () => {
  const b = await backend();
  const file = tempFile();
  const h = await homingWith([b.port], `{ to: ${file}, query: true, fields: [status, path, id, userAgent, referer] }`);
  await httpRequest(`${h.url}/app/x?a=1&b=2`, { headers: { 'x-request-id': 'client-id-1', 'user-agent': 'tester/1.0 "quoted"', referer: 'http://example.test/' } });
  const [line] = await waitLines(file, 1);
  assert.deepEqual(line, { status: 200, path: '/app/x?a=1&b=2', id: 'client-id-1', userAgent: 'tester/1.0 "quoted"', referer: 'http://example.test/' });
});

test('answers homing gave itself carry their error code: no route, body too large, no member to connect to, malformed request', async () => {
  const dead = await deadPort();
  const file = tempFile();
  const h = await homingWith([dead], `{ to: ${file} }`, 'retries: 0');
  const port = h.http!.port;
  const noRoute = await httpRequest(`${h.url}/elsewhere?q=1`);
  assert.equal(noRoute.status, 404);
  const big = await httpRequest(`${h.url}/app/upload`, { method: 'POST', body: Buffer.alloc(2048) });
  assert.equal(big.status, 413);
  const down = await httpRequest(`${h.url}/app/x`);
  assert.equal(down.status, 502);
  const bad = await rawRequest(port, 'GET /app HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n');
  assert.match(bad, /^HTTP\/1\.1 400/);
  const lines = await waitLines(file, 4);
  const [a, c, d, e] = lines;
  assert.deepEqual([a!.status, a!.error, a!.route, a!.path, a!.cache], [404, 'HOMING_ERR_NO_ROUTE', undefined, '/elsewhere', undefined]);
  assert.equal(a!.bytesOut, noRoute.body.length);
  assert.deepEqual([c!.status, c!.error, c!.route, c!.method, c!.cache], [413, 'HOMING_ERR_BODY_TOO_LARGE', 'r', 'POST', 'bypass']);
  assert.deepEqual([d!.status, d!.error, d!.route, d!.member, d!.by], [502, 'HOMING_ERR_UPSTREAM_CONNECT', 'r', `127.0.0.1:${dead}`, 'balance']);
  assert.equal(typeof d!.upstreamMs, 'number');
  assert.deepEqual([e!.status, e!.error, e!.method], [400, 'HOMING_ERR_BAD_REQUEST', '-']);
});

test('format: combined writes the nginx line tools read (query left out, quotes escaped)', async () => {
  const b = await backend();
  const file = tempFile();
  const h = await homingWith([b.port], `{ to: ${file}, format: combined }`);
  const r = await httpRequest(`${h.url}/app/y?secret=1`, { headers: { 'user-agent': 'curl/8 "x"', referer: 'http://r.test/' } });
  await until(() => textOf(file).includes('\n'));
  const line = textOf(file).trimEnd();
  const m = /^127\.0\.0\.1 - - \[(\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d \+0000)\] "GET \/app\/y HTTP\/1\.1" 200 (\d+) "http:\/\/r\.test\/" "curl\/8 \\x22x\\x22"$/.exec(line);
  assert.ok(m, line);
  assert.equal(Number(m[2]), r.body.length);
  assert.equal(combinedString('a\\b\u00e9'), 'a\\x5Cb\\xE9');
});

test('sample and slowerThan thin out ordinary requests; answers homing gave itself are always written', async () => {
  const b = await backend();
  const file = tempFile();
  const h = await homingWith([b.port], `{ to: ${file}, sample: 0 }`);
  for (let i = 0; i < 5; i++) assert.equal((await httpRequest(`${h.url}/app/${i}`)).status, 200);
  assert.equal((await httpRequest(`${h.url}/nowhere`)).status, 404);
  const lines = await waitLines(file, 1);
  assert.deepEqual(lines.map((l) => l.error), ['HOMING_ERR_NO_ROUTE'], 'only the refusal');

  let release: (() => void) | undefined;
  const slowB = await backend('slow', (req, res) => {
    if (req.url === '/app/slow') release = () => res.end('slow');
    else res.end('fast');
  });
  const file2 = tempFile();
  const h2 = await homingWith([slowB.port], `{ to: ${file2}, slowerThan: 200ms }`);
  assert.equal((await httpRequest(`${h2.url}/app/fast`)).text, 'fast');
  const slow = httpRequest(`${h2.url}/app/slow`);
  await until(() => release !== undefined);
  // The answer is held until more than slowerThan has passed since the request arrived.
  const started = Date.now();
  await until(() => Date.now() - started > 250, 5000, 50);
  release!();
  assert.equal((await slow).text, 'slow');
  const slowLines = await waitLines(file2, 1);
  assert.deepEqual(slowLines.map((l) => l.path), ['/app/slow']);
  assert.ok((slowLines[0]!.ms as number) >= 200);
});

test('cut short: a client that leaves mid-answer, and a member that dies mid-body, are logged as aborted', async () => {
  let held: ServerResponse | undefined;
  const b = await backend('a', (req, res) => {
    res.writeHead(200, { 'content-length': '100' });
    res.write('x'.repeat(10));
    // Once the head and first chunk are on their way, the member dies.
    if (req.url === '/app/die') setImmediate(() => res.socket!.destroy());
    else held = res;
  });
  cleanups.push(() => void held?.destroy());
  const file = tempFile();
  const h = await homingWith([b.port], `{ to: ${file} }`);
  // The client reads the head and a first chunk, then goes away.
  await new Promise<void>((resolve, reject) => {
    const req = httpRequestRaw(`${h.url}/app/leave`, { agent: false }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', (e) => (e.message === 'socket hang up' ? undefined : reject(e)));
    req.end();
  });
  const [left] = await waitLines(file, 1);
  assert.deepEqual([left!.status, left!.aborted, left!.bytesOut, left!.path], [200, 'client', 10, '/app/leave']);
  // The member sends part of its body and dies: homing cuts the client connection.
  await assert.rejects(httpRequest(`${h.url}/app/die`));
  const lines = await waitLines(file, 2);
  assert.deepEqual([lines[1]!.status, lines[1]!.aborted, lines[1]!.path], [200, 'upstream', '/app/die']);
  // A client that leaves before any answer: 499.
  const hang = await backend('hang', (_req, res) => (held = res));
  const file2 = tempFile();
  const h2 = await homingWith([hang.port], `{ to: ${file2} }`);
  await new Promise<void>((resolve) => {
    const req = httpRequestRaw(`${h2.url}/app/wait`, { agent: false });
    req.on('error', () => resolve());
    req.end();
    void until(() => hang.requests === 1).then(() => req.destroy());
  });
  const [gone] = await waitLines(file2, 1);
  assert.deepEqual([gone!.status, gone!.aborted, gone!.member], [499, 'client', hang.id]);
});

test('a followed backend redirect: hops counted, the member is the one that answered', async () => {
  const owner: { b?: Backend } = {};
  const handler: Parameters<typeof startBackend>[1] = (req, res, _body, me) => {
    if (me !== owner.b) {
      res.writeHead(200, { 'x-accel-redirect': `/internal_redirect/${owner.b!.id}${req.url}`, 'content-length': '0' });
      return res.end();
    }
    res.end('owner');
  };
  const a = await backend('a', handler);
  const b = await backend('b', handler);
  owner.b = b;
  const file = tempFile();
  const h = await homingWith([a.port, b.port], `{ to: ${file} }`, 'affinity: { key: header:x-user, redirect: {} }, balance: round-robin');
  // Keys until one is guessed to a (a redirect to b) and one straight to b.
  let n = 0;
  while (a.requests === 0 || b.requests === a.requests) {
    assert.equal((await httpRequest(`${h.url}/app/u${n}`, { headers: { 'x-user': `user-${n}` } })).text, 'owner');
    n++;
    assert.ok(n < 64, 'no key was guessed to a');
  }
  const lines = await waitLines(file, n);
  for (const l of lines) assert.equal(l.member, b.id);
  assert.deepEqual(new Set(lines.map((l) => l.hops)), new Set([0, 1]), JSON.stringify(lines));
});

test('a websocket tunnel is logged once, when it closes, with the bytes it carried; a refused upgrade is logged at once', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((r) => wss.once('listening', r));
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${m.toString()}`)));
  cleanups.push(() => new Promise<void>((r) => wss.close(() => r())));
  const port = (wss.address() as { port: number }).port;
  const file = tempFile();
  const h = await homingWith([port], `{ to: ${file} }`);
  const ws = new WebSocket(`ws://127.0.0.1:${h.http!.port}/app/ws`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => ws.send('hello'));
    ws.once('message', () => resolve());
    ws.once('error', reject);
  });
  assert.equal(textOf(file), '', 'nothing is logged while the tunnel is open');
  ws.close();
  const [line] = await waitLines(file, 1);
  assert.deepEqual([line!.status, line!.method, line!.path, line!.member, line!.aborted], [101, 'GET', '/app/ws', `127.0.0.1:${port}`, undefined]);
  assert.ok((line!.bytesIn as number) > 0 && (line!.bytesOut as number) > 0, JSON.stringify(line));
  const refused = await rawRequest(h.http!.port, 'GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  assert.match(refused, /^HTTP\/1\.1 404/);
  const lines = await waitLines(file, 2);
  assert.deepEqual([lines[1]!.status, lines[1]!.error], [404, 'HOMING_ERR_NO_ROUTE']);
});

test('reopen: after logrotate moves the file, new lines go to a new file at the path', async () => {
  const b = await backend();
  const file = tempFile();
  const h = await homingWith([b.port], `{ to: ${file} }`);
  await httpRequest(`${h.url}/app/before`);
  await waitLines(file, 1);
  renameSync(file, `${file}.1`);
  await httpRequest(`${h.url}/app/moved`);
  await waitLines(`${file}.1`, 2);
  h.reopenLogs();
  await httpRequest(`${h.url}/app/after`);
  const fresh = await waitLines(file, 1);
  assert.deepEqual(fresh.map((l) => l.path), ['/app/after']);
  assert.deepEqual(linesOf(`${file}.1`).map((l) => l.path), ['/app/before', '/app/moved']);
});

for (const workers of [1, 2]) {
  test(`SIGUSR1 to a real \`homing serve\` (workers: ${workers}) reopens the access log at its path`, async () => {
    const b = await backend();
    const file = tempFile();
    const served = await serveCli(`pools: { p: { members: ['${b.id}'] } }\nroutes: [ { name: r, pool: p } ]\naccessLog: { to: ${file} }\n`, workers, cleanups);
    // A request per worker at least (the listener is shared; the kernel picks the worker).
    for (let i = 0; i < 4; i++) assert.equal((await httpRequest(`${served.url}/before/${i}`)).status, 200);
    await waitLines(file, 4);
    renameSync(file, `${file}.1`);
    process.kill(served.pid, 'SIGUSR1');
    // Each process reopens on its own: requests keep coming until lines land in a new file.
    let i = 0;
    await until(async () => {
      assert.equal((await httpRequest(`${served.url}/after/${i++}`)).status, 200);
      return linesOf(file).length > 0;
    });
    const fresh = linesOf(file);
    assert.ok(fresh.every((l) => String(l.path).startsWith('/after/')), JSON.stringify(fresh));
    assert.ok(linesOf(`${file}.1`).filter((l) => String(l.path).startsWith('/before/')).length === 4);
    assert.equal(served.stderr(), '');
  });
}

test('config: fields only with json; a file that cannot be opened fails the start', async () => {
  assert.throws(
    () => parseConfig('listen: { http: 127.0.0.1:0 }\npools: { p: { members: [127.0.0.1:1] } }\nroutes: [ { name: r, pool: p } ]\naccessLog: { format: combined, fields: [status] }'),
    (e: unknown) => e instanceof ConfigError && /accessLog\.fields: fields applies to the json format/.test(e.message),
  );
  const dir = tempFile('dir');
  await assert.rejects(homingWith([1], `{ to: ${dir}/x/../.. }`), /accessLog\.to: cannot open/);
});

test('a JSON line reads back as exactly what was logged: escapes, non-ASCII, lone surrogates, big numbers, times, very long values', async () => {
  const file = tempFile();
  const log = new AccessLog({ to: file, format: 'json', sample: 1, slowerThan: 0, query: true, fields: [...ACCESS_LOG_FIELDS] });
  const tricky = ['a"b\\c\n\t\u0001', 'caf\u00e9 \u{1F600}', 'lone \ud800 half', '\u00ff\u0080 latin1 bytes', '\u007f'];
  const long = `/${'x'.repeat(200_000)}"`;
  const cases: [string, number, number, number][] = [
    // [uri, ms, upstreamMs, bytesIn]
    ...tricky.map((t, i): [string, number, number, number] => [`/p/${t}`, i * 0.5, 1.204, 2 ** 31 + i]),
    [long, 0, 0.0004, 0],
    ['/', 12, 0.06, 7],
    ['/', 123456.7894, 3.0001, 2 ** 53],
  ];
  for (const [uri, ms, up, bytesIn] of cases) {
    const e = log.entry.reset();
    e.requestId = tricky[0];
    e.traceId = '0af7651916cd43dd8448eb211c80319c';
    e.client = '::1';
    e.method = 'GET';
    e.path = e.uri = uri;
    e.status = 200;
    e.bytesIn = bytesIn;
    e.bytesOut = 1024;
    e.upstreamMs = up;
    e.route = tricky[1];
    e.hops = 0;
    e.rawHeaders = ['User-Agent', tricky[3]!, 'Referer', tricky[2]!];
    log.write(ms);
  }
  await log.close();
  const lines = linesOf(file);
  assert.equal(lines.length, cases.length);
  cases.forEach(([uri, ms, up, bytesIn], i) => {
    const l = lines[i]!;
    assert.equal(l.path, uri);
    assert.equal(l.id, tricky[0]);
    assert.equal(l.route, tricky[1]);
    assert.equal(l.userAgent, tricky[3]);
    assert.equal(l.referer, tricky[2]);
    assert.equal(l.bytesIn, bytesIn);
    assert.equal(l.ms, Math.round(ms * 1000) / 1000);
    assert.equal(l.upstreamMs, Math.round(up * 1000) / 1000);
    assert.equal(l.hops, 0);
    assert.equal(l.pool, undefined, 'a field without a value is left out');
    assert.ok(Math.abs(Date.parse(String(l.time)) - Date.now()) < 60_000, String(l.time));
    assert.match(String(l.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });
  assert.equal(textOf(file).split('\n').filter(Boolean)[cases.length - 1]!.includes('"ms":123456.789,'), true, 'ms: 3 decimals, trailing zeros dropped');
});

test('lines wait as entries and are formatted in batches: each keeps its own values, in order, whether handed over by count, by timer or at close', async () => {
  const file = tempFile();
  const log = new AccessLog({ to: file, format: 'json', sample: 1, slowerThan: 0, query: false, fields: ['path', 'status', 'ms'] });
  const write = (i: number): void => {
    const e = log.entry.reset();
    e.path = e.uri = `/n/${i}`;
    e.status = 200 + (i % 7);
    log.write(i);
  };
  // More than one batch by count at once, then a few that only the timer hands over.
  for (let i = 0; i < 700; i++) write(i);
  await until(() => linesOf(file).length >= 512);
  for (let i = 700; i < 705; i++) write(i);
  await until(() => linesOf(file).length === 705);
  for (let i = 705; i < 710; i++) write(i);
  await log.close();
  const lines = linesOf(file);
  assert.equal(lines.length, 710);
  lines.forEach((l, i) => assert.deepEqual(l, { path: `/n/${i}`, status: 200 + (i % 7), ms: i }));
});

test('a batch of long lines is handed over at about 64 KiB, not held until 256 lines or the timer', async () => {
  const file = tempFile();
  const log = new AccessLog({ to: file, format: 'json', sample: 1, slowerThan: 0, query: true, fields: ['path'] });
  const queued = (): number => (log as unknown as { count: number }).count;
  const long = `/${'p'.repeat(4000)}`;
  let most = 0;
  for (let i = 0; i < 100; i++) {
    const e = log.entry.reset();
    e.path = e.uri = `${long}/${i}`;
    log.write(1);
    most = Math.max(most, queued());
  }
  // 4 KiB lines: a batch is handed over after about 16 of them.
  assert.ok(most > 0 && most <= 17, `up to ${most} long lines waited in a batch`);
  await log.close();
  const lines = linesOf(file);
  assert.equal(lines.length, 100);
  lines.forEach((l, i) => assert.equal(l.path, `${long}/${i}`));
});
