import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS } from '../src/errors.js';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('every error code is in the README table with its status', () => {
  const readme = readFileSync('README.md', 'utf8');
  for (const [code, spec] of Object.entries(ERRORS)) {
    const row = readme.split('\n').find((l) => l.startsWith('|') && l.includes(`\`${code}\``));
    assert.ok(row, `${code} missing from README.md`);
    assert.match(row, new RegExp(`\\|\\s*${spec.status}\\s*\\|`), `${code}: README shows another status than ${spec.status}`);
  }
});

test('every HOMING_ERR_ code used in src/ is in the catalogue', () => {
  const used = new Set<string>();
  for (const f of sources('src')) for (const m of readFileSync(f, 'utf8').matchAll(/HOMING_ERR_[A-Z_]+/g)) used.add(m[0]);
  for (const code of used) assert.ok(code in ERRORS, `${code} is used but not in src/errors.ts`);
});

test('the README lists no code that the catalogue lacks', () => {
  const readme = readFileSync('README.md', 'utf8');
  for (const m of readme.matchAll(/`(HOMING_ERR_[A-Z_]+)`/g)) assert.ok(m[1]! in ERRORS, `${m[1]} in README but not in the catalogue`);
});
