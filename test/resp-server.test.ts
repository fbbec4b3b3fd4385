/**
 * The RESP router over real TCP sockets, with a small deterministic RespBackend standing in for
 * homing's resolver (the lead's end-to-end tests go through the real runtime). Covers the
 * documented commands, reply order with asynchronous look-ups, every split of a pipeline, Redis'
 * protocol errors, the limits, and the hostile inputs Redis servers and clients have got wrong.
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { RespBackend } from '../src/resp/backend.js';
import { encodeCommand } from '../src/resp/codec.js';
import { startRespServer, type RespServer, type RespServerOptions } from '../src/resp/server.js';
import { RespTestConnection, type RespReply } from './support/services.js';
import { until, WAIT } from './support/backends.js';

const POOLS: Record<string, string[]> = {
  docs: ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080'],
  tenants: ['10.1.0.1:9000', '10.1.0.2:9000'],
};

function fnv(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Routes: `docs` answers synchronously from a hash; `tenants` answers nil for keys starting with
 * `none`; `directory` answers asynchronously after a key-dependent delay and rejects for `fail*`.
 * The key `boom` makes any route throw.
 */
class TestBackend implements RespBackend {
  readonly routes = ['docs', 'tenants', 'directory'];
  lookups = 0;

  static expected(route: string, key: string): string | null {
    if (route === 'tenants' && key.startsWith('none')) return null;
    const pool = route === 'tenants' ? POOLS.tenants! : POOLS.docs!;
    return pool[fnv(`${route}|${key}`) % pool.length]!;
  }

  lookup(route: string, key: string): string | null | Promise<string | null> {
    this.lookups++;
    if (!this.routes.includes(route)) throw new Error(`unknown route '${route}'`);
    if (key === 'boom') throw new Error('resolver exploded');
    if (route !== 'directory') return TestBackend.expected(route, key);
    return new Promise((resolve, reject) => {
      setTimeout(
        () => (key.startsWith('fail') ? reject(new Error('directory unavailable')) : resolve(TestBackend.expected(route, key))),
        fnv(key) % 7,
      );
    });
  }

  members(pool?: string): readonly string[] | undefined {
    if (pool === undefined) return Object.values(POOLS).flat();
    return POOLS[pool];
  }

  info(): Record<string, Record<string, string | number>> {
    return { Homing: { homing_routes: this.routes.length, homing_ring: 'test' } };
  }
}

const BASE: RespServerOptions = { host: '127.0.0.1', port: 0, maxClients: 100, idleTimeout: 30_000, maxPipeline: 1024 };

async function withServer<T>(opts: Partial<RespServerOptions>, backend: RespBackend, fn: (srv: RespServer, port: number) => Promise<T>): Promise<T> {
  const srv = await startRespServer({ ...BASE, ...opts }, backend);
  try {
    return await fn(srv, srv.address().port);
  } finally {
    await srv.close();
  }
}

const err = (m: string): RespReply => ({ error: m });

