/**
 * A directory in Redis: `GET <keyPrefix><key>`; nil = no such key; the value is read like an HTTP
 * directory's body (a pool name, `host:port`, or the `{ "pool" }` / `{ "target" }` JSON forms,
 * at most 4 KiB; see src/directory/answer.ts).
 *
 * A look-up never waits on a Redis that is away: the client does not queue commands while
 * disconnected (`enableOfflineQueue: false`) nor retry them (`maxRetriesPerRequest: 0`), so a
 * look-up while Redis is down or reconnecting rejects at once; ioredis reconnects by itself
 * (50 ms more per attempt, at most 1 s apart). The connection opens on the first look-up (or
 * `connect()`); a look-up made while it is being established waits for it, within `timeout`.
 * Connection errors go to `onError`, never to an unhandled 'error' event.
 */
import { Redis } from 'ioredis';
import { DirectoryKeyError, type DirectoryAnswer, type DirectorySource } from '../routing/directory/table.js';
import { checkKey, MAX_KEY_BYTES, parseAnswer } from './answer.js';

export interface RedisDirectoryOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`. */
  url: string;
  /** Prepended to every key (default ''), e.g. `tenants:`. */
  keyPrefix?: string;
  /** Deadline of one look-up, ms, connection included (default 500). */
  timeout?: number;
  /** Deadline to establish a connection, ms (default 1000). */
  connectTimeout?: number;
  /** Longest key asked for, UTF-8 bytes (default 1024). */
  maxKeyBytes?: number;
  /** Connection errors (ECONNREFUSED while Redis is down, …), for logs. */
  onError?(err: Error): void;
}

/** States in which a command can wait for the connection being established. */
const CONNECTING = new Set(['wait', 'connecting', 'connect']);

export class RedisDirectorySource implements DirectorySource {
  readonly client: Redis;
  readonly keyPrefix: string;
  readonly timeout: number;
  private readonly maxKeyBytes: number;
  /** For messages: where Redis is, without credentials. */
  private readonly where: string;
  /** The wait for the connection being established, while there is one. */
  private connecting: Promise<void> | undefined;

  constructor(opts: RedisDirectoryOptions) {
    this.keyPrefix = opts.keyPrefix ?? '';
    this.timeout = opts.timeout ?? 500;
    if (!(this.timeout > 0) || !Number.isFinite(this.timeout)) throw new Error(`directory redis: timeout must be > 0 ms, got ${this.timeout}`);
    this.maxKeyBytes = opts.maxKeyBytes ?? MAX_KEY_BYTES;
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new Error('directory redis: url is not a URL (use redis://host:port)');
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`directory redis ${u.protocol}//${u.host}: use redis:// or rediss://`);
    this.where = `directory redis ${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
    this.client = new Redis(opts.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.timeout,
      connectTimeout: opts.connectTimeout ?? 1000,
      retryStrategy: (times) => Math.min(times * 50, 1000),
    });
    const onError = opts.onError;
    this.client.on('error', (err: Error) => onError?.(err));
  }

  /** Open the connection now rather than on the first look-up. Never rejects (errors go to onError). */
  connect(): void {
    if (this.client.status === 'wait') this.client.connect().catch(() => undefined);
  }

  lookup(key: string, signal: AbortSignal): Promise<DirectoryAnswer> {
    try {
      checkKey(key, this.maxKeyBytes);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return new Promise<DirectoryAnswer>((resolve, reject) => {
      let settled = false;
      const end = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        return true;
      };
      const fail = (err: unknown): void => {
        if (!end()) return;
        if (err instanceof DirectoryKeyError) reject(err);
        else reject(new Error(`${this.where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      };
      const onAbort = (): void => fail(new Error('aborted'));
      const send = (): void => {
        if (settled) return;
        this.client.get(this.keyPrefix + key).then((value) => {
          if (!settled) {
            const answer = toAnswer(value);
            if (end()) resolve(answer);
          }
        }).catch(fail);
      };
      const timer = setTimeout(() => fail(new Error(`no answer within ${this.timeout} ms`)), this.timeout);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      const status = this.client.status;
      if (status === 'ready') return send();
      if (!CONNECTING.has(status)) return fail(new Error(`not connected (${status})`));
      this.ready().then(send, fail);
    });
  }

  /** Settles when the connection being established is ready (or failed); shared by every look-up waiting for it. */
  private ready(): Promise<void> {
    if (this.connecting) return this.connecting;
    const p = new Promise<void>((resolve, reject) => {
      const ok = (): void => {
        this.client.off('close', ko);
        resolve();
      };
      const ko = (): void => {
        this.client.off('ready', ok);
        reject(new Error('connection failed'));
      };
      this.client.once('ready', ok);
      this.client.once('close', ko);
    });
    this.connecting = p;
    const clear = (): void => {
      if (this.connecting === p) this.connecting = undefined;
    };
    p.then(clear, clear);
    this.connect();
    return p;
  }

  /** Drop the connection; look-ups in flight reject. */
  async close(): Promise<void> {
    this.client.disconnect();
  }
}

function toAnswer(value: string | null): DirectoryAnswer {
  return value === null ? { unknown: true } : { found: parseAnswer(value) };
}
