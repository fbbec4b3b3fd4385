/**
 * Memory of the local affinity table (issue 3: 1 M learned keys under 200 MB RSS).
 *
 * Fills a LocalAffinityTable with `entries` keys shaped like session tokens (40 hex chars) that
 * name 16 members (`127.0.0.1:91xx`, a fresh string per call, as a parsed header would be), then
 * reports the process RSS, the heap and the heap bytes per entry.
 *
 *   node --import tsx --expose-gc bench/affinity-memory.ts [entries]
 *
 * Without --expose-gc the figures include garbage not yet collected.
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { LocalAffinityTable } from '../src/routing/affinity/local.js';

export interface AffinityMemoryResult {
  entries: number;
  /** Resident set size of the whole process with the table full, MB (1e6 bytes). */
  rssMB: number;
  /** V8 heap used with the table full, MB. */
  heapMB: number;
  /** Heap growth divided by entries: what one learned key costs. */
  bytesPerEntry: number;
  /** RSS before the table was made, MB: the runtime itself (tsx adds ~40 MB over plain node). */
  baselineRssMB: number;
  /** Time to insert all entries, ms. */
  fillMs: number;
  /** Keys that survived (== entries unless capacity is smaller). */
  size: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

function settle(): void {
  if (gc) {
    gc();
    gc();
  }
}

export async function runAffinityMemoryBench(entries = 1_000_000, members = 16): Promise<AffinityMemoryResult> {
  // Tokens are made in slices so the random source never holds more than one batch.
  settle();
  const mu0 = process.memoryUsage();
  const heap0 = mu0.heapUsed + mu0.arrayBuffers;
  const table = new LocalAffinityTable({ ttl: 3_600_000, capacity: entries });
  const t0 = performance.now();
  const batch = 10_000;
  for (let i = 0; i < entries; i += batch) {
    const buf = randomBytes(20 * batch);
    const n = Math.min(batch, entries - i);
    for (let j = 0; j < n; j++) {
      const key = buf.toString('hex', j * 20, j * 20 + 20);
      table.set(key, `127.0.0.1:${9100 + ((i + j) % members)}`);
    }
    if (i % 200_000 === 0) await new Promise((r) => setImmediate(r));
  }
  const fillMs = performance.now() - t0;
  settle();
  const mu = process.memoryUsage();
  const result: AffinityMemoryResult = {
    entries,
    rssMB: round(mu.rss / 1e6),
    heapMB: round(mu.heapUsed / 1e6),
    bytesPerEntry: Math.round((mu.heapUsed + mu.arrayBuffers - heap0) / entries),
    baselineRssMB: round(mu0.rss / 1e6),
    fillMs: Math.round(fillMs),
    size: table.size,
  };
  if (table.owners !== members) throw new Error(`expected ${members} owners, table has ${table.owners}`);
  table.clear();
  return result;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = Number(process.argv[2] ?? 1_000_000);
  if (!gc) console.error('note: run with --expose-gc for settled figures');
  const r = await runAffinityMemoryBench(n);
  console.log(JSON.stringify(r));
  const limit = 200;
  console.log(`${r.entries} entries: RSS ${r.rssMB} MB (limit ${limit} MB), heap ${r.heapMB} MB, ${r.bytesPerEntry} B/entry, filled in ${r.fillMs} ms`);
  if (n === 1_000_000 && r.rssMB > limit) process.exitCode = 1;
}