describe('RESP server: commands', () => {
  let srv: RespServer;
  let port: number;
  const backend = new TestBackend();
  before(async () => {
    srv = await startRespServer(BASE, backend);
    port = srv.address().port;
  });
  after(() => srv.close());

  it('GET answers host:port from the first route; SELECT n switches to the n-th route', async () => {
    const c = await RespTestConnection.connect(port);
    assert.equal(await c.call('GET', 'doc-1'), TestBackend.expected('docs', 'doc-1'));
    assert.equal(await c.call('get', 'doc-2'), TestBackend.expected('docs', 'doc-2'));
    assert.equal(await c.call('SELECT', '1'), 'OK');
    assert.equal(await c.call('GET', 'acme'), TestBackend.expected('tenants', 'acme'));
    assert.equal(await c.call('GET', 'none-such'), null);
    assert.equal(await c.call('select', '2'), 'OK');
    assert.equal(await c.call('GET', 'abc'), TestBackend.expected('directory', 'abc'));
    assert.deepEqual(await c.call('SELECT', '3'), err('ERR DB index is out of range'));
    assert.deepEqual(await c.call('SELECT', '-1'), err('ERR DB index is out of range'));
    assert.deepEqual(await c.call('SELECT', 'x'), err('ERR value is not an integer or out of range'));
    assert.equal(await c.call('SELECT', '0'), 'OK');
    assert.equal(await c.call('GET', 'doc-1'), TestBackend.expected('docs', 'doc-1'));
    c.close();
  });

  it('MGET answers each key in order, nil where nothing is known, also on an async route', async () => {
    const c = await RespTestConnection.connect(port);
    await c.send('SELECT', '1');
    await c.send('MGET', 'a', 'none-1', 'b');
    await c.send('SELECT', '2');
    await c.send('MGET', 'x', 'y', 'z');
    const [, sync, , async] = await c.replies(4);
    assert.deepEqual(sync, [TestBackend.expected('tenants', 'a'), null, TestBackend.expected('tenants', 'b')]);
    assert.deepEqual(async, ['x', 'y', 'z'].map((k) => TestBackend.expected('directory', k)));
    assert.deepEqual(await c.call('MGET'), err("ERR wrong number of arguments for 'mget' command"));
    c.close();
  });

  it('answers PING, PING msg, ECHO (UTF-8), and wrong arities like Redis', async () => {
    const c = await RespTestConnection.connect(port);
    assert.equal(await c.call('PING'), 'PONG');
    assert.equal(await c.call('ping', 'hi there'), 'hi there');
    assert.equal(await c.call('ECHO', 'héllo €'), 'héllo €');
    assert.deepEqual(await c.call('ECHO'), err("ERR wrong number of arguments for 'echo' command"));
    assert.deepEqual(await c.call('GET'), err("ERR wrong number of arguments for 'get' command"));
    assert.deepEqual(await c.call('GET', 'a', 'b'), err("ERR wrong number of arguments for 'get' command"));
    assert.deepEqual(await c.call('PING', 'a', 'b'), err("ERR wrong number of arguments for 'ping' command"));
    c.close();
  });

  it('answers unknown commands with Redis 7’s words, and keeps the connection', async () => {
    const c = await RespTestConnection.connect(port);
    assert.deepEqual(await c.call('SET', 'k', 'v'), err("ERR unknown command 'SET', with args beginning with: 'k' 'v' "));
    assert.deepEqual(await c.call('FLUSHALL'), err("ERR unknown command 'FLUSHALL', with args beginning with: "));
    const long = 'x'.repeat(300);
    const r = (await c.call('NOPE', long, 'y')) as { error: string };
    assert.equal(r.error, `ERR unknown command 'NOPE', with args beginning with: '${'x'.repeat(128)}' `);
    assert.equal(await c.call('PING'), 'PONG');
    c.close();
  });

  it('QUIT answers +OK, ignores what follows, and closes', async () => {
    const c = await RespTestConnection.connect(port);
    await c.write(Buffer.concat([encodeCommand(['PING']), encodeCommand(['QUIT']), encodeCommand(['PING'])]));
    assert.deepEqual(await c.replies(2), ['PONG', 'OK']);
    assert.ok(await c.waitClosed());
    assert.equal(c.pending().length, 0);
  });

  it('INFO has the server fields clients look for, and INFO <section> only that section', async () => {
    const c = await RespTestConnection.connect(port);
    const all = (await c.call('INFO')) as string;
    for (const needle of ['# Server', 'redis_version:', 'redis_mode:standalone', 'tcp_port:', 'loading:0', 'role:master', 'connected_clients:', '# Keyspace', 'db0:keys=0,expires=0,avg_ttl=0,route=docs', 'db2:', '# Homing', 'homing_ring:test']) {
      assert.ok(all.includes(needle), `INFO lacks ${needle}`);
    }
    assert.ok(all.includes(`tcp_port:${port}\r\n`));
    const server = (await c.call('INFO', 'server')) as string;
    assert.ok(server.startsWith('# Server\r\n'));
    assert.ok(!server.includes('# Clients'));
    const homing = (await c.call('info', 'HOMING')) as string;
    assert.equal(homing, '# Homing\r\nhoming_routes:3\r\nhoming_ring:test\r\n');
    assert.equal(await c.call('INFO', 'nosuchsection'), '');
    c.close();
  });

  it('COMMAND, COMMAND COUNT, COMMAND INFO and COMMAND DOCS describe the commands', async () => {
    const c = await RespTestConnection.connect(port);
    const all = (await c.call('COMMAND')) as RespReply[][];
    const count = await c.call('COMMAND', 'COUNT');
    assert.equal(all.length, count);
    const get = all.find((e) => e[0] === 'get')!;
    assert.deepEqual(get.slice(0, 6), ['get', 2, ['readonly', 'fast'], 1, 1, 1]);
    assert.equal(get.length, 10);
    assert.deepEqual(await c.call('COMMAND', 'INFO', 'mget', 'nosuch'), [all.find((e) => e[0] === 'mget')!, null]);
    const docs = (await c.call('COMMAND', 'DOCS', 'GET')) as RespReply[];
    assert.equal(docs[0], 'get');
    const fields = docs[1] as RespReply[];
    assert.equal(fields[0], 'summary');
    assert.ok(fields.includes('arguments'));
    const allDocs = (await c.call('COMMAND', 'DOCS')) as RespReply[];
    assert.equal(allDocs.length, 2 * (count as number));
    assert.ok(((await c.call('COMMAND', 'LIST')) as string[]).includes('homing.route'));
    assert.deepEqual(await c.call('COMMAND', 'BOGUS'), err("ERR unknown subcommand 'BOGUS'. Try COMMAND HELP."));
    c.close();
  });

  it('CLIENT SETNAME/GETNAME/SETINFO/ID/INFO/LIST as clients send them', async () => {
    const c = await RespTestConnection.connect(port);
    assert.equal(await c.call('CLIENT', 'SETNAME', 'nginx-worker-1'), 'OK');
    assert.equal(await c.call('CLIENT', 'GETNAME'), 'nginx-worker-1');
    assert.equal(await c.call('CLIENT', 'SETINFO', 'LIB-NAME', 'ioredis'), 'OK');
    assert.equal(typeof (await c.call('CLIENT', 'ID')), 'number');
    assert.match((await c.call('CLIENT', 'INFO')) as string, /name=nginx-worker-1 .*db=0/);
    assert.match((await c.call('CLIENT', 'LIST')) as string, /name=nginx-worker-1/);
    assert.deepEqual(await c.call('CLIENT', 'SETNAME', 'has space'), err('ERR Client names cannot contain spaces, newlines or special characters.'));
    assert.deepEqual(await c.call('CLIENT', 'KILL', 'x'), err("ERR unknown subcommand 'KILL'. Try CLIENT HELP."));
    c.close();
  });

  it('HELLO answers RESP2 (HELLO, HELLO 2 SETNAME) and NOPROTO for RESP3', async () => {
    const c = await RespTestConnection.connect(port);
    const hello = (await c.call('HELLO')) as RespReply[];
    assert.deepEqual(hello.slice(0, 6), ['server', 'redis', 'version', '7.0.0', 'proto', 2]);
    assert.deepEqual(await c.call('HELLO', '3'), err('NOPROTO unsupported protocol version'));
    const h2 = (await c.call('HELLO', '2', 'AUTH', 'default', 'pw', 'SETNAME', 'svc')) as RespReply[];
    assert.equal(h2[5], 2);
    assert.equal(await c.call('CLIENT', 'GETNAME'), 'svc');
    assert.deepEqual(await c.call('HELLO', 'two'), err('ERR Protocol version is not an integer or out of range'));
    c.close();
  });

  it('CONFIG GET answers what redis-benchmark reads; AUTH fails as on a Redis without a password', async () => {
    const c = await RespTestConnection.connect(port);
    assert.deepEqual(await c.call('CONFIG', 'GET', 'save'), ['save', '']);
    assert.deepEqual(await c.call('CONFIG', 'GET', 'appendonly'), ['appendonly', 'no']);
    assert.deepEqual(await c.call('CONFIG', 'GET', 'databases'), ['databases', '3']);
    assert.deepEqual(await c.call('CONFIG', 'GET', 'nothing*'), []);
    assert.match(((await c.call('AUTH', 'pw')) as { error: string }).error, /^ERR AUTH <password> called without any password configured/);
    c.close();
  });

  it('HOMING.ROUTE and HOMING.MEMBERS', async () => {
    const c = await RespTestConnection.connect(port);
    assert.equal(await c.call('HOMING.ROUTE', 'tenants', 'acme'), TestBackend.expected('tenants', 'acme'));
    assert.equal(await c.call('homing.route', 'directory', 'k1'), TestBackend.expected('directory', 'k1'));
    assert.deepEqual(await c.call('HOMING.ROUTE', 'nope', 'k'), err("ERR unknown route 'nope'"));
    assert.deepEqual(await c.call('HOMING.ROUTE', 'docs'), err("ERR wrong number of arguments for 'homing.route' command"));
    assert.deepEqual(await c.call('HOMING.MEMBERS'), [...POOLS.docs!, ...POOLS.tenants!]);
    assert.deepEqual(await c.call('HOMING.MEMBERS', 'tenants'), POOLS.tenants);
    assert.deepEqual(await c.call('HOMING.MEMBERS', 'nope'), err("ERR unknown pool 'nope'"));
    c.close();
  });

  it('answers a throwing or rejecting backend with -ERR <message>, in order, and keeps serving', async () => {
    const c = await RespTestConnection.connect(port);
    await c.send('GET', 'boom');
    await c.send('MGET', 'a', 'boom');
    await c.send('SELECT', '2');
    await c.send('GET', 'fail-1');
    await c.send('GET', 'ok-1');
    await c.send('MGET', 'ok-2', 'fail-2');
    await c.send('MGET', 'fail-3', 'boom'); // an async look-up left behind by a sync throw
    assert.deepEqual(await c.replies(7), [
      err('ERR resolver exploded'),
      err('ERR resolver exploded'),
      'OK',
      err('ERR directory unavailable'),
      TestBackend.expected('directory', 'ok-1'),
      err('ERR directory unavailable'),
      err('ERR resolver exploded'),
    ]);
    await sleep(20); // an unhandled rejection would fail the test run here
    assert.equal(await c.call('PING'), 'PONG');
    c.close();
  });

  it('ECHO and PING are binary-safe: every byte value comes back unchanged', async () => {
    const c = await RespTestConnection.connect(port);
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    await c.write(Buffer.concat([Buffer.from('*2\r\n$4\r\nECHO\r\n$256\r\n'), all, Buffer.from('\r\n')]));
    await until(() => c.received >= 256 + 8);
    assert.equal(c.pending().compare(Buffer.concat([Buffer.from('$256\r\n'), all, Buffer.from('\r\n')])), 0);
    c.close();
  });

  it('answers QUIT and protocol errors after pending async replies, in order, then closes', async () => {
    const a = await RespTestConnection.connect(port);
    await a.write(Buffer.concat([encodeCommand(['SELECT', '2']), encodeCommand(['GET', 'q1']), encodeCommand(['QUIT']), encodeCommand(['GET', 'never'])]));
    assert.deepEqual(await a.replies(3), ['OK', TestBackend.expected('directory', 'q1'), 'OK']);
    assert.ok(await a.waitClosed());
    assert.equal(a.pending().length, 0);
    const b = await RespTestConnection.connect(port);
    await b.write(Buffer.concat([encodeCommand(['SELECT', '2']), encodeCommand(['GET', 'q2']), Buffer.from('*1\r\n$x\r\n')]));
    assert.deepEqual(await b.replies(3), ['OK', TestBackend.expected('directory', 'q2'), err('ERR Protocol error: invalid bulk length')]);
    assert.ok(await b.waitClosed());
  });

  it('keeps replies in request order when async look-ups finish out of order (pipelined)', async () => {
    const c = await RespTestConnection.connect(port);
    const keys = Array.from({ length: 300 }, (_, i) => `key-${i}`);
    const parts: Buffer[] = [];
    const want: RespReply[] = [];
    for (const [i, k] of keys.entries()) {
      const db = i % 3; // interleave sync (0, 1) and async (2) routes
      parts.push(encodeCommand(['SELECT', String(db)]), encodeCommand(['GET', k]));
      want.push('OK', TestBackend.expected(backend.routes[db]!, k));
      if (i % 10 === 0) {
        parts.push(encodeCommand(['PING', k]));
        want.push(k);
      }
    }
    await c.write(Buffer.concat(parts));
    assert.deepEqual(await c.replies(want.length), want);
    c.close();
  });
});

