#!/usr/bin/env node
// `npm test`: install the real servers the tests talk to when missing, build, then run every
// test file with Node's test runner (via tsx), on the default engine (`engine: node`); then every
// test file that starts homing runs again on the fast engine (HOMING_ENGINE=fast names the engine
// of each config that names none). Extra arguments pick files: `npm test -- test/x.test.ts`.
// HOMING_ENGINE set by the caller: one pass, on that engine. The exit status is 1 if any pass failed.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function run(cmd, args, env = process.env) {
  return spawnSync(cmd, args, { stdio: 'inherit', env }).status ?? 1;
}

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

/** A test file that starts homing (in process or as `homing serve`): it runs on both engines. */
const STARTS_HOMING = /startTestHoming|startCachedHoming|serveCli|startHoming|cli\/main/;

if (run('bash', ['scripts/install-system-deps.sh']) !== 0) process.exit(1);
if (run('npx', ['tsc', '-p', 'tsconfig.build.json']) !== 0) process.exit(1);
const files = process.argv.length > 2 ? process.argv.slice(2) : findTests('test');
const runner = ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=120000'];
// TAP to stdout as always; each failed test's name and error also go to a file per pass, printed
// again after the last pass so they stand in the last lines of the output.
const failuresDir = mkdtempSync(join(tmpdir(), 'homing-test-failures-'));
const reporters = (file) => [
  '--test-reporter=tap', '--test-reporter-destination=stdout',
  `--test-reporter=${new URL('./failures-reporter.mjs', import.meta.url).href}`, `--test-reporter-destination=${file}`,
];
const passes = process.env.HOMING_ENGINE
  ? [{ engine: process.env.HOMING_ENGINE, files }]
  : [
      { engine: 'node', files },
      { engine: 'fast', files: files.filter((f) => STARTS_HOMING.test(readFileSync(f, 'utf8'))) },
    ];
const failed = [];
for (const p of passes) {
  if (p.files.length === 0) continue;
  console.log(`\n== engine: ${p.engine} (${p.files.length} test files)\n`);
  const failures = join(failuresDir, `${p.engine}.txt`);
  if (run(process.execPath, [...runner, ...reporters(failures), ...p.files], { ...process.env, HOMING_ENGINE: p.engine }) !== 0) {
    let text = '';
    try { text = readFileSync(failures, 'utf8').trim(); } catch { /* the runner itself failed: nothing written */ }
    failed.push({ engine: p.engine, text: text || '(no test failed: the runner itself exited non-zero; see above)' });
  }
}
rmSync(failuresDir, { recursive: true, force: true });
if (failed.length > 0) {
  for (const f of failed) console.log(`\n== failed on engine: ${f.engine}\n\n${f.text}`);
  console.log(`\nfailed on engine: ${failed.map((f) => f.engine).join(', ')}`);
  process.exit(1);
}
