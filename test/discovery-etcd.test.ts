/**
 * etcd discovery and `announce`, against a real etcd (Debian's etcd-server, started per test on
 * loopback): the pool follows keys added, removed and changed under the prefix; bad values are
 * skipped and reported once; requests keep flowing while etcd is away and changes are followed again
 * once it is back; an instance announces itself under a lease that goes away on close (or expires
 * when the process is killed) and comes back after etcd lost it.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3, Range } from 'etcd3';
import { pino } from 'pino';
import { Pool } from '../src/members/pool.js';
import { EtcdSource, parseEtcdMember, type EtcdSourceOptions } from '../src/discovery/index.js';
import { ConfigError, loadConfigFile, parseConfig } from '../src/config/load.js';
import { deadPort, httpRequest, startBackend, startTestHoming, until, WAIT, type Backend } from './support/backends.js';
import { freePort, startEtcd, type EtcdService } from './support/services.js';
import { serveCli } from './support/serve.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function etcd(opts: Parameters<typeof startEtcd>[0] = {}): Promise<EtcdService> {
  const e = await startEtcd(opts);
  cleanups.push(() => e.stop());
  return e;
}

/** A plain client of the test's own, to change etcd as an operator would. */
function client(e: EtcdService): Etcd3 {
  const c = new Etcd3({ hosts: `http://${e.endpoint}` });
  cleanups.push(() => c.close());
  return c;
}

async function backend(name: string): Promise<Backend> {
  const b = await startBackend(name);
  cleanups.push(() => b.close());
  return b;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'homing-etcd-test-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function endpointOf(e: EtcdService): { host: string; port: number } {
  return { host: '127.0.0.1', port: e.port };
}

function membersOf(pool: Pool): string[] {
  return pool.members.members.map((m) => `${m.id}*${m.weight}`).sort();
}

/** An EtcdSource feeding a Pool, with every error it reported. */
async function watchedPool(e: EtcdService, prefix: string, more: Partial<EtcdSourceOptions> = {}): Promise<{ pool: Pool; errors: string[]; source: EtcdSource }> {
  const pool = new Pool('p');
  const errors: string[] = [];
  const source = new EtcdSource({ endpoints: [endpointOf(e)], prefix, ...more });
  cleanups.push(() => source.stop());
  await source.start(
    (specs) => pool.setMembers(specs),
    (err) => errors.push(err.message),
  );
  return { pool, errors, source };
}

/** A source that must not start: its start rejects with an error naming the prefix. */
async function refusedStart(opts: EtcdSourceOptions): Promise<void> {
  const source = new EtcdSource(opts);
  cleanups.push(() => source.stop());
  const where = opts.prefix.replace(/[/]/g, '\\/');
  await assert.rejects(
    source.start(
      () => {},
      () => {},
    ),
    new RegExp(`^Error: discovery etcd ${where}: `),
  );
}

async function poolsOf(adminUrl: string): Promise<Record<string, string[]>> {
  const r = await httpRequest(`${adminUrl}/api/v1/pools`);
  const pools = (JSON.parse(r.text) as { pools: { name: string; members: { id: string; weight: number }[] }[] }).pools;
  return Object.fromEntries(pools.map((p) => [p.name, p.members.map((m) => `${m.id}*${m.weight}`).sort()]));
}

describe('etcd values', () => {
  test('JSON { address, weight }, a JSON string or a bare host:port; anything else is refused with the key', () => {
    assert.deepEqual(parseEtcdMember('{"address":"10.0.0.7:8080","weight":3}', 'k'), { host: '10.0.0.7', port: 8080, weight: 3 });
    assert.deepEqual(parseEtcdMember(' 10.0.0.8:8080\n', 'k'), { host: '10.0.0.8', port: 8080, weight: 1 });
    assert.deepEqual(parseEtcdMember('"[::1]:81"', 'k'), { host: '::1', port: 81, weight: 1 });
    assert.throws(() => parseEtcdMember('', '/p/a'), /\/p\/a: empty value/);
    assert.throws(() => parseEtcdMember('{"address":', '/p/a'), /\/p\/a: invalid JSON/);
    assert.throws(() => parseEtcdMember('no-port', '/p/a'), /\/p\/a: invalid address/);
    assert.throws(() => parseEtcdMember('{"address":"a:1","weight":0}', '/p/a'), /\/p\/a\.weight: expected an integer/);
    assert.throws(() => parseEtcdMember('{"address":"a:1","zone":"x"}', '/p/a'), /unknown key "zone"/);
  });
});

