/**
 * The `homing` command as a user meets it (the built CLI, `npm run build` first): `check` and
 * `serve` give the same verdict on every config, problems come as `file:line:column key: message`,
 * `--help` works on every command, and a port in use stops a box of workers with one line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { httpRequest, until } from './support/backends.js';
import { freePort } from './support/services.js';

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The CLI with `args`, to its exit; killed after `ms`. `whileRunning` runs once it has started. */
function homing(args: string[], ms = 20_000, whileRunning?: (child: ReturnType<typeof spawn>) => Promise<void>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['dist/cli/main.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
    whileRunning?.(child).catch((e: unknown) => {
      child.kill('SIGKILL');
      reject(e as Error);
    });
  });
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'homing-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('--help on every command prints its usage and exits 0', async () => {
  for (const cmd of ['serve', 'check', 'demo', 'ring']) {
    for (const flag of ['--help', '-h']) {
      const r = await homing([cmd, flag]);
      assert.equal(r.status, 0, `${cmd} ${flag}: ${r.stderr}`);
      assert.equal(r.stderr, '', `${cmd} ${flag}`);
      assert.match(r.stdout, new RegExp(`^usage: homing ${cmd}`), `${cmd} ${flag}`);
    }
  }
  const ring = await homing(['ring', '--help']);
  assert.match(ring.stdout, /-c <config\.yaml> \[--pool <name>\]/);
  const all = await homing(['--help']);
  assert.match(all.stdout, /homing ring \(--members a:1,b:2 \| -c <config\.yaml> \[--pool <name>\]\)/);
  // Wrong arguments: the reason and the command's usage, exit 2.
  const bad = await homing(['ring', '--bogus']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^homing ring: Unknown option '--bogus'\nusage: homing ring/);
  const none = await homing(['check']);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /^homing check: missing the config file\nusage: homing check/);
});

const listen = 'listen: { http: 127.0.0.1:0 }\n';
const pool = "pools: { p: { members: ['127.0.0.1:9101'] } }\n";

/**
 * Configs `serve` must refuse, each with the problems `check` reports for it: file:line:column,
 * the key, the message (the file's path stands first).
 */
