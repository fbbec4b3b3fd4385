/**
 * The fast engine's listener: a `net.Server` whose connections are parsed by ClientConnection,
 * with the node:http listener's surface that homing uses (the three timeouts, closing idle or all
 * connections, `close`). Rules, as node:http's:
 * - `headersTimeout`: a head that takes longer to arrive closes its connection (slow-loris);
 * - `requestTimeout`: so does a request (head and body) that takes longer;
 * - `keepAliveTimeout`: a connection idle for longer between requests is closed;
 *   all three are checked every `checkEvery` ms, so each fires within that much of its time;
 * - `close()` stops accepting and closes the idle connections at once; the others finish their answer.
 * With node:cluster workers the listening socket is shared as for any `net.Server`.
 */
import { Server, type Socket } from 'node:net';
import type { Proxy } from '../proxy.js';
import { ClientConnection, type ConnectionHost } from './connection.js';

export interface FastTimeouts {
  keepAliveTimeout: number;
  headersTimeout: number;
  requestTimeout: number;
  /** How often the timeouts are checked. */
  checkEvery: number;
}

export class FastServer extends Server implements ConnectionHost {
  keepAliveTimeout: number;
  headersTimeout: number;
  requestTimeout: number;
  /** Being retired (a reload moved the address): each answer closes its connection. */
  retired = false;
  /** llhttp is used strict, never with insecureHTTPParser (said here as node:http's listener says it). */
  readonly insecureHTTPParser = false;
  private readonly clients = new Set<ClientConnection>();
  private readonly checker: NodeJS.Timeout;
  private lines = '';
  private linesFor = -1;

  constructor(
    readonly proxy: Proxy,
    t: FastTimeouts,
  ) {
    // allowHalfOpen: a client that ends its side still gets the answer in progress.
    super({ allowHalfOpen: true, noDelay: true });
    this.keepAliveTimeout = t.keepAliveTimeout;
    this.headersTimeout = t.headersTimeout;
    this.requestTimeout = t.requestTimeout;
    this.on('connection', (socket: Socket) => this.clients.add(new ClientConnection(this, socket)));
    this.checker = setInterval(() => this.check(), t.checkEvery);
    this.checker.unref();
  }

  /** `Connection: keep-alive` with the keep-alive timeout in seconds (what node:http says), ending the head. */
  get keepAliveLines(): string {
    if (this.linesFor !== this.keepAliveTimeout) {
      this.linesFor = this.keepAliveTimeout;
      this.lines = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(this.keepAliveTimeout / 1000)}\r\n\r\n`;
    }
    return this.lines;
  }

  forget(c: ClientConnection): void {
    this.clients.delete(c);
  }

  private check(): void {
    const now = Date.now();
    for (const c of this.clients) {
      if (
        (c.headStart > 0 && now - c.headStart > this.headersTimeout) ||
        (c.requestStart > 0 && now - c.requestStart > this.requestTimeout) ||
        (c.idleSince > 0 && c.idle && now - c.idleSince > this.keepAliveTimeout)
      ) {
        c.socket.destroy();
      }
    }
  }

  override close(callback?: (err?: Error) => void): this {
    clearInterval(this.checker);
    super.close(callback);
    this.closeIdleConnections();
    return this;
  }

  closeIdleConnections(): void {
    for (const c of this.clients) if (c.idle) c.socket.destroy();
  }

  closeAllConnections(): void {
    for (const c of this.clients) c.socket.destroy();
  }
}
