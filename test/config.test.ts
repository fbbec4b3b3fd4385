import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfigFile, parseConfig } from '../src/config/load.js';
import { parseDuration, parseSize, parseHostPort } from '../src/config/units.js';

const base = `
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['127.0.0.1:9101', { address: '127.0.0.1:9102', weight: 2 }] } }
routes: [ { name: r, pool: p } ]
`;

function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, process.cwd(), 'x.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail('config was accepted');
}

test('durations and sizes parse with their units', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('2s'), 2000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseSize('64KiB'), 65536);
  assert.equal(parseSize('256MiB'), 256 * 1024 * 1024);
  assert.throws(() => parseDuration('5 parsecs'), /invalid duration/);
  assert.throws(() => parseSize('lots'), /invalid size/);
  assert.deepEqual(parseHostPort('[::1]:80'), { host: '::1', port: 80 });
  assert.throws(() => parseHostPort('127.0.0.1:99999'), /port out of range/);
  assert.throws(() => parseHostPort('evil.com:80/x'), /invalid/);
});

test('a valid config gets its defaults', () => {
  const c = parseConfig(base);
  assert.equal(c.workers, 1);
  assert.equal(c.routes[0]!.balance, 'round-robin');
  assert.deepEqual(c.pools.p!.members![1], { host: '127.0.0.1', port: 9102, weight: 2 });
  assert.equal(c.routes[0]!.timeouts.connect, 2000);
});

test('affinity missTimeout: a duration between 1ms and 60s, absent by default (each tier keeps its own)', () => {
  const route = (extra: string) => base.replace('routes: [ { name: r, pool: p } ]', `routes: [ { name: r, pool: p, affinity: { key: 'header:x-k'${extra} } } ]`);
  assert.equal(parseConfig(route('')).routes[0]!.affinity!.missTimeout, undefined);
  assert.equal(parseConfig(route(', missTimeout: 2s')).routes[0]!.affinity!.missTimeout, 2000);
  assert.match(problems(route(', missTimeout: 0ms')).join(), /missTimeout is between 1ms and 60s/);
  assert.match(problems(route(', missTimeout: 2m')).join(), /missTimeout is between 1ms and 60s/);
});

test('shared commandTimeout: a duration between 1ms and 60s, absent by default (250ms)', () => {
  const shared = (extra: string) => `${base}shared: { redis: { url: 'redis://127.0.0.1:6379' }${extra} }\n`;
  assert.equal(parseConfig(shared('')).shared!.commandTimeout, undefined);
  assert.equal(parseConfig(shared(', commandTimeout: 2s')).shared!.commandTimeout, 2000);
  assert.match(problems(shared(', commandTimeout: 0ms')).join(), /commandTimeout is between 1ms and 60s/);
});