describe('RESP server: a single route', () => {
  it('accepts and ignores SELECT of any database when there is one route', async () => {
    const one: RespBackend = { routes: ['only'], lookup: (_r, k) => `10.5.0.1:${k.length}`, members: () => [] };
    await withServer({}, one, async (_srv, port) => {
      const c = await RespTestConnection.connect(port);
      assert.equal(await c.call('SELECT', '0'), 'OK');
      assert.equal(await c.call('SELECT', '5'), 'OK');
      assert.equal(await c.call('GET', 'abc'), '10.5.0.1:3');
      assert.deepEqual(await c.call('SELECT', '-1'), err('ERR DB index is out of range'));
      c.close();
    });
  });

  it('answers GET with an error when no route is configured', async () => {
    const none: RespBackend = { routes: [], lookup: () => null, members: () => undefined };
    await withServer({}, none, async (_srv, port) => {
      const c = await RespTestConnection.connect(port);
      assert.deepEqual(await c.call('GET', 'k'), err('ERR no route is configured for the RESP router'));
      c.close();
    });
  });
});

describe('RESP server: every split of the input gives the same answers', () => {
  const backend = new TestBackend();
  // Sync and async replies, an empty command, inline, a UTF-8 key, a read ending before `$`...
  const pipeline = Buffer.concat([
    encodeCommand(['GET', 'alpha']),
    Buffer.from('*0\r\n'),
    encodeCommand(['SELECT', '2']),
    encodeCommand(['GET', 'beta']),
    Buffer.from('PING\r\n'),
    encodeCommand(['MGET', 'γ-€', 'delta']),
    encodeCommand(['SELECT', '1']),
    Buffer.from('GET none-x\r\n'),
    encodeCommand(['ECHO', 'end']),
  ]);

  it('answers the same for every split point of a pipelined buffer as for one write', async () => {
    await withServer({}, backend, async (_srv, port) => {
      const ref = await RespTestConnection.connect(port);
      await ref.write(pipeline);
      const expected = await ref.replies(8);
      ref.close();
      assert.deepEqual(expected, [
        TestBackend.expected('docs', 'alpha'),
        'OK',
        TestBackend.expected('directory', 'beta'),
        'PONG',
        [TestBackend.expected('directory', 'γ-€'), TestBackend.expected('directory', 'delta')],
        'OK',
        null,
        'end',
      ]);
      const c = await RespTestConnection.connect(port);
      for (let i = 1; i < pipeline.length; i++) {
        await c.send('SELECT', '0');
        await c.reply();
        await c.write(pipeline.subarray(0, i));
        await sleep(1); // a separate read on the server
        await c.write(pipeline.subarray(i));
        assert.deepEqual(await c.replies(8), expected, `split at ${i}`);
      }
      c.close();
    });
  });

  it('answers the same when the pipeline is written one byte at a time', async () => {
    await withServer({}, backend, async (_srv, port) => {
      const c = await RespTestConnection.connect(port);
      for (let i = 0; i < pipeline.length; i++) {
        await c.write(pipeline.subarray(i, i + 1));
        if (i % 4 === 0) await new Promise((r) => setImmediate(r));
      }
      const got = await c.replies(8);
      assert.equal(got[0], TestBackend.expected('docs', 'alpha'));
      assert.equal(got[7], 'end');
      c.close();
    });
  });
});