const refused: { name: string; yaml: string; problems: string[]; files?: Record<string, string> }[] = [
  {
    name: 'maglev table size that is no prime, and path:1 on a route without pathRegex',
    yaml: `${listen}${pool}routes:\n  - name: r\n    pool: p\n    hash: { key: path:1, algorithm: maglev, tableSize: 100 }\n`,
    problems: [
      '6:18 routes[0].hash.key: path:1 is capture group 1 of match.pathRegex, and this route has no pathRegex',
      '6:56 routes[0].hash.tableSize: must be a prime between 7 and 16777216 (got 100); 65537 is the usual choice',
    ],
  },
  {
    name: 'path:2 on a pathRegex with one group',
    yaml: `${listen}${pool}routes:\n  - name: r\n    pool: p\n    match: { pathRegex: '^/d/(.*)$' }\n    affinity: { key: path:2 }\n`,
    problems: ['7:22 routes[0].affinity.key: path:2 is capture group 2 of match.pathRegex, which has 1 group'],
  },
  {
    name: 'unknown keys, top-level and nested',
    yaml: `${listen}bogus: 1\n${pool}routes:\n  - name: r\n    pool: p\n    timeouts:\n      conect: 1s\n`,
    problems: ['2:1 bogus: unknown key "bogus"', '8:7 routes[0].timeouts.conect: unknown key "conect"'],
  },
  {
    name: 'a member without a port',
    yaml: `${listen}pools:\n  p:\n    members:\n      - 127.0.0.1\nroutes: [ { name: r, pool: p } ]\n`,
    problems: ['5:9 pools.p.members[0]: invalid address "127.0.0.1": no port (use host:port)'],
  },
  {
    name: 'a YAML syntax error',
    yaml: `${listen}pools:\n  p: { members: ['127.0.0.1:9101'] }\nroutes:\n  - name: r\n   pool: p\n`,
    problems: ['6:1: Sequence item without - indicator\n  6 |    pool: p\n    | ^'],
  },
  {
    name: 'a bare number for a duration',
    yaml: `${listen}${pool}routes: [ { name: r, pool: p, timeouts: { connect: 5 } } ]\n`,
    problems: ['3:52 routes[0].timeouts.connect: a duration needs a unit: write "5ms" or "5s"'],
  },
  {
    name: 'schema and cross-reference problems together',
    yaml: `${listen}${pool}resp: { address: 127.0.0.1:0, route: ghost }\nroutes:\n  - { name: r, pool: nope, balance: fastest }\n  - { name: r, pool: p }\n`,
    problems: [
      '3:38 resp.route: unknown route "ghost" (routes: r)',
      '5:22 routes[0].pool: unknown pool "nope" (pools: p)',
      '5:37 routes[0].balance: must be round-robin, random, least-connections, or power-of-two-choices (got "fastest")',
      '6:13 routes[1].name: duplicate route name "r" (another route above has it)',
    ],
  },
  {
    name: 'TLS certificate and key missing',
    yaml: `listen: { https: { address: 127.0.0.1:0, cert: cert.pem, key: key.pem } }\n${pool}routes: [ { name: r, pool: p } ]\n`,
    problems: ['1:48 listen.https.cert: cannot read {dir}/cert.pem: ENOENT', '1:63 listen.https.key: cannot read {dir}/key.pem: ENOENT'],
  },
  {
    name: 'a member file and a directory seed missing',
    yaml: `${listen}pools: { p: { discovery: { file: members.yaml } } }\nroutes:\n  - { name: r, pools: [p], directory: { key: host, lookup: { url: 'http://127.0.0.1:1/{key}' }, seed: seed.yaml } }\n`,
    problems: [
      '2:34 pools.p.discovery.file: member file {dir}/members.yaml: cannot read: ENOENT',
      '4:103 routes[0].directory.seed: directory seed {dir}/seed.yaml: cannot read: ENOENT',
    ],
  },
  {
    name: 'a member file that is no member list',
    yaml: `${listen}pools: { p: { discovery: { file: members.yaml } } }\nroutes: [ { name: r, pool: p } ]\n`,
    files: { 'members.yaml': 'members: nope\n' },
    problems: ['2:34 pools.p.discovery.file: member file {dir}/members.yaml: expected a list of members ("host:port" or { address, weight }), got an object'],
  },
  {
    name: 'DNS discovery of A records without a port',
    yaml: `${listen}pools: { p: { discovery: { dns: { name: docs.internal } } } }\nroutes: [ { name: r, pool: p } ]\n`,
    problems: ['2:28 pools.p.discovery.dns.port: port is required for A records (only SRV records carry a port)'],
  },
  {
    name: 'a Maglev table no larger than the pool',
    yaml: `${listen}pools: { p: { members: [${Array.from({ length: 8 }, (_, i) => `127.0.0.1:${9101 + i}`).join(', ')}] } }\nroutes: [ { name: r, pool: p, hash: { key: host, algorithm: maglev, tableSize: 7 } } ]\n`,
    problems: ['3:80 routes[0].hash.tableSize: pool "p": hash.tableSize (7) must be larger than the number of members (8)'],
  },
  {
    name: 'an affinity ttl of 0ms',
    yaml: `${listen}${pool}routes: [ { name: r, pool: p, affinity: { key: host, ttl: 0ms } } ]\n`,
    problems: ['3:59 routes[0].affinity.ttl: affinity ttl must be a positive integer of ms, got 0'],
  },
  {
    name: 'a directory URL with credentials',
    yaml: `${listen}${pool}routes: [ { name: r, pools: [p], directory: { key: host, lookup: { url: 'http://u:pw@dir/{key}' } } } ]\n`,
    problems: ['3:73 routes[0].directory.lookup.url: directory url http://u:pw@dir/{key}: no credentials in the URL (use headers)'],
  },
];

