#!/usr/bin/env node
// `npm test`: install the real servers the tests talk to when missing, build, then run every
// test file with Node's test runner (via tsx). Extra arguments pick files: `npm test -- test/x.test.ts`.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
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

run('bash', ['scripts/install-system-deps.sh']);
run('npx', ['tsc', '-p', 'tsconfig.build.json']);
const files = process.argv.length > 2 ? process.argv.slice(2) : findTests('test');
run(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=120000', ...files]);
