/**
 * Hash strategy benchmark: look-ups per second of each algorithm against the
 * `hashring` package, and for each algorithm how keys move when one of five members leaves and
 * comes back, and how evenly they spread.
 *
 * Look-ups are measured the way the proxy does them: the key is extracted from a realistic path
 * (`path:1` of `^/documents/(.*)$`, with the real key compiler), hashed and looked up. The same
 * keys, the same five members and the same extraction feed `hashring` (its default options: MD5,
 * 160 points a server, its 5000-entry LRU cache). A second figure leaves extraction out
 * (pre-extracted keys: hash + look-up only).
 *
 * Run directly: `node --import tsx bench/hash.ts [--quick] [--keys N] [--json]`.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Member, MemberSet } from '../src/members/member.js';
import { compileKey, type RequestView } from '../src/routing/keys.js';
import { createHashPickerFactory, type HashPickerOptions } from '../src/routing/hash/index.js';
import type { Picker } from '../src/routing/strategy.js';

/** The part of `hashring`'s API used here (it ships no types). */
interface HashRingLike {
  get(key: string): string;
}
type HashRingCtor = new (servers: string[] | Record<string, unknown>) => HashRingLike;

export interface LookupResult {
  name: string;
  /** Key extraction from the path + hash + look-up, per second (best round). */
  lookupsPerSec: number;
  nsPerLookup: number;
  /** Hash + look-up only (keys extracted beforehand), per second (best round). */
  keyOnlyLookupsPerSec: number;
  /** lookupsPerSec / the hashring package's lookupsPerSec. */
  vsHashring: number;
}

export interface DistributionResult {
  name: string;
  /** Share of keys whose owner changed when one of 5 members left (ideal 0.2). */
  movedOnRemove: number;
  idealMoved: number;
  /** movedOnRemove / idealMoved (the conformance suite asks ≤ 1.15). */
  movedOverIdeal: number;
  /** Share of the keys NOT owned by the leaver that moved anyway (ideal 0). */
  movedNotOwnedByLeaver: number;
  /** Share of keys back on their original owner once the member returned (ideal 1). */
  restoredOnReturn: number;
  /** Keys of the busiest member over the mean, with 5 equal members (ideal 1). */
  maxOverMean: number;
}

export interface HashBenchResult {
  node: string;
  members: number;
  keys: number;
  rounds: number;
  lookups: LookupResult[];
  distribution: DistributionResult[];
}

const MEMBER_COUNT = 5;

function membersOf(count: number): Member[] {
  return Array.from({ length: count }, (_, i) => new Member(`10.0.0.${i + 1}`, 8080));
}

/** Realistic document paths: tenants, nested ids, some percent-encoding. */
function makePaths(count: number): string[] {
  const out = new Array<string>(count);
  let x = 0x2545f491;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const id = (x >>> 0).toString(16).padStart(8, '0');
    const tenant = `tenant-${(i * 7919) % 1021}`;
    out[i] = i % 10 === 0 ? `/documents/${tenant}/reports%202024/${id}.pdf` : `/documents/${tenant}/doc-${id}-${i}`;
  }
  return out;
}

const ALGORITHMS: Array<{ name: string; cfg: HashPickerOptions }> = [
  { name: 'ring (160 vnodes)', cfg: { algorithm: 'ring', vnodes: 160 } },
  { name: 'maglev (65537)', cfg: { algorithm: 'maglev', tableSize: 65537 } },
  { name: 'rendezvous', cfg: { algorithm: 'rendezvous' } },
  { name: 'ring + bounded 1.25', cfg: { algorithm: 'ring', vnodes: 160, boundedLoad: 1.25 } },
  { name: 'ring, compat nginx', cfg: { algorithm: 'ring', compat: 'nginx' } },
];

/** One mutable request view, re-pointed per look-up (the proxy builds one per request). */
function makeView(): RequestView & { path: string; uri: string; match: RegExpExecArray | null } {
  return { method: 'GET', uri: '/', path: '/', host: 'docs.example.com', headers: {}, match: null };
}

const ROUTE_RE = /^\/documents\/(.*)$/;
const keyFn = compileKey('path:1');

