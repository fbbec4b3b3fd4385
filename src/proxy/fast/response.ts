/**
 * A client's response on the fast engine (`ClientResponse`, what the phases use of node:http's
 * ServerResponse), written straight to the socket. Rules, as node:http applies them:
 * - framing: the head's Content-Length when it has one; else chunked for an HTTP/1.1 client, or
 *   the connection's close for an HTTP/1.0 one; no body at all for HEAD, 1xx, 204 and 304;
 * - `Date` added when the head has none; `Connection: close` on the connection's last answer
 *   (the client or homing said so, or the framing needs it), else `Connection: keep-alive` with the
 *   keep-alive timeout; a caller's own Connection header only ever closes;
 * - what is written in one turn of the event loop leaves in one write (the connection gathers it),
 *   an answer's last bytes with its end;
 * - 'close' once: when the last byte went to the socket, or when the connection went first.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { isClosing } from '../respond.js';
import type { ClientResponse } from '../transport.js';
import type { FastRequest } from './request.js';
import { turnNow } from './turn.js';

/** What a response needs of its connection. */
export interface ResponseOwner {
  readonly socket: Socket;
  /** `Connection: keep-alive` (and `Keep-Alive: timeout=…`) lines for an HTTP/1.1 client. */
  readonly keepAliveLines: string;
  /** Write `piece` with the others of this turn, as one. */
  send(piece: string | Buffer): void;
  /** Write what was sent now; `done` once it went to the socket (never if the socket fails first). */
  flush(done?: () => void): void;
  /** Close the connection at once, after what this turn wrote. */
  cut(): void;
  /** `res` is over (every byte went to the socket): the connection goes on. */
  responseDone(res: FastResponse, last: boolean): void;
}

let dateSecond = -1;
let dateText = '';
/** The Date header's value, made once a second. */
function httpDate(): string {
  const now = turnNow();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** Record headers (homing's own answers) as a flat [name, value…] list. */
function flatten(h: Record<string, string | number | string[]>): string[] {
  const out: string[] = [];
  for (const k in h) {
    const v = h[k]!;
    if (Array.isArray(v)) for (const x of v) out.push(k, x);
    else out.push(k, String(v));
  }
  return out;
}

const CHUNK_END = '\r\n';
const LAST_CHUNK = '0\r\n\r\n';

export class FastResponse implements ClientResponse {
  statusCode = 200;
  headersSent = false;
  destroyed = false;
  writableEnded = false;
  writableFinished = false;
  /** The connection answered for this request itself (a parse error): writes go nowhere. */
  detached = false;
  private chunked = false;
  private bodyless = false;
  private last = false;
  private closed = false;
  private drainWanted = false;
  /** The two events the phases listen to (a whole EventEmitter per answer is not needed). */
  private onClose: (() => void)[] | undefined;
  private onDrain: (() => void)[] | undefined;

  constructor(
    private readonly owner: ResponseOwner,
    readonly req: FastRequest,
    public shouldKeepAlive: boolean,
  ) {}

  on(event: 'close' | 'drain', listener: () => void): this {
    if (event === 'close') (this.onClose ??= []).push(listener);
    else (this.onDrain ??= []).push(listener);
    return this;
  }

  private emit(listeners: (() => void)[] | undefined): void {
    if (listeners !== undefined) for (const l of listeners) l.call(this);
  }

  writeHead(status: number, headers?: string[] | Record<string, string | number | string[]>): this {
    if (this.headersSent) throw Object.assign(new Error('Cannot write headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' });
    this.statusCode = status;
    this.headersSent = true;
    if (this.detached || this.destroyed) return this;
    const h = headers === undefined ? [] : Array.isArray(headers) ? headers : flatten(headers);
    const req = this.req;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`;
    let length = false;
    let date = false;
    let keep = this.shouldKeepAlive;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      const value = h[i + 1]!;
      if (name.length === 14) length ||= name.toLowerCase() === 'content-length';
      else if (name.length === 4) date ||= name.toLowerCase() === 'date';
      else if (name.length === 10 && name.toLowerCase() === 'connection') {
        if (value.toLowerCase() === 'close') keep = false;
        continue;
      }
      head += `${name}: ${value}\r\n`;
    }
    if (!date) head += `Date: ${httpDate()}\r\n`;
    this.bodyless = req.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    if (!this.bodyless && !length) {
      if (req.httpVersionMinor >= 1) {
        this.chunked = true;
        head += 'Transfer-Encoding: chunked\r\n';
      } else keep = false; // an HTTP/1.0 client reads this body until the connection closes
    }
    // The phases mark the connection (the request's `socket`) closing.
    this.last = !keep || isClosing(this.owner);
    if (this.last) head += 'Connection: close\r\n\r\n';
    else head += this.owner.keepAliveLines;
    this.owner.send(head);
    return this;
  }

  writeEarlyHints(hints: Record<string, string | string[]>): void {
    if (this.req.httpVersionMinor < 1 || this.headersSent || this.detached || this.destroyed) return;
    let head = 'HTTP/1.1 103 Early Hints\r\n';
    const h = flatten(hints);
    for (let i = 0; i < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
    this.owner.send(`${head}\r\n`);
  }

  write(chunk: Buffer): boolean {
    if (this.writableEnded) return false;
    if (!this.headersSent) this.writeHead(this.statusCode);
    if (this.detached || this.destroyed || this.bodyless || chunk.length === 0) return true;
    const o = this.owner;
    if (this.chunked) {
      o.send(`${chunk.length.toString(16)}\r\n`);
      o.send(chunk);
      o.send(CHUNK_END);
    } else o.send(chunk);
    if (!o.socket.writableNeedDrain) return true;
    this.drainWanted = true;
    return false;
  }

  end(chunk?: Buffer | string): this {
    if (this.writableEnded) return this;
    const body = chunk === undefined ? undefined : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (!this.headersSent) this.writeHead(this.statusCode, body === undefined ? undefined : ['Content-Length', String(body.length)]);
    this.writableEnded = true;
    if (this.detached || this.destroyed) return this;
    const o = this.owner;
    if (body !== undefined && body.length > 0 && !this.bodyless) {
      if (this.chunked) o.send(`${body.length.toString(16)}\r\n`);
      o.send(body);
      if (this.chunked) o.send(CHUNK_END);
    }
    if (this.chunked) o.send(LAST_CHUNK);
    o.flush(this.flushed);
    // The connection's last answer: the client reads FIN right after it.
    if (this.last) o.socket.end();
    return this;
  }

  /** Cut the connection: an answer that cannot be finished must not look whole. */
  destroy(): this {
    if (this.destroyed || this.closed) return this;
    this.destroyed = true;
    if (!this.detached) this.owner.cut();
    return this;
  }

  /** The socket can take more: a writer waiting for 'drain' goes on. */
  drained(): void {
    if (!this.drainWanted) return;
    this.drainWanted = false;
    this.emit(this.onDrain);
  }

  /** The connection closed before this answer was over. */
  gone(): void {
    if (this.closed) return;
    this.closed = true;
    this.destroyed = true;
    this.emit(this.onClose);
  }

  /** The last byte went to the socket. */
  private readonly flushed = (): void => {
    if (this.closed) return;
    this.writableFinished = true;
    this.closed = true;
    this.emit(this.onClose);
    this.owner.responseDone(this, this.last);
  };
}
