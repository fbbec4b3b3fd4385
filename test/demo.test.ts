import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { until } from './support/backends.js';
import { parseDemoArgs } from '../src/cli/demo.js';

test('npm start runs `homing demo`, which listens on 127.0.0.1:8080 with admin on :9090 and RESP on :6380 unless told otherwise', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } };
  assert.equal(pkg.scripts.start, 'node dist/cli/main.js demo');
  assert.deepEqual(parseDemoArgs([]), { http: '127.0.0.1:8080', admin: '127.0.0.1:9090', resp: '127.0.0.1:6380', guide: true });
  assert.deepEqual(parseDemoArgs(['--port', '8081', '--admin-port', '0', '--resp-port', '0']), { http: '127.0.0.1:8081', admin: '127.0.0.1:0', resp: '127.0.0.1:0', guide: true });
  assert.throws(() => parseDemoArgs(['--port', 'eighty']), /--port wants a port number/);
  assert.throws(() => parseDemoArgs(['--admin-port', '70000']), /--admin-port wants a port number/);
  assert.throws(() => parseDemoArgs(['--resp-port', 'six']), /--resp-port wants a port number/);
});

/** The printed commands of the guide, each with the text its output must contain (its `# ⇒` line). */
function guideCommands(out: string): { command: string; shows: string }[] {
  const lines = out.split('\n');
  const found: { command: string; shows: string }[] = [];
  lines.forEach((line, i) => {
    if (!/^ {2}(curl|redis-cli) /.test(line)) return;
    const promise = /^ {4}# ⇒ (.+)$/.exec(lines[i + 1] ?? '');
    if (promise) found.push({ command: line.trim(), shows: promise[1]! });
  });
  return found;
}

function sh(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', command], { timeout: 10_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${command}: ${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

// The command npm start runs, on ports the system picks (the test binds no fixed port).
test('homing demo --port 0 --admin-port 0 --resp-port 0: prints the ports it got, and every command of its guide shows what it says, run as printed', async (t) => {
  const proc = spawn(process.execPath, ['dist/cli/main.js', 'demo', '--port', '0', '--admin-port', '0', '--resp-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  // The guide's last promise marks the end of what the demo prints at start.
  await until(() => {
    const proxy = /proxy +http:\/\/127\.0\.0\.1:(\d+) /.exec(out);
    const admin = /admin +http:\/\/127\.0\.0\.1:(\d+)\/status/.exec(out);
    if (proxy && admin && out.includes('# ⇒ "region":"south"')) ports = { proxy: Number(proxy[1]), admin: Number(admin[1]) };
    return ports !== undefined || proc.exitCode !== null;
  }, 30_000, 20).catch(() => {});
  assert.ok(ports, `the demo printed no proxy and admin address, or no guide:\n${out}`);
  assert.notEqual(ports.proxy, 0);
  assert.notEqual(ports.admin, 0);
  const base = `http://127.0.0.1:${ports.proxy}`;
  const admin = `http://127.0.0.1:${ports.admin}`;
  assert.ok(out.includes(`curl -i ${base}/documents/42`), out);
  assert.ok(out.includes(`dashboard ${admin}/`), out);
  const resp = /resp +redis-cli -p (\d+) /.exec(out);
  assert.ok(resp && resp[1] !== '0', out);

  const commands = guideCommands(out);
  // Four patterns: affinity (4 commands), hashing (3), directory (4), shared cache (4).
  assert.equal(commands.length, 15, out);
  assert.equal(commands.filter((c) => c.command.startsWith('redis-cli')).length, 2);
  const affinity = commands.filter((c) => c.command.includes('/sessions/'));
  assert.match(affinity[0]!.shows, /^x-homing: route=sessions; target=\S+; by=hash; cache=bypass; hops=1$/, 'the first call is redirected once');
  assert.match(affinity[1]!.shows, /^x-homing: route=sessions; target=\S+; by=affinity; cache=bypass; hops=0$/, 'then it goes straight to the learned owner');
  assert.ok(commands.some((c) => /by=directory/.test(c.shows)));
  assert.deepEqual(commands.filter((c) => c.command.includes('/market/')).map((c) => c.shows), ['cache=miss', '"region":"north"', 'cache=hit', '"region":"south"']);

  // The members answer health checks before homing counts them live: wait until the proxy serves.
  await until(async () => {
    try {
      const r = await request(`${base}/documents/42`);
      await r.body.text();
      return r.statusCode === 200;
    } catch {
      return false;
    }
  }, 30_000, 50);
  for (const c of commands) {
    const output = await sh(c.command);
    assert.ok(output.includes(c.shows), `${c.command}\nshould show: ${c.shows}\nshowed:\n${output}`);
  }

  const page = await request(`${admin}/`);
  assert.equal(page.statusCode, 200);
  assert.match(await page.body.text(), /<title>homing<\/title>/);
});
