import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { until } from './support/backends.js';
import { parseDemoArgs } from '../src/cli/demo.js';

test('npm start runs `homing demo`, which listens on 127.0.0.1:8080 with admin on :9090 unless told otherwise', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } };
  assert.equal(pkg.scripts.start, 'node dist/cli/main.js demo');
  assert.deepEqual(parseDemoArgs([]), { http: '127.0.0.1:8080', admin: '127.0.0.1:9090' });
  assert.deepEqual(parseDemoArgs(['--port', '8081', '--admin-port', '0']), { http: '127.0.0.1:8081', admin: '127.0.0.1:0' });
  assert.throws(() => parseDemoArgs(['--port', 'eighty']), /--port wants a port number/);
  assert.throws(() => parseDemoArgs(['--admin-port', '70000']), /--admin-port wants a port number/);
});

// The command npm start runs, on ports the system picks (the test binds no fixed port).
test('homing demo --port 0 --admin-port 0: prints the ports it got, answers there, admin too', async (t) => {
  const proc = spawn(process.execPath, ['dist/cli/main.js', 'demo', '--port', '0', '--admin-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await exited;
    }
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  let ports: { proxy: number; admin: number } | undefined;
  await until(() => {
    const proxy = /proxy +http:\/\/127\.0\.0\.1:(\d+) /.exec(out);
    const admin = /admin +http:\/\/127\.0\.0\.1:(\d+)\/status/.exec(out);
    if (proxy && admin) ports = { proxy: Number(proxy[1]), admin: Number(admin[1]) };
    return ports !== undefined || proc.exitCode !== null;
  }, 30_000, 20).catch(() => {});
  assert.ok(ports, `the demo printed no proxy and admin address:\n${out}`);
  assert.notEqual(ports.proxy, 0);
  assert.notEqual(ports.admin, 0);
  const base = `http://127.0.0.1:${ports.proxy}`;
  let body = '';
  await until(async () => {
    try {
      const r = await request(`${base}/documents/42`);
      body = await r.body.text();
      return r.statusCode === 200;
    } catch {
      return false;
    }
  }, 30_000, 50);
  assert.match(body, /"member":"(alpha|bravo|charlie)"/);
  assert.ok(out.includes(`curl -i ${base}/documents/42`), out);
  const look = await request(`http://127.0.0.1:${ports.admin}/api/v1/routes/documents/lookup?key=42`);
  const j = (await look.body.json()) as { target: string; by: string };
  assert.equal(j.by, 'hash');
  const again = await request(`${base}/documents/42`);
  assert.match(String(again.headers['x-homing']), new RegExp(`target=${j.target.replace(/\./g, '\\.')}`));
  await again.body.text();
});
