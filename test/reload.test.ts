/**
 * Live config reload against real homing instances and node:http backends: what a reload applies
 * (members, strategies, listeners), what it keeps (a listener's socket, learned affinity, directory
 * entries), how an invalid or unappliable config is refused (and counted) while the old one serves,
 * and the triggers (admin POST, reload.watch, SIGHUP through the CLI).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, request, type IncomingMessage } from 'node:http';
import { createServer } from 'node:net';
import { deadPort, httpRequest, until, type Backend } from './support/backends.js';
import { metricSum } from './support/events.js';
import { freePort, RespTestConnection } from './support/services.js';
import { serveCli } from './support/serve.js';
import { ownerBackends, startFromFile } from './support/reload.js';
import { readConfigFile } from '../src/config/load.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const backends = (...names: string[]): Promise<Backend[]> => ownerBackends(cleanups, ...names);

const HEAD = 'listen: { http: 127.0.0.1:0 }\nadmin: 127.0.0.1:0\nlog: { level: silent }\n';

/** Who answered `path` (the echo backends name themselves). */
async function member(url: string, path: string, headers: Record<string, string> = {}): Promise<string> {
  const r = await httpRequest(`${url}${path}`, { headers });
  assert.equal(r.status, 200, r.text);
  return (JSON.parse(r.text) as { id: string }).id;
}

const sha12 = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 12);

test('POST /api/v1/reload: an added member and a new strategy take effect; /status shows the generation and hash', async () => {
  const [a, b] = await backends('a', 'b');
  const one = `${HEAD}pools: { p: { members: ['${a!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`;
  const s = await startFromFile(one, cleanups);
  const status = await s.status();
  assert.deepEqual(status.config, { generation: 1, hash: sha12(one), file: s.file });
  assert.deepEqual(new Set(await Promise.all([1, 2, 3, 4].map(() => member(s.url, '/x')))), new Set([a!.id]));

  const two = `${HEAD}pools: { p: { members: ['${a!.id}', '${b!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`;
  s.write(two);
  const r2 = await s.reload();
  assert.equal(r2.status, 200, JSON.stringify(r2.json));
  assert.deepEqual(r2.json, { result: 'ok', generation: 2, hash: sha12(two), restartNeeded: [] });
  // Round-robin over both now.
  const seen = [];
  for (let i = 0; i < 4; i++) seen.push(await member(s.url, '/x'));
  assert.deepEqual(new Set(seen), new Set([a!.id, b!.id]));

  const hashed = `${HEAD}pools: { p: { members: ['${a!.id}', '${b!.id}'] } }\nroutes: [ { name: r, pool: p, hash: { key: path, algorithm: maglev } } ]\n`;
  s.write(hashed);
  assert.equal((await s.reload()).json.generation, 3);
  const after3 = await s.status();
  assert.deepEqual(after3.config, { generation: 3, hash: sha12(hashed), file: s.file });
  assert.equal(after3.routes[0]!.strategy, 'hash:maglev');
  // A path always lands on one member, and the paths spread over both.
  const owners = new Map<string, string>();
  for (let k = 0; k < 20; k++) owners.set(`/k/${k}`, await member(s.url, `/k/${k}`));
  for (const [path, owner] of owners) assert.equal(await member(s.url, path), owner);
  assert.deepEqual(new Set(owners.values()), new Set([a!.id, b!.id]));
  const metrics = (await httpRequest(`${s.adminUrl}/metrics`)).text;
  assert.equal(metricSum(metrics, 'homing_config_reloads_total', { result: 'ok' }), 2);
  assert.equal(metricSum(metrics, 'homing_config_reloads_total', { result: 'error' }), 0);
});

