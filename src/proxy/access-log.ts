/**
 * The access log: one line per request, JSON (the configured fields, in order) or nginx's
 * `combined`, handed to a pino destination (sonic-boom) with `sync: false` — the request never
 * waits for the disk. Lines are gathered and handed over every 100 ms (or 64 KiB): a write per
 * line would cost a system call per request, far more than the line itself. A line is
 * built by string concatenation from a reused entry (no object or JSON.stringify per request).
 * `reopen` reopens a log file at its path (logrotate's SIGUSR1).
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino } from 'pino';
import { DEFAULT_ACCESS_LOG_FIELDS, type AccessLogConfig, type AccessLogField } from '../config/schema.js';

/** What one line says of a request; the log phase fills the log's one entry, then writes it. */
export class AccessEntry {
  /** performance.now() when the request arrived. */
  begun = 0;
  requestId: string | undefined;
  traceId: string | undefined;
  client = '';
  method = '';
  /** Path without the query, and the target with it. */
  path = '';
  uri = '';
  httpMinor = 1;
  status = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Time with the members (first attempt sent → last answer's end), ms; negative: none. */
  upstreamMs = -1;
  route: string | undefined;
  pool: string | undefined;
  member: string | undefined;
  by: string | undefined;
  cache: string | undefined;
  /** Backend redirects followed; negative: the request reached no route. */
  hops = -1;
  error: string | undefined;
  aborted: 'client' | 'upstream' | undefined;
  rawHeaders: readonly string[] | undefined;

  /** Clear what differs from one request to the next (the caller sets the rest). */
  reset(): this {
    this.requestId = this.traceId = this.route = this.pool = this.member = this.by = this.cache = this.error = this.aborted = undefined;
    this.rawHeaders = undefined;
    this.upstreamMs = -1;
    this.hops = -1;
    this.bytesIn = this.bytesOut = 0;
    return this;
  }
}

/** The longest a line waits before it is handed to the destination. */
const FLUSH_MS = 100;

const FIELD_CODES: Record<AccessLogField, number> = {
  time: 0, id: 1, trace: 2, client: 3, method: 4, path: 5, status: 6, bytesIn: 7, bytesOut: 8, ms: 9, upstreamMs: 10,
  route: 11, pool: 12, member: 13, by: 14, cache: 15, hops: 16, error: 17, aborted: 18, referer: 19, userAgent: 20,
};

/** A JSON string literal: as is when nothing needs escaping (the usual case), else JSON.stringify's. */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 32 || c === 34 || c === 92 || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s);
  }
  return `"${s}"`;
}

/** nginx's escaping in a combined line: `"`, `\`, control and non-ASCII bytes as \xHH. */
export function combinedString(s: string | undefined): string {
  if (s === undefined || s === '') return '-';
  let i = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 32 || c === 34 || c === 92 || c >= 127) break;
  }
  if (i === s.length) return s;
  let out = s.slice(0, i);
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 32 || c === 34 || c === 92 || c >= 127) {
      // Header values arrive as latin1 (one char per byte); anything wider is written as its low byte's escapes.
      for (const b of Buffer.from(s[i]!, c > 255 ? 'utf8' : 'latin1')) out += `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`;
    } else out += s[i];
  }
  return out;
}

/** Value of a header in a raw [name, value…] list (first line), by lower-case name. */
function rawValue(raw: readonly string[] | undefined, lower: string): string | undefined {
  if (raw === undefined) return undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === lower.length && n.toLowerCase() === lower) return raw[i + 1];
  }
  return undefined;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);

/**
 * A time in milliseconds with up to 3 decimals (`1.204`, `0.5`, `12`), from integers: a double's
 * toString was the access log's largest cost per line.
 */
export function millis(ms: number): string {
  const us = Math.round(ms * 1000);
  if (!(us >= 0 && us < 2 ** 31)) return (us / 1000).toString();
  const whole = (us / 1000) | 0;
  let frac = us - whole * 1000;
  if (frac === 0) return `${whole}`;
  let digits = 3;
  while (frac % 10 === 0) {
    frac /= 10;
    digits--;
  }
  const f = `${frac}`;
  return `${whole}.${f.length < digits ? '0'.repeat(digits - f.length) + f : f}`;
}

export type AccessLogOptions = AccessLogConfig;

export class AccessLog {
  /** The one entry the log phase fills for the line it is about to write. */
  readonly entry = new AccessEntry();
  private readonly fields: Uint8Array;
  private readonly combined: boolean;
  private readonly sample: number;
  private readonly slowerThan: number;
  readonly query: boolean;
  private readonly dest: ReturnType<typeof pino.destination>;
  /** The file, when the log goes to one (reopened on SIGUSR1). */
  readonly file: string | undefined;
  private closed = false;
  /** Lines not yet handed to the destination, and the timer that will hand them over. */
  private pending = '';
  private timer: NodeJS.Timeout | undefined;
  private readonly handOver = (): void => {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const s = this.pending;
    if (s === '') return;
    this.pending = '';
    this.dest.write(s);
  };
  private lastMs = -1;
  private lastIso = '';
  private lastSecond = -1;
  private lastClf = '';

  constructor(o: AccessLogOptions, dest?: ReturnType<typeof pino.destination>) {
    this.fields = Uint8Array.from((o.fields ?? DEFAULT_ACCESS_LOG_FIELDS).map((f) => FIELD_CODES[f]));
    this.combined = o.format === 'combined';
    this.sample = o.sample;
    this.slowerThan = o.slowerThan;
    this.query = o.query;
    this.file = o.to === 'stdout' || o.to === 'stderr' ? undefined : o.to;
    this.dest = dest ?? pino.destination({ dest: o.to === 'stdout' ? 1 : o.to === 'stderr' ? 2 : o.to, sync: false, mkdir: true });
  }

