import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request } from 'undici';
import { startTestHoming } from './support/backends.js';

const members = ['127.0.0.1:9101', '127.0.0.1:9102', '127.0.0.1:9103', '127.0.0.1:9104', '127.0.0.1:9105'];

function ring(args: string[]): string {
  const r = spawnSync(process.execPath, ['dist/cli/main.js', 'ring', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('homing ring: answers the same member as a running homing for each key and algorithm', async () => {
  for (const alg of ['ring', 'maglev', 'rendezvous']) {
    const keys = Array.from({ length: 12 }, (_, i) => `user-${i}`);
    const out = ring(['--members', members.join(','), '--algorithm', alg, ...keys.flatMap((k) => ['--key', k])]);
    const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools: { p: { members: [${members.map((m) => `'${m}'`).join(', ')}] } }
routes: [ { name: r, pool: p, hash: { key: 'header:x-user', algorithm: ${alg} } } ]
`);
    try {
      for (const line of out.trim().split('\n')) {
        const [key, member] = line.split('\t');
        const look = (await (await request(`${h.adminUrl}/api/v1/routes/r/lookup?key=${key}`)).body.json()) as { target: string };
        assert.equal(member, look.target, `${alg}: ${key}`);
      }
    } finally {
      await h.close();
    }
  }
});

test('homing ring --compat nginx: answers the same member as a running homing with hash.compat nginx', async () => {
  const weighted = members.map((m, i) => `${m}*${(i % 3) + 1}`);
  const keys = Array.from({ length: 12 }, (_, i) => `/docs/user-${i}`);
  const out = ring(['--members', weighted.join(','), '--compat', 'nginx', ...keys.flatMap((k) => ['--key', k])]);
  const plain = ring(['--members', weighted.join(','), ...keys.flatMap((k) => ['--key', k])]);
  assert.notEqual(out, plain);
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools: { p: { members: [${members.map((m, i) => `{ address: '${m}', weight: ${(i % 3) + 1} }`).join(', ')}] } }
routes: [ { name: r, pool: p, hash: { key: path, algorithm: ring, compat: nginx } } ]
`);
  try {
    const lines = out.trim().split('\n');
    assert.equal(lines.length, keys.length);
    for (const line of lines) {
      const [key, member] = line.split('\t');
      const look = (await (await request(`${h.adminUrl}/api/v1/routes/r/lookup?key=${encodeURIComponent(key!)}`)).body.json()) as { target: string };
      assert.equal(member, look.target, key);
    }
  } finally {
    await h.close();
  }
  const bad = spawnSync(process.execPath, ['dist/cli/main.js', 'ring', '--members', members.join(','), '--algorithm', 'maglev', '--compat', 'nginx'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--compat takes nginx, with --algorithm ring/);
});

test('homing ring: remove and add a member move about 1/5 of the keys each way', () => {
  const out = ring(['--members', members.join(','), '--remove', members[2]!, '--add', members[2]!, '--keys', '20000']);
  const rows = out.split('\n').filter((l) => /^(remove|add) /.test(l));
  assert.equal(rows.length, 2);
  for (const row of rows) {
    const moved = Number(/\s([\d.]+)%/.exec(row)![1]);
    assert.ok(moved > 15 && moved < 23, `moved ${moved}% in: ${row}`);
  }
});

test('homing ring: bad input is a clear error, not a crash', () => {
  const r = spawnSync(process.execPath, ['dist/cli/main.js', 'ring', '--members', 'nonsense'], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /invalid address "nonsense"/);
  assert.doesNotMatch(r.stderr, /at .*\.js:\d+/);
});
