/**
 * integrations/prometheus, integrations/grafana and integrations/systemd against the real thing:
 *
 *  - every metric the alert rules and the Grafana dashboard name is in the /metrics of a running
 *    homing with learned affinity (redirecting backends), a directory (a real node:http one, one of
 *    whose answers fails), shared Redis (a real redis-server, stopped halfway so the "Redis down"
 *    series exist too) and the Redis-protocol router; every metric the alert rules use has series
 *    there, with the labels the rules select on;
 *  - promtool (Debian `prometheus`) checks the rules and runs their scenarios
 *    (homing-alerts.test.yml), and parses every dashboard query;
 *  - systemd-analyze verifies the unit; homing started with the unit's ExecStartPre and ExecStart
 *    command lines (the built CLI in place of the installed one) runs, its ExecReload command line
 *    reloads an edited config, and the unit's KillSignal stops it with exit status 0 within
 *    TimeoutStopSec.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { parse } from 'yaml';
import { startTestHoming, until } from './support/backends.js';
import { statefulCluster } from './support/stateful.js';
import { freePort, respCommandLine, startRedis } from './support/services.js';

const DIR = resolve(import.meta.dirname, '../integrations');
const RULES = join(DIR, 'prometheus/homing-alerts.yml');
const RULE_TESTS = join(DIR, 'prometheus/homing-alerts.test.yml');
const DASHBOARD = join(DIR, 'grafana/homing-dashboard.json');
const UNIT = join(DIR, 'systemd/homing.service');

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) => done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
}

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
}

function rules(): Rule[] {
  const doc = parse(readFileSync(RULES, 'utf8')) as { groups: { rules: Rule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

/** The dashboard's queries, Grafana's variables replaced by what they stand for at "All". */
function dashboardQueries(): string[] {
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { targets?: { expr: string }[] }[] };
  return d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr.replaceAll('$__rate_interval', '1m').replace(/\$(job|instance|route)\b/g, '.*')));
}

/** homing metric selectors in a PromQL expression: name and the label names it matches on. */
function selectors(expr: string): { name: string; labels: string[] }[] {
  const out: { name: string; labels: string[] }[] = [];
  // A name followed by ':' is a recording rule's (homing_route:…), not a metric.
  for (const m of expr.matchAll(/\b(homing_[a-z0-9_]+)\b(?!:)(\{([^}]*)\})?/g)) {
    out.push({ name: m[1]!, labels: [...(m[3] ?? '').matchAll(/([a-z_]+)\s*(=~|!~|!=|=)/g)].map((l) => l[1]!) });
  }
  return out;
}

/** What a /metrics text holds: families (TYPE lines) and, per sample name, the label names seen. */
function exposition(text: string): { families: Map<string, string>; series: Map<string, Set<string>> } {
  const families = new Map<string, string>();
  const series = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) families.set(t[1]!, t[2]!);
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(line);
    if (s && !line.startsWith('#')) {
      let labels = series.get(s[1]!);
      if (!labels) series.set(s[1]!, (labels = new Set()));
      for (const l of (s[2] ?? '').matchAll(/([a-zA-Z_]+)="/g)) labels.add(l[1]!);
    }
  }
  return { families, series };
}