test('errors name the YAML path and line', () => {
  const p = problems(`
listen: { http: 127.0.0.1:0 }
pools:
  p:
    members: ['127.0.0.1:9101']
routes:
  - name: r
    pool: p
    hash: { key: bogus:thing, algorithm: ring }
`);
  assert.equal(p.length, 1);
  assert.match(p[0]!, /^x\.yaml:9:18 routes\[0\]\.hash\.key: invalid key expression "bogus:thing" \(host, path, uri/);
});

test('unknown keys, unknown pools, bad durations and duplicate routes are refused', () => {
  assert.match(problems(base.replace('routes:', 'rouets: []\nroutes:')).join('\n'), /rouets/);
  assert.match(problems(base.replace('pool: p', 'pool: nope')).join('\n'), /routes\[0\]\.pool: unknown pool "nope"/);
  assert.match(problems(base.replace('pool: p }', 'pool: p, timeouts: { connect: soon } }')).join('\n'), /routes\[0\]\.timeouts\.connect: invalid duration "soon"/);
  assert.match(problems(base.replace('[ { name: r, pool: p } ]', '[ { name: r, pool: p }, { name: r, pool: p } ]')).join('\n'), /duplicate route name "r"/);
  assert.match(problems(base.replace("'127.0.0.1:9101'", "'127.0.0.1:0'")).join('\n'), /pools\.p\.members\[0\]/);
  assert.match(problems(base.replace('routes:', 'resp: { address: 127.0.0.1:0, route: ghost }\nroutes:')).join('\n'), /resp\.route: unknown route "ghost"/);
  assert.match(problems(base.replace('routes:', 'resp: { address: 127.0.0.1:0, routes: [] }\nroutes:')).join('\n'), /:4:1 resp: resp needs route or routes/);
});

test('resp buffer limits: defaults, sizes with units, at least 1 KiB, and a total of at least twice the per-request bound', () => {
  const withResp = (keys: string): string => base.replace('routes:', `resp: { address: 127.0.0.1:0, route: r${keys} }\nroutes:`);
  const d = parseConfig(withResp('')).resp!;
  assert.equal(d.maxQueryBuffer, 1024 * 1024);
  assert.equal(d.maxOutputBuffer, 8 * 1024 * 1024);
  assert.equal(d.maxTotalBuffer, 64 * 1024 * 1024);
  const c = parseConfig(withResp(', maxQueryBuffer: 64KiB, maxOutputBuffer: 2MiB, maxTotalBuffer: 16MiB')).resp!;
  assert.deepEqual([c.maxQueryBuffer, c.maxOutputBuffer, c.maxTotalBuffer], [64 * 1024, 2 * 1024 * 1024, 16 * 1024 * 1024]);
  assert.match(problems(withResp(', maxTotalBuffer: 1MiB')).join('\n'), /resp\.maxTotalBuffer: maxTotalBuffer must be at least twice maxQueryBuffer/);
  assert.match(problems(withResp(', maxQueryBuffer: 100B')).join('\n'), /resp\.maxQueryBuffer: must be at least 1KiB/);
  assert.match(problems(withResp(', maxOutputBuffer: lots')).join('\n'), /resp\.maxOutputBuffer: invalid size "lots"/);
});

test('YAML syntax errors are reported, not thrown raw', () => {
  assert.match(problems('listen: { http: [').join('\n'), /x\.yaml/);
});

test('homing check: exit 0 and a summary for a good file; non-zero naming the key for a bad one', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'homing-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.yaml');
  writeFileSync(good, base);
  const ok = spawnSync(process.execPath, ['dist/cli/main.js', 'check', good], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /route r: path \/ → p via balance round-robin/);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, base.replace('pool: p', 'pool: p, balance: fastest'));
  const r = spawnSync(process.execPath, ['dist/cli/main.js', 'check', bad], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /routes\[0\]\.balance/);
});

test('TLS: missing or invalid certificate files fail the check with the path', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'homing-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const yaml = base.replace('listen: { http: 127.0.0.1:0 }', `listen: { https: { address: 127.0.0.1:0, cert: ${join(dir, 'nope.pem')}, key: ${join(dir, 'nope-key.pem')} } }`);
  const f = join(dir, 'c.yaml');
  writeFileSync(f, yaml);
  assert.throws(() => loadConfigFile(f), (e: unknown) => e instanceof ConfigError && /listen\.https\.cert: cannot read .*nope\.pem/.test(e.message));
  writeFileSync(join(dir, 'nope.pem'), 'not a certificate');
  writeFileSync(join(dir, 'nope-key.pem'), 'not a key');
  assert.throws(() => loadConfigFile(f), (e: unknown) => e instanceof ConfigError && /not valid PEM/.test(e.message));
});

test('a route cache loads; its options are checked by name', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'homing-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'c.yaml');
  writeFileSync(
    f,
    base.replace(
      'routes: [ { name: r, pool: p } ]',
      `routes:
  - name: r
    pool: p
    directory: { key: host, lookup: { url: 'http://127.0.0.1:1/{key}' } }
    pools: [p]
    cache: true`,
    ).replace('pool: p\n    directory', 'directory'),
  );
  assert.equal(loadConfigFile(f).routes[0]!.cache, true);
  writeFileSync(f, readFileSync(f, 'utf8').replace('cache: true', 'cache: { ttl: 10s, lock: 2s, bogus: 1 }'));
  assert.throws(() => loadConfigFile(f), (e: unknown) => e instanceof ConfigError && /routes\[0\]\.cache\.bogus: unknown key "bogus"/.test(e.message));
});