describe('RESP server: protocol errors close like Redis', () => {
  const backend = new TestBackend();
  let srv: RespServer;
  let port: number;
  before(async () => {
    srv = await startRespServer(BASE, backend);
    port = srv.address().port;
  });
  after(() => srv.close());

  const cases: [string, string][] = [
    ['*20000000\r\n', 'ERR Protocol error: invalid multibulk length'],
    ['*-10\r\n', 'ERR Protocol error: invalid multibulk length'],
    ['*1\r\n$2000000000\r\n', 'ERR Protocol error: invalid bulk length'],
    ['*1\r\n$-10\r\n', 'ERR Protocol error: invalid bulk length'],
    ['*1\r\n$blabla\r\n', 'ERR Protocol error: invalid bulk length'],
    ['*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n', "ERR Protocol error: expected '$', got 'f'"],
    ['GET "unbalanced\r\n', 'ERR Protocol error: unbalanced quotes in request'],
  ];
  for (const [input, message] of cases) {
    it(`${JSON.stringify(input)} → -${message}, then close (after answering what came before)`, async () => {
      const c = await RespTestConnection.connect(port);
      await c.write(`PING\r\n${input}PING\r\n`);
      assert.deepEqual(await c.replies(2), ['PONG', err(message)]);
      assert.ok(await c.waitClosed(), 'closed');
      assert.equal(c.pending().length, 0, 'nothing after the error');
    });
  }

  it('\\x00 then endless bytes without CRLF: error and close after ~64 KiB, not unbounded buffering', async () => {
    const c = await RespTestConnection.connect(port);
    await c.write(Buffer.from([0]));
    const junk = Buffer.alloc(16 * 1024, 0x41);
    let sent = 1;
    while (!c.closed && sent < 64 * 1024 * 1024) {
      if (!c.socket.write(junk)) await Promise.race([new Promise((r) => c.socket.once('drain', r)), sleep(50)]);
      sent += junk.length;
      if (c.received > 0) break;
    }
    assert.deepEqual(await c.reply(), err('ERR Protocol error: too big inline request'));
    assert.ok(await c.waitClosed(), 'closed');
    assert.ok(sent < 8 * 1024 * 1024, `server read ${sent} bytes before answering`);
  });

  it('an inline request over 64 KiB gets "too big inline request" and close', async () => {
    const c = await RespTestConnection.connect(port);
    await c.write(`GET ${'k'.repeat(70 * 1024)}\r\n`);
    assert.deepEqual(await c.reply(), err('ERR Protocol error: too big inline request'));
    assert.ok(await c.waitClosed());
  });

  it('a key over the bulk limit is refused without waiting for its bytes', async () => {
    await withServer({ limits: { maxBulkLength: 1024 } }, backend, async (_srv, p) => {
      const c = await RespTestConnection.connect(p);
      await c.write('*2\r\n$3\r\nGET\r\n$1025\r\n');
      assert.deepEqual(await c.reply(), err('ERR Protocol error: invalid bulk length'));
      assert.ok(await c.waitClosed());
    });
  });

  it('after a protocol error the server keeps serving other clients', async () => {
    const c = await RespTestConnection.connect(port);
    assert.equal(await c.call('PING'), 'PONG');
    c.close();
    assert.ok(srv.stats.protocolErrors >= cases.length);
  });
});

