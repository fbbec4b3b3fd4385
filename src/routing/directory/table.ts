/**
 * The cache in front of a directory: key (e.g. a tenant's Host) → the pool name or `host:port`
 * the directory says holds it. Pure logic plus one timer per directory call; the directory itself
 * is an injected `DirectorySource` (HTTP and Redis ones live in src/directory/).
 *
 * A request is answered synchronously whenever the cache can answer it: a fresh entry, a cached
 * negative answer, a seed or manual entry, or — while the directory is failing and backing off —
 * a stale entry or `unavailable`. Only a miss or an expired entry, with the directory reachable as
 * far as the table knows, returns a promise, and that promise settles within `timeout` and never
 * rejects.
 *
 * - One call per key at a time: concurrent misses share the call and the answer (single flight).
 * - Refresh-ahead: a hit on an entry past `refreshAhead` of its life starts one background call,
 *   so a hot key is renewed before it expires and its requests never wait.
 * - Stale-if-error: when a call fails (error, timeout, bad answer), an entry that expired less
 *   than `staleIfError` ago is served, marked stale. Negative answers are never served stale: a
 *   key the directory did not know may have been created since, so `unavailable` is the honest
 *   answer.
 * - Back-off: a directory that errors or times out is not asked again for a while (half of
 *   `min·2^(n−1)` to all of it, capped at `max`, after n failures in a row); meanwhile requests are
 *   answered at once from what is cached, and once the delay is over a single call (a probe) goes
 *   through at a time until one succeeds. Failures of calls already in flight when a failure was
 *   counted count once, so a burst of timeouts is one failure, not a jump to the longest delay.
 *   Failures that concern one key only (a bad answer, a key the source refuses, a value `validate`
 *   rejects) do not back off: the directory answered, and other keys must not suffer for one.
 * - Seed and manual entries are pins: they never expire and never reach the directory (so the
 *   directory never replaces them); they are not counted in `capacity` nor evicted.
 */
import { systemClock, type Clock } from '../../clock.js';

/** What a directory says of a key: its holder (with an optional lifetime, ms), or "no such key". */
export type DirectoryAnswer = { found: string; ttl?: number } | { unknown: true };

export interface DirectorySource {
  /**
   * Ask the directory. Resolves `{ found: value, ttl? }` (value = the raw answer: a pool name or
   * `host:port`; ttl in ms when the directory gave one, 0 = "do not cache") or `{ unknown: true }`
   * (the directory has no such key); rejects on error, timeout or a garbage answer. Rejecting with
   * a `DirectoryKeyError` says the failure concerns this key only (no back-off). Must stop work
   * when `signal` aborts (the table's timeout, or close()).
   */
  lookup(key: string, signal: AbortSignal): Promise<DirectoryAnswer>;
}

/**
 * A failure that concerns one key, not the directory's health: `bad-answer` (the directory
 * answered something that is neither a pool name, a `host:port` nor one of the JSON forms) or
 * `bad-key` (the source cannot ask for this key, e.g. too long). `value` is the offending answer
 * (cut to 200 characters) for `bad-answer`.
 */
export class DirectoryKeyError extends Error {
  constructor(
    readonly reason: 'bad-answer' | 'bad-key',
    message: string,
    readonly value?: string,
  ) {
    super(message);
    this.name = 'DirectoryKeyError';
  }
}

/**
 * Why a directory call failed: `error` (unreachable, HTTP 5xx, Redis down, a source that throws),
 * `timeout` (no answer within `timeout`), `bad-answer`, `bad-key` (see DirectoryKeyError), or
 * `invalid` (the answer is well-formed but `validate` refused it: no such pool or member).
 */
export type DirectoryFailure = 'error' | 'timeout' | 'bad-answer' | 'bad-key' | 'invalid';

/** Why a request got `unavailable`: its own call's failure, `backoff` (not asked: the directory is failing) or `closed`. */
export type UnavailableReason = DirectoryFailure | 'backoff' | 'closed';

/**
 * One look-up's answer. Result objects are shared (a cached entry returns the same object on every
 * hit, and every waiter of one call gets the same object): treat them as read-only.
 */
export type DirectoryResult =
  | { readonly kind: 'found'; readonly value: string; readonly stale: boolean }
  /** The directory has no such key (cached for `negativeTtl`). */
  | { readonly kind: 'unknown' }
  /** The directory is down, slow or answered garbage, and nothing usable is cached. */
  | { readonly kind: 'unavailable'; readonly reason: UnavailableReason; readonly message: string };