test('an invalid config is refused with the lines homing check prints, counted, and the old config keeps serving', async () => {
  const [a, b] = await backends('a', 'b');
  const good = `${HEAD}pools: { p: { members: ['${a!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`;
  const s = await startFromFile(good, cleanups);
  const bad = `${HEAD}pools: { p: { members: ['${a!.id}', '${b!.id}'] } }\nbogus: 1\nroutes: [ { name: r, pool: nope, timeouts: { connect: 5 } } ]\n`;
  s.write(bad);
  const r = await s.reload();
  assert.equal(r.status, 422);
  assert.equal(r.json.error!.code, 'HOMING_ERR_CONFIG_INVALID');
  const check = readConfigFile(s.file).problems;
  assert.equal(check.length, 3, check.join('\n'));
  assert.deepEqual(r.json.error!.problems, check);
  for (const line of check) assert.match(line, /^\/.*homing\.yaml:\d+:\d+ \S+: .+$/);
  assert.equal(r.json.error!.message, `${check.join('\n')}\n${s.file}: 3 problems`);
  assert.equal(r.json.generation, 1);
  // Nothing changed: the new member is not used, and the status says generation 1.
  for (let i = 0; i < 4; i++) assert.equal(await member(s.url, '/x'), a!.id);
  assert.deepEqual((await s.status()).config, { generation: 1, hash: sha12(good), file: s.file });
  const metrics = (await httpRequest(`${s.adminUrl}/metrics`)).text;
  assert.equal(metricSum(metrics, 'homing_config_reloads_total', { result: 'error' }), 1);
  assert.equal(metricSum(metrics, 'homing_config_reloads_total', { result: 'ok' }), 0);
});

test('a config that cannot be applied (its listen address is in use) is refused, counted, and the old config keeps serving', async () => {
  const [a, b] = await backends('a', 'b');
  const s = await startFromFile(`${HEAD}pools: { p: { members: ['${a!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`, cleanups);
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => taken.close(() => r())));
  const port = (taken.address() as { port: number }).port;
  s.write(`listen: { http: 127.0.0.1:${port} }\nadmin: 127.0.0.1:0\nlog: { level: silent }\npools: { p: { members: ['${b!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`);
  const r = await s.reload();
  assert.equal(r.status, 500, JSON.stringify(r.json));
  assert.equal(r.json.error!.code, 'HOMING_ERR_RELOAD_FAILED');
  assert.match(r.json.error!.message, /EADDRINUSE/);
  assert.equal(r.json.generation, 1);
  for (let i = 0; i < 4; i++) assert.equal(await member(s.url, '/x'), a!.id);
  assert.equal(metricSum((await httpRequest(`${s.adminUrl}/metrics`)).text, 'homing_config_reloads_total', { result: 'error' }), 1);
});