test('a directory route: exactly one of lookup.url or lookup.redis, a url with {key}', () => {
  const route = (lookup: string): string => base.replace('routes: [ { name: r, pool: p } ]', `routes: [ { name: r, pools: [p], directory: { key: host, lookup: ${lookup} } } ]`);
  assert.doesNotThrow(() => parseConfig(route("{ url: 'http://dir.internal/backend/{key}' }"), '.', 't'));
  assert.doesNotThrow(() => parseConfig(route("{ redis: { url: 'redis://127.0.0.1:6379', keyPrefix: 'tenant:' } }"), '.', 't'));
  assert.match(problems(route('{ timeout: 1s }')).join('\n'), /routes\[0\]\.directory\.lookup: give exactly one of url or redis/);
  assert.match(problems(route("{ url: 'http://dir/{key}', redis: { url: 'redis://x' } }")).join('\n'), /give exactly one of url or redis/);
  assert.match(problems(route("{ url: 'http://dir/backend' }")).join('\n'), /lookup\.url: must contain \{key\} once/);
  assert.match(problems(route("{ url: 'file:///etc/{key}' }")).join('\n'), /lookup\.url: must be an http/);
});

test('the example config in examples/ passes homing check', () => {
  const r = spawnSync(process.execPath, ['dist/cli/main.js', 'check', 'examples/homing.yaml'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /route crest: host api\.example\.com, path \/ → eve via affinity\(header:authorization\) → guess rendezvous\(header:authorization\) → balance round-robin/);
  assert.match(r.stdout, /route documents: .* hash ring\(path:1\) bounded 1\.25/);
});

test('admin beyond loopback without a token is refused, naming admin, its line and the three ways out', () => {
  const withAdmin = (admin: string): string => base.replace('pools:', `admin: ${admin}\npools:`);
  for (const admin of ['0.0.0.0:9090', "'[::]:9090'", '192.168.1.10:9090', 'admin.example.com:9090', 'localhost.example.com:9090', "'[::ffff:10.0.0.1]:9090'", '{ address: 0.0.0.0:9090 }', '{ address: 10.0.0.5:0, insecure: false }']) {
    const p = problems(withAdmin(admin));
    assert.equal(p.length, 1, `${admin}: ${p.join('\n')}`);
    assert.match(p[0]!, /^x\.yaml:3:\d+ admin: the admin API would listen on .* which is not loopback, without a token/, admin);
    assert.match(p[0]!, /set admin\.token/, admin);
    assert.match(p[0]!, /bind it to loopback/, admin);
    assert.match(p[0]!, /insecure: true/, admin);
  }
  // A block map under admin: the admin key itself, not the line below it.
  const block = problems(base.replace('pools:', 'admin:\n  address: 0.0.0.0:9090\npools:'));
  assert.equal(block.length, 1, block.join('\n'));
  assert.match(block[0]!, /^x\.yaml:3:1 admin: .*not loopback/);
});

test('admin: a token, insecure: true or a loopback address is accepted', () => {
  const withAdmin = (admin: string) => parseConfig(base.replace('pools:', `admin: ${admin}\npools:`)).admin!;
  for (const admin of ['127.0.0.1:9090', '127.3.2.1:0', "'[::1]:9090'", "'[0:0:0:0:0:0:0:1]:9090'", "'[::ffff:127.0.0.1]:9090'", 'localhost:9090', 'LocalHost:9090', '{ address: 127.0.0.1:0 }']) {
    const a = withAdmin(admin);
    assert.equal(a.token, undefined, admin);
    assert.equal(a.insecure, false, admin);
  }
  const token = 'a-very-secret-admin-token';
  assert.deepEqual(withAdmin(`{ address: 0.0.0.0:9090, token: ${token} }`), { address: { host: '0.0.0.0', port: 9090 }, token, insecure: false });
  assert.deepEqual(withAdmin("{ address: '[::]:9090', insecure: true }"), { address: { host: '::', port: 9090 }, insecure: true });
  assert.deepEqual(withAdmin('{ address: admin.example.com:9090, token: ' + token + ', insecure: true }'), { address: { host: 'admin.example.com', port: 9090 }, token, insecure: true });
  // insecure belongs to the object form only, and must be a boolean.
  assert.match(problems(base.replace('pools:', "admin: { address: 0.0.0.0:9090, insecure: 'yes' }\npools:")).join('\n'), /^x\.yaml:3:43 admin\.insecure: expected a boolean, got "yes"$/);
});

test('homing check refuses admin beyond loopback without a token, and shows insecure when written', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'homing-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bad = join(dir, 'open-admin.yaml');
  writeFileSync(bad, base.replace('pools:', 'admin: 0.0.0.0:9090\npools:'));
  const r = spawnSync(process.execPath, ['dist/cli/main.js', 'check', bad], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, new RegExp(`^${bad.replace(/[.\\]/g, '\\$&')}:3:8 admin: the admin API would listen on 0\\.0\\.0\\.0:9090, which is not loopback`));
  const ok = join(dir, 'insecure-admin.yaml');
  writeFileSync(ok, base.replace('pools:', 'admin: { address: 0.0.0.0:9090, insecure: true }\npools:'));
  const r2 = spawnSync(process.execPath, ['dist/cli/main.js', 'check', ok], { encoding: 'utf8' });
  assert.equal(r2.status, 0, r2.stderr);
  assert.match(r2.stdout, /admin +0\.0\.0\.0:9090 \(no token: insecure\)/);
});