/**
 * Counters of the table. Each get() counts exactly one of `hit` (answered from a fresh entry, a
 * cached negative answer or a pin), `miss` (started a directory call), `coalesced` (waited on a
 * call already in flight) or `backoff` (not asked: the directory is backing off); then, by what it
 * answered, at most one of `negative`, `stale` or `unavailable` (none for a fresh found value).
 * Per directory call: `latency` once it settles (or times out), `error` when it failed,
 * `refresh` when it was a background refresh-ahead. `entries` is a gauge (directory-learned
 * entries, positive and negative, plus pins), reported after every change.
 */
export interface DirectoryObserver {
  hit(): void;
  miss(): void;
  coalesced(): void;
  backoff(): void;
  negative(): void;
  stale(): void;
  unavailable(reason: UnavailableReason): void;
  refresh(): void;
  /** `value`: the rejected answer, for `invalid` and `bad-answer`. The key is the client's: log it with care. */
  error(reason: DirectoryFailure, key: string, value?: string): void;
  latency(seconds: number): void;
  entries(count: number): void;
}

export interface DirectoryTableOptions {
  source: DirectorySource;
  /** Time source for TTLs and back-off; tests pass a ManualClock. Default: the system clock. */
  clock?: Clock;
  /** Lifetime of a found answer, ms, unless the source gives one (config `ttl`, default 5 min). */
  ttl?: number;
  /** Lifetime of a "no such key" answer, ms (config `negativeTtl`, default 10 s). */
  negativeTtl?: number;
  /** How long after expiry a found answer may still be served while the directory fails, ms (config `staleIfError`, default 1 h). */
  staleIfError?: number;
  /**
   * Fraction of an entry's life after which a hit starts one background refresh (0..1, default
   * 0.8); the hit itself is answered from the cache at once. 1 turns refresh-ahead off.
   */
  refreshAhead?: number;
  /** Most directory-learned entries kept (default 100 000); the least recently used goes first. Pins do not count. */
  capacity?: number;
  /** Deadline of one directory call, ms (config `lookup.timeout`, default 500). The call is aborted through its signal. */
  timeout?: number;
  /** Back-off after directory failures, ms: first delay `min` (default 100), doubling up to `max` (default 10 000), with jitter. */
  backoff?: { min?: number; max?: number };
  /**
   * Whether an answer names something the route can use (a known pool or member). A found answer
   * it refuses is a failure `invalid`: not cached, a stale entry served if any. set() and seed()
   * throw for values it refuses.
   */
  validate?(value: string): boolean;
  observer?: DirectoryObserver;
}

export type DirectoryEntrySource = 'directory' | 'seed' | 'manual';

/** What the table holds for a key (admin look-ups). */
export interface DirectoryEntryInfo {
  /** The pool name or `host:port`; null for a cached "no such key" answer. */
  value: string | null;
  source: DirectoryEntrySource;
  /** ms until the entry expires (≤ 0: expired, kept for staleIfError); null for seed and manual entries, which never expire. */
  expiresIn: number | null;
  /** Expired: served only while the directory fails. */
  stale: boolean;
}

interface Entry {
  readonly key: string;
  /** undefined: the directory said "no such key". */
  value: string | undefined;
  source: DirectoryEntrySource;
  /** Seed or manual: never expires, not in the LRU list. */
  pinned: boolean;
  /** Clock ms; Infinity for pins. */
  expires: number;
  /** Clock ms after which a hit starts a background refresh; Infinity: none (pins, or one already tried). */
  refreshAt: number;
  /** The result a hit returns (built once per value). */
  fresh: DirectoryResult;
  /** The stale variant, built the first time it is served. */
  staleResult: DirectoryResult | undefined;
  /** LRU links: `prev` towards the least recently used. */
  prev: Entry | undefined;
  next: Entry | undefined;
}

/** A directory call in flight. */
interface Call {
  readonly promise: Promise<DirectoryResult>;
  /** set()/delete()/seed() touched the key meanwhile: the answer is returned but not stored. */
  forgotten: boolean;
  /** Ends the call now with this outcome (close()). */
  cancel(outcome: Outcome): void;
}

type Outcome = { answer: DirectoryAnswer } | { failure: DirectoryFailure; message: string; value?: string };