/** Seconds per look-up loops: one per target, so no call site sees more than a few shapes. */
function loopPicker(picker: Picker, paths: readonly string[], view: ReturnType<typeof makeView>): number {
  let sink = 0;
  for (let i = 0; i < paths.length; i++) {
    const p = paths[i]!;
    view.path = p;
    view.uri = p;
    view.match = ROUTE_RE.exec(p);
    const m = picker.pick(keyFn(view), 0);
    if (m !== undefined) sink += m.port;
  }
  return sink;
}

function loopPickerKeys(picker: Picker, keys: readonly string[]): number {
  let sink = 0;
  for (let i = 0; i < keys.length; i++) {
    const m = picker.pick(keys[i], 0);
    if (m !== undefined) sink += m.port;
  }
  return sink;
}

function loopHashring(ring: HashRingLike, paths: readonly string[], view: ReturnType<typeof makeView>): number {
  let sink = 0;
  for (let i = 0; i < paths.length; i++) {
    const p = paths[i]!;
    view.path = p;
    view.uri = p;
    view.match = ROUTE_RE.exec(p);
    const key = keyFn(view);
    if (key !== undefined) sink += ring.get(key).length;
  }
  return sink;
}

function loopHashringKeys(ring: HashRingLike, keys: readonly string[]): number {
  let sink = 0;
  for (let i = 0; i < keys.length; i++) sink += ring.get(keys[i]!).length;
  return sink;
}

let globalSink = 0;

interface Task {
  name: string;
  run: () => number;
  best: number;
}

/**
 * Best rate (items per second) of each task over `rounds` timed runs, after one warm-up run each.
 * Rounds are interleaved (every task once per round), so a burst of noise from elsewhere on the
 * machine costs every task alike instead of one task all its rounds.
 */
function measure(tasks: Task[], items: number, rounds: number): void {
  for (const t of tasks) globalSink += t.run();
  for (let r = 0; r < rounds; r++) {
    for (const t of tasks) {
      const t0 = process.hrtime.bigint();
      globalSink += t.run();
      const ns = Number(process.hrtime.bigint() - t0);
      t.best = Math.max(t.best, (items * 1e9) / Math.max(1, ns));
    }
  }
}

function ownersOf(get: (key: string) => string, keys: readonly string[]): string[] {
  return keys.map(get);
}

function distribution(name: string, build: (members: Member[]) => (key: string) => string, keys: readonly string[]): DistributionResult {
  const all = membersOf(MEMBER_COUNT);
  const leaver = all[2]!.id;
  const before = ownersOf(build(all), keys);
  const during = ownersOf(build(all.filter((m) => m.id !== leaver)), keys);
  const after = ownersOf(build([...all].reverse()), keys);
  let moved = 0;
  let movedOthers = 0;
  let others = 0;
  let restored = 0;
  const counts = new Map<string, number>();
  for (let i = 0; i < keys.length; i++) {
    const b = before[i]!;
    counts.set(b, (counts.get(b) ?? 0) + 1);
    if (during[i] !== b) moved++;
    if (b !== leaver) {
      others++;
      if (during[i] !== b) movedOthers++;
    }
    if (after[i] === b) restored++;
  }
  const ideal = 1 / MEMBER_COUNT;
  const movedOnRemove = moved / keys.length;
  return {
    name,
    movedOnRemove,
    idealMoved: ideal,
    movedOverIdeal: movedOnRemove / ideal,
    movedNotOwnedByLeaver: others ? movedOthers / others : 0,
    restoredOnReturn: restored / keys.length,
    maxOverMean: Math.max(...counts.values()) / (keys.length / MEMBER_COUNT),
  };
}

function loadHashring(): HashRingCtor {
  const require = createRequire(import.meta.url);
  return require('hashring') as HashRingCtor;
}