test('every problem at once: schema, cross-references and the parts a route builds, each at its own key or value', () => {
  // Before, cross-reference problems (unknown pools, duplicate names, resp routes) came only once
  // the schema problems were fixed, and a strategy's options only when serve built the pickers.
  const p = problems(`listen: { http: 127.0.0.1:0 }
bogus: 1
pools:
  p:
    members: ['127.0.0.1', 127.0.0.1:9101]
    health: { active: { pth: /x } }
routes:
  - name: r
    pool: nope
    timeouts: { connect: 5 }
    hash: { key: path:1, algorithm: maglev, tableSize: 100 }
  - name: r
    pools: [p, zz]
    match: { pathRegex: '^/a/(.*)$' }
    affinity: { key: path:2 }
  - pool: p
    requestBuffering: { memry: 64KiB }
resp: { address: 127.0.0.1:0, routes: [r, ghost] }
`);
  assert.deepEqual(p, [
    'x.yaml:2:1 bogus: unknown key "bogus"',
    'x.yaml:5:15 pools.p.members[0]: invalid address "127.0.0.1": no port (use host:port)',
    'x.yaml:6:25 pools.p.health.active.pth: unknown key "pth"',
    'x.yaml:9:11 routes[0].pool: unknown pool "nope" (pools: p)',
    'x.yaml:10:26 routes[0].timeouts.connect: a duration needs a unit: write "5ms" or "5s"',
    'x.yaml:11:18 routes[0].hash.key: path:1 is capture group 1 of match.pathRegex, and this route has no pathRegex',
    'x.yaml:11:56 routes[0].hash.tableSize: must be a prime between 7 and 16777216 (got 100); 65537 is the usual choice',
    'x.yaml:12:11 routes[1].name: duplicate route name "r" (another route above has it)',
    'x.yaml:13:16 routes[1].pools[1]: unknown pool "zz" (pools: p)',
    'x.yaml:15:22 routes[1].affinity.key: path:2 is capture group 2 of match.pathRegex, which has 1 group',
    'x.yaml:16:5 routes[2].name: missing (required)',
    'x.yaml:17:25 routes[2].requestBuffering.memry: unknown key "memry"',
    'x.yaml:18:43 resp.routes[1]: unknown route "ghost" (routes: r)',
  ]);
});

test('an unknown key is pointed at itself, at the top level and in a block map', () => {
  assert.deepEqual(problems(`${base}bogus: 1\n`), ['x.yaml:5:1 bogus: unknown key "bogus"']);
  const nested = problems(base.replace('routes: [ { name: r, pool: p } ]', 'routes:\n  - name: r\n    pool: p\n    timeouts:\n      connect: 1s\n      conect: 2s\n'));
  assert.deepEqual(nested, ['x.yaml:9:7 routes[0].timeouts.conect: unknown key "conect"']);
});

test('YAML syntax errors show the line and a caret under the column', () => {
  const p = problems('listen: { http: 127.0.0.1:0 }\npools:\n  p:\n    members: [a:1]\n  q: [\n routes: x\n');
  assert.equal(p[0], 'x.yaml:6:2: Flow sequence in block collection must be sufficiently indented and end with a ]\n  6 |  routes: x\n    |  ^');
  assert.ok(p.every((l) => /^x\.yaml:\d+:\d+: .+\n {2}\d+ \| .*\n +\| +\^$/.test(l)), p.join('\n'));
  // A tab before the column stays a tab, so the caret lines up in a terminal.
  assert.deepEqual(problems('a:\t[1, ]]\n'), ['x.yaml:1:9: Unexpected flow-seq-end token in YAML stream: "]"\n  1 | a:\t[1, ]]\n    |   \t     ^']);
});