/** A GET on `agent`: the answering member, and whether the agent reused a socket it had. */
function viaAgent(url: string, agent: Agent): Promise<{ id: string; reused: boolean; local: number }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/k`, { agent }, (res: IncomingMessage) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ id: (JSON.parse(text) as { id: string }).id, reused: req.reusedSocket, local: req.socket!.localPort! }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

test('a listener whose address stays keeps its socket and connections; one whose address changes is bound anew and the old one closed', async () => {
  const [a, b] = await backends('a', 'b');
  const s = await startFromFile(`${HEAD}pools: { p: { members: ['${a!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`, cleanups);
  const before = s.h.listeners[0]!.server;
  const oldUrl = s.url;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  cleanups.push(() => agent.destroy());
  const first = await viaAgent(oldUrl, agent);
  assert.equal(first.id, a!.id);

  s.write(`${HEAD}pools: { p: { members: ['${b!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`);
  assert.equal((await s.reload()).status, 200);
  assert.equal(s.h.listeners[0]!.server, before, 'the same server');
  // The connection opened before the reload carries a request routed by the new config.
  const second = await viaAgent(oldUrl, agent);
  assert.deepEqual([second.reused, second.local, second.id], [true, first.local, b!.id]);

  const port = await freePort();
  s.write(`listen: { http: 127.0.0.1:${port} }\nadmin: 127.0.0.1:0\nlog: { level: silent }\npools: { p: { members: ['${b!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`);
  assert.equal((await s.reload()).status, 200);
  assert.equal(s.h.http!.port, port);
  assert.equal(await member(`http://127.0.0.1:${port}`, '/x'), b!.id);
  // The old listener is closed once its connections are (the idle keep-alive one is closed for it).
  await until(() => !before.listening);
  await assert.rejects(httpRequest(`${oldUrl}/x`), /ECONNREFUSED/);
});

test('learned affinity and directory entries of routes that keep their name survive a reload; a changed affinity key starts fresh', async () => {
  const [a, b, c] = await backends('a', 'b', 'c');
  const routes = (key: string, balance: string): string =>
    `${HEAD}pools: { p: { members: ['${a!.id}', '${b!.id}'] }, q: { members: ['${c!.id}'] } }\n` +
    'routes:\n' +
    `  - { name: tenants, match: { path: /t/ }, pool: p, directory: { key: 'header:x-tenant', lookup: { url: 'http://127.0.0.1:9/{key}' } } }\n` +
    `  - { name: sessions, match: { path: /s/ }, pool: p, affinity: { key: '${key}', owner: X-Session-Node }, balance: ${balance} }\n` +
    `  - { name: other, pool: q }\n`;
  const s = await startFromFile(routes('header:x-session', 'round-robin'), cleanups);
  const owners = new Map<string, string>();
  for (let k = 0; k < 10; k++) owners.set(`k${k}`, await member(s.url, '/s/x', { 'x-session': `k${k}` }));
  const pin = await httpRequest(`${s.adminUrl}/api/v1/directory/tenants/acme`, { method: 'PUT', body: b!.id });
  assert.equal(pin.status, 200, pin.text);
  const owner = async (key: string): Promise<string | undefined> => {
    const r = await httpRequest(`${s.adminUrl}/api/v1/affinity/sessions/${key}`);
    return r.status === 200 ? (JSON.parse(r.text) as { owner: string }).owner : undefined;
  };

  // Another balance and a route less: the affinity key and table settings are the same.
  s.write(routes('header:x-session', 'least-connections').replace(/ {2}- \{ name: other.*\n/, ''));
  assert.equal((await s.reload()).status, 200);
  for (const [k, o] of owners) assert.equal(await owner(k), o, `key ${k}`);
  for (const [k, o] of owners) assert.equal(await member(s.url, '/s/x', { 'x-session': k }), o);
  assert.equal((await httpRequest(`${s.adminUrl}/api/v1/directory/tenants/acme`)).status, 200);
  assert.equal(await member(s.url, '/t/x', { 'x-tenant': 'acme' }), b!.id);

  s.write(routes('header:x-user', 'least-connections'));
  assert.equal((await s.reload()).status, 200);
  for (const k of owners.keys()) assert.equal(await owner(k), undefined, `key ${k} was learned under the old key expression`);
  assert.equal(await member(s.url, '/t/x', { 'x-tenant': 'acme' }), b!.id);
});

test('stored answers survive a reload that keeps the cache settings; a route cache option applies at once; new cache settings start empty', async () => {
  const [a] = await backends('a');
  const cached = (routeCache: string, top = ''): string => `${HEAD}pools: { p: { members: ['${a!.id}'] } }\nroutes: [ { name: r, pool: p, debugHeader: true, cache: ${routeCache} } ]\n${top}`;
  const s = await startFromFile(cached('{ ttl: 60s }'), cleanups);
  const outcome = async (): Promise<string> => /cache=(\w+)/.exec(String((await httpRequest(`${s.url}/c`)).headers['x-homing']))?.[1] ?? '';
  assert.equal(await outcome(), 'miss');
  assert.equal(await outcome(), 'hit');
  // Same top-level cache: the entry is still there, under a route whose own options changed.
  s.write(cached('{ ttl: 60s, lock: 1s }'));
  assert.equal((await s.reload()).status, 200);
  assert.equal(await outcome(), 'hit');
  // Other cache settings: a new, empty store.
  s.write(cached('{ ttl: 60s, lock: 1s }', 'cache: { memory: 8MiB }\n'));
  assert.equal((await s.reload()).status, 200);
  assert.equal(await outcome(), 'miss');
  assert.equal(await outcome(), 'hit');
});

test('a member that stays keeps its health: one found down is still down after a reload that adds a member', async () => {
  const [a, b] = await backends('a', 'b');
  const dead = `127.0.0.1:${await deadPort()}`;
  const text = (members: string[]): string =>
    `${HEAD}pools: { p: { members: [${members.map((m) => `'${m}'`).join(', ')}], health: { active: { path: /, interval: 100ms, timeout: 1s, fall: 1, rise: 1000 } } } }\nroutes: [ { name: r, pool: p } ]\n`;
  const s = await startFromFile(text([a!.id, dead]), cleanups);
  const up = async (): Promise<Record<string, boolean>> => {
    const pools = (JSON.parse((await httpRequest(`${s.adminUrl}/api/v1/pools`)).text) as { pools: { members: { id: string; up: boolean }[] }[] }).pools;
    return Object.fromEntries(pools[0]!.members.map((m) => [m.id, m.up]));
  };
  await until(async () => (await up())[dead] === false);
  s.write(text([a!.id, dead, b!.id]));
  assert.equal((await s.reload()).status, 200);
  assert.deepEqual(await up(), { [a!.id]: true, [dead]: false, [b!.id]: true });
});

test('the RESP router answers from the routes a reload names, on a connection opened before it', async () => {
  const [a, b] = await backends('a', 'b');
  const text = (route: string): string =>
    `${HEAD}resp: { address: 127.0.0.1:0, route: ${route} }\npools: { p: { members: ['${a!.id}'] }, q: { members: ['${b!.id}'] } }\n` +
    'routes:\n  - { name: docs, match: { path: /d/ }, pool: p, hash: { key: path } }\n  - { name: other, pool: q, hash: { key: path } }\n';
  const s = await startFromFile(text('docs'), cleanups);
  const conn = await RespTestConnection.connect(s.h.resp!.address().port);
  cleanups.push(() => conn.close());
  assert.equal(await conn.call('GET', 'k1'), a!.id);
  s.write(text('other'));
  assert.equal((await s.reload()).status, 200);
  assert.equal(await conn.call('GET', 'k1'), b!.id);
});

test('reload.watch: a write to the config file is applied; an invalid one is refused and counted', async () => {
  const [a, b] = await backends('a', 'b');
  const text = (members: string): string => `${HEAD}reload: { watch: true }\npools: { p: { members: [${members}] } }\nroutes: [ { name: r, pool: p } ]\n`;
  const s = await startFromFile(text(`'${a!.id}'`), cleanups);
  const next = text(`'${a!.id}', '${b!.id}'`);
  s.write(next);
  await until(async () => (await s.status()).config?.generation === 2);
  assert.equal((await s.status()).config!.hash, sha12(next));
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add(await member(s.url, '/x'));
  assert.deepEqual(seen, new Set([a!.id, b!.id]));
  s.write(`${next}bogus: 1\n`);
  await until(async () => metricSum((await httpRequest(`${s.adminUrl}/metrics`)).text, 'homing_config_reloads_total', { result: 'error' }) === 1);
  assert.equal((await s.status()).config!.generation, 2);
});

test('SIGHUP to homing serve reloads the config file', async () => {
  const [a, b] = await backends('a', 'b');
  const box = await serveCli(`pools: { p: { members: ['${a!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`, 1, cleanups);
  assert.equal((await box.status())!.config!.generation, 1);
  writeFileSync(box.file, `${box.head}pools: { p: { members: ['${b!.id}'] } }\nroutes: [ { name: r, pool: p } ]\n`);
  box.proc.kill('SIGHUP');
  await until(async () => (await box.status())?.config?.generation === 2);
  assert.equal((await box.status())!.config!.hash, sha12(readFileSync(box.file, 'utf8')));
  assert.equal(await member(box.url, '/x'), b!.id);
  assert.equal(box.proc.exitCode, null);
});