export async function runHashBench(opts: { keys?: number; quick?: boolean } = {}): Promise<HashBenchResult> {
  const keyCount = opts.keys ?? (opts.quick ? 20_000 : 100_000);
  const rounds = opts.quick ? 3 : 9;
  const paths = makePaths(keyCount);
  const view = makeView();
  const keys = paths.map((p) => {
    view.match = ROUTE_RE.exec(p);
    return keyFn(view)!;
  });
  const HashRing = loadHashring();
  const members = membersOf(MEMBER_COUNT);
  const set = new MemberSet(members);

  const hr = new HashRing(members.map((m) => m.id));
  const pickers = ALGORITHMS.map((a) => ({ name: a.name, picker: createHashPickerFactory(a.cfg)(set) }));
  const withPath: Task[] = [
    ...pickers.map(({ name, picker }) => ({ name, run: () => loopPicker(picker, paths, view), best: 0 })),
    { name: 'hashring (npm)', run: () => loopHashring(hr, paths, view), best: 0 },
  ];
  const keyOnly: Task[] = [
    ...pickers.map(({ name, picker }) => ({ name, run: () => loopPickerKeys(picker, keys), best: 0 })),
    { name: 'hashring (npm)', run: () => loopHashringKeys(hr, keys), best: 0 },
  ];
  measure(withPath, keyCount, rounds);
  measure(keyOnly, keyCount, rounds);
  const hashringRate = withPath.at(-1)!.best;
  const lookups: LookupResult[] = withPath.map((t, i) => ({
    name: t.name,
    lookupsPerSec: Math.round(t.best),
    nsPerLookup: +(1e9 / t.best).toFixed(1),
    keyOnlyLookupsPerSec: Math.round(keyOnly[i]!.best),
    vsHashring: +(t.best / hashringRate).toFixed(2),
  }));

  const distKeys = keys.length >= 100_000 || !opts.quick ? keys : makePaths(100_000).map((p) => ROUTE_RE.exec(p)![1]!);
  const dist: DistributionResult[] = [];
  for (const a of ALGORITHMS) {
    const factory = createHashPickerFactory(a.cfg);
    dist.push(distribution(a.name, (ms) => {
      const p = factory(new MemberSet(ms));
      return (key) => p.pick(key, 0)!.id;
    }, distKeys));
  }
  dist.push(distribution('hashring (npm)', (ms) => {
    const r = new HashRing(ms.map((m) => m.id));
    return (key) => r.get(key);
  }, distKeys));

  if (globalSink === -1) console.log(globalSink); // keep the loops' results observable
  return { node: process.version, members: MEMBER_COUNT, keys: keyCount, rounds, lookups, distribution: dist.map(roundDist) };
}

function roundDist(d: DistributionResult): DistributionResult {
  const r = (x: number) => +x.toFixed(4);
  return { ...d, movedOnRemove: r(d.movedOnRemove), movedOverIdeal: r(d.movedOverIdeal), movedNotOwnedByLeaver: r(d.movedNotOwnedByLeaver), restoredOnReturn: r(d.restoredOnReturn), maxOverMean: r(d.maxOverMean) };
}

export function formatHashBench(res: HashBenchResult): string {
  const lines: string[] = [];
  const pad = (s: string, n: number) => s.padEnd(n);
  const num = (x: number) => x.toLocaleString('en-US');
  lines.push(`hash look-ups — ${res.members} members, ${num(res.keys)} keys, best of ${res.rounds} rounds, node ${res.node}`);
  lines.push(`${pad('algorithm', 22)}${pad('path→member/s', 16)}${pad('ns/op', 9)}${pad('key→member/s', 16)}vs hashring`);
  for (const l of res.lookups) {
    lines.push(`${pad(l.name, 22)}${pad(num(l.lookupsPerSec), 16)}${pad(String(l.nsPerLookup), 9)}${pad(num(l.keyOnlyLookupsPerSec), 16)}${l.vsHashring}×`);
  }
  lines.push('');
  lines.push('5 → 4 → 5 members (ideal moved 0.2, moved-of-others 0, restored 1, max/mean 1)');
  lines.push(`${pad('algorithm', 22)}${pad('moved', 9)}${pad('÷ideal', 9)}${pad('others', 9)}${pad('restored', 10)}max/mean`);
  for (const d of res.distribution) {
    lines.push(`${pad(d.name, 22)}${pad(String(d.movedOnRemove), 9)}${pad(String(d.movedOverIdeal), 9)}${pad(String(d.movedNotOwnedByLeaver), 9)}${pad(String(d.restoredOnReturn), 10)}${d.maxOverMean}`);
  }
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const k = args.indexOf('--keys');
  const res = await runHashBench({ quick: args.includes('--quick'), keys: k >= 0 ? Number(args[k + 1]) : undefined });
  console.log(args.includes('--json') ? JSON.stringify(res, null, 2) : formatHashBench(res));
}
