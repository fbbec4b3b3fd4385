/**
 * What the dashboard shows over time, kept in the admin process: every second (SAMPLE_INTERVAL_MS)
 * the admin reads its own `/metrics` text (with workers, the primary's is the sum over workers, so
 * one code path serves both) and turns the counters into one sample per route and per member —
 * requests/s, errors/s, p50 and p99 upstream latency over that second, requests in flight — kept
 * in fixed ring buffers covering the last 15 minutes (HISTORY_WINDOW_MS). The same read gives the
 * totals the dashboard's tables show (requests, errors by code, affinity and directory counts), so
 * the page shows exactly what `/metrics` says.
 *
 * Errors: answers homing gave itself (`homing_errors_total`) plus member answers with status ≥ 500;
 * a member's errors are its 5xx answers. Latency quantiles are interpolated inside the histogram
 * buckets of `homing_upstream_latency_seconds` (as Prometheus' histogram_quantile does), null for a
 * second without requests. A route's in-flight count is that of the members of its pools (routes
 * that share a pool show the same number).
 */

export const SAMPLE_INTERVAL_MS = 1000;
export const HISTORY_WINDOW_MS = 15 * 60_000;

/** One metric line of the Prometheus text format. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(v: string): string {
  return v.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/** The samples of a Prometheus text exposition (comments and malformed lines skipped). */
export function parsePrometheus(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(LABEL)) labels[l[1]!] = unescapeLabel(l[2]!);
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The directory look-up outcomes `homing_directory_lookups_total` counts. */
export const DIRECTORY_OUTCOMES = ['hit', 'miss', 'coalesced', 'backoff', 'negative', 'stale', 'unavailable'] as const;

/** The cache outcomes `homing_cache_requests_total` counts. */
export const CACHE_OUTCOMES = ['hit', 'miss', 'stale', 'revalidated', 'bypass'] as const;

export type CacheTotals = Record<(typeof CACHE_OUTCOMES)[number], number>;

export interface AffinityTotals {
  hits: number;
  misses: number;
  redirects: number;
  entries: number;
}

export type DirectoryTotals = Record<(typeof DIRECTORY_OUTCOMES)[number], number> & { entries: number; errors: number };

/** Counts since start, as `/metrics` has them at one read. */
export interface Totals {
  /** route → requests proxied (any status), and homing's own errors. */
  routes: Record<string, { requests: number; errors: number }>;
  /** member id → requests it answered, over every route. */
  members: Record<string, { requests: number }>;
  /** homing's own errors by route and code (non-zero only). */
  errors: { route: string; code: string; count: number }[];
  affinity: Record<string, AffinityTotals>;
  directory: Record<string, DirectoryTotals>;
  cache: Record<string, CacheTotals>;
  /** `homing_shared_redis_up` when Redis is configured. */
  sharedRedisUp: number | null;
}

/** What a sample is computed from: counters by route and member, read once. */
interface Counters {
  /** route → member → requests, 5xx answers, latency buckets (cumulative, by bound). */
  cells: Map<string, Map<string, { requests: number; errors5xx: number; buckets: Map<number, number> }>>;
  /** route → homing's own errors */
  homingErrors: Map<string, number>;
  /** member id → in flight (over pools and workers) */
  inflight: Map<string, number>;
}

/** One sample of a series: [requests/s, errors/s, p50 s, p99 s, in flight]; null where unknown. */
export type SampleValues = [number | null, number | null, number | null, number | null, number];

const FIELDS = ['rps', 'eps', 'p50', 'p99', 'inflight'] as const;

/** A fixed-size ring of numbers, NaN standing for "no value". */
class Ring {
  private readonly v: Float64Array;
  private head = 0;
  size = 0;

  constructor(readonly capacity: number, fill = 0) {
    this.v = new Float64Array(capacity).fill(NaN);
    for (let i = 0; i < fill; i++) this.push(NaN);
  }

  push(x: number | null): void {
    this.v[this.head] = x ?? NaN;
    this.head = (this.head + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }

  /** Oldest first; NaN as null; rounded to 4 significant digits (the page draws them). */
  values(): (number | null)[] {
    const out: (number | null)[] = [];
    for (let i = 0; i < this.size; i++) {
      const x = this.v[(this.head - this.size + i + this.capacity) % this.capacity]!;
      out.push(Number.isNaN(x) ? null : round(x));
    }
    return out;
  }
}

function round(x: number): number {
  return x === 0 || !Number.isFinite(x) ? x : Number(x.toPrecision(4));
}

/** A route's or member's five rings. */
class SeriesRings {
  readonly rings: Ring[];
  constructor(capacity: number, fill: number) {
    this.rings = FIELDS.map(() => new Ring(capacity, fill));
  }

  push(s: SampleValues): void {
    s.forEach((x, i) => this.rings[i]!.push(x));
  }

