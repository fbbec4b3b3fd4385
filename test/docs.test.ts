/**
 * docs/ARCHITECTURE.md stays true to the code: every source path it names exists, and every
 * phase file of the proxy is named in it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';

const doc = readFileSync('docs/ARCHITECTURE.md', 'utf8');

test('every src/ path docs/ARCHITECTURE.md names exists', () => {
  const paths = [...new Set(doc.match(/src\/[\w/.-]+/g) ?? [])].map((p) => p.replace(/[.]$/, ''));
  assert.ok(paths.length > 20, `only ${paths.length} paths found`);
  const missing = paths.filter((p) => !existsSync(p));
  assert.deepEqual(missing, []);
});

test('every file of src/proxy/ is named in docs/ARCHITECTURE.md', () => {
  const files = readdirSync('src/proxy').filter((f) => f.endsWith('.ts'));
  const unnamed = files.filter((f) => !doc.includes(`src/proxy/${f}`));
  assert.deepEqual(unnamed, []);
});
