/**
 * Real clients against the RESP router: the ioredis library, the redis-cli binary (one-shot,
 * stdin, --pipe and its interactive REPL), redis-benchmark (correctness only: no timing asserts),
 * a byte-for-byte comparison with a real redis-server on the cases where homing answers as Redis
 * does, and HAProxy / nginx+Lua (started with test/support/services.ts) in front of it.
 */
import { strict as assert } from 'node:assert';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { RespBackend } from '../src/resp/backend.js';
import { startRespServer, type RespServer } from '../src/resp/server.js';
import { RespTestConnection, startHaproxy, startNginx, startRedis, type RedisService, type Service } from './support/services.js';
import { until } from './support/backends.js';

const MEMBERS = ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080', '10.0.0.4:8080'];

function fnv(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

/** Route i answers MEMBERS[(hash(key) + i) % n]; route `lazy` answers the same as route 0, asynchronously. */
const ROUTES = ['docs', 'tenants', 'lazy'];
function expected(route: string, key: string): string {
  const shift = route === 'tenants' ? 1 : 0;
  return MEMBERS[(fnv(key) + shift) % MEMBERS.length]!;
}
const backend: RespBackend = {
  routes: ROUTES,
  lookup(route, key) {
    if (!ROUTES.includes(route)) throw new Error(`unknown route '${route}'`);
    if (route === 'lazy') return Promise.resolve(expected('docs', key));
    return expected(route, key);
  },
  members: (pool) => (pool === undefined || pool === 'docs' ? MEMBERS : undefined),
};

function run(cmd: string, args: string[], input?: string, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err && typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : err ? -1 : 0;
      if (err && code === -1 && !stdout) return reject(err);
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

let srv: RespServer;
let port: number;

before(async () => {
  srv = await startRespServer({ host: '127.0.0.1', port: 0, maxClients: 1000, idleTimeout: 60_000, maxPipeline: 1024 }, backend);
  port = srv.address().port;
});
after(() => srv.close());

describe('ioredis talks to the RESP router', () => {
  let client: Redis;
  before(async () => {
    client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, connectionName: 'homing-test', maxRetriesPerRequest: 0, retryStrategy: () => null });
    await client.connect(); // runs ioredis' ready check (INFO) and CLIENT SETNAME
  });
  after(() => client.quit());

  it('GET, MGET, PING, ECHO, INFO', async () => {
    assert.equal(await client.get('user:42'), expected('docs', 'user:42'));
    assert.deepEqual(await client.mget('a', 'b', 'c'), ['a', 'b', 'c'].map((k) => expected('docs', k)));
    assert.equal(await client.ping(), 'PONG');
    assert.equal(await client.echo('héllo'), 'héllo');
    const info = await client.info('server');
    assert.match(info, /redis_version:7\.0\.0/);
    assert.equal(await client.client('GETNAME'), 'homing-test');
  });

  it('SELECT (and the db option) switches routes; async routes answer too', async () => {
    const other = new Redis({ host: '127.0.0.1', port, db: 1, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    await other.connect();
    assert.equal(await other.get('acme'), expected('tenants', 'acme'));
    assert.equal(await other.select(2), 'OK');
    assert.equal(await other.get('acme'), expected('docs', 'acme'));
    await assert.rejects(other.select(9), /DB index is out of range/);
    await other.quit();
  });

  it('answers a pipeline of 2000 GETs in order', async () => {
    const keys = Array.from({ length: 2000 }, (_, i) => `k-${i}`);
    const p = client.pipeline();
    for (const k of keys) p.get(k);
    const res = (await p.exec())!;
    assert.deepEqual(
      res.map(([e, v]) => (e ? e.message : v)),
      keys.map((k) => expected('docs', k)),
    );
  });

  it('HOMING.ROUTE / HOMING.MEMBERS via call(); unknown commands reject with Redis’ message', async () => {
    assert.equal(await client.call('HOMING.ROUTE', 'tenants', 'x'), expected('tenants', 'x'));
    assert.deepEqual(await client.call('HOMING.MEMBERS', 'docs'), MEMBERS);
    await assert.rejects(client.call('HOMING.ROUTE', 'nope', 'x'), /unknown route 'nope'/);
    await assert.rejects(client.set('k', 'v'), /ERR unknown command 'set', with args beginning with: 'k' 'v'/);
  });
});

describe('redis-cli talks to the RESP router', () => {
  const cli = (...args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]);

  it('one-shot commands: GET, MGET, -n (SELECT), PING, INFO, COMMAND COUNT, unknown', async () => {
    assert.equal((await cli('GET', 'user:1')).stdout.trim(), expected('docs', 'user:1'));
    assert.deepEqual((await cli('MGET', 'a', 'b')).stdout.trim().split('\n'), [expected('docs', 'a'), expected('docs', 'b')]);
    assert.equal((await cli('-n', '1', 'GET', 'user:1')).stdout.trim(), expected('tenants', 'user:1'));
    assert.equal((await cli('-n', '2', 'GET', 'user:1')).stdout.trim(), expected('docs', 'user:1'));
    assert.equal((await cli('PING')).stdout.trim(), 'PONG');
    assert.match((await cli('INFO', 'server')).stdout, /redis_version:7\.0\.0/);
    assert.match((await cli('COMMAND', 'COUNT')).stdout.trim(), /^\d+$/);
    assert.match((await cli('NOPE', 'x')).stdout, /ERR unknown command 'NOPE', with args beginning with: 'x'/);
    const bad = await cli('-n', '7', 'GET', 'x');
    assert.match(bad.stdout + bad.stderr, /DB index is out of range/);
  });

  it('commands from stdin, and --pipe (which checks its 20 random bytes come back through ECHO)', async () => {
    const keys = Array.from({ length: 500 }, (_, i) => `line-${i}`);
    const out = await run('redis-cli', ['-p', String(port)], keys.map((k) => `GET ${k}\n`).join(''));
    assert.deepEqual(out.stdout.trim().split('\n'), keys.map((k) => expected('docs', k)));
    const piped = await run('redis-cli', ['-p', String(port), '--pipe'], Array.from({ length: 20000 }, (_, i) => `GET k${i}\r\n`).join(''));
    assert.match(piped.stdout, /errors: 0, replies: 20000/);
  });

  // script(1) comes with Debian's bsdutils (scripts/install-system-deps.sh installs it when missing).
  it('the interactive REPL: help from COMMAND DOCS, SELECT in the prompt', async () => {
    // script(1) gives redis-cli a terminal; TERM=dumb keeps linenoise from querying the cursor.
    const child = spawn('script', ['-qec', `redis-cli -h 127.0.0.1 -p ${port}`, '/dev/null'], { env: { ...process.env, TERM: 'dumb' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const waitFor = async (needle: string | RegExp): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (!(typeof needle === 'string' ? out.includes(needle) : needle.test(out))) {
        if (Date.now() > deadline) throw new Error(`REPL never printed ${String(needle)}; got:\n${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      const prompt = `127.0.0.1:${port}> `;
      await waitFor(prompt);
      child.stdin.write('help homing.route\r');
      await waitFor(/HOMING\.ROUTE.*route key/);
      await waitFor('The member (host:port) the named route sends the key to');
      child.stdin.write('SELECT 1\r');
      await waitFor(`127.0.0.1:${port}[1]> `);
      child.stdin.write('GET acme\r');
      await waitFor(`"${expected('tenants', 'acme')}"`);
      child.stdin.write('quit\r');
      await new Promise((r) => child.once('exit', r));
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('redis-benchmark runs against the RESP router', () => {
  for (const extra of [[], ['-P', '16']]) {
    it(`-t get -n 20000 ${extra.join(' ')} completes without errors`, async () => {
      const r = await run('redis-benchmark', ['-h', '127.0.0.1', '-p', String(port), '-t', 'get', '-n', '20000', '-q', ...extra]);
      assert.equal(r.code, 0, r.stderr);
      const text = (r.stdout + r.stderr).replace(/\r/g, '\n');
      assert.match(text, /GET: [\d.]+ requests per second/);
      assert.doesNotMatch(text, /ERR|WARNING|Error/);
    });
  }
});

describe('answers byte for byte like a real redis-server', () => {
  let redis: RedisService;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());

  /**
   * Sends raw bytes to homing and to Redis on fresh connections; answers, for each, what came back
   * and whether the server closed. After a short settle (a server that keeps the connection open
   * shows nothing more), a side that differs from the other, or has shown nothing yet, gets the
   * full deadline to catch up: a loaded machine can be slow to answer or to close.
   */
  async function exchange(input: string): Promise<{ ours: { bytes: string; closed: boolean }; theirs: { bytes: string; closed: boolean } }> {
    const [a, b] = await Promise.all([RespTestConnection.connect(port), RespTestConnection.connect(redis.port)]);
    try {
      await Promise.all([a.write(Buffer.from(input, 'latin1')), b.write(Buffer.from(input, 'latin1'))]);
      await Promise.all([a.waitClosed(300), b.waitClosed(300)]);
      const shown = (c: RespTestConnection): boolean => c.closed || c.pending().length > 0;
      await until(() => shown(a) && shown(b) && a.closed === b.closed && a.pending().equals(b.pending())).catch(() => {});
      const seen = (c: RespTestConnection) => ({ bytes: c.pending().toString('latin1'), closed: c.closed });
      return { ours: seen(a), theirs: seen(b) };
    } finally {
      a.close();
      b.close();
    }
  }

  // Cases where homing deliberately answers as Redis 7.0 does. (It is stricter than Redis on
  // `*-10`, a bulk not followed by CRLF, and `*20000000`, which Redis accepts and waits on.)
  const cases: string[] = [
    'PING\r\n',
    '*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n',
    'ECHO "a b"\r\n',
    'GET\r\n',
    'GET a b\r\n',
    'MGET\r\n',
    'PING a b\r\n',
    'NOSUCH a b c\r\n',
    `NOSUCH ${'y'.repeat(200)} z\r\n`,
    'SELECT 16\r\n',
    'SELECT -1\r\n',
    'SELECT x\r\n',
    'HELLO 4\r\n',
    'HELLO x\r\n',
    'CLIENT SETNAME "a b"\r\n',
    'CLIENT SETNAME ok\r\nCLIENT GETNAME\r\n',
    'CONFIG GET save\r\n',
    'CONFIG GET appendonly\r\n',
    'AUTH pw\r\n',
    'QUIT\r\nPING\r\n',
    '*0\r\n*-1\r\n\r\nPING\r\n',
    '*3000000000\r\n',
    '*1\r\n$2000000000\r\n',
    '*1\r\n$-10\r\n',
    '*1\r\n$blabla\r\n',
    '*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n',
    '*1\r\nfoo\r\n',
    'GET "unbalanced\r\n',
    "GET 'a'b\r\n",
    `${'\x00'}${'a'.repeat(70 * 1024)}`,
    'POST / HTTP/1.1\r\nHost: x\r\n\r\n',
    'PING\r\nPOST / HTTP/1.1\r\n',
    'Host: 127.0.0.1\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
  ];
  for (const input of cases) {
    it(JSON.stringify(input.length > 60 ? `${input.slice(0, 40)}…` : input), async () => {
      const { ours, theirs } = await exchange(input);
      assert.deepEqual(ours, theirs);
    });
  }
});

describe('services: HAProxy and nginx+Lua in front of the RESP router', () => {
  let haproxy: Service | undefined;
  let nginx: Service | undefined;
  after(async () => {
    await haproxy?.stop();
    await nginx?.stop();
  });

  it('HAProxy (TCP mode) forwards RESP: redis-cli through it gets the same answers', async () => {
    haproxy = await startHaproxy(
      `global
  maxconn 100
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend resp
  bind 127.0.0.1:{{port}}
  default_backend homing
backend homing
  server homing1 127.0.0.1:${port}
`,
    );
    const r = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(haproxy.port), 'GET', 'through-haproxy']);
    assert.equal(r.stdout.trim(), expected('docs', 'through-haproxy'));
    const dir = haproxy.dir;
    await haproxy.stop();
    assert.equal(spawnSync('test', ['-e', dir]).status, 1, 'temp dir removed');
  });

  it('nginx with the Lua module asks the router over RESP (resty.redis) for each request', async () => {
    nginx = await startNginx(
      (c) => `${c.luaModules}
events {}
http {
  ${c.httpTemp}
  access_log off;
  server {
    listen 127.0.0.1:${c.port};
    location / {
      content_by_lua_block {
        local redis = require "nginx.redis"
        local r = redis:new()
        r:set_timeout(500)
        local ok, err = r:connect("127.0.0.1", ${port})
        if not ok then ngx.status = 502 ngx.say("connect: ", err) return end
        local target, err = r:get(ngx.var.uri)
        r:set_keepalive(10000, 16)
        ngx.say(tostring(target))
      }
    }
  }
}
`,
    );
    for (const path of ['/documents/1', '/documents/2', '/x']) {
      const res: Response = await fetch(`http://127.0.0.1:${nginx.port}${path}`);
      assert.equal(res.status, 200, nginx.output());
      assert.equal((await res.text()).trim(), expected('docs', path));
    }
  });
});