test('a bare number where a duration or a size goes is refused with a hint', () => {
  assert.deepEqual(problems(base.replace('pool: p }', 'pool: p, timeouts: { connect: 5 } }')), ['x.yaml:4:52 routes[0].timeouts.connect: a duration needs a unit: write "5ms" or "5s"']);
  assert.deepEqual(problems(base.replace('pool: p }', 'pool: p, maxBody: 1024 }')), ['x.yaml:4:40 routes[0].maxBody: a size needs a unit: write "1024B" or "1024KiB"']);
  assert.equal(parseConfig(base.replace('pool: p }', "pool: p, timeouts: { connect: 5s }, maxBody: '1024' }")).routes[0]!.timeouts.connect, 5000);
  assert.throws(() => parseDuration(5), /write "5ms" or "5s"/);
});

test('a union names what is wrong with the value, not "Invalid input"', () => {
  assert.deepEqual(problems(base.replace('workers', 'x').replace('pools:', 'workers: many\npools:')), ['x.yaml:3:10 workers: expected a number or auto, got "many"']);
  assert.deepEqual(problems(base.replace('pools:', 'workers: 0\npools:')), ['x.yaml:3:10 workers: must be at least 1 (got the number 0)']);
  assert.deepEqual(problems(base.replace('balance', 'x').replace('pool: p }', 'pool: p, balance: fastest }')), [
    'x.yaml:4:40 routes[0].balance: must be round-robin, random, least-connections, or power-of-two-choices (got "fastest")',
  ]);
});

test('key expressions are compiled as the routes compile them; path:<n> needs a pathRegex with group n', () => {
  const route = (r: string): string => base.replace('routes: [ { name: r, pool: p } ]', () => `routes: [ { name: r, pool: p, ${r} } ]`);
  assert.deepEqual(problems(route("hash: { key: 'header:x y' }")), ['x.yaml:4:44 routes[0].hash.key: invalid key expression "header:x y" (host, path, uri, method, header:<name>, cookie:<name>, query:<name>, path:<n>)']);
  assert.deepEqual(problems(route('directory: { key: path:1, lookup: { url: "http://d/{key}" } }')), ['x.yaml:4:49 routes[0].directory.key: path:1 is capture group 1 of match.pathRegex, and this route has no pathRegex']);
  assert.deepEqual(problems(route("match: { pathRegex: '^/(a)/(b)$' }, hash: { key: path:3 }")), ['x.yaml:4:80 routes[0].hash.key: path:3 is capture group 3 of match.pathRegex, which has 2 groups']);
  assert.deepEqual(problems(route("match: { pathRegex: '^/(a' }")), ['x.yaml:4:51 routes[0].match.pathRegex: invalid regex: Invalid regular expression: /^/(a|/: Unterminated group']);
  assert.equal(parseConfig(route("match: { pathRegex: '^/(a)/(b)$' }, hash: { key: path:2 }, affinity: { key: 'cookie:sid' }")).routes[0]!.hash!.key, 'path:2');
});

test('parts a route or pool builds are checked by the factories serve calls, naming the option', () => {
  const members = Array.from({ length: 8 }, (_, i) => `'127.0.0.1:${9101 + i}'`).join(', ');
  const withPool = (pool: string, route = 'pool: p'): string => `listen: { http: 127.0.0.1:0 }\npools: { p: ${pool} }\nroutes: [ { name: r, ${route} } ]\n`;
  assert.deepEqual(problems(withPool(`{ members: [${members}] }`, 'pool: p, hash: { key: host, algorithm: maglev, tableSize: 7 }')), [
    'x.yaml:3:80 routes[0].hash.tableSize: pool "p": hash.tableSize (7) must be larger than the number of members (8)',
  ]);
  assert.deepEqual(problems(withPool('{ discovery: { dns: { name: docs.internal } } }')), ['x.yaml:2:28 pools.p.discovery.dns.port: port is required for A records (only SRV records carry a port)']);
  assert.deepEqual(problems(withPool("{ discovery: { http: { url: 'ftp://x/members' } } }")), ['x.yaml:2:41 pools.p.discovery.http.url: discovery url ftp://x/members: only http and https are supported']);
  assert.deepEqual(problems(withPool("{ members: ['127.0.0.1:9101'], health: { active: { interval: 0ms } } }")), ['x.yaml:2:74 pools.p.health.active.interval: must be > 0, got 0']);
  assert.deepEqual(problems(withPool("{ members: ['127.0.0.1:9101'] }", 'pool: p, affinity: { key: host, ttl: 0ms }')), ['x.yaml:3:59 routes[0].affinity.ttl: affinity ttl must be a positive integer of ms, got 0']);
  assert.deepEqual(problems(withPool("{ members: ['127.0.0.1:9101'] }", "pools: [p], directory: { key: host, lookup: { url: 'http://u:pw@dir/{key}' } }")), [
    'x.yaml:3:73 routes[0].directory.lookup.url: directory url http://u:pw@dir/{key}: no credentials in the URL (use headers)',
  ]);
  assert.deepEqual(problems(withPool("{ members: ['127.0.0.1:9101'] }", "pools: [p], directory: { key: host, lookup: { url: 'http://dir/{key}', timeout: 0ms } }")), [
    'x.yaml:3:102 routes[0].directory.lookup.timeout: directory url http://dir/{key}: timeout must be > 0 ms, got 0',
  ]);
});