describe('etcd config', () => {
  const withPool = (etcdYaml: string, extra = ''): string =>
    `listen: { http: 127.0.0.1:8080 }\npools:\n  p:\n    discovery: { etcd: ${etcdYaml} }\nroutes: [{ name: r, pool: p }]\n${extra}`;
  const problems = (text: string): string => {
    try {
      parseConfig(text, '/etc/homing', 'h.yaml');
    } catch (e) {
      if (e instanceof ConfigError) return e.message;
      throw e;
    }
    return '';
  };

  test('endpoints are host:port; TLS files resolve against the config; user and password go together; a prefix is needed', () => {
    const cfg = parseConfig(
      withPool('{ endpoints: [10.0.0.1:2379, "[::1]:2379"], prefix: /p/, username: u, password: pw, tls: { ca: ca.pem, cert: /abs/c.pem, key: k.pem } }', 'announce: { etcd: { endpoints: [10.0.0.1:2379], prefix: /i/, tls: { ca: ca.pem } } }\n'),
      '/etc/homing',
    );
    assert.deepEqual(cfg.pools.p!.discovery!.etcd, {
      endpoints: [
        { host: '10.0.0.1', port: 2379 },
        { host: '::1', port: 2379 },
      ],
      prefix: '/p/',
      username: 'u',
      password: 'pw',
      tls: { ca: '/etc/homing/ca.pem', cert: '/abs/c.pem', key: '/etc/homing/k.pem' },
    });
    assert.deepEqual(cfg.announce, { etcd: { endpoints: [{ host: '10.0.0.1', port: 2379 }], prefix: '/i/', tls: { ca: '/etc/homing/ca.pem' }, ttl: 10_000 } });
    assert.match(problems(withPool('{ endpoints: ["http://10.0.0.1:2379"], prefix: /p/ }')), /pools\.p\.discovery\.etcd\.endpoints\[0\]: write host:port, without a scheme/);
    assert.match(problems(withPool('{ endpoints: [10.0.0.1:2379], prefix: "" }')), /pools\.p\.discovery\.etcd\.prefix: must not be empty/);
    assert.match(problems(withPool('{ endpoints: [10.0.0.1:2379], prefix: /p/, username: u }')), /give username and password together/);
    assert.match(problems(withPool('{ endpoints: [10.0.0.1:2379], prefix: /p/, tls: { cert: c.pem } }')), /needs both cert and key/);
    assert.match(problems(withPool('{ endpoints: [], prefix: /p/ }')), /pools\.p\.discovery\.etcd\.endpoints/);
    assert.match(problems(withPool('{ endpoints: [10.0.0.1:2379], prefix: /p/ }', 'announce: { etcd: { endpoints: [10.0.0.1:2379], prefix: /i/, ttl: 500ms } }\n')), /announce\.etcd\.ttl: announce ttl is between 1s and 24h/);
  });
});

