import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { startBackend, startTestHoming } from './support/backends.js';
import { pinAwayFromGuess, statefulCluster, type StatefulCluster } from './support/stateful.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function routeYaml(c: StatefulCluster, extra = '', affinityExtra = ''): string {
  return `
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools: { eve: { members: [${c.backends.map((b) => `'${b.id}'`).join(', ')}] } }
routes:
  - name: crest
    pool: eve
    debugHeader: true
    affinity:
      key: header:authorization
      redirect: { header: X-Accel-Redirect, prefix: /internal_redirect/, maxHops: 2 }
      ttl: 1h
${affinityExtra}
    balance: round-robin
${extra}`;
}

async function setup(n = 3, affinityExtra = '', extra = '') {
  const c = await statefulCluster(n);
  cleanups.push(() => c.close());
  const h = await startTestHoming(routeYaml(c, extra, affinityExtra));
  cleanups.push(() => h.close());
  return { c, h };
}

async function send(url: string, token: string, opts: { method?: string; body?: Buffer | Readable; headers?: Record<string, string> } = {}) {
  const r = await request(url, { method: (opts.method ?? 'GET') as 'GET', headers: { authorization: token, ...opts.headers }, body: opts.body });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) };
}

test('every response comes from the owner; at most one redirect per token; later requests go straight there', async () => {
  const { c, h } = await setup(3);
  const tokens = Array.from({ length: 30 }, (_, i) => `Bearer token-${i}`);
  // Sessions already live somewhere (created before homing saw them): a third on each member,
  // so round-robin guesses miss often, whatever its phase.
  tokens.forEach((t, i) => c.sessions.set(t, c.backends[Math.floor(i / 10)]!.id));
  for (let round = 0; round < 5; round++) {
    for (const t of tokens) {
      const r = await send(`${h.url}/api/thing?round=${round}`, t);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json().member, c.sessions.get(t), `${t} served by a non-owner`);
      assert.doesNotMatch(r.text, /redirect body/);
      assert.equal(r.headers['x-accel-redirect'], undefined);
    }
  }
  for (const t of tokens) assert.ok((c.redirects.get(t) ?? 0) <= 1, `${t}: ${c.redirects.get(t)} redirects`);
  assert.ok([...c.redirects.values()].length > 0, 'the test never exercised a redirect');
  const r = await send(`${h.url}/x`, tokens[0]!);
  assert.match(String(r.headers['x-homing']), /by=affinity; cache=bypass; hops=0/);
  const look = (await (await request(`${h.adminUrl}/api/v1/affinity/crest/${encodeURIComponent(tokens[0]!)}`)).body.json()) as { owner: string };
  assert.equal(look.owner, c.sessions.get(tokens[0]!));
});

const HASH_GUESS = "    hash: { key: 'header:authorization' }";

test('POST and PUT bodies arrive byte-identical at the owner after a redirect (binary, chunked)', async () => {
  const { c, h } = await setup(3, '', HASH_GUESS);
  for (let i = 0; i < 12; i++) {
    const token = `Bearer body-${i}`;
    const owner = await pinAwayFromGuess(c, h.adminUrl, token);
    const body = randomBytes(1000 + i * 7919);
    const sha = createHash('sha256').update(body).digest('hex');
    const method = i % 2 ? 'PUT' : 'POST';
    const chunked = i % 3 === 0;
    const r = await send(`${h.url}/upload/${i}`, token, { method, body: chunked ? Readable.from([body.subarray(0, 500), body.subarray(500)]) : body });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json().member, owner);
    assert.equal(r.json().sha256, sha, `${method} body changed on the way (chunked=${chunked})`);
    assert.equal(r.json().method, method);
    assert.equal(c.redirects.get(token), 1);
  }
});

test('a body over maxReplayBody that meets a redirect: 502 with its code, the owner sees nothing', async () => {
  // Request buffering off: only maxReplayBody decides what can be re-sent.
  const { c, h } = await setup(2, '      maxReplayBody: 1KiB', `${HASH_GUESS}\n    requestBuffering: false`);
  const token = 'Bearer big';
  const owner = await pinAwayFromGuess(c, h.adminUrl, token);
  const ownerBackend = c.backends.find((b) => b.id === owner)!;
  const r = await send(`${h.url}/big`, token, { method: 'POST', body: randomBytes(4096) });
  assert.equal(r.status, 502, r.text);
  assert.equal(r.json().error.code, 'HOMING_ERR_REDIRECT_BODY_TOO_LARGE');
  assert.equal(ownerBackend.requests, 0, 'the owner got a (partial) re-send');
  // A body within the cap is re-sent whole.
  const small = randomBytes(1000);
  const ok = await send(`${h.url}/small`, token, { method: 'POST', body: small });
  assert.equal(ok.status, 200);
  assert.equal(ok.json().sha256, createHash('sha256').update(small).digest('hex'));
  assert.equal(ok.json().member, owner);
});