test('files the config names: member files and directory seeds must load, as they must for serve to start', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'homing-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'c.yaml');
  writeFileSync(
    f,
    `listen: { http: 127.0.0.1:0 }
pools:
  p: { discovery: { file: members.yaml } }
routes:
  - name: r
    pools: [p]
    directory: { key: host, lookup: { url: 'http://dir/{key}' }, seed: seed.yaml }
`,
  );
  const messages = (): string[] => {
    try {
      loadConfigFile(f);
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      return e.problems;
    }
    return [];
  };
  assert.deepEqual(messages(), [
    `${f}:3:27 pools.p.discovery.file: member file ${join(dir, 'members.yaml')}: cannot read: ENOENT`,
    `${f}:7:72 routes[0].directory.seed: directory seed ${join(dir, 'seed.yaml')}: cannot read: ENOENT`,
  ]);
  writeFileSync(join(dir, 'members.yaml'), 'nonsense: [');
  writeFileSync(join(dir, 'seed.yaml'), '- a\n');
  const bad = messages();
  assert.match(bad[0]!, /:3:27 pools\.p\.discovery\.file: member file .*members\.yaml: invalid YAML/);
  assert.match(bad[1]!, /:7:72 routes\[0\]\.directory\.seed: directory seed .*seed\.yaml: expected a map of key → pool name or host:port, got a list/);
  writeFileSync(join(dir, 'members.yaml'), "['127.0.0.1:9101']\n");
  writeFileSync(join(dir, 'seed.yaml'), 'a.example.com: p\n');
  assert.deepEqual(messages(), []);
  // parseConfig reads no file: the text alone is valid.
  assert.doesNotThrow(() => parseConfig(readFileSync(f, 'utf8'), join(dir, 'elsewhere')));
});

test('cache.store: redis without shared.redis is refused with its path', () => {
  const yaml = "listen: { http: 127.0.0.1:0 }\npools: { p: { members: ['127.0.0.1:1'] } }\nroutes: [ { name: r, pool: p, cache: true } ]\ncache: { store: redis }\n";
  assert.throws(() => parseConfig(yaml, '.', 't'), (e: unknown) => e instanceof ConfigError && /cache\.store: store: redis needs shared\.redis/.test(e.message));
});

test('engine: node by default, fast when asked; HOMING_ENGINE names the engine of a config that names none', () => {
  const saved = process.env.HOMING_ENGINE;
  try {
    delete process.env.HOMING_ENGINE;
    assert.equal(parseConfig(base).engine, 'node');
    assert.equal(parseConfig(`${base}engine: fast\n`).engine, 'fast');
    assert.match(problems(`${base}engine: turbo\n`).join('\n'), /x\.yaml:5:\d+ engine: must be node or fast \(got "turbo"\)/);
    process.env.HOMING_ENGINE = 'fast';
    assert.equal(parseConfig(base).engine, 'fast');
    assert.equal(parseConfig(`${base}engine: node\n`).engine, 'node', "the config's own engine wins");
    process.env.HOMING_ENGINE = 'turbo';
    assert.deepEqual(problems(base), ['x.yaml:1:1: HOMING_ENGINE must be node or fast (got "turbo")']);
  } finally {
    if (saved === undefined) delete process.env.HOMING_ENGINE;
    else process.env.HOMING_ENGINE = saved;
  }
});