const UNKNOWN: DirectoryResult = Object.freeze({ kind: 'unknown' });
const CLOSED: DirectoryResult = Object.freeze({ kind: 'unavailable', reason: 'closed', message: 'directory table closed' });
const NOOP = (): void => {};
const NO_OBSERVER: DirectoryObserver = {
  hit: NOOP,
  miss: NOOP,
  coalesced: NOOP,
  backoff: NOOP,
  negative: NOOP,
  stale: NOOP,
  unavailable: NOOP,
  refresh: NOOP,
  error: NOOP,
  latency: NOOP,
  entries: NOOP,
};

function found(value: string, stale: boolean): DirectoryResult {
  return Object.freeze({ kind: 'found', value, stale });
}

/** For messages and observers: answers are short, garbage may not be. */
function cut(s: string, n = 200): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

function nonNegative(name: string, v: number): number {
  if (!Number.isFinite(v) || v < 0) throw new Error(`DirectoryTable: ${name} must be a finite number >= 0, got ${v}`);
  return v;
}

export class DirectoryTable {
  readonly ttl: number;
  readonly negativeTtl: number;
  readonly staleIfError: number;
  readonly refreshAheadFraction: number;
  readonly capacity: number;
  readonly timeout: number;
  private readonly source: DirectorySource;
  private readonly clock: Clock;
  private readonly validate: ((value: string) => boolean) | undefined;
  private readonly obs: DirectoryObserver;
  private readonly backoffMin: number;
  private readonly backoffMax: number;

  private readonly map = new Map<string, Entry>();
  /** Directory-learned entries (the LRU list's length). */
  private learned = 0;
  /** LRU list ends: `head` is the least recently used. */
  private head: Entry | undefined;
  private tail: Entry | undefined;
  private readonly calls = new Map<string, Call>();
  /** The last seed (manual entries shadow some of it; deleting one brings the seed's value back). */
  private seedValues = new Map<string, string>();

  /** Directory failures in a row (0: healthy). */
  private failures = 0;
  /** Counted failures so far; a call remembers it at start, so calls overlapping one outage count once. */
  private failureEpoch = 0;
  /** Clock ms before which no call is made (while failures > 0). */
  private retryAt = 0;
  /** A probe is in flight (failures > 0): no other call starts. */
  private probing = false;
  private backoffResult: DirectoryResult = Object.freeze({ kind: 'unavailable', reason: 'backoff', message: 'directory failing' });
  private closed = false;