test('hostile backend redirects: outside the pool, garbage, loops → documented errors; client X-Accel-Redirect changes nothing', async () => {
  const { c, h } = await setup(2);
  const [a, b] = c.backends;
  const cases: [string, (u: string) => string, number, string][] = [
    ['outside the pool', (u) => `/internal_redirect/169.254.169.254:80${u}`, 502, 'HOMING_ERR_REDIRECT_TARGET'],
    ['loopback not in pool', (u) => `/internal_redirect/127.0.0.1:1${u}`, 502, 'HOMING_ERR_REDIRECT_TARGET'],
    ['garbage', () => 'garbage', 502, 'HOMING_ERR_REDIRECT_TARGET'],
    ['garbage after the prefix', () => '/internal_redirect/not a target', 502, 'HOMING_ERR_REDIRECT_TARGET'],
    ['wrong prefix', (u) => `/elsewhere/${b!.id}${u}`, 502, 'HOMING_ERR_REDIRECT_TARGET'],
  ];
  for (const [label, fn, status, code] of cases) {
    c.override.set(a!.id, fn);
    c.override.set(b!.id, fn);
    const r = await send(`${h.url}/x`, `Bearer hostile-${label}`);
    assert.equal(r.status, status, label);
    assert.equal(r.json().error.code, code, label);
  }
  // A loop: a → b → a.
  c.override.set(a!.id, (u) => `/internal_redirect/${b!.id}${u}`);
  c.override.set(b!.id, (u) => `/internal_redirect/${a!.id}${u}`);
  const loop = await send(`${h.url}/x`, 'Bearer loop');
  assert.equal(loop.status, 508);
  assert.equal(loop.json().error.code, 'HOMING_ERR_REDIRECT_LOOP');
  c.override.clear();
  // A client forging the redirect or routing headers: routing is unchanged.
  const t = 'Bearer forger';
  const first = (await send(`${h.url}/x`, t)).json().member;
  const other = c.backends.find((x) => x.id !== first)!.id;
  for (let i = 0; i < 5; i++) {
    const r = await send(`${h.url}/x`, t, { headers: { 'x-accel-redirect': `/internal_redirect/${other}/x`, 'x-homing': `target=${other}` } });
    assert.equal(r.json().member, first);
  }
});

test('killing the owner: the next request succeeds on another member and the table forgets the dead one', async () => {
  const { c, h } = await setup(3);
  const token = 'Bearer mortal';
  const owner = (await send(`${h.url}/x`, token)).json().member as string;
  const dead = c.backends.find((b) => b.id === owner)!;
  await dead.close();
  c.backends.splice(c.backends.indexOf(dead), 1);
  const r = await send(`${h.url}/x`, token);
  assert.equal(r.status, 200, r.text);
  assert.notEqual(r.json().member, owner);
  const look = (await (await request(`${h.adminUrl}/api/v1/affinity/crest/${encodeURIComponent(token)}`)).body.json()) as { owner: string };
  assert.equal(look.owner, r.json().member);
  // Later requests stick to the new owner.
  for (let i = 0; i < 5; i++) assert.equal((await send(`${h.url}/x`, token)).json().member, r.json().member);
});

test('the owner header names the owner explicitly (and never reaches the client)', async () => {
  const names: string[] = [];
  const bs = await Promise.all(
    ['o0', 'o1', 'o2'].map((n) =>
      startBackend(n, (req, res, _body, self) => {
        names.push(self.id);
        // Every member says the session lives on the last member.
        res.writeHead(200, { 'x-session-node': ownerId, 'content-type': 'application/json' });
        res.end(JSON.stringify({ member: self.id }));
      }),
    ),
  );
  const ownerId = bs[2]!.id;
  for (const b of bs) cleanups.push(() => b.close());
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools: { eve: { members: [${bs.map((b) => `'${b.id}'`).join(', ')}] } }
routes:
  - name: crest
    pool: eve
    affinity: { key: 'header:authorization', owner: X-Session-Node }
    balance: round-robin
`);
  cleanups.push(() => h.close());
  const r = await send(`${h.url}/x`, 'Bearer owned');
  assert.equal(r.headers['x-session-node'], undefined, 'the owner header leaked to the client');
  const look = (await (await request(`${h.adminUrl}/api/v1/affinity/crest/${encodeURIComponent('Bearer owned')}`)).body.json()) as { owner: string };
  assert.equal(look.owner, ownerId);
  for (let i = 0; i < 4; i++) assert.equal((await send(`${h.url}/x`, 'Bearer owned')).json().member, ownerId);
});

test('a chunked upload larger than maxReplayBody streams through whole; if it then meets a redirect: 502 with its code', async () => {
  // Request buffering off: only maxReplayBody decides what can be re-sent.
  const { c, h } = await setup(2, '      maxReplayBody: 1KiB', `${HASH_GUESS}\n    requestBuffering: false`);
  const body = randomBytes(64 * 1024);
  const sha = createHash('sha256').update(body).digest('hex');
  const chunks = () => Readable.from(Array.from({ length: 16 }, (_, i) => body.subarray(i * 4096, (i + 1) * 4096)));
  // The guess is the owner: no redirect, the body streams through byte for byte.
  const token = 'Bearer stream-ok';
  const look = (await (await request(`${h.adminUrl}/api/v1/routes/crest/lookup?key=${encodeURIComponent(token)}`)).body.json()) as { target: string };
  c.sessions.set(token, look.target);
  const ok = await send(`${h.url}/up`, token, { method: 'POST', body: chunks() });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json().sha256, sha);
  // The guess is not the owner: the redirect cannot be replayed.
  const token2 = 'Bearer stream-redirect';
  await pinAwayFromGuess(c, h.adminUrl, token2);
  const r = await send(`${h.url}/up`, token2, { method: 'POST', body: chunks() });
  assert.equal(r.status, 502, r.text);
  assert.equal(r.json().error.code, 'HOMING_ERR_REDIRECT_BODY_TOO_LARGE');
});
