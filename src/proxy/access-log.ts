/**
 * The access log: one line per request, JSON (the configured fields, in order) or nginx's
 * `combined`, handed to a pino destination (sonic-boom) with `sync: false` — the request never
 * waits for the disk. Lines are gathered and handed over every 100 ms (or 64 KiB, or 256 lines):
 * a write per line would cost a system call per request, far more than the line itself. A JSON
 * line waits as its request's entry (entries are reused, batch after batch) and is written with
 * the rest of its batch, straight into the batch's bytes, when the batch is handed over: no
 * object, string or JSON.stringify per request in the usual case, and the formatter runs as one
 * hot loop rather than a little at a time between each request's other work (3% less CPU per
 * request than a line formatted as its request ends, measured side by side).
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
  /** Referer and User-Agent, taken from `rawHeaders` for a JSON line that lists them (`write`). */
  referer: string | undefined;
  userAgent: string | undefined;
  /** How long the request took (ms), and Date.now() when it ended: set by `AccessLog.write`. */
  ms = 0;
  now = 0;

  /** Clear what differs from one request to the next (the caller sets the rest). */
  reset(): this {
    this.requestId = this.traceId = this.route = this.pool = this.member = this.by = this.cache = this.error = this.aborted = undefined;
    this.rawHeaders = this.referer = this.userAgent = undefined;
    this.upstreamMs = -1;
    this.hops = -1;
    this.bytesIn = this.bytesOut = 0;
    return this;
  }
}

/** The longest a line waits before it is handed to the destination. */
const FLUSH_MS = 100;
/** A batch is handed over once it holds this many bytes. */
const FLUSH_BYTES = 65536;
/** A batch buffer's size: a full batch plus room for the line that crosses the mark (longer lines grow it). */
const BATCH_CAPACITY = FLUSH_BYTES + 16384;
/** JSON lines wait as entries, formatted together when handed over: this many make a batch (about 64 KiB). */
const BATCH_LINES = 256;

const FIELD_CODES: Record<AccessLogField, number> = {
  time: 0, id: 1, trace: 2, client: 3, method: 4, path: 5, status: 6, bytesIn: 7, bytesOut: 8, ms: 9, upstreamMs: 10,
  route: 11, pool: 12, member: 13, by: 14, cache: 15, hops: 16, error: 17, aborted: 18, referer: 19, userAgent: 20,
};

/** Each field's `"key":`, by code. */
const KEYS: string[] = [];
for (const [k, code] of Object.entries(FIELD_CODES)) KEYS[code] = `"${k}":`;

/**
 * Lines written straight into a reused byte buffer, which is handed to the destination whole:
 * no string per line (building a line by concatenation, then a batch of them, left a rope of
 * thousands of pieces that the write had to flatten, and garbage that outlived a scavenge).
 * ASCII is copied a char at a time; anything else goes through JSON.stringify and a UTF-8 write.
 */
export class LineBuffer {
  buf: Buffer = Buffer.allocUnsafe(BATCH_CAPACITY);
  off = 0;

  /** Room for `n` more bytes: a bigger buffer, the bytes so far copied over (only for very long lines). */
  room(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }

  /** The bytes so far, for the destination to keep; the buffer starts afresh. */
  take(): Buffer {
    const out = this.buf.subarray(0, this.off);
    this.buf = Buffer.allocUnsafe(BATCH_CAPACITY);
    this.off = 0;
    return out;
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.off++] = c;
  }

  /** `s`, known to be ASCII (keys, tokens, numbers, times). */
  ascii(s: string): void {
    const n = s.length;
    this.room(n);
    const b = this.buf;
    let o = this.off;
    for (let i = 0; i < n; i++) b[o++] = s.charCodeAt(i);
    this.off = o;
  }

  /** `s` as a JSON string literal (quotes and escapes; UTF-8 for what is not ASCII). */
  json(s: string): void {
    const n = s.length;
    this.room(n + 2);
    const b = this.buf;
    let o = this.off;
    b[o++] = 34;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 32 || c === 34 || c === 92 || c > 126) return this.utf8(JSON.stringify(s));
      b[o++] = c;
    }
    b[o++] = 34;
    this.off = o;
  }

  /** `s` in UTF-8. */
  utf8(s: string): void {
    this.room(Buffer.byteLength(s));
    this.off += this.buf.write(s, this.off, 'utf8');
  }

  /** A non-negative integer. */
  int(n: number): void {
    if (!(n >= 0 && n < 2 ** 31 && (n | 0) === n)) return this.ascii(`${n}`);
    this.room(10);
    const b = this.buf;
    let digits = 1;
    for (let m = n; m >= 10; m = (m / 10) | 0) digits++;
    let o = this.off + digits;
    this.off = o;
    do {
      const q = (n / 10) | 0;
      b[--o] = 48 + n - q * 10;
      n = q;
    } while (n > 0);
  }

  /**
   * A time in milliseconds with up to 3 decimals (`1.204`, `0.5`, `12`), from integers: a
   * double's toString was the access log's largest cost per line.
   */
  millis(ms: number): void {
    const us = Math.round(ms * 1000);
    if (!(us >= 0 && us < 2 ** 31)) return this.ascii(`${us / 1000}`);
    const whole = (us / 1000) | 0;
    let frac = us - whole * 1000;
    this.int(whole);
    if (frac === 0) return;
    let digits = 3;
    while (frac % 10 === 0) {
      frac /= 10;
      digits--;
    }
    this.room(4);
    const b = this.buf;
    let o = this.off;
    b[o++] = 46; // .
    for (let d = digits - 1; d >= 0; d--) {
      const p = d === 2 ? 100 : d === 1 ? 10 : 1;
      const q = (frac / p) | 0;
      b[o++] = 48 + q;
      frac -= q * p;
    }
    this.off = o;
  }
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