test('check and serve give the same verdict: examples/homing.yaml is OK and starts; every refused config, with each problem at its line and column', async (t) => {
  const dir = tempDir(t);
  const [http, admin] = [await freePort(), await freePort()];
  const example = readFileSync('examples/homing.yaml', 'utf8');
  const yaml = example.replace('0.0.0.0:8080', `127.0.0.1:${http}`).replace('admin: 127.0.0.1:9090', `admin: 127.0.0.1:${admin}`).replace('127.0.0.1:6380', '127.0.0.1:0');
  assert.notEqual(yaml, example);
  const file = join(dir, 'homing.yaml');
  writeFileSync(file, yaml);
  copyFileSync('examples/members.yaml', join(dir, 'members.yaml'));
  const check = await homing(['check', file]);
  assert.equal(check.status, 0, check.stderr);
  assert.match(check.stdout, new RegExp(`${file.replace(/[.\\]/g, '\\$&')}: OK\n$`));
  const serve = await homing(['serve', '-c', file], 30_000, async (child) => {
    await until(async () => {
      try {
        const r = await httpRequest(`http://127.0.0.1:${admin}/status`, { timeout: 1000 });
        return r.status === 200 && (JSON.parse(r.text) as { ready: boolean }).ready;
      } catch {
        return false;
      }
    }, 20_000);
    const r = await httpRequest(`http://127.0.0.1:${http}/api/`, { timeout: 5000 });
    assert.equal(r.status, 502, 'the with-backup route answers (its members are not running)');
    child.kill('SIGTERM');
  });
  assert.equal(serve.status, 0, serve.stderr);
  assert.equal(serve.signal, null);

  // Each refused config: check's problems, and serve says the same and starts nothing.
  for (const [i, c] of refused.entries()) {
    const sub = join(dir, String(i));
    const file = join(sub, 'homing.yaml');
    mkdirSync(sub);
    writeFileSync(file, c.yaml);
    for (const [name, text] of Object.entries(c.files ?? {})) writeFileSync(join(sub, name), text);
    const [check, serve] = await Promise.all([homing(['check', file]), homing(['serve', '-c', file])]);
    const expected = c.problems.map((p) => `${file}:${p.replaceAll('{dir}', sub)}`);
    const n = expected.length;
    assert.equal(check.stderr, `${expected.join('\n')}\n${file}: ${n === 1 ? '1 problem' : `${n} problems`}\n`, c.name);
    assert.equal(check.status, 1, c.name);
    assert.equal(check.stdout, '', c.name);
    assert.equal(serve.status, 1, `${c.name}: serve ${serve.stdout}${serve.stderr}`);
    assert.equal(serve.stderr, check.stderr, c.name);
    assert.equal(serve.stdout, '', `${c.name}: serve started something`);
  }
});

test('a port in use with workers: one line naming it, exit 1, no worker replaced forever', async (t) => {
  const dir = tempDir(t);
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.after(() => busy.close());
  const port = (busy.address() as { port: number }).port;
  for (const [workers, admin] of [['auto', true], [2, false]] as const) {
    const file = join(dir, `busy-${workers}.yaml`);
    writeFileSync(file, `listen: { http: 127.0.0.1:${port} }\n${admin ? `admin: 127.0.0.1:${await freePort()}\n` : ''}workers: ${workers}\nlog: { level: warn }\n${pool}routes: [ { name: r, pool: p } ]\n`);
    const r = await homing(['serve', '-c', file], 20_000);
    assert.equal(r.status, 1, `workers ${workers}: ${r.signal ?? ''} ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^homing: [^\\n]*EADDRINUSE[^\\n]*127\\.0\\.0\\.1:${port}\\n$`), `workers ${workers}`);
    assert.doesNotMatch(r.stdout, /worker died/);
  }
});