describe('RESP server: HTTP at the RESP port closes at once', () => {
  const backend = new TestBackend();
  const requests = [
    'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 12\r\n\r\nSET k v\r\n',
    'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    'GET /api/v1?x=1 HTTP/1.0\r\n\r\n',
    'Host: 127.0.0.1\r\n',
    'PUT /x HTTP/1.1\r\nHost: a\r\n\r\n',
  ];
  for (const req of requests) {
    it(`${JSON.stringify(req.slice(0, 24))}… → closed, nothing answered`, async () => {
      await withServer({}, backend, async (_srv, port) => {
        const c = await RespTestConnection.connect(port);
        await c.write(req);
        assert.ok(await c.waitClosed(), 'closed');
        assert.equal(c.received, 0, `answered: ${c.pending().toString()}`);
      });
    });
  }

  it('drops replies still queued for commands before the HTTP line, as Redis does', async () => {
    await withServer({}, backend, async (_srv, port) => {
      const c = await RespTestConnection.connect(port);
      await c.write('PING\r\nPOST / HTTP/1.1\r\nPING\r\n');
      assert.ok(await c.waitClosed());
      assert.equal(c.received, 0);
    });
  });
});

describe('RESP server: limits', () => {
  it('refuses clients over maxClients with -ERR max number of clients reached', async () => {
    await withServer({ maxClients: 2 }, new TestBackend(), async (srv, port) => {
      const a = await RespTestConnection.connect(port);
      const b = await RespTestConnection.connect(port);
      assert.equal(await a.call('PING'), 'PONG');
      assert.equal(await b.call('PING'), 'PONG');
      assert.equal(srv.clients, 2);
      const c = await RespTestConnection.connect(port);
      assert.deepEqual(await c.reply(), err('ERR max number of clients reached'));
      assert.ok(await c.waitClosed());
      a.close();
      await until(() => srv.clients <= 1);
      const d = await RespTestConnection.connect(port);
      assert.equal(await d.call('PING'), 'PONG');
      assert.equal(srv.stats.rejectedConnections, 1);
      b.close();
      d.close();
    });
  });

  it('closes idle connections after idleTimeout, not active ones', async () => {
    // idleTimeout well above the gaps between the busy client's commands, even on a loaded machine.
    await withServer({ idleTimeout: 1000 }, new TestBackend(), async (srv, port) => {
      const idle = await RespTestConnection.connect(port);
      const busy = await RespTestConnection.connect(port);
      const started = Date.now();
      while (!idle.closed && Date.now() - started < WAIT) {
        assert.equal(await busy.call('PING'), 'PONG');
        await sleep(40);
      }
      assert.ok(idle.closed, 'idle connection closed');
      assert.ok(Date.now() - started >= 900, `idle connection closed after ${Date.now() - started} ms, idleTimeout is 1000 ms`);
      assert.ok(!busy.closed, 'busy connection open');
      busy.close();
      await until(() => srv.clients === 0);
    });
  });

  it('stops reading at maxPipeline pending async replies and resumes as they are answered', async () => {
    // A backend whose look-ups wait until the test releases them.
    const waiting: (() => void)[] = [];
    const backend: RespBackend = {
      routes: ['held'],
      lookup: (_route, key) =>
        new Promise((resolve) => {
          waiting.push(() => resolve(`10.9.0.1:${1000 + Number(key)}`));
        }),
      members: () => [],
    };
    await withServer({ maxPipeline: 10 }, backend, async (_srv, port) => {
      const c = await RespTestConnection.connect(port);
      const n = 100;
      await c.write(Buffer.concat(Array.from({ length: n }, (_, i) => encodeCommand(['GET', String(i)]))));
      await until(() => waiting.length >= 10);
      assert.equal(waiting.length, 10, 'only maxPipeline look-ups started');
      const got: RespReply[] = [];
      while (got.length < n) {
        const batch = waiting.splice(0);
        assert.ok(batch.length <= 10, `at most 10 pending, saw ${batch.length}`);
        for (const release of batch.reverse()) release(); // answer out of order
        got.push(...(await c.replies(batch.length)));
        await sleep(5);
      }
      assert.deepEqual(
        got,
        Array.from({ length: n }, (_, i) => `10.9.0.1:${1000 + i}`),
      );
      c.close();
    });
  });

  it('a client that never reads its replies stalls the reader, then is closed at the idle timeout', async () => {
    await withServer({ idleTimeout: 500 }, new TestBackend(), async (srv, port) => {
      const c = await RespTestConnection.connect(port);
      c.socket.pause(); // never read
      const chunk = Buffer.concat(Array.from({ length: 1000 }, (_, i) => encodeCommand(['GET', `k${i}`])));
      let written = 0;
      const started = Date.now();
      while (!c.closed && Date.now() - started < WAIT) {
        if (c.socket.writableLength < 4 * 1024 * 1024) {
          c.socket.write(chunk);
          written += chunk.length;
        } else {
          await sleep(20);
        }
        if (written % (chunk.length * 50) === 0) await sleep(1);
      }
      assert.ok(c.closed, 'closed');
      // The server stopped reading: the client could not hand over unbounded data.
      assert.ok(written < 200 * 1024 * 1024, `wrote ${written}`);
      assert.equal(srv.stats.idleCloses, 1, 'closed by the idle timeout');
      assert.equal(srv.stats.outputLimitCloses, 0);
      await until(() => srv.clients === 0);
      assert.equal(srv.clients, 0);
    });
  });

  it('closes a client whose unread output passes maxOutputBuffer', async () => {
    await withServer({ maxOutputBuffer: 32 * 1024 }, new TestBackend(), async (srv, port) => {
      const c = await RespTestConnection.connect(port);
      c.socket.pause(); // never read
      // COMMAND's reply is a few KiB: a small request with a large answer.
      const burst = Buffer.from('COMMAND\r\n'.repeat(2000));
      for (let i = 0; i < 20 && !c.closed; i++) {
        c.socket.write(burst);
        await sleep(20);
      }
      c.socket.resume();
      assert.ok(await c.waitClosed(), 'closed');
      assert.ok(srv.stats.outputLimitCloses >= 1);
    });
  });

  it('validates options eagerly and names the bad one', async () => {
    await assert.rejects(startRespServer({ ...BASE, maxPipeline: 0 }, new TestBackend()), /maxPipeline/);
    await assert.rejects(startRespServer({ ...BASE, maxClients: -1 }, new TestBackend()), /maxClients/);
    await assert.rejects(startRespServer({ ...BASE, limits: { maxBulkLength: 0 } }, new TestBackend()), /maxBulkLength/);
  });
});