export type AccessLogOptions = AccessLogConfig;

export class AccessLog {
  /**
   * JSON lines are not formatted per request: the request's entry waits in `queued` and the batch
   * is formatted in one loop when it is handed over (the formatter then runs hot, rather than a
   * little of it between the other work of each request). Entries are reused, batch after batch.
   */
  private readonly queued: AccessEntry[] = [];
  private count = 0;
  /** An estimate of the queued lines' bytes, for the 64 KiB hand-over. */
  private queuedBytes = 0;
  /** Hears of failures after the start (a reopen that fails, a line that could not be formatted). */
  private onError: (err: Error) => void = () => {};
  private readonly fields: Uint8Array;
  /** The JSON fields include Referer or User-Agent. */
  private readonly headerFields: boolean;
  private readonly combined: boolean;
  private readonly sample: number;
  private readonly slowerThan: number;
  readonly query: boolean;
  private readonly dest: ReturnType<typeof pino.destination>;
  /** The file, when the log goes to one (reopened on SIGUSR1). */
  readonly file: string | undefined;
  private closed = false;
  /** Lines not yet handed to the destination, and the timer that will hand them over. */
  private readonly lines = new LineBuffer();
  private timer: NodeJS.Timeout | undefined;
  private readonly handOver = (): void => {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.formatQueued();
    if (this.lines.off === 0) return;
    this.dest.write(this.lines.take() as unknown as string); // contentMode 'buffer'
  };
  /** `2026-11-30T04:25:13.` for the second `isoSecond` (ms since the epoch ÷ 1000). */
  private isoSecond = -1;
  private isoPrefix = '';
  private lastSecond = -1;
  private lastClf = '';

  constructor(o: AccessLogOptions) {
    this.fields = Uint8Array.from((o.fields ?? DEFAULT_ACCESS_LOG_FIELDS).map((f) => FIELD_CODES[f]));
    this.headerFields = this.fields.includes(FIELD_CODES.referer) || this.fields.includes(FIELD_CODES.userAgent);
    this.combined = o.format === 'combined';
    this.sample = o.sample;
    this.slowerThan = o.slowerThan;
    this.query = o.query;
    this.file = o.to === 'stdout' || o.to === 'stderr' ? undefined : o.to;
    this.dest = pino.destination({ dest: o.to === 'stdout' ? 1 : o.to === 'stderr' ? 2 : o.to, sync: false, mkdir: true, contentMode: 'buffer' });
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
    log.onError = onError;
    log.dest.on('error', onError);
    return log;
  }

  /** Whether a request that took `ms` (and ended in homing's own `error`, if any) gets a line. */
  admits(ms: number, error: string | undefined): boolean {
    if (error !== undefined) return true;
    if (ms < this.slowerThan) return false;
    return this.sample >= 1 || Math.random() < this.sample;
  }

  /** The entry the log phase fills for the next line, then writes with `write`. */
  get entry(): AccessEntry {
    return (this.queued[this.count] ??= new AccessEntry());
  }

  /** Write the line of `entry` (filled since it was taken), whose request took `ms`. */
  write(ms: number): void {
    const e = this.entry;
    if (this.closed) {
      e.rawHeaders = undefined; // a connection cut by the shutdown itself: no line
      return;
    }
    e.ms = ms;
    e.now = Date.now();
    if (this.combined) {
      this.lines.utf8(this.combinedLine(e));
      e.rawHeaders = undefined;
    } else {
      // A queued entry does not keep the request's header list: Referer and User-Agent are taken now.
      if (this.headerFields) {
        e.referer = rawValue(e.rawHeaders, 'referer');
        e.userAgent = rawValue(e.rawHeaders, 'user-agent');
        this.queuedBytes += (e.referer?.length ?? 0) + (e.userAgent?.length ?? 0);
      }
      e.rawHeaders = undefined;
      // About what the line will take: a default line is about 300 bytes, the path its main variable.
      this.queuedBytes += 300 + e.uri.length;
      this.count++;
    }
    if (this.lines.off + this.queuedBytes >= FLUSH_BYTES || this.count >= BATCH_LINES) this.handOver();
    else if (this.timer === undefined) this.timer = setTimeout(this.handOver, FLUSH_MS).unref();
  }