/** The family a sample name belongs to (a histogram's _bucket, _sum and _count are its own). */
function familyOf(name: string, families: Map<string, string>): string | undefined {
  if (families.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return families.get(base) === 'histogram' ? base : undefined;
}

test('alert rules and dashboard: every metric they name is in a real homing /metrics; the rules use series that exist, by their labels', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const sessions = await statefulCluster(2);
  cleanups.push(() => sessions.close());
  const directory = createServer((req, res) => {
    const host = decodeURIComponent(req.url!.slice('/t/'.length));
    if (host.startsWith('broken.')) {
      res.writeHead(500);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(tenantMember);
  });
  let tenantMember = '';
  await new Promise<void>((r) => directory.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => directory.close(() => r())));
  const dirPort = (directory.address() as { port: number }).port;
  const [a, b] = sessions.backends.map((x) => x.id);
  tenantMember = a!;
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
resp: { address: 127.0.0.1:0, routes: [docs, sessions] }
shared: { redis: { url: '${redis.url}' } }
pools:
  s:
    members: ['${a}', '${b}']
    health: { active: { path: /health, interval: 1s, timeout: 500ms } }
routes:
  - { name: docs, match: { pathRegex: '^/d/(.*)$' }, pool: s, hash: { key: 'path:1' } }
  - { name: sessions, match: { path: /s/ }, pool: s, affinity: { key: 'header:authorization', redirect: {} } }
  - name: tenants
    match: { path: /t/ }
    pools: [s]
    directory: { key: host, lookup: { url: 'http://127.0.0.1:${dirPort}/t/{key}', timeout: 500ms } }
`);
  cleanups.push(() => h.close());
  await until(async () => /^homing_shared_redis_up 1$/m.test(await (await request(`${h.adminUrl}/metrics`)).body.text()));

  // Traffic through each: a redirected session (pinned away from the guess), a hashed key,
  // a tenant the directory places on a member, a tenant whose look-up fails, a request no route
  // matches, a RESP look-up. (The members hold sessions: each route's requests carry their own.)
  const token = 'Bearer eco';
  const look = (await (await request(`${h.adminUrl}/api/v1/routes/sessions/lookup?key=${encodeURIComponent(token)}`)).body.json()) as { target: string };
  sessions.sessions.set(token, look.target === a ? b! : a!);
  const hit = async (path: string, headers: Record<string, string> = {}) => {
    const r = await request(`${h.url}${path}`, { headers });
    await r.body.text();
    return r.statusCode;
  };
  for (let i = 0; i < 3; i++) assert.equal(await hit('/s/x', { authorization: token }), 200);
  assert.equal(await hit('/d/1', { authorization: 'Bearer doc' }), 200);
  for (let i = 0; i < 2; i++) assert.equal(await hit('/t/x', { host: 'acme.example', authorization: 'Bearer tenant' }), 200);
  assert.equal(await hit('/t/x', { host: 'broken.example', authorization: 'Bearer tenant' }), 503);
  assert.equal(await hit('/elsewhere'), 404);
  assert.equal(await respCommandLine(h.resp!.address().port, 'GET 1'), '$' + a!.length);
  const before = await (await request(`${h.adminUrl}/metrics`)).body.text();

  // Redis goes away: homing_shared_redis_up 0 and failing commands counted.
  await redis.stop();
  let during = '';
  await until(async () => {
    during = await (await request(`${h.adminUrl}/metrics`)).body.text();
    return /^homing_shared_redis_up 0$/m.test(during) && /^homing_shared_redis_errors_total\{/m.test(during);
  });
  const { families, series } = exposition(before + '\n' + during);

  const missing: string[] = [];
  const noSeries: string[] = [];
  const badLabels: string[] = [];
  for (const r of rules()) {
    for (const s of selectors(r.expr)) {
      if (!familyOf(s.name, families)) missing.push(`${r.alert ?? r.record}: ${s.name}`);
      const labels = series.get(s.name);
      if (!labels) noSeries.push(`${r.alert ?? r.record}: ${s.name}`);
      else for (const l of s.labels) if (!labels.has(l)) badLabels.push(`${r.alert ?? r.record}: ${s.name}{${l}}`);
    }
  }
  for (const q of dashboardQueries()) {
    for (const s of selectors(q)) {
      if (!familyOf(s.name, families)) missing.push(`dashboard: ${s.name}`);
      const labels = series.get(s.name);
      // job and instance are Prometheus' target labels; the rest must be homing's.
      if (labels) for (const l of s.labels) if (l !== 'job' && l !== 'instance' && !labels.has(l)) badLabels.push(`dashboard: ${s.name}{${l}}`);
    }
  }
  assert.deepEqual(missing, [], 'metric names not in /metrics');
  assert.deepEqual(noSeries, [], 'metrics the alert rules use without any series');
  assert.deepEqual(badLabels, [], 'labels selected on that the series do not have');
  // The rules cover what they are for.
  const alerts = rules().flatMap((r) => (r.alert ? [r.alert] : []));
  for (const a of ['HomingMemberDown', 'HomingHighErrorRatio', 'HomingHighRedirectRate', 'HomingSharedRedisDown', 'HomingDirectoryUnavailable']) assert.ok(alerts.includes(a), a);
  assert.ok(dashboardQueries().length >= 20);
});

test('promtool: the rules load, their scenarios pass, and every dashboard query parses', async () => {
  const check = await run('promtool', ['check', 'rules', RULES]);
  assert.equal(check.code, 0, check.out);
  const scenarios = await run('promtool', ['test', 'rules', RULE_TESTS]);
  assert.equal(scenarios.code, 0, scenarios.out);
  assert.match(scenarios.out, /SUCCESS/);
  const dir = mkdtempSync(join(tmpdir(), 'homing-dashboard-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const queries = dashboardQueries();
  const file = join(dir, 'queries.yml');
  writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: queries.map((expr, i) => ({ record: `dashboard:query${i}`, expr })) }] }));
  const parsed = await run('promtool', ['check', 'rules', file]);
  assert.equal(parsed.code, 0, parsed.out);
  assert.match(parsed.out, new RegExp(`SUCCESS: ${queries.length} rules found`));
});

/** The unit's [Service] settings (repeated keys in order). */
function unitService(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of readFileSync(UNIT, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) section = s[1]!;
    else if (section === 'Service') {
      const i = line.indexOf('=');
      const k = line.slice(0, i);
      out.set(k, [...(out.get(k) ?? []), line.slice(i + 1)]);
    }
  }
  return out;
}

test('systemd unit: verifies; its ExecStartPre and ExecStart run homing, its ExecReload reloads the config, its KillSignal stops it with status 0', async () => {
  const unit = readFileSync(UNIT, 'utf8');
  const svc = unitService();
  const bin = '/usr/local/bin/homing';
  const cli = resolve('dist/cli/main.js');

  // systemd-analyze verify, with the command where the unit expects it replaced by the built CLI.
  const dir = mkdtempSync(join(tmpdir(), 'homing-unit-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const shim = join(dir, 'homing');
  writeFileSync(shim, `#!/bin/sh\nexec '${process.execPath}' '${cli}' "$@"\n`, { mode: 0o755 });
  writeFileSync(join(dir, 'homing.service'), unit.replaceAll(bin, shim));
  const verify = await run('systemd-analyze', ['verify', join(dir, 'homing.service')]);
  assert.equal(verify.code, 0, verify.out);
  assert.equal(verify.out.trim(), '', 'no warnings');

  // The command lines, with the config path the unit names replaced by a test config.
  const config = join(dir, 'homing.yaml');
  const port = await freePort();
  const adminPort = await freePort();
  writeFileSync(config, `listen: { http: 127.0.0.1:${port} }\nadmin: 127.0.0.1:${adminPort}\nlog: { level: warn }\npools: { p: { members: ['127.0.0.1:1'] } }\nroutes: [ { name: r, pool: p } ]\n`);
  const argv = (line: string): string[] => line.split(/\s+/).map((a) => (a === '/etc/homing/homing.yaml' ? config : a));
  const [pre] = svc.get('ExecStartPre')!;
  const [start] = svc.get('ExecStart')!;
  const preArgs = argv(pre!);
  assert.equal(preArgs[0], bin);
  const checked = await run(process.execPath, [cli, ...preArgs.slice(1)]);
  assert.equal(checked.code, 0, checked.out);
  const startArgs = argv(start!);
  assert.equal(startArgs[0], bin);
  const proc = spawn(process.execPath, [cli, ...startArgs.slice(1)], { stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  cleanups.push(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  await until(async () => {
    try {
      const r = await request(`http://127.0.0.1:${adminPort}/readyz`);
      await r.body.text();
      return r.statusCode === 200;
    } catch {
      return false;
    }
  });
  // systemctl reload: the unit's command with $MAINPID, after an edit of the config.
  const status = async (): Promise<{ config?: { generation: number } } | undefined> => {
    const r = await request(`http://127.0.0.1:${adminPort}/status`);
    return r.statusCode === 200 ? ((await r.body.json()) as { config?: { generation: number } }) : (await r.body.text(), undefined);
  };
  assert.equal((await status())?.config?.generation, 1);
  writeFileSync(config, `listen: { http: 127.0.0.1:${port} }\nadmin: 127.0.0.1:${adminPort}\nlog: { level: warn }\npools: { p: { members: ['127.0.0.1:2'] } }\nroutes: [ { name: r, pool: p } ]\n`);
  const [reload] = svc.get('ExecReload')!;
  const reloadArgs = reload!.split(/\s+/).map((a) => (a === '$MAINPID' ? String(proc.pid) : a));
  const reloaded = await run(reloadArgs[0]!, reloadArgs.slice(1));
  assert.equal(reloaded.code, 0, reloaded.out);
  await until(async () => (await status())?.config?.generation === 2);
  const signal = svc.get('KillSignal')![0] as NodeJS.Signals;
  const stopWithin = Number(/^(\d+)s$/.exec(svc.get('TimeoutStopSec')![0]!)![1]) * 1000;
  proc.kill(signal);
  const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), stopWithin).unref())]);
  assert.equal(code, 0, `after ${signal}`);
});