  toJSON(): Record<(typeof FIELDS)[number], (number | null)[]> {
    return Object.fromEntries(FIELDS.map((f, i) => [f, this.rings[i]!.values()])) as Record<(typeof FIELDS)[number], (number | null)[]>;
  }
}

/**
 * The q-quantile of the observations that fell in `delta` (bound → count at or below it, +Inf
 * included as Infinity), interpolated linearly inside its bucket; null without observations.
 */
export function quantile(q: number, delta: Map<number, number>): number | null {
  const bounds = [...delta.keys()].sort((a, b) => a - b);
  const total = delta.get(Infinity) ?? (bounds.length ? delta.get(bounds[bounds.length - 1]!)! : 0);
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const b of bounds) {
    const c = delta.get(b)!;
    if (c >= rank) {
      // Past the last finite bound there is nothing to interpolate: the largest finite bound.
      if (b === Infinity) return prevBound;
      return c === prevCount ? b : prevBound + ((b - prevBound) * (rank - prevCount)) / (c - prevCount);
    }
    prevBound = b;
    prevCount = c;
  }
  return prevBound;
}

/** `cur − prev`, or `cur` when the counter went down (a worker restarted: its counts started again). */
function delta(cur: number, prev: number | undefined): number {
  if (prev === undefined) return cur;
  return cur >= prev ? cur - prev : cur;
}

function sumBuckets(into: Map<number, number>, from: Map<number, number>, prev: Map<number, number> | undefined): void {
  for (const [b, c] of from) into.set(b, (into.get(b) ?? 0) + (prev ? delta(c, prev.get(b)) : c));
}

/** Which routes and members there are now, and which members each route's pools hold. */
export interface Topology {
  routes: readonly { name: string; members: readonly string[] }[];
  /** Every member id of every pool. */
  members: ReadonlySet<string>;
}

export interface Tick {
  t: number;
  routes: Record<string, SampleValues>;
  members: Record<string, SampleValues>;
  totals: Totals;
}

export class History {
  readonly capacity: number;
  private readonly times: Ring;
  private readonly routes = new Map<string, SeriesRings>();
  private readonly members = new Map<string, SeriesRings>();
  private prev: { t: number; counters: Counters } | undefined;

  constructor(readonly interval = SAMPLE_INTERVAL_MS, window = HISTORY_WINDOW_MS) {
    this.capacity = Math.max(2, Math.ceil(window / interval));
    this.times = new Ring(this.capacity);
  }

  /**
   * One sample from the `/metrics` text read at `t` (ms): appended to every series, and returned
   * with the totals. The first sample has no rates (nothing to compare with).
   */
  add(t: number, metricsText: string, topology: Topology): Tick {
    const samples = parsePrometheus(metricsText);
    const counters = countersOf(samples);
    const prev = this.prev;
    const seconds = prev ? (t - prev.t) / 1000 : 0;
    const rate = (n: number): number | null => (seconds > 0 ? n / seconds : null);
    const tick: Tick = { t, routes: {}, members: {}, totals: totalsOf(samples) };

    const byMember = new Map<string, { requests: number; errors: number; buckets: Map<number, number> }>();
    for (const r of topology.routes) {
      let requests = 0;
      let errors = delta(counters.homingErrors.get(r.name) ?? 0, prev?.counters.homingErrors.get(r.name));
      const buckets = new Map<number, number>();
      for (const [member, c] of counters.cells.get(r.name) ?? []) {
        const p = prev?.counters.cells.get(r.name)?.get(member);
        const dReq = delta(c.requests, p?.requests);
        const dErr = delta(c.errors5xx, p?.errors5xx);
        requests += dReq;
        errors += dErr;
        const mb = new Map<number, number>();
        sumBuckets(mb, c.buckets, p?.buckets);
        sumBuckets(buckets, mb, undefined);
        let m = byMember.get(member);
        if (!m) byMember.set(member, (m = { requests: 0, errors: 0, buckets: new Map() }));
        m.requests += dReq;
        m.errors += dErr;
        sumBuckets(m.buckets, mb, undefined);
      }
      let inflight = 0;
      for (const id of r.members) inflight += counters.inflight.get(id) ?? 0;
      tick.routes[r.name] = prev ? [rate(requests), rate(errors), quantile(0.5, buckets), quantile(0.99, buckets), inflight] : [null, null, null, null, inflight];
    }
    for (const id of topology.members) {
      const m = byMember.get(id);
      const inflight = counters.inflight.get(id) ?? 0;
      tick.members[id] = prev && m ? [rate(m.requests), rate(m.errors), quantile(0.5, m.buckets), quantile(0.99, m.buckets), inflight] : [prev ? 0 : null, prev ? 0 : null, null, null, inflight];
    }

    this.times.push(t);
    const fill = this.times.size - 1;
    for (const [name, s] of Object.entries(tick.routes)) this.series(this.routes, name, fill).push(s);
    for (const [id, s] of Object.entries(tick.members)) this.series(this.members, id, fill).push(s);
    // A member that left every pool takes its history with it (as its metric series go).
    for (const id of this.members.keys()) if (!topology.members.has(id)) this.members.delete(id);
    this.prev = { t, counters };
    return tick;
  }

