import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'undici';
import { until } from './support/backends.js';

// `npm start` runs exactly this command (package.json "start").
test('npm start: the demo listens on 127.0.0.1:8080 (admin :9090) and answers within a few seconds', async (t) => {
  const proc = spawn(process.execPath, ['dist/cli/main.js', 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    proc.kill('SIGTERM');
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const t0 = Date.now();
  let body = '';
  await until(async () => {
    try {
      const r = await request('http://127.0.0.1:8080/documents/42');
      body = await r.body.text();
      return r.statusCode === 200;
    } catch {
      return false;
    }
  }, 8000, 100);
  assert.ok(Date.now() - t0 < 8000);
  assert.match(body, /"member":"(alpha|bravo|charlie)"/);
  assert.match(out, /curl -i http:\/\/127\.0\.0\.1:8080\/documents\/42/);
  const look = await request('http://127.0.0.1:9090/api/v1/routes/documents/lookup?key=42');
  const j = (await look.body.json()) as { target: string; by: string };
  assert.equal(j.by, 'hash');
  const again = await request('http://127.0.0.1:8080/documents/42');
  assert.match(String(again.headers['x-homing']), new RegExp(`target=${j.target.replace(/\./g, '\\.')}`));
  await again.body.text();
});
