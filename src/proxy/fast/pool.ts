/**
 * The fast engine's connection pool to one member (for one set of options): raw keep-alive
 * sockets (MemberConnection), an undici Dispatcher by contract — `dispatch(options, handler)` — so
 * HttpExchange drives it as it drives undici's Pool, and undici's own `request()` (the cache's
 * background refresh) runs on it too. Rules:
 * - at most `connections` connections, open or opening; a request beyond them waits, in order,
 *   for one to come free;
 * - a free connection is taken oldest-idle first (every kept connection stays in use under load:
 *   none idles out and is opened again);
 * - a connection idle for `keepAliveTimeout` is closed (kept below a member's own idle timeout, so
 *   homing, not the member, closes an idle connection);
 * - `discardIdle` closes every idle connection (a member reset one: the others are likely dead too);
 * - `close` lets the exchanges in progress finish; `destroy` cuts them.
 */
import type { EventEmitter } from 'node:events';
import { Dispatcher } from 'undici';
import { formatHostPort } from '../../config/units.js';
import type { UpstreamOptions, UpstreamPool } from '../upstreams.js';
import { codedError, MemberConnection, type ConnectionPool } from './member-connection.js';
import { turnNow } from './turn.js';

interface Waiting {
  options: Dispatcher.DispatchOptions;
  handler: Dispatcher.DispatchHandler;
}

/** undici's Dispatcher, for the `request()` it builds on `dispatch`. */
const DispatcherBase = Dispatcher as unknown as new () => EventEmitter & Pick<Dispatcher, 'request'>;

export class FastPool extends DispatcherBase implements UpstreamPool, ConnectionPool {
  readonly origin: string;
  readonly connectTimeout: number;
  /** Idle connections, oldest first (an intrusive list: removal from the middle is O(1)). */
  private head: MemberConnection | undefined;
  private tail: MemberConnection | undefined;
  private readonly all = new Set<MemberConnection>();
  private readonly waiting: Waiting[] = [];
  private waitingAt = 0;
  private expiry: NodeJS.Timeout | undefined;
  private closed = false;
  private emptied: (() => void) | undefined;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly opts: UpstreamOptions,
  ) {
    super();
    this.origin = formatHostPort(host, port);
    this.connectTimeout = opts.connectTimeout;
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (this.closed) {
      queueMicrotask(() => handler.onError!(codedError('UND_ERR_CLOSED', 'The pool is closed')));
      return false;
    }
    const c = this.takeIdle();
    if (c !== undefined) c.start(options, handler);
    else if (this.all.size < this.opts.connections) this.all.add(new MemberConnection(this, options, handler));
    else this.waiting.push({ options, handler });
    return true;
  }

  release(c: MemberConnection): void {
    const w = this.nextWaiting();
    if (w !== undefined) return c.start(w.options, w.handler);
    if (this.closed) return c.kill();
    c.idleSince = turnNow();
    c.inIdle = true;
    c.next = undefined;
    c.prev = this.tail;
    if (this.tail !== undefined) this.tail.next = c;
    else this.head = c;
    this.tail = c;
    if (this.expiry === undefined) this.expireLater();
  }

  gone(c: MemberConnection): void {
    this.unlink(c);
    this.all.delete(c);
    if (!this.closed) {
      const w = this.nextWaiting();
      if (w !== undefined) this.all.add(new MemberConnection(this, w.options, w.handler));
    } else if (this.all.size === 0) this.emptied?.();
  }

  /** Close every idle connection: the next request opens a fresh one. */
  discardIdle(): void {
    while (this.head !== undefined) this.head.kill();
  }

  close(): Promise<void> {
    this.closed = true;
    this.discardIdle();
    clearTimeout(this.expiry);
    if (this.all.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.emptied = resolve));
  }

  destroy(): Promise<void> {
    const done = this.close();
    for (const w of this.waiting.splice(this.waitingAt)) w.handler.onError!(codedError('UND_ERR_DESTROYED', 'The pool was destroyed'));
    for (const c of [...this.all]) c.kill();
    return done;
  }

  private takeIdle(): MemberConnection | undefined {
    const c = this.head;
    if (c !== undefined) this.unlink(c);
    return c;
  }

  private unlink(c: MemberConnection): void {
    if (!c.inIdle) return;
    c.inIdle = false;
    if (c.prev !== undefined) c.prev.next = c.next;
    else this.head = c.next;
    if (c.next !== undefined) c.next.prev = c.prev;
    else this.tail = c.prev;
    c.prev = c.next = undefined;
  }

  private nextWaiting(): Waiting | undefined {
    if (this.waitingAt >= this.waiting.length) return undefined;
    const w = this.waiting[this.waitingAt]!;
    this.waiting[this.waitingAt++] = undefined as unknown as Waiting;
    if (this.waitingAt === this.waiting.length) {
      this.waiting.length = 0;
      this.waitingAt = 0;
    }
    return w;
  }

  /** One timer for the oldest idle connection's deadline; the others are later. */
  private expireLater(): void {
    const c = this.head;
    if (c === undefined) return;
    const ttl = this.opts.keepAliveTimeout;
    this.expiry = setTimeout(() => {
      this.expiry = undefined;
      const now = Date.now();
      while (this.head !== undefined && now - this.head.idleSince >= ttl) this.head.kill();
      this.expireLater();
    }, Math.max(1, c.idleSince + ttl - Date.now()));
    this.expiry.unref();
  }
}