describe('etcd discovery: the source against a real etcd', () => {
  test('the pool follows members added, removed and re-weighted under the prefix (and nothing outside it)', async () => {
    const e = await etcd();
    const c = client(e);
    await c.put('/homing/pools/docs/a').value(JSON.stringify({ address: '127.0.0.1:9101', weight: 2 }));
    await c.put('/homing/pools/docs/b').value('127.0.0.1:9102');
    await c.put('/homing/pools/other/x').value('127.0.0.1:9999');
    const { pool, errors } = await watchedPool(e, '/homing/pools/docs/');
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9101*2', '127.0.0.1:9102*1']);

    await c.put('/homing/pools/docs/c').value(JSON.stringify({ address: '127.0.0.1:9103' }));
    await until(() => membersOf(pool).length === 3);
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9101*2', '127.0.0.1:9102*1', '127.0.0.1:9103*1']);

    await c.delete().key('/homing/pools/docs/a');
    await until(() => !membersOf(pool).includes('127.0.0.1:9101*2'));
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9102*1', '127.0.0.1:9103*1']);

    await c.put('/homing/pools/docs/b').value(JSON.stringify({ address: '127.0.0.1:9102', weight: 7 }));
    await until(() => membersOf(pool).includes('127.0.0.1:9102*7'));
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9102*7', '127.0.0.1:9103*1']);

    // A key outside the prefix is not a member, and changing it changes nothing.
    await c.put('/homing/pools/other/y').value('127.0.0.1:9998');
    await c.put('/homing/pools/docs/d').value('127.0.0.1:9104');
    await until(() => membersOf(pool).length === 3);
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9102*7', '127.0.0.1:9103*1', '127.0.0.1:9104*1']);
    assert.deepEqual(errors, []);
  });

  test('bad values are skipped and reported once each; a fixed value joins, a value broken again is reported again', async () => {
    const e = await etcd();
    const c = client(e);
    await c.put('/m/good').value('127.0.0.1:9201');
    await c.put('/m/junk').value('not an address');
    await c.put('/m/heavy').value(JSON.stringify({ address: '127.0.0.1:9202', weight: 5000 }));
    const { pool, errors } = await watchedPool(e, '/m/');
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9201*1']);
    assert.equal(errors.length, 2, errors.join('\n'));
    assert.match(errors.find((m) => m.includes('/m/junk')) ?? '', /discovery etcd \/m\/junk: invalid address "not an address".*value skipped/);
    assert.match(errors.find((m) => m.includes('/m/heavy')) ?? '', /\/m\/heavy\.weight: expected an integer 1\.\.1000, got number 5000/);

    // Other changes re-read the prefix: the same bad values are not reported again.
    await c.put('/m/more').value('127.0.0.1:9203');
    await until(() => membersOf(pool).length === 2);
    await c.put('/m/more2').value('127.0.0.1:9204');
    await until(() => membersOf(pool).length === 3);
    assert.equal(errors.length, 2, errors.join('\n'));

    // Fixed: it joins. Broken again: reported again.
    await c.put('/m/junk').value('127.0.0.1:9205');
    await until(() => membersOf(pool).includes('127.0.0.1:9205*1'));
    await c.put('/m/junk').value('{"address": 12}');
    await until(() => errors.length === 3);
    assert.match(errors[2]!, /\/m\/junk\.address: expected "host:port", got number 12/);
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9201*1', '127.0.0.1:9203*1', '127.0.0.1:9204*1']);
  });

  test('with auth on: a user allowed the prefix reads and watches it; without credentials start fails', async () => {
    const e = await etcd();
    const c = client(e);
    await c.put('/a/x').value('127.0.0.1:9401');
    await c.role('root').create();
    await c.user('root').create('root-secret');
    await c.user('root').addRole('root');
    await c.role('pool-reader').create();
    await c.role('pool-reader').grant({ permission: 'Read', range: Range.prefix('/a/') });
    await c.user('homing').create('homing-secret');
    await c.user('homing').addRole('pool-reader');
    await c.auth.authEnable();
    const root = new Etcd3({ hosts: `http://${e.endpoint}`, auth: { username: 'root', password: 'root-secret' } });
    cleanups.push(() => root.close());

    await refusedStart({ endpoints: [endpointOf(e)], prefix: '/a/' });
    const { pool, errors } = await watchedPool(e, '/a/', { username: 'homing', password: 'homing-secret' });
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9401*1']);
    await root.put('/a/y').value('127.0.0.1:9402');
    await until(() => membersOf(pool).length === 2);
    assert.deepEqual(errors, []);
  });

  test('over TLS with a client certificate (tls: { ca, cert, key })', async () => {
    const dir = tempDir();
    const cert = join(dir, 'etcd.pem');
    const key = join(dir, 'etcd-key.pem');
    // One self-signed certificate for 127.0.0.1: etcd's, the CA both sides trust, and the client's.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const e = await etcd({ tls: { cert, key, ca: cert } });
    const c = new Etcd3({ hosts: `https://${e.endpoint}`, credentials: { rootCertificate: readFileSync(cert), certChain: readFileSync(cert), privateKey: readFileSync(key) } });
    cleanups.push(() => c.close());
    await c.put('/t/a').value('127.0.0.1:9501');

    // Without the client certificate etcd refuses the connection.
    await refusedStart({ endpoints: [endpointOf(e)], prefix: '/t/', tls: { ca: cert } });
    const { pool, errors } = await watchedPool(e, '/t/', { tls: { ca: cert, cert, key } });
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9501*1']);
    await c.put('/t/b').value('127.0.0.1:9502');
    await until(() => membersOf(pool).length === 2);
    assert.deepEqual(errors, []);
  });

  test('start fails, naming the prefix, when etcd cannot be reached', async () => {
    await refusedStart({ endpoints: [{ host: '127.0.0.1', port: await deadPort() }], prefix: '/nowhere/' });
  });

  test('etcd away: the last good list stays; etcd back with another history: the prefix is read afresh and changes are followed again', async () => {
    const e = await etcd();
    const c = client(e);
    for (let i = 1; i <= 20; i++) await c.put(`/noise/${i}`).value('x'); // revisions the new etcd will not reach soon
    await c.put('/r/a').value('127.0.0.1:9301');
    await c.put('/r/b').value('127.0.0.1:9302');
    const { pool, errors } = await watchedPool(e, '/r/');
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9301*1', '127.0.0.1:9302*1']);
    // The watch is live (a change is followed) before etcd goes.
    await c.delete().key('/r/b');
    await until(() => membersOf(pool).length === 1);
    await c.put('/r/b').value('127.0.0.1:9302');
    await until(() => membersOf(pool).length === 2);

    await e.stop();
    await until(() => errors.some((m) => /watch lost/.test(m)));
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9301*1', '127.0.0.1:9302*1']);

    // Back on the same port, empty (rebuilt): a fresh read says the prefix is empty now, with no
    // event to tell it; and its new revisions, below the old ones, still reach the pool.
    const e2 = await etcd({ port: e.port, peerPort: e.peerPort });
    const c2 = client(e2);
    await until(() => pool.members.size === 0);
    await c2.put('/r/c').value('127.0.0.1:9303');
    await until(() => membersOf(pool).length === 1);
    assert.deepEqual(membersOf(pool), ['127.0.0.1:9303*1']);
    await c2.put('/r/c').value(JSON.stringify({ address: '127.0.0.1:9303', weight: 4 }));
    await until(() => membersOf(pool).includes('127.0.0.1:9303*4'));
    assert.equal(errors.filter((m) => /watch lost/.test(m)).length, 1, errors.join('\n'));
  });
});

