// Section "hash": look-ups/s of each algorithm against the `hashring` package, and the 5 → 4 → 5
// remap fraction and max/mean load — all computed by bench/hash.ts (another engineer's module):
//   export async function runHashBench(opts?: { keys?: number; quick?: boolean }): Promise<HashBenchResult>
// Imported through tsx: directly when the bench runs under `node --import tsx`, otherwise via
// tsx's programmatic `tsImport`. If hash.ts also exports `formatHashBench(result): string`, that
// is printed; otherwise the result is printed generically.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO } from './peers.mjs';
import { renderGeneric } from './format.mjs';

const HASH_TS = path.join(REPO, 'bench/hash.ts');

async function importTs(file) {
  const url = pathToFileURL(file).href;
  try {
    return await import(url);
  } catch (e) {
    if (e?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw e;
    const { tsImport } = await import('tsx/esm/api');
    return await tsImport(url, import.meta.url);
  }
}

export async function hashSection(h) {
  if (!existsSync(HASH_TS)) {
    const skipped = 'bench/hash.ts does not exist yet';
    console.log(`\n== Hash: skipped — ${skipped}`);
    return { skipped };
  }
  let mod;
  try {
    mod = await importTs(HASH_TS);
  } catch (e) {
    h.problem('hash', `cannot import bench/hash.ts: ${e?.stack ?? e}`);
    console.log(`\n== Hash: skipped — cannot import bench/hash.ts (${String(e?.message ?? e).split('\n')[0]})`);
    return { skipped: `import failed: ${e?.message ?? e}` };
  }
  if (typeof mod.runHashBench !== 'function') {
    const skipped = 'bench/hash.ts does not export runHashBench';
    console.log(`\n== Hash: skipped — ${skipped}`);
    return { skipped };
  }
  const opts = { quick: h.opts.quick };
  if (h.opts.hashKeys) opts.keys = h.opts.hashKeys;
  h.log(`hash: runHashBench(${JSON.stringify(opts)})`);
  const t0 = Date.now();
  let result;
  try {
    result = await mod.runHashBench(opts);
  } catch (e) {
    h.problem('hash', `runHashBench threw: ${e?.stack ?? e}`);
    return { error: String(e?.message ?? e) };
  }
  const seconds = (Date.now() - t0) / 1000;
  console.log(`\n== Hash (bench/hash.ts, ${seconds.toFixed(1)}s, in the harness process while every peer is stopped)`);
  if (typeof mod.formatHashBench === 'function') console.log(mod.formatHashBench(result));
  else console.log(renderGeneric(result, 'hash'));
  return { seconds, result };
}