  private series(map: Map<string, SeriesRings>, key: string, fill: number): SeriesRings {
    let s = map.get(key);
    if (!s) map.set(key, (s = new SeriesRings(this.capacity, fill)));
    return s;
  }

  /** Every series, oldest sample first: what a dashboard that just connected draws. */
  toJSON(): { interval: number; capacity: number; times: (number | null)[]; routes: Record<string, unknown>; members: Record<string, unknown> } {
    return {
      interval: this.interval,
      capacity: this.capacity,
      times: this.times.values().map((t) => (t === null ? null : Math.round(t))),
      routes: Object.fromEntries([...this.routes].map(([k, s]) => [k, s.toJSON()])),
      members: Object.fromEntries([...this.members].map(([k, s]) => [k, s.toJSON()])),
    };
  }
}

function countersOf(samples: readonly PromSample[]): Counters {
  const c: Counters = { cells: new Map(), homingErrors: new Map(), inflight: new Map() };
  const cell = (route: string, member: string) => {
    let byMember = c.cells.get(route);
    if (!byMember) c.cells.set(route, (byMember = new Map()));
    let x = byMember.get(member);
    if (!x) byMember.set(member, (x = { requests: 0, errors5xx: 0, buckets: new Map() }));
    return x;
  };
  for (const s of samples) {
    const { route, member } = s.labels;
    if (s.name === 'homing_requests_total' && route !== undefined && member !== undefined) {
      const x = cell(route, member);
      x.requests += s.value;
      if (Number(s.labels.status) >= 500) x.errors5xx += s.value;
    } else if (s.name === 'homing_upstream_latency_seconds_bucket' && route !== undefined && member !== undefined) {
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      const b = cell(route, member).buckets;
      b.set(le, (b.get(le) ?? 0) + s.value);
    } else if (s.name === 'homing_errors_total' && route !== undefined) {
      c.homingErrors.set(route, (c.homingErrors.get(route) ?? 0) + s.value);
    } else if (s.name === 'homing_member_inflight' && member !== undefined) {
      c.inflight.set(member, (c.inflight.get(member) ?? 0) + s.value);
    }
  }
  return c;
}

function totalsOf(samples: readonly PromSample[]): Totals {
  const t: Totals = { routes: {}, members: {}, errors: [], affinity: {}, directory: {}, cache: {}, sharedRedisUp: null };
  const route = (name: string) => (t.routes[name] ??= { requests: 0, errors: 0 });
  const affinity = (name: string) => (t.affinity[name] ??= { hits: 0, misses: 0, redirects: 0, entries: 0 });
  const directory = (name: string) =>
    (t.directory[name] ??= { ...(Object.fromEntries(DIRECTORY_OUTCOMES.map((o) => [o, 0])) as Record<(typeof DIRECTORY_OUTCOMES)[number], number>), entries: 0, errors: 0 });
  for (const s of samples) {
    const r = s.labels.route;
    switch (s.name) {
      case 'homing_requests_total':
        if (r === undefined || s.labels.member === undefined) break;
        route(r).requests += s.value;
        (t.members[s.labels.member] ??= { requests: 0 }).requests += s.value;
        break;
      case 'homing_errors_total':
        if (r === undefined) break;
        route(r).errors += s.value;
        if (s.value > 0) t.errors.push({ route: r, code: s.labels.code ?? '', count: s.value });
        break;
      case 'homing_affinity_hits_total':
        if (r !== undefined) affinity(r).hits += s.value;
        break;
      case 'homing_affinity_misses_total':
        if (r !== undefined) affinity(r).misses += s.value;
        break;
      case 'homing_redirects_total':
        if (r !== undefined) affinity(r).redirects += s.value;
        break;
      case 'homing_affinity_entries':
        if (r !== undefined) affinity(r).entries = s.value;
        break;
      case 'homing_directory_lookups_total': {
        const o = s.labels.outcome as (typeof DIRECTORY_OUTCOMES)[number] | undefined;
        if (r !== undefined && o !== undefined && DIRECTORY_OUTCOMES.includes(o)) directory(r)[o] += s.value;
        break;
      }
      case 'homing_directory_errors_total':
        if (r !== undefined) directory(r).errors += s.value;
        break;
      case 'homing_directory_entries':
        if (r !== undefined) directory(r).entries = s.value;
        break;
      case 'homing_cache_requests_total': {
        const o = s.labels.outcome as (typeof CACHE_OUTCOMES)[number] | undefined;
        if (r !== undefined && o !== undefined && CACHE_OUTCOMES.includes(o)) (t.cache[r] ??= { hit: 0, miss: 0, stale: 0, revalidated: 0, bypass: 0 })[o] += s.value;
        break;
      }
      case 'homing_shared_redis_up':
        t.sharedRedisUp = s.value;
        break;
    }
  }
  return t;
}
