/**
 * Memory of the local affinity table (target: 1 M learned keys under 200 MB RSS).
 *
 * A fresh child process (`--expose-gc`) fills one LocalAffinityTable with `entries` keys shaped
 * like session tokens (40 hex chars) naming 16 members (`127.0.0.1:91xx`, a fresh owner string
 * per call, as a parsed header would be), collects garbage, and reports its RSS, heap, and
 * heap + typed-array bytes per entry. A child, so the figure is the table plus a bare Node
 * runtime, nothing the caller has loaded.
 *
 * The child runs the compiled table (`dist/`, plain node) when it is built and newer than the
 * source — `npm run bench` builds first — else the source through tsx, which adds ~40 MB of RSS
 * of its own (`runtime` says which).
 *
 *   node --import tsx bench/affinity-memory.ts [entries]
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface AffinityMemoryResult {
  entries: number;
  /** Resident set size of the child with the table full, MB (1e6 bytes). */
  rssMB: number;
  /** V8 heap used with the table full, MB. */
  heapMB: number;
  /** Growth of heap + ArrayBuffers (the table's typed arrays) per entry, bytes. */
  bytesPerEntry: number;
  /** RSS of the child before the table was made, MB: the runtime itself. */
  baselineRssMB: number;
  /** `node` (compiled dist/) or `tsx` (source; ~40 MB more RSS). */
  runtime: 'node' | 'tsx';
  /** Time to insert every entry, ms. */
  fillMs: number;
  /** Entries in the table at the end (== entries). */
  size: number;
}

/** The child's whole program (plain JS: it runs under plain node). */
const CHILD = `
import { randomBytes } from 'node:crypto';
const { LocalAffinityTable } = await import(process.env.AFF_TABLE_URL);
const entries = Number(process.env.AFF_ENTRIES);
const members = Number(process.env.AFF_MEMBERS);
const settle = () => { globalThis.gc(); globalThis.gc(); };
settle();
const mu0 = process.memoryUsage();
const table = new LocalAffinityTable({ ttl: 3600000, capacity: entries });
const t0 = performance.now();
const batch = 10000;
for (let i = 0; i < entries; i += batch) {
  const buf = randomBytes(20 * batch);
  const n = Math.min(batch, entries - i);
  for (let j = 0; j < n; j++) table.set(buf.toString('hex', j * 20, j * 20 + 20), '127.0.0.1:' + (9100 + ((i + j) % members)));
}
const fillMs = performance.now() - t0;
settle();
const mu = process.memoryUsage();
if (table.owners !== members || table.size !== entries) throw new Error('table has ' + table.size + ' entries, ' + table.owners + ' owners');
process.stdout.write(JSON.stringify({
  rss: mu.rss, heapUsed: mu.heapUsed, grown: mu.heapUsed + mu.arrayBuffers - mu0.heapUsed - mu0.arrayBuffers,
  rss0: mu0.rss, fillMs, size: table.size,
}));
`;

const root = fileURLToPath(new URL('..', import.meta.url));

/** dist's table when built from the current source, else undefined. */
function compiledTable(): string | undefined {
  const dist = `${root}dist/routing/affinity/local.js`;
  const src = `${root}src/routing/affinity/local.ts`;
  if (!existsSync(dist)) return undefined;
  return statSync(dist).mtimeMs >= statSync(src).mtimeMs ? dist : undefined;
}

export async function runAffinityMemoryBench(entries = 1_000_000, opts: { members?: number; runtime?: 'node' | 'tsx' } = {}): Promise<AffinityMemoryResult> {
  const members = opts.members ?? 16;
  const dist = opts.runtime === 'tsx' ? undefined : compiledTable();
  if (opts.runtime === 'node' && !dist) throw new Error('dist/ is missing or older than src/: run npm run build');
  const runtime = dist ? 'node' : 'tsx';
  const table = dist ?? `${root}src/routing/affinity/local.ts`;
  const args = [...(dist ? [] : ['--import', 'tsx']), '--expose-gc', '--input-type=module', '-e', CHILD];
  const env = { ...process.env, AFF_TABLE_URL: pathToFileURL(table).href, AFF_ENTRIES: String(entries), AFF_MEMBERS: String(members) };
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`affinity memory child exited with ${code}:\n${err}`);
  const r = JSON.parse(out) as { rss: number; heapUsed: number; grown: number; rss0: number; fillMs: number; size: number };
  return {
    entries,
    rssMB: round(r.rss / 1e6),
    heapMB: round(r.heapUsed / 1e6),
    bytesPerEntry: Math.round(r.grown / entries),
    baselineRssMB: round(r.rss0 / 1e6),
    runtime,
    fillMs: Math.round(r.fillMs),
    size: r.size,
  };
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = Number(process.argv[2] ?? 1_000_000);
  const r = await runAffinityMemoryBench(n);
  console.log(JSON.stringify(r));
  const limit = 200;
  const verdict =
    r.runtime === 'node' ? `${r.rssMB <= limit ? 'within' : 'OVER'} the ${limit} MB target for 1 M` : 'not judged: tsx adds ~40 MB, run npm run build for the plain-node figure';
  console.log(`${r.entries} entries (${r.runtime}): RSS ${r.rssMB} MB [${verdict}], runtime alone ${r.baselineRssMB} MB, heap ${r.heapMB} MB, ${r.bytesPerEntry} B/entry, filled in ${r.fillMs} ms`);
  if (n === 1_000_000 && r.runtime === 'node' && r.rssMB > limit) process.exitCode = 1;
}
