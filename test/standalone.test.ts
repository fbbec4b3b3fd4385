/**
 * The repository stands alone: code, tests, benchmarks and docs state their rules themselves and
 * never cite documents or issue numbers that live outside it (a maintainer could not follow them).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

test('no file cites a document or an issue outside the repository', () => {
  const files = execFileSync('git', ['ls-files', 'src', 'test', 'bench', 'docs', 'README.md', 'examples', 'integrations', 'scripts'], { encoding: 'utf8' })
    .split('\n')
    .filter((f) => f && f !== 'test/standalone.test.ts');
  const pattern = /PITFALLS|BENCHMARKING|DESIGN\.md|DESIGN §|CONVENTIONS|\.\.\/shared\/[A-Z]|\b[Ii]ssue \d+/;
  const hits: string[] = [];
  for (const f of files) {
    if (!existsSync(f)) continue;
    readFileSync(f, 'utf8').split('\n').forEach((line, i) => {
      if (pattern.test(line)) hits.push(`${f}:${i + 1}: ${line.trim().slice(0, 120)}`);
    });
  }
  assert.deepEqual(hits, []);
});
