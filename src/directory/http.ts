/**
 * A directory over HTTP: `GET <url with {key}>` on keep-alive connections.
 *
 * The key goes into the URL as exactly one percent-encoded segment (`encodeURIComponent`, which
 * leaves only `A–Z a–z 0–9 - _ . ! ~ * ' ( )` as they are), so no key can change the host, the
 * path's structure or the query, nor add a header: `/`, `?`, `#`, `@`, `%`, CR, LF, controls and
 * non-ASCII are all encoded. The keys `.` and `..` are sent as `%2E` and `%2E%2E`, and the path is
 * handed to undici as is: a WHATWG URL parser would read `%2E%2E` as `..` and climb, so no URL
 * object ever sees the key. (A proxy in front of the directory that decodes and normalizes
 * paths would still see `..`: do not put one there.) Keys are refused (DirectoryKeyError
 * `bad-key`, nothing sent) when empty, over `maxKeyBytes` of UTF-8, or not well-formed Unicode.
 *
 * Answers: 200 with a body (at most 4 KiB, read with a cap and the connection dropped past it)
 * in a form src/directory/answer.ts accepts; 404 = no such key; any other status, a connection
 * error or the timeout rejects (the table backs off); a garbage 200 rejects with `bad-answer`
 * (no back-off: the directory is up).
 *
 * Cache-Control is read only with `respectCacheControl`: `max-age=N` gives the answer a ttl of N
 * seconds, and `no-store` or `no-cache` a ttl of 0, which the table takes as "answer this
 * request, store nothing".
 */
import { Agent, type Dispatcher } from 'undici';
import { DirectoryKeyError, type DirectoryAnswer, type DirectorySource } from '../routing/directory/table.js';
import { answerTooLarge, checkKey, MAX_ANSWER_BYTES, MAX_KEY_BYTES, parseAnswer } from './answer.js';

export interface HttpDirectoryOptions {
  /**
   * URL template: `{key}` exactly once, in the path or the query, e.g.
   * `http://127.0.0.1:6280/backend/{key}`. http or https; no credentials, no fragment.
   */
  url: string;
  /** Extra request headers (e.g. an Authorization the directory wants). */
  headers?: Record<string, string>;
  /** Deadline of one look-up, ms (default 500): connect, head and body. */
  timeout?: number;
  /** Take the answer's lifetime from Cache-Control (default false: the table's ttl). */
  respectCacheControl?: boolean;
  /** Longest key asked for, UTF-8 bytes (default 1024). */
  maxKeyBytes?: number;
  /** Keep-alive connections to the directory at most (default 32). */
  connections?: number;
}

const KEY = '{key}';
/** Stands in for `{key}` while the template is parsed (braces would be percent-encoded). */
const MARK = 'homing0directory0key0mark';
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HEADER_VALUE = /^[^\r\n\0]*$/;

export class HttpDirectorySource implements DirectorySource {
  /** `http://host:port` of the directory. */
  readonly origin: string;
  readonly timeout: number;
  private readonly before: string;
  private readonly after: string;
  private readonly headers: Record<string, string>;
  private readonly respectCacheControl: boolean;
  private readonly maxKeyBytes: number;
  private readonly agent: Agent;
  /** For messages: the template, which names no key. */
  private readonly where: string;