describe('etcd discovery through a real homing', () => {
  test('loaded from a config file: discovery.etcd is accepted and feeds the pool, seen in /api/v1/pools', async () => {
    const e = await etcd();
    const c = client(e);
    const a = await backend('a');
    const b = await backend('b');
    await c.put('/homing/pools/docs/a').value(a.id);
    const dir = tempDir();
    const file = join(dir, 'homing.yaml');
    writeFileSync(
      file,
      `listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
log: { level: silent }
pools:
  docs:
    discovery: { etcd: { endpoints: [${e.endpoint}], prefix: /homing/pools/docs/ } }
routes:
  - { name: docs, match: { path: / }, pool: docs }
`,
    );
    const cfg = loadConfigFile(file);
    const { startHoming } = await import('../src/app.js');
    const h = await startHoming(cfg, { log: pino({ level: 'silent' }) });
    cleanups.push(() => h.close());
    const adminUrl = `http://127.0.0.1:${h.adminAddress!.port}`;
    assert.deepEqual((await poolsOf(adminUrl)).docs, [`${a.id}*1`]);
    await c.put('/homing/pools/docs/b').value(JSON.stringify({ address: b.id, weight: 3 }));
    await until(async () => (await poolsOf(adminUrl)).docs!.length === 2);
    assert.deepEqual((await poolsOf(adminUrl)).docs, [`${a.id}*1`, `${b.id}*3`].sort());
    await c.delete().key('/homing/pools/docs/a');
    await until(async () => (await poolsOf(adminUrl)).docs!.length === 1);
    assert.deepEqual((await poolsOf(adminUrl)).docs, [`${b.id}*3`]);
  });

  test('requests keep succeeding while etcd is stopped and restarted; then a change is followed again', async () => {
    const dataDir = tempDir();
    const e = await etcd({ dataDir });
    const c = client(e);
    const a = await backend('a');
    const b = await backend('b');
    await c.put('/pools/web/a').value(a.id);
    await c.put('/pools/web/b').value(b.id);
    const h = await startTestHoming(`listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools:
  web:
    discovery: { etcd: { endpoints: [${e.endpoint}], prefix: /pools/web/ } }
routes:
  - { name: web, match: { path: / }, pool: web }
`);
    cleanups.push(() => h.close());
    assert.deepEqual((await poolsOf(h.adminUrl)).web, [`${a.id}*1`, `${b.id}*1`].sort());

    // Traffic all along: two clients in a loop, every answer counted.
    let ok = 0;
    const failures: string[] = [];
    let running = true;
    const loop = async (): Promise<void> => {
      while (running) {
        try {
          const r = await httpRequest(`${h.url}/x`);
          if (r.status === 200) ok++;
          else failures.push(`${r.status} ${r.text}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const loops = [loop(), loop()];
    try {
      await until(() => ok >= 50);
      await e.stop();
      const atStop = ok;
      await until(() => ok >= atStop + 200);
      assert.deepEqual((await poolsOf(h.adminUrl)).web, [`${a.id}*1`, `${b.id}*1`].sort());

      const e2 = await etcd({ port: e.port, peerPort: e.peerPort, dataDir });
      const c2 = client(e2);
      await c2.delete().key('/pools/web/a');
      await until(async () => (await poolsOf(h.adminUrl)).web!.length === 1);
      assert.deepEqual((await poolsOf(h.adminUrl)).web, [`${b.id}*1`]);
      const before = b.requests;
      const atChange = ok;
      await until(() => ok >= atChange + 50);
      // Up to one request per loop was already on its way to a when the change was read.
      assert.ok(b.requests >= before + 50 - loops.length, 'after the change every request goes to b');
    } finally {
      running = false;
      await Promise.all(loops);
    }
    assert.deepEqual(failures, []);
  });
});

describe('announce', () => {
  test('an instance registers its listen address under the prefix with a lease; close removes the key', async () => {
    const e = await etcd();
    const c = client(e);
    const h = await startTestHoming(`listen: { http: 127.0.0.1:0 }
announce: { etcd: { endpoints: [${e.endpoint}], prefix: /homing/instances/, ttl: 5s } }
pools: { p: { members: [127.0.0.1:9] } }
routes: [{ name: r, pool: p }]
`);
    let closed = false;
    cleanups.push(() => (closed ? undefined : h.close()));
    const key = `/homing/instances/127.0.0.1:${h.http!.port}`;
    // Registered before startHoming resolved.
    const { kvs } = await c.getAll().prefix('/homing/instances/').exec();
    assert.deepEqual(
      kvs.map((kv) => [kv.key.toString(), JSON.parse(kv.value.toString())]),
      [[key, { address: `127.0.0.1:${h.http!.port}` }]],
    );
    assert.notEqual(kvs[0]!.lease, '0', 'held by a lease');
    await h.close();
    closed = true;
    assert.equal(await c.get(key).string(), null, 'withdrawn by close');
  });

  test('`address` is what is announced; without it a 0.0.0.0 listener is refused by the config', async () => {
    const e = await etcd();
    const c = client(e);
    assert.throws(
      () => parseConfig(`listen: { http: 0.0.0.0:8080 }\nannounce: { etcd: { endpoints: [${e.endpoint}], prefix: /i/ } }\npools: { p: { members: [127.0.0.1:9] } }\nroutes: [{ name: r, pool: p }]\n`),
      (err: unknown) => err instanceof ConfigError && /announce: homing listens on 0\.0\.0\.0:8080, which is no address to reach it at: set announce\.address/.test(err.message),
    );
    const port = await freePort();
    const h = await startTestHoming(`listen: { http: 0.0.0.0:${port} }
announce: { etcd: { endpoints: [${e.endpoint}], prefix: /i/ }, address: 'web-7.internal:${port}' }
pools: { p: { members: [127.0.0.1:9] } }
routes: [{ name: r, pool: p }]
`);
    cleanups.push(() => h.close());
    assert.equal(await c.get(`/i/web-7.internal:${port}`).string(), JSON.stringify({ address: `web-7.internal:${port}` }));
  });

  test('a killed instance leaves its key to the lease, which expires after ttl', async () => {
    const e = await etcd();
    const c = client(e);
    const dir = tempDir();
    const port = await freePort();
    const file = join(dir, 'homing.yaml');
    writeFileSync(
      file,
      `listen: { http: 127.0.0.1:${port} }
log: { level: warn }
announce: { etcd: { endpoints: [${e.endpoint}], prefix: /killed/, ttl: 2s } }
pools: { p: { members: [127.0.0.1:9] } }
routes: [{ name: r, pool: p }]
`,
    );
    const key = `/killed/127.0.0.1:${port}`;
    const watcher = await c.watch().key(key).create();
    cleanups.push(() => watcher.cancel());
    const events: string[] = [];
    watcher.on('put', () => events.push('put'));
    watcher.on('delete', () => events.push('delete'));
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => proc.once('exit', r));
    cleanups.push(async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    });
    await until(() => events.includes('put') || proc.exitCode !== null);
    assert.deepEqual(events, ['put'], out);
    const { kvs } = await c.getAll().prefix(key).exec();
    const leaseId = kvs[0]!.lease;
    proc.kill('SIGKILL');
    await exited;
    // Nobody revoked it: the key is there until etcd expires the lease.
    assert.ok(await c.get(key).string());
    const killedAt = Date.now();
    await until(() => events.includes('delete'), WAIT);
    assert.ok(Date.now() - killedAt >= 1000, 'removed by expiry, not by the process');
    assert.equal(await c.get(key).string(), null);
    assert.ok(leaseId && leaseId !== '0');
  });

  test('with workers, the primary announces the box once, and withdraws it on SIGTERM', async () => {
    const e = await etcd();
    const c = client(e);
    const box: (() => Promise<void> | void)[] = [];
    cleanups.push(async () => {
      for (const f of box.reverse()) await f();
    });
    const served = await serveCli(`announce: { etcd: { endpoints: [${e.endpoint}], prefix: /box/ } }\npools: { p: { members: [127.0.0.1:9] } }\nroutes: [{ name: r, pool: p }]\n`, 2, box);
    const address = `127.0.0.1:${new URL(served.url).port}`;
    const { kvs } = await c.getAll().prefix('/box/').exec();
    assert.deepEqual(
      kvs.map((kv) => [kv.key.toString(), kv.value.toString()]),
      [[`/box/${address}`, JSON.stringify({ address })]],
    );
    // SIGTERM, and wait for the exit.
    for (const f of box.splice(0).reverse()) await f();
    assert.equal(await c.get(`/box/${address}`).string(), null);
  });

  test('re-registers after etcd comes back without the lease', async () => {
    const e = await etcd();
    const h = await startTestHoming(`listen: { http: 127.0.0.1:0 }
announce: { etcd: { endpoints: [${e.endpoint}], prefix: /back/, ttl: 2s } }
pools: { p: { members: [127.0.0.1:9] } }
routes: [{ name: r, pool: p }]
`);
    cleanups.push(() => h.close());
    const key = `/back/127.0.0.1:${h.http!.port}`;
    assert.ok(await client(e).get(key).string());
    await e.stop();
    const e2 = await etcd({ port: e.port, peerPort: e.peerPort });
    const c2 = client(e2);
    await until(async () => (await c2.get(key).string()) !== null);
    assert.equal(await c2.get(key).string(), JSON.stringify({ address: `127.0.0.1:${h.http!.port}` }));
    const { kvs } = await c2.getAll().prefix(key).exec();
    assert.notEqual(kvs[0]!.lease, '0');
  });
});