  /**
   * The log `o` describes. A file that cannot be opened (created with its directory when missing)
   * fails the start, not the first request; `onError` hears of later failures (a reopen that fails).
   */
  static open(o: AccessLogOptions, onError: (err: Error) => void): AccessLog {
    if (o.to !== 'stdout' && o.to !== 'stderr') {
      try {
        mkdirSync(dirname(o.to), { recursive: true });
        closeSync(openSync(o.to, 'a'));
      } catch (e) {
        throw new Error(`accessLog.to: cannot open ${o.to}: ${(e as Error).message}`, { cause: e });
      }
    }
    const log = new AccessLog(o);
    log.dest.on('error', onError);
    return log;
  }

  /** Whether a request that took `ms` (and ended in homing's own `error`, if any) gets a line. */
  admits(ms: number, error: string | undefined): boolean {
    if (error !== undefined) return true;
    if (ms < this.slowerThan) return false;
    return this.sample >= 1 || Math.random() < this.sample;
  }

  /** Write `entry` (this log's `entry`, filled), whose request took `ms`. */
  write(e: AccessEntry, ms: number): void {
    if (this.closed) return; // a connection cut by the shutdown itself
    this.pending += this.combined ? this.combinedLine(e) : this.jsonLine(e, ms);
    if (this.pending.length >= 65536) this.handOver();
    else if (this.timer === undefined) this.timer = setTimeout(this.handOver, FLUSH_MS).unref();
  }

  private isoNow(): string {
    const now = Date.now();
    if (now !== this.lastMs) {
      this.lastMs = now;
      this.lastIso = new Date(now).toISOString();
    }
    return this.lastIso;
  }

  /** `10/Oct/2000:13:55:36 +0000` (UTC), once a second. */
  private clfNow(): string {
    const now = Date.now();
    const sec = Math.floor(now / 1000);
    if (sec !== this.lastSecond) {
      this.lastSecond = sec;
      const d = new Date(now);
      this.lastClf = `${pad2(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} +0000`;
    }
    return this.lastClf;
  }

  private jsonLine(e: AccessEntry, ms: number): string {
    const f = this.fields;
    let s = '{';
    let sep = '';
    for (let i = 0; i < f.length; i++) {
      let v: string | undefined;
      let k: string;
      switch (f[i]) {
        case 0: k = 'time'; v = `"${this.isoNow()}"`; break;
        case 1: k = 'id'; v = e.requestId === undefined ? undefined : jsonString(e.requestId); break;
        case 2: k = 'trace'; v = e.traceId === undefined ? undefined : `"${e.traceId}"`; break;
        case 3: k = 'client'; v = jsonString(e.client); break;
        case 4: k = 'method'; v = jsonString(e.method); break;
        case 5: k = 'path'; v = jsonString(this.query ? e.uri : e.path); break;
        case 6: k = 'status'; v = `${e.status}`; break;
        case 7: k = 'bytesIn'; v = `${e.bytesIn}`; break;
        case 8: k = 'bytesOut'; v = `${e.bytesOut}`; break;
        case 9: k = 'ms'; v = millis(ms); break;
        case 10: k = 'upstreamMs'; v = e.upstreamMs < 0 ? undefined : millis(e.upstreamMs); break;
        case 11: k = 'route'; v = e.route === undefined ? undefined : jsonString(e.route); break;
        case 12: k = 'pool'; v = e.pool === undefined ? undefined : jsonString(e.pool); break;
        case 13: k = 'member'; v = e.member === undefined ? undefined : jsonString(e.member); break;
        case 14: k = 'by'; v = e.by === undefined ? undefined : `"${e.by}"`; break;
        case 15: k = 'cache'; v = e.cache === undefined ? undefined : `"${e.cache}"`; break;
        case 16: k = 'hops'; v = e.hops < 0 ? undefined : `${e.hops}`; break;
        case 17: k = 'error'; v = e.error === undefined ? undefined : `"${e.error}"`; break;
        case 18: k = 'aborted'; v = e.aborted === undefined ? undefined : `"${e.aborted}"`; break;
        case 19: {
          k = 'referer';
          const r = rawValue(e.rawHeaders, 'referer');
          v = r === undefined ? undefined : jsonString(r);
          break;
        }
        default: {
          k = 'userAgent';
          const u = rawValue(e.rawHeaders, 'user-agent');
          v = u === undefined ? undefined : jsonString(u);
        }
      }
      if (v === undefined) continue;
      s += `${sep}"${k}":${v}`;
      sep = ',';
    }
    return `${s}}\n`;
  }

  /** nginx's `combined`: `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`. */
  private combinedLine(e: AccessEntry): string {
    const target = combinedString(this.query ? e.uri : e.path);
    return (
      `${e.client || '-'} - - [${this.clfNow()}] "${combinedString(e.method)} ${target} HTTP/1.${e.httpMinor}" ${e.status} ${e.bytesOut} ` +
      `"${combinedString(rawValue(e.rawHeaders, 'referer'))}" "${combinedString(rawValue(e.rawHeaders, 'user-agent'))}"\n`
    );
  }

  /** Reopen the file at its path (after logrotate moved it); lines in flight go to the old one. */
  reopen(): void {
    if (this.file === undefined || this.closed) return;
    this.handOver();
    this.dest.reopen();
  }

  /** Write what is buffered, then close (stdout and stderr stay open). */
  close(): Promise<void> {
    const d = this.dest;
    if (this.closed) return Promise.resolve();
    this.handOver();
    this.closed = true;
    return new Promise((resolve) => {
      d.once('close', () => resolve());
      d.once('error', () => resolve());
      d.end();
    });
  }
}