  constructor(opts: HttpDirectoryOptions) {
    const where = `directory url ${opts.url}`;
    const at = opts.url.indexOf(KEY);
    if (at < 0 || opts.url.indexOf(KEY, at + 1) >= 0) throw new Error(`${where}: needs {key} exactly once`);
    let u: URL;
    try {
      u = new URL(opts.url.replace(KEY, MARK));
    } catch {
      throw new Error(`${where}: not a URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`${where}: only http and https are supported`);
    if (u.username !== '' || u.password !== '') throw new Error(`${where}: no credentials in the URL (use headers)`);
    if (u.hash !== '') throw new Error(`${where}: no fragment`);
    const rest = u.pathname + u.search;
    const i = rest.indexOf(MARK);
    if (i < 0) throw new Error(`${where}: {key} must be in the path or the query`);
    this.before = rest.slice(0, i);
    this.after = rest.slice(i + MARK.length);
    this.origin = u.origin;
    this.where = where;
    this.timeout = opts.timeout ?? 500;
    if (!(this.timeout > 0) || !Number.isFinite(this.timeout)) throw new Error(`${where}: timeout must be > 0 ms, got ${this.timeout}`);
    this.maxKeyBytes = opts.maxKeyBytes ?? MAX_KEY_BYTES;
    this.respectCacheControl = opts.respectCacheControl ?? false;
    this.headers = { accept: 'application/json, text/plain', 'user-agent': 'homing-directory' };
    for (const [name, value] of Object.entries(opts.headers ?? {})) {
      if (!HEADER_NAME.test(name) || !HEADER_VALUE.test(value)) throw new Error(`${where}: invalid header ${JSON.stringify(name)}`);
      this.headers[name.toLowerCase()] = value;
    }
    this.agent = new Agent({
      connections: opts.connections ?? 32,
      connectTimeout: this.timeout,
      headersTimeout: this.timeout,
      bodyTimeout: this.timeout,
      // Idle connections are kept a few seconds: look-ups come in bursts of misses.
      keepAliveTimeout: 4000,
    });
  }

  /** The request path (and query) for `key`; throws DirectoryKeyError `bad-key` for a key it refuses. */
  pathFor(key: string): string {
    checkKey(key, this.maxKeyBytes);
    const segment = key === '.' ? '%2E' : key === '..' ? '%2E%2E' : encodeURIComponent(key);
    return this.before + segment + this.after;
  }

  async lookup(key: string, signal: AbortSignal): Promise<DirectoryAnswer> {
    const path = this.pathFor(key);
    if (signal.aborted) throw new Error(`${this.where}: aborted`);
    const ac = new AbortController();
    const onAbort = (): void => ac.abort(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => ac.abort(new Error(`no answer within ${this.timeout} ms`)), this.timeout);
    try {
      const res = await this.agent.request({ origin: this.origin, path, method: 'GET', headers: this.headers, signal: ac.signal });
      if (res.statusCode !== 200) {
        // Read a small body so the connection can be reused (a larger one drops it); its content does not matter.
        await res.body.dump({ limit: MAX_ANSWER_BYTES, signal: ac.signal }).catch(() => undefined);
        if (res.statusCode === 404) return { unknown: true };
        throw new Error(`HTTP ${res.statusCode}`);
      }
      if (Number(res.headers['content-length']) > MAX_ANSWER_BYTES) {
        res.body.destroy();
        throw answerTooLarge();
      }
      const value = parseAnswer(await readCapped(res.body));
      const ttl = this.respectCacheControl ? cacheTtl(res.headers['cache-control']) : undefined;
      return ttl === undefined ? { found: value } : { found: value, ttl };
    } catch (e) {
      if (e instanceof DirectoryKeyError) throw e;
      const reason = ac.signal.aborted && ac.signal.reason instanceof Error ? ac.signal.reason.message : e instanceof Error ? e.message : String(e);
      throw new Error(`${this.where}: ${reason}`, { cause: e });
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Closes the connections; look-ups in flight reject. */
  async close(): Promise<void> {
    await this.agent.destroy();
  }
}

/** The body as UTF-8, refusing (and dropping the connection) past MAX_ANSWER_BYTES. */
async function readCapped(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > MAX_ANSWER_BYTES) {
      body.destroy();
      throw answerTooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  try {
    return UTF8.decode(Buffer.concat(chunks, size));
  } catch {
    throw new DirectoryKeyError('bad-answer', 'bad directory answer: not UTF-8');
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The lifetime Cache-Control gives an answer, ms: 0 for `no-store` / `no-cache` (do not cache),
 * N s for `max-age=N`, undefined when it says neither (the table's ttl applies).
 */
export function cacheTtl(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  let ttl: number | undefined;
  for (const part of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (name === 'no-store' || name === 'no-cache') return 0;
    if (name === 'max-age' && eq >= 0) {
      const arg = part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
      if (/^\d{1,10}$/.test(arg)) ttl = Number(arg) * 1000;
    }
  }
  return ttl;
}
