/**
 * `discovery: { etcd: { endpoints, prefix, username?, password?, tls? } }`: members are the values
 * of the keys under `prefix` in etcd (v3 API), one member per key:
 *
 *   /homing/pools/docs/a  →  {"address": "10.0.0.7:8080", "weight": 2}
 *   /homing/pools/docs/b  →  10.0.0.8:8080
 *
 * A value is `{ address, weight }` in JSON or a bare `host:port` (the same rules as the config's
 * `members`). A bad value is skipped, not fatal: the other keys still make the pool, and the
 * problem goes to `onError` once (again only when that key's value changes and is still bad).
 *
 * The prefix is read whole at start (`start` rejects when etcd cannot be read), then watched: a
 * change under it reads the prefix again (reads coalesce, so a burst of changes costs one or two
 * reads, and a list built from a read cannot drift from etcd the way applied events could). When
 * etcd goes away the last good list stays; the client reconnects by itself with back-off, and
 * every (re)connection of the watch reads the prefix afresh, so nothing missed meanwhile is lost.
 * A slow periodic read (`resyncMs`) is a backstop for a stream that stalls without an error.
 *
 * An empty prefix is an empty pool: etcd answered, and nothing is registered.
 */
import type { Etcd3, Watcher } from 'etcd3';
import type { MemberSpec } from '../members/pool.js';
import { createEtcdClient, type EtcdConnection } from './etcd-client.js';
import { parseMemberEntry, ReloadingSource } from './source.js';

export interface EtcdSourceOptions extends EtcdConnection {
  /** Key prefix; every key under it is one member. */
  prefix: string;
  /** Period of a full read besides the watch, in ms (0: none). Default 60s. */
  resyncMs?: number;
}

/** First and longest pause before a watch etcd cancelled (compacted history, permissions) is opened again. */
const REWATCH_MIN_MS = 500;
const REWATCH_MAX_MS = 30_000;

/** One etcd value as a member: JSON `{ address, weight }` (or a JSON string), else a bare `host:port`. */
export function parseEtcdMember(value: string, where: string): MemberSpec {
  const text = value.trim();
  if (text === '') throw new Error(`${where}: empty value (expected "host:port" or {"address": …, "weight": …})`);
  let entry: unknown = text;
  if (text.startsWith('{') || text.startsWith('"')) {
    try {
      entry = JSON.parse(text);
    } catch (e) {
      throw new Error(`${where}: invalid JSON: ${(e as Error).message}`, { cause: e });
    }
  }
  return parseMemberEntry(entry, where);
}

export class EtcdSource extends ReloadingSource {
  private client: Etcd3 | undefined;
  private watcher: Watcher | undefined;
  private rewatchTimer: NodeJS.Timeout | undefined;
  private rewatchMs = REWATCH_MIN_MS;
  private report: ((err: Error) => void) | undefined;
  /** Keys whose value was skipped, with the message reported for it. */
  private readonly skipped = new Map<string, string>();
  /** The watch is down and that was reported (once per outage). */
  private watchDown = false;

  constructor(private readonly opts: EtcdSourceOptions) {
    if (opts.prefix === '') throw new Error('discovery.etcd: prefix must not be empty (it would watch every key)');
    if (opts.endpoints.length === 0) throw new Error('discovery.etcd: endpoints must name at least one host:port');
    super(opts.resyncMs ?? 60_000);
  }

  private get where(): string {
    return `discovery etcd ${this.opts.prefix}`;
  }

  override async start(onMembers: (specs: MemberSpec[]) => void, onError: (err: Error) => void): Promise<void> {
    this.report = onError;
    this.client ??= await createEtcdClient(this.opts);
    await super.start(onMembers, onError);
  }

  protected async load(): Promise<MemberSpec[]> {
    let kvs;
    try {
      ({ kvs } = await this.client!.getAll().prefix(this.opts.prefix).exec());
    } catch (e) {
      throw new Error(`${this.where}: ${(e as Error).message}`, { cause: e });
    }
    const specs: MemberSpec[] = [];
    const bad = new Map<string, string>();
    for (const kv of kvs) {
      const key = kv.key.toString('utf8');
      try {
        specs.push(parseEtcdMember(kv.value.toString('utf8'), `discovery etcd ${key}`));
      } catch (e) {
        bad.set(key, `${(e as Error).message} (value skipped)`);
      }
    }
    if (!this.stopped) this.noteSkipped(bad);
    return specs;
  }

  /** Report each newly bad value once; forget keys that were fixed or removed. */
  private noteSkipped(bad: Map<string, string>): void {
    for (const key of [...this.skipped.keys()]) if (!bad.has(key)) this.skipped.delete(key);
    for (const [key, message] of bad) {
      if (this.skipped.get(key) === message) continue;
      this.skipped.set(key, message);
      this.report?.(new Error(message));
    }
  }

  protected override afterStart(): void {
    this.watch();
  }

  private watch(): void {
    if (this.stopped) return;
    const w = this.client!.watch().prefix(this.opts.prefix).watcher();
    this.watcher = w;
    w.on('connected', () => {
      this.watchDown = false;
      this.rewatchMs = REWATCH_MIN_MS;
      // The first attach closes the gap since the initial read; a re-attach, an outage.
      void this.refresh();
    });
    w.on('data', (res) => {
      if (res.events.length > 0) void this.refresh();
    });
    w.on('disconnected', (err) => {
      // The client would resume the watch after the last revision it saw; the read on reconnection
      // makes that replay needless, and it would go wrong against an etcd that came back with
      // another history (restored, or rebuilt empty: its revisions start again below ours, and
      // changes would be skipped until they passed the old number). Watch from the present.
      delete w.request.start_revision;
      if (this.stopped || this.watchDown) return;
      this.watchDown = true;
      this.report?.(new Error(`${this.where}: watch lost (${err.message}); reconnecting, the last good list stays`, { cause: err }));
    });
    w.on('error', (err) => {
      // etcd cancelled the watch (its history was compacted while we were away, or a permission
      // was revoked): the client gives it up, so open a new one after a pause.
      if (this.stopped || w !== this.watcher) return;
      this.watcher = undefined;
      this.report?.(new Error(`${this.where}: watch cancelled (${err.message}); watching again in ${this.rewatchMs}ms`, { cause: err }));
      this.rewatchTimer = setTimeout(() => this.watch(), this.rewatchMs);
      this.rewatchTimer.unref();
      this.rewatchMs = Math.min(this.rewatchMs * 2, REWATCH_MAX_MS);
    });
  }

  protected override async beforeStop(): Promise<void> {
    clearTimeout(this.rewatchTimer);
    const w = this.watcher;
    this.watcher = undefined;
    if (w) {
      w.removeAllListeners();
      w.on('error', () => {});
      // Cancelling waits for etcd's answer; with etcd away it would wait for its return.
      await Promise.race([w.cancel().catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())]);
    }
    this.client?.close();
  }
}