/** mulberry32: a seeded PRNG so a failing fuzz round reproduces. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomInput(rnd: () => number): Buffer {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const parts: Buffer[] = [];
  const n = 1 + Math.floor(rnd() * 6);
  for (let i = 0; i < n; i++) {
    const kind = Math.floor(rnd() * 9);
    if (kind === 0) parts.push(encodeCommand(['GET', `k${Math.floor(rnd() * 1000)}`]));
    else if (kind === 1) parts.push(encodeCommand([pick(['MGET', 'SELECT', 'PING', 'ECHO', 'INFO', 'COMMAND', 'CLIENT', 'HELLO', 'HOMING.ROUTE', 'HOMING.MEMBERS', 'NOPE']), ...Array.from({ length: Math.floor(rnd() * 4) }, () => pick(['0', '1', '2', '9', 'x', 'docs', 'directory', 'fail', 'boom', 'SETNAME', 'COUNT', 'DOCS', '3']))]));
    else if (kind === 2) parts.push(Buffer.from(pick(['*', '$', '*1\r\n', '*2\r\n$3\r\nGET\r\n', '$-1\r\n', '*-1\r\n', '*0\r\n', '\r\n', '\n', '*999999999\r\n', '$99999999999\r\n', '*1\r\n$3\r\nGE'])));
    else if (kind === 3) {
      const len = Math.floor(rnd() * 64);
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = Math.floor(rnd() * 256);
      parts.push(b);
    } else if (kind === 4) parts.push(Buffer.from(`${pick(['GET', 'PING', 'ECHO', 'MGET', 'get'])} ${pick(['a', '"b c"', "'d'", '"\\x41"', '"open', 'x"y'])}\r\n`));
    else if (kind === 5) parts.push(Buffer.from(`*${Math.floor(rnd() * 5) - 1}\r\n`));
    else if (kind === 6) parts.push(Buffer.from(`$${Math.floor(rnd() * 20) - 2}\r\n${'z'.repeat(Math.floor(rnd() * 10))}\r\n`));
    else if (kind === 7) parts.push(encodeCommand(['SELECT', '2']), encodeCommand(['GET', pick(['a', 'fail-x', 'boom'])]));
    else parts.push(Buffer.from(pick(['POST / HTTP/1.1\r\n', 'Host: x\r\n', 'QUIT\r\n'])));
  }
  return Buffer.concat(parts);
}

describe('RESP server: random input (seeded) never crashes or leaks', () => {
  it('survives 3000 random inputs, split randomly, and still answers a fresh client', async () => {
    await withServer({ idleTimeout: 5000 }, new TestBackend(), async (srv, port) => {
      const rnd = prng(20240611);
      const heapBefore = process.memoryUsage().heapUsed;
      // Drawn up front so the inputs do not depend on how the workers interleave.
      const inputs = Array.from({ length: 3000 }, () => {
        const input = randomInput(rnd);
        return { input, cut: Math.floor(rnd() * (input.length + 1)), pause: rnd() < 0.3 };
      });
      const parallel = 16;
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < inputs.length) {
          const { input, cut, pause } = inputs[next++]!;
          const c = await RespTestConnection.connect(port);
          await c.write(input.subarray(0, cut));
          if (pause) await sleep(1);
          await c.write(input.subarray(cut));
          c.socket.end(); // our FIN: the server finishes answering and closes
          if (!(await c.waitClosed())) throw new Error(`connection not closed for input ${input.toString('hex')}`);
        }
      };
      await Promise.all(Array.from({ length: parallel }, worker));
      await until(() => srv.clients === 0);
      assert.equal(srv.clients, 0, 'no connection left behind');
      const c = await RespTestConnection.connect(port);
      assert.equal(await c.call('PING'), 'PONG');
      assert.equal(await c.call('GET', 'still-here'), TestBackend.expected('docs', 'still-here'));
      c.close();
      const grown = process.memoryUsage().heapUsed - heapBefore;
      assert.ok(grown < 64 * 1024 * 1024, `heap grew by ${grown} bytes`);
    });
  });
});