  constructor(opts: DirectoryTableOptions) {
    this.source = opts.source;
    this.clock = opts.clock ?? systemClock;
    this.ttl = nonNegative('ttl', opts.ttl ?? 300_000);
    this.negativeTtl = nonNegative('negativeTtl', opts.negativeTtl ?? 10_000);
    this.staleIfError = nonNegative('staleIfError', opts.staleIfError ?? 3_600_000);
    this.refreshAheadFraction = nonNegative('refreshAhead', opts.refreshAhead ?? 0.8);
    if (this.refreshAheadFraction > 1) throw new Error(`DirectoryTable: refreshAhead is a fraction of the ttl (0..1), got ${this.refreshAheadFraction}`);
    this.capacity = opts.capacity ?? 100_000;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) throw new Error(`DirectoryTable: capacity must be an integer >= 1, got ${this.capacity}`);
    this.timeout = nonNegative('timeout', opts.timeout ?? 500);
    if (this.timeout === 0) throw new Error('DirectoryTable: timeout must be > 0');
    this.backoffMin = nonNegative('backoff.min', opts.backoff?.min ?? 100);
    this.backoffMax = Math.max(this.backoffMin, nonNegative('backoff.max', opts.backoff?.max ?? 10_000));
    this.validate = opts.validate;
    this.obs = opts.observer ?? NO_OBSERVER;
  }

  /** Entries held: directory-learned (positive and negative, stale included) plus pins. */
  get size(): number {
    return this.map.size;
  }

  /**
   * The holder of `key`. Synchronous when the cache can answer (fresh, negative, pinned, or stale
   * / unavailable while the directory backs off); otherwise a promise that settles within
   * `timeout` and never rejects.
   */
  get(key: string): DirectoryResult | Promise<DirectoryResult> {
    const e = this.map.get(key);
    if (e !== undefined) {
      if (e.pinned) {
        this.obs.hit();
        return e.fresh;
      }
      const now = this.clock.now();
      if (now < e.expires) {
        this.touch(e);
        if (now >= e.refreshAt) this.refreshAhead(e, now);
        this.obs.hit();
        if (e.value === undefined) this.obs.negative();
        return e.fresh;
      }
      return this.expired(e, now);
    }
    return this.ask(key, this.clock.now(), undefined);
  }

  /** What is held for `key`, without touching LRU order or starting anything. Undefined: nothing usable. */
  peek(key: string): DirectoryEntryInfo | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    if (e.pinned) return { value: e.value ?? null, source: e.source, expiresIn: null, stale: false };
    const left = e.expires - this.clock.now();
    if (left <= 0 && (e.value === undefined || -left >= this.staleIfError)) return undefined;
    return { value: e.value ?? null, source: e.source, expiresIn: left, stale: left <= 0 };
  }

  /**
   * Pin `key` to `value` (an operator's PUT, or one seed entry). Pins never expire and are never
   * asked of the directory; they stay until replaced or deleted. A manual pin shadows the seed's
   * value for the key; seed() does not override it. Throws when `validate` refuses the value.
   */
  set(key: string, value: string, source: 'manual' | 'seed' = 'manual'): void {
    this.check([[key, value]], 'set');
    if (source === 'seed') this.seedValues.set(key, value);
    this.pin(key, value, source);
    this.obs.entries(this.map.size);
  }

  /**
   * Forget `key`, whatever its source; an answer in flight for it is not stored. Deleting a manual
   * pin brings the seed's value back when the seed lists the key; a deleted seed entry comes back
   * with the next seed() that lists it. Returns whether anything was held.
   */
  delete(key: string): boolean {
    this.forget(key);
    const e = this.map.get(key);
    if (e === undefined) return false;
    const seeded = this.seedValues.get(key);
    if (e.source === 'manual' && seeded !== undefined) {
      this.pin(key, seeded, 'seed');
    } else {
      if (e.source === 'seed') this.seedValues.delete(key);
      this.remove(e);
    }
    this.obs.entries(this.map.size);
    return true;
  }

  /**
   * Replace the seed: entries of the previous seed that `entries` no longer lists are removed,
   * the others pinned to their new values (replacing directory-learned entries; manual pins win).
   * Atomic: throws without changing anything when `validate` refuses a value.
   */
  seed(entries: ReadonlyMap<string, string>): void {
    this.check(entries, 'seed');
    for (const key of this.seedValues.keys()) {
      if (entries.has(key)) continue;
      const e = this.map.get(key);
      if (e?.source === 'seed') {
        this.forget(key);
        this.remove(e);
      }
    }
    for (const [key, value] of entries) {
      if (this.map.get(key)?.source !== 'manual') this.pin(key, value, 'seed');
    }
    this.seedValues = new Map(entries);
    this.obs.entries(this.map.size);
  }

  /** Abort every call in flight (their requests get `unavailable`, reason `closed`); later misses are not asked. Entries stay readable. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const call of [...this.calls.values()]) call.cancel({ failure: 'error', message: 'directory table closed' });
  }

  // ——— look-ups ———

  private expired(e: Entry, now: number): DirectoryResult | Promise<DirectoryResult> {
    if (e.value !== undefined && now - e.expires < this.staleIfError) return this.ask(e.key, now, e);
    // Past any use: drop it now rather than wait for LRU eviction.
    this.remove(e);
    this.obs.entries(this.map.size);
    return this.ask(e.key, now, undefined);
  }

  /** A miss or an expired entry (`stale`: still servable if the directory fails). */
  private ask(key: string, now: number, stale: Entry | undefined): DirectoryResult | Promise<DirectoryResult> {
    const inflight = this.calls.get(key);
    if (inflight !== undefined) {
      this.obs.coalesced();
      return inflight.promise.then(this.account);
    }
    if (this.closed) {
      this.obs.unavailable('closed');
      return CLOSED;
    }
    if (!this.mayCall(now)) {
      this.obs.backoff();
      if (stale !== undefined) {
        this.touch(stale);
        this.obs.stale();
        return this.staleOf(stale);
      }
      this.obs.unavailable('backoff');
      return this.backoffResult;
    }
    this.obs.miss();
    return this.call(key, now).promise.then(this.account);
  }

  /** Counts what a request that waited got. */
  private readonly account = (r: DirectoryResult): DirectoryResult => {
    if (r.kind === 'unknown') this.obs.negative();
    else if (r.kind === 'unavailable') this.obs.unavailable(r.reason);
    else if (r.stale) this.obs.stale();
    return r;
  };

  private refreshAhead(e: Entry, now: number): void {
    if (this.closed || this.calls.has(e.key) || !this.mayCall(now)) return;
    // One attempt per stored answer: a failed refresh leaves the entry to expire normally rather
    // than retry on every hit.
    e.refreshAt = Infinity;
    this.obs.refresh();
    this.call(e.key, now);
  }

  private mayCall(now: number): boolean {
    return this.failures === 0 || (!this.probing && now >= this.retryAt);
  }

  /** Starts one directory call for `key`; its promise settles within `timeout` and never rejects. */
  private call(key: string, started: number): Call {
    const probe = this.failures > 0;
    if (probe) this.probing = true;
    const epoch = this.failureEpoch;
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let finish!: (o: Outcome) => void;
    const promise = new Promise<DirectoryResult>((resolve) => {
      finish = (o) => {
        if (timer === undefined) return; // settled already
        clearTimeout(timer);
        timer = undefined;
        if (this.calls.get(key) === call) this.calls.delete(key);
        if (probe) this.probing = false;
        resolve(this.settle(key, o, started, epoch, call.forgotten));
        if ('failure' in o) abort(ac, o.message);
      };
    });
    const call: Call = { promise, forgotten: false, cancel: (o) => finish(o) };
    this.calls.set(key, call);
    timer = setTimeout(() => finish({ failure: 'timeout', message: `the directory did not answer within ${this.timeout} ms` }), this.timeout);
    let pending: Promise<DirectoryAnswer>;
    try {
      pending = Promise.resolve(this.source.lookup(key, ac.signal));
    } catch (err) {
      finish(failureOf(err));
      return call;
    }
    pending.then(
      (answer) => finish(answerOf(answer)),
      (err: unknown) => finish(failureOf(err)),
    );
    return call;
  }

  private settle(key: string, o: Outcome, started: number, epoch: number, forgotten: boolean): DirectoryResult {
    const now = this.clock.now();
    this.obs.latency(Math.max(0, now - started) / 1000);
    if (this.closed) return CLOSED;
    if ('answer' in o) {
      const a = o.answer;
      if (!('found' in a)) {
        this.succeeded();
        return this.store(key, undefined, this.negativeTtl, now, forgotten);
      }
      if (this.accepts(a.found)) {
        this.succeeded();
        return this.store(key, a.found, a.ttl ?? this.ttl, now, forgotten);
      }
      o = { failure: 'invalid', message: `the directory answered "${cut(a.found)}", which names no known pool or member`, value: cut(a.found) };
    }
    this.obs.error(o.failure, key, o.value);
    if (o.failure === 'error' || o.failure === 'timeout') this.failed(o.message, epoch, now);
    const e = this.map.get(key);
    if (e !== undefined && e.value !== undefined) {
      // A pin set meanwhile, or a failed refresh-ahead: the entry is still good.
      if (now < e.expires) return e.fresh;
      if (now - e.expires < this.staleIfError) return this.staleOf(e);
    }
    return Object.freeze({ kind: 'unavailable', reason: o.failure, message: o.message });
  }

  private accepts(value: string): boolean {
    if (this.validate === undefined) return true;
    try {
      return this.validate(value);
    } catch {
      return false;
    }
  }

  /**
   * Keeps a directory answer for `ttl` ms. ttl 0 means "do not cache": the answer is returned to
   * the requests that asked, and any entry held for the key is dropped (it is no longer right).
   */
  private store(key: string, value: string | undefined, ttl: number, now: number, forgotten: boolean): DirectoryResult {
    let e = this.map.get(key);
    const result = value === undefined ? UNKNOWN : e?.value === value ? e.fresh : found(value, false);
    if (forgotten || e?.pinned) return result;
    if (ttl <= 0) {
      if (e !== undefined) {
        this.remove(e);
        this.obs.entries(this.map.size);
      }
      return result;
    }
    const refreshAt = this.refreshAheadFraction < 1 ? now + ttl * this.refreshAheadFraction : Infinity;
    if (e !== undefined) {
      if (e.value !== value) e.staleResult = undefined;
      e.value = value;
      e.fresh = result;
      e.expires = now + ttl;
      e.refreshAt = refreshAt;
      this.touch(e);
      return result;
    }
    e = { key, value, source: 'directory', pinned: false, expires: now + ttl, refreshAt, fresh: result, staleResult: undefined, prev: undefined, next: undefined };
    this.map.set(key, e);
    this.link(e);
    while (this.learned > this.capacity && this.head !== undefined) this.remove(this.head);
    this.obs.entries(this.map.size);
    return result;
  }

  private staleOf(e: Entry): DirectoryResult {
    return (e.staleResult ??= found(e.value!, true));
  }

  // ——— back-off ———

  private succeeded(): void {
    this.failures = 0;
    this.retryAt = 0;
  }

  private failed(message: string, epoch: number, now: number): void {
    if (epoch !== this.failureEpoch) return; // in flight when an earlier failure was counted: same outage
    this.failureEpoch++;
    this.failures++;
    const base = Math.min(this.backoffMin * 2 ** Math.min(this.failures - 1, 30), this.backoffMax);
    const delay = base / 2 + (Math.random() * base) / 2;
    this.retryAt = now + delay;
    this.backoffResult = Object.freeze({
      kind: 'unavailable',
      reason: 'backoff',
      message: `the directory is failing (${this.failures} in a row, last: ${message}); next attempt in at most ${Math.ceil(delay)} ms`,
    });
  }

  // ——— entries ———

  private check(entries: Iterable<readonly [string, string]>, op: string): void {
    const bad: string[] = [];
    for (const [key, value] of entries) {
      if (typeof key !== 'string' || key === '' || typeof value !== 'string' || value === '') throw new Error(`directory ${op}: keys and values must be non-empty strings`);
      if (!this.accepts(value)) bad.push(`${JSON.stringify(cut(key, 60))} → ${JSON.stringify(cut(value, 60))}`);
    }
    if (bad.length > 0) throw new Error(`directory ${op}: ${bad.length} entr${bad.length === 1 ? 'y names' : 'ies name'} no known pool or member: ${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ', …' : ''}`);
  }

  private pin(key: string, value: string, source: 'manual' | 'seed'): void {
    this.forget(key);
    const e = this.map.get(key);
    if (e === undefined) {
      this.map.set(key, { key, value, source, pinned: true, expires: Infinity, refreshAt: Infinity, fresh: found(value, false), staleResult: undefined, prev: undefined, next: undefined });
      return;
    }
    if (!e.pinned) this.unlink(e);
    if (e.value !== value) {
      e.value = value;
      e.fresh = found(value, false);
      e.staleResult = undefined;
    }
    e.source = source;
    e.pinned = true;
    e.expires = Infinity;
    e.refreshAt = Infinity;
  }

  /** A call in flight for `key` must not store its answer. */
  private forget(key: string): void {
    const call = this.calls.get(key);
    if (call !== undefined) call.forgotten = true;
  }

  private remove(e: Entry): void {
    if (!e.pinned) this.unlink(e);
    this.map.delete(e.key);
  }

  private link(e: Entry): void {
    e.prev = this.tail;
    e.next = undefined;
    if (this.tail !== undefined) this.tail.next = e;
    else this.head = e;
    this.tail = e;
    this.learned++;
  }

  private unlink(e: Entry): void {
    if (e.prev !== undefined) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next !== undefined) e.next.prev = e.prev;
    else this.tail = e.prev;
    e.prev = e.next = undefined;
    this.learned--;
  }

  /** Most recently used now. */
  private touch(e: Entry): void {
    if (e === this.tail) return;
    this.unlink(e);
    this.link(e);
  }
}

function abort(ac: AbortController, message: string): void {
  try {
    ac.abort(new Error(message));
  } catch {
    /* a source's abort listener threw: nothing to do, the call is over */
  }
}

/** A source's resolved value, checked: anything but the two documented forms is a bad answer. */
function answerOf(a: unknown): Outcome {
  if (a !== null && typeof a === 'object') {
    const o = a as { found?: unknown; ttl?: unknown; unknown?: unknown };
    if (o.unknown === true) return { answer: { unknown: true } };
    if (typeof o.found === 'string' && o.found !== '') {
      if (o.ttl === undefined) return { answer: { found: o.found } };
      if (typeof o.ttl === 'number' && Number.isFinite(o.ttl) && o.ttl >= 0) return { answer: { found: o.found, ttl: o.ttl } };
    }
  }
  return { failure: 'bad-answer', message: 'the directory source returned neither { found } nor { unknown }' };
}

function failureOf(err: unknown): Outcome {
  if (err instanceof DirectoryKeyError) return { failure: err.reason, message: err.message, ...(err.value === undefined ? {} : { value: err.value }) };
  return { failure: 'error', message: err instanceof Error ? err.message : String(err) };
}