  /**
   * The queued entries' lines, into the batch's bytes; the entries are free again. A line whose
   * formatting fails (a bug: every field is typed) is left out, not half-written, and reported.
   */
  private formatQueued(): void {
    const n = this.count;
    this.count = 0;
    this.queuedBytes = 0;
    for (let i = 0; i < n; i++) {
      const start = this.lines.off;
      try {
        this.jsonLine(this.queued[i]!);
      } catch (err) {
        this.lines.off = start;
        this.onError(err as Error);
      }
    }
  }

  /** The time as ISO 8601 in UTC, `"2026-11-30T04:25:13.042Z"`; the part up to the second is kept. */
  private isoNow(b: LineBuffer, now: number): void {
    const sec = Math.floor(now / 1000);
    if (sec !== this.isoSecond) {
      this.isoSecond = sec;
      this.isoPrefix = new Date(sec * 1000).toISOString().slice(0, 20);
    }
    const ms = now - sec * 1000;
    b.byte(34);
    b.ascii(this.isoPrefix);
    b.byte(48 + ((ms / 100) | 0));
    b.byte(48 + (((ms / 10) | 0) % 10));
    b.byte(48 + (ms % 10));
    b.ascii('Z"');
  }

  /** `10/Oct/2000:13:55:36 +0000` (UTC), once a second. */
  private clfNow(now: number): string {
    const sec = Math.floor(now / 1000);
    if (sec !== this.lastSecond) {
      this.lastSecond = sec;
      const d = new Date(now);
      this.lastClf = `${pad2(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} +0000`;
    }
    return this.lastClf;
  }

  /** One JSON line: the configured fields in order, those without a value left out. */
  private jsonLine(e: AccessEntry): void {
    const f = this.fields;
    const b = this.lines;
    const start = b.off;
    b.byte(123); // {
    for (let i = 0; i < f.length; i++) {
      const code = f[i]!;
      // Referer and User-Agent (taken from the headers by `write` when listed).
      const header = code === 19 ? e.referer : code === 20 ? e.userAgent : undefined;
      // Fields without a value this time: nothing at all, not even the key.
      switch (code) {
        case 1: if (e.requestId === undefined) continue; break;
        case 2: if (e.traceId === undefined) continue; break;
        case 10: if (e.upstreamMs < 0) continue; break;
        case 11: if (e.route === undefined) continue; break;
        case 12: if (e.pool === undefined) continue; break;
        case 13: if (e.member === undefined) continue; break;
        case 14: if (e.by === undefined) continue; break;
        case 15: if (e.cache === undefined) continue; break;
        case 16: if (e.hops < 0) continue; break;
        case 17: if (e.error === undefined) continue; break;
        case 18: if (e.aborted === undefined) continue; break;
        case 19:
        case 20: if (header === undefined) continue; break;
      }
      if (b.off !== start + 1) b.byte(44); // ,
      b.ascii(KEYS[code]!);
      switch (code) {
        case 0: this.isoNow(b, e.now); break;
        case 1: b.json(e.requestId!); break;
        case 2: b.json(e.traceId!); break;
        case 3: b.json(e.client); break;
        case 4: b.json(e.method); break;
        case 5: b.json(this.query ? e.uri : e.path); break;
        case 6: b.int(e.status); break;
        case 7: b.int(e.bytesIn); break;
        case 8: b.int(e.bytesOut); break;
        case 9: b.millis(e.ms); break;
        case 10: b.millis(e.upstreamMs); break;
        case 11: b.json(e.route!); break;
        case 12: b.json(e.pool!); break;
        case 13: b.json(e.member!); break;
        case 14: b.json(e.by!); break;
        case 15: b.json(e.cache!); break;
        case 16: b.int(e.hops); break;
        case 17: b.json(e.error!); break;
        case 18: b.json(e.aborted!); break;
        default: b.json(header!); // 19, 20
      }
    }
    b.ascii('}\n');
  }

  /** nginx's `combined`: `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`. */
  private combinedLine(e: AccessEntry): string {
    const target = combinedString(this.query ? e.uri : e.path);
    return (
      `${e.client || '-'} - - [${this.clfNow(e.now)}] "${combinedString(e.method)} ${target} HTTP/1.${e.httpMinor}" ${e.status} ${e.bytesOut} ` +
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
