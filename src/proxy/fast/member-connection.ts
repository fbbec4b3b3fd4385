/**
 * One keep-alive connection of the fast engine to a member: it writes a request and parses the
 * answer with llhttp, speaking the dispatch-handler contract HttpExchange implements (undici's:
 * onConnect, onHeaders, onData, onComplete, onError, and undici's error codes, which HttpExchange
 * reads to tell a connect failure from a reset or a timeout). Rules:
 * - the request is written from its parsed parts (never forwarded raw): request line, headers
 *   without any Content-Length, then homing's framing — the length of a buffered body, the
 *   client's Content-Length for a streamed one (checked), else chunked; head and small body in
 *   one write;
 * - `onConnect` comes once the socket is connected and before a byte is written: an error before
 *   it means nothing reached the member; after it, an error before the head is a reset;
 * - interim answers (1xx but 101) go to onHeaders and reading goes on to the final answer (an
 *   unsolicited 100 Continue included); a 101 on a plain request, or bytes llhttp refuses, fail
 *   with an `HPE_` code; an answer to a HEAD has no body; trailers are dropped;
 * - onData answering false stops reading until the handler's resume (the body timeout does not
 *   run meanwhile: the slow one is the client); llhttp reads the socket itself until then (see
 *   http-parser.ts);
 * - the connection goes back to its pool only after a whole answer to a whole request on a
 *   keep-alive connection with nothing after it; any other end closes it (an aborted exchange,
 *   an answer that came before its request's body was sent, bytes the member sent unasked).
 */
import { connect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import {
  consume, giveBackParser, PAUSE, PROCEED, RESPONSE, SKIP_BODY, takeParser, unconsume, type HttpParser, type ParseError, type ParserCallbacks,
} from './http-parser.js';
import { Deadline } from './deadline.js';

/** What a member connection needs of its pool. */
export interface ConnectionPool {
  readonly host: string;
  readonly port: number;
  /** host:port, for a request without a Host header. */
  readonly origin: string;
  readonly connectTimeout: number;
  /** `c` finished an exchange and may be reused. */
  release(c: MemberConnection): void;
  /** `c` is closed (or closing) and no longer counts. */
  gone(c: MemberConnection): void;
}

type Handler = Dispatcher.DispatchHandler;
type Options = Dispatcher.DispatchOptions;

/** An error with one of the codes HttpExchange reads. */
export function codedError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/** Methods whose request has a body by definition: a missing one is sent as Content-Length: 0. */
const PAYLOAD = new Set(['POST', 'PUT', 'PATCH']);
const NO_TRAILERS: string[] = [];
const LAST_CHUNK = '0\r\n\r\n';

const enum Timer {
  None,
  Connect,
  Head,
  Body,
}

const CALLBACKS: ParserCallbacks = {
  messageBegin(this: HttpParser) {
    (this.owner as MemberConnection).messageBegin();
  },
  headers(this: HttpParser, headers: string[]) {
    (this.owner as MemberConnection).headPart(headers);
  },
  headersComplete(_major, _minor, headers, _method, _url, status, message, upgrade, keepAlive) {
    return (this.owner as MemberConnection).head(headers, status, message, upgrade, keepAlive);
  },
  body(this: HttpParser, chunk: Buffer) {
    (this.owner as MemberConnection).body(chunk);
  },
  messageComplete(this: HttpParser) {
    (this.owner as MemberConnection).messageEnd();
  },
  execute(this: HttpParser, result: number | ParseError) {
    (this.owner as MemberConnection).executed(result);
  },
};
function noop(): void {}

export class MemberConnection {
  readonly socket: Socket;
  private readonly parser: HttpParser;
  /** Idle-list links (the pool's), and since when it is idle. */
  prev: MemberConnection | undefined;
  next: MemberConnection | undefined;
  idleSince = 0;
  inIdle = false;
  /** Closed or closing: no longer the pool's. */
  dead = false;
  /** The exchange on this connection, while there is one. */
  private handler: Handler | undefined;
  private options: Options | undefined;
  /** Counts exchanges: a stale abort or resume (of an earlier exchange) does nothing. */
  private seq = 0;
  private written = false;
  private isHead = false;
  private final = false;
  private done = false;
  private keepAlive = true;
  /** The member sent bytes nobody asked for: never reused. */
  private unasked = false;
  private paused = false;
  private headLines: string[] = [];
  private error: Error | undefined;
  /** A streamed request body, while it is being sent. */
  private upload: Readable | undefined;
  private bodyDone = true;
  private bodyPaused = false;
  private chunked = false;
  private sent = 0;
  private declared = -1;
  /** What the connection waits for now (a timer that fires for anything else does nothing). */
  private waiting = Timer.None;
  /** The body deadline was set in this read (by the head): the body's first bytes leave it be. */
  private bodyFresh = false;
  /** One deadline for the connect and the head, one for the body: each moved, not made anew, per request. */
  private readonly headDeadline: Deadline;
  private readonly bodyDeadline: Deadline;
  private bodyTimeoutMs = 0;

  constructor(
    private readonly pool: ConnectionPool,
    options: Options,
    handler: Handler,
  ) {
    this.options = options;
    this.handler = handler;
    this.headDeadline = new Deadline(this.headTimedOut);
    this.bodyDeadline = new Deadline(this.bodyTimedOut);
    this.parser = takeParser(RESPONSE, CALLBACKS, this);
    const s = connect({ host: pool.host, port: pool.port, noDelay: true });
    this.socket = s;
    this.wait(Timer.Connect, pool.connectTimeout);
    s.once('connect', () => this.connected());
    s.on('data', (chunk: Buffer) => this.data(chunk));
    s.on('end', () => this.ended());
    s.on('error', (err: Error) => this.failed(err));
    s.on('close', () => this.closed());
    s.on('drain', () => this.drained());
  }

  private connected(): void {
    this.waiting = Timer.None;
    consume(this.parser, this.socket);
    const o = this.options!;
    const h = this.handler!;
    this.options = undefined;
    this.handler = undefined;
    this.start(o, h);
  }

  /** Send `options` on this (connected, free) connection. */
  start(options: Options, handler: Handler): void {
    const seq = ++this.seq;
    this.handler = handler;
    this.written = false;
    this.final = false;
    this.done = false;
    this.keepAlive = true;
    this.isHead = options.method === 'HEAD';
    this.bodyTimeoutMs = options.bodyTimeout ?? 0;
    handler.onConnect!((err?: Error) => {
      if (seq === this.seq) this.fail(err ?? codedError('UND_ERR_ABORTED', 'Request aborted'));
    });
    // Aborted at once (the client left while the request waited for a connection).
    if (this.handler !== handler) return;
    this.write(options);
    this.written = true;
    this.wait(Timer.Head, options.headersTimeout ?? 0);
  }

  private write(o: Options): void {
    let head = `${o.method} ${o.path} HTTP/1.1\r\n`;
    let host = false;
    let declared: string | undefined;
    const h = o.headers;
    const list = Array.isArray(h) ? (h as string[]) : h ? Object.entries(h as Record<string, string | string[]>).flatMap(([k, v]) => (Array.isArray(v) ? v.flatMap((x) => [k, x]) : [k, v])) : [];
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i]!;
      const value = list[i + 1]!;
      if (name.length === 14 && name.toLowerCase() === 'content-length') {
        declared = value;
        continue;
      }
      if (name.length === 4 && !host) host = name.toLowerCase() === 'host';
      head += `${name}: ${value}\r\n`;
    }
    if (!host) head += `host: ${this.pool.origin}\r\n`;
    const s = this.socket;
    const body = typeof o.body === 'string' ? Buffer.from(o.body) : o.body;
    if (body === undefined || body === null) {
      if (declared !== undefined || PAYLOAD.has(o.method)) head += 'content-length: 0\r\n';
      this.bodyDone = true;
      s.write(`${head}\r\n`, 'latin1');
    } else if (Buffer.isBuffer(body) || body instanceof Uint8Array) {
      this.bodyDone = true;
      s.cork();
      s.write(`${head}content-length: ${body.length}\r\n\r\n`, 'latin1');
      if (body.length > 0) s.write(body);
      s.uncork();
    } else {
      this.chunked = declared === undefined;
      this.declared = declared === undefined ? -1 : Number(declared);
      s.write(this.chunked ? `${head}transfer-encoding: chunked\r\n\r\n` : `${head}content-length: ${declared}\r\n\r\n`, 'latin1');
      this.stream(body as Readable);
    }
  }

  // --- streamed request body -------------------------------------------------------------------

  private stream(body: Readable): void {
    this.upload = body;
    this.bodyDone = false;
    this.bodyPaused = false;
    this.sent = 0;
    // Whatever becomes of this exchange, a late error of the body never goes unheard.
    body.on('error', noop);
    body.on('data', this.bodyData);
    body.on('end', this.bodyEnd);
    body.on('error', this.bodyError);
    body.on('close', this.bodyClose);
  }

  private readonly bodyData = (chunk: Buffer): void => {
    this.sent += chunk.length;
    if (this.declared >= 0 && this.sent > this.declared) return this.fail(codedError('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'Request body longer than its Content-Length'));
    const s = this.socket;
    let ok: boolean;
    if (this.chunked) {
      s.cork();
      s.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      s.write(chunk);
      ok = s.write('\r\n', 'latin1');
      s.uncork();
    } else ok = s.write(chunk);
    if (!ok && !this.bodyPaused) {
      this.bodyPaused = true;
      this.upload?.pause();
    }
  };

  private readonly bodyEnd = (): void => {
    if (this.declared >= 0 && this.sent !== this.declared) return this.fail(codedError('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'Request body shorter than its Content-Length'));
    if (this.chunked) this.socket.write(LAST_CHUNK, 'latin1');
    this.detachBody();
    this.bodyDone = true;
  };

  private readonly bodyError = (err: Error): void => this.fail(err);

  private readonly bodyClose = (): void => {
    if (!this.bodyDone) this.fail(codedError('UND_ERR_ABORTED', 'Request body closed before its end'));
  };

  private detachBody(): void {
    const b = this.upload;
    if (b === undefined) return;
    this.upload = undefined;
    b.off('data', this.bodyData);
    b.off('end', this.bodyEnd);
    b.off('error', this.bodyError);
    b.off('close', this.bodyClose);
  }

  private drained(): void {
    if (!this.bodyPaused) return;
    this.bodyPaused = false;
    this.upload?.resume();
  }

  // --- the answer ------------------------------------------------------------------------------

  /** Bytes from a 'data' event (llhttp does not read the socket itself). */
  private data(chunk: Buffer): void {
    if (this.handler === undefined || !this.written) {
      // Bytes when nothing was asked: this connection cannot be trusted with another request.
      this.unasked = true;
      return this.kill();
    }
    this.executed(this.parser.execute(chunk));
  }

  /** llhttp parsed a read: the exchange ends, fails or goes on. */
  executed(r: number | ParseError): void {
    this.bodyFresh = false;
    if (this.dead) return;
    if (typeof r !== 'number' && r.code !== 'HPE_PAUSED') {
      this.unasked = true;
      if (this.handler !== undefined) this.fail(codedError(r.code, `invalid response: ${r.reason}`));
      else this.kill();
      return;
    }
    if (this.unasked && this.handler === undefined) return this.kill();
    if (this.done && this.handler !== undefined) return this.complete();
    if (this.paused && this.parser.consuming) {
      // The handler cannot take more: reading stops, for good off llhttp's own reading.
      unconsume(this.parser);
      this.socket.pause();
    }
  }

  messageBegin(): void {
    // Bytes of a message nobody asked for (after the answer, or with no request out).
    if (this.done || this.handler === undefined || !this.written) this.unasked = true;
  }

  headPart(headers: string[]): void {
    // After the final head: trailers, dropped.
    if (!this.final) for (const h of headers) this.headLines.push(h);
  }

  head(headers: string[] | undefined, status: number, message: string, upgrade: boolean, keepAlive: boolean): number {
    if (headers === undefined) {
      headers = this.headLines;
      this.headLines = [];
    }
    const h = this.handler;
    if (h === undefined || this.done) {
      this.unasked = true;
      return PAUSE;
    }
    if (status === 101 || upgrade) {
      this.fail(codedError('HPE_UNEXPECTED_UPGRADE', 'the member switched protocols on a plain request'));
      return PAUSE;
    }
    const raw = headers as unknown as Buffer[];
    if (status >= 100 && status < 200) {
      // An interim answer: the final one follows on the same connection.
      h.onHeaders!(status, raw, this.resumer(), message);
      return this.handler === h ? PROCEED : PAUSE;
    }
    this.final = true;
    this.keepAlive = keepAlive;
    this.wait(Timer.Body, this.bodyTimeoutMs);
    this.bodyFresh = true;
    const go = h.onHeaders!(status, raw, this.resumer(), message);
    if (this.handler !== h) return PAUSE; // the handler aborted (an impossible status, a head it refused)
    if (!go) this.pause();
    return this.isHead ? SKIP_BODY : PROCEED;
  }

  body(chunk: Buffer): void {
    const h = this.handler;
    if (h === undefined || !this.final || this.done) return;
    if (this.waiting === Timer.Body && !this.bodyFresh) this.bodyDeadline.set(this.bodyTimeoutMs);
    if (!h.onData!(chunk)) this.pause();
  }

  messageEnd(): void {
    if (this.handler === undefined || !this.final) return; // an interim answer ended: the final one follows
    this.done = true;
  }

  /** A resume for this exchange only. */
  private resumer(): () => void {
    const seq = this.seq;
    return () => {
      if (seq !== this.seq || !this.paused) return;
      this.paused = false;
      if (this.waiting === Timer.Body) this.bodyDeadline.set(this.bodyTimeoutMs);
      if (!this.parser.consuming) this.socket.resume();
    };
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    // While llhttp reads the socket itself, reading stops once this read is parsed (`executed`).
    if (!this.parser.consuming) this.socket.pause();
  }

  /** The whole answer is read: back to the pool if whole and reusable, then the handler hears. */
  private complete(): void {
    const h = this.handler!;
    this.handler = undefined;
    this.waiting = Timer.None;
    const reusable = this.keepAlive && this.bodyDone && !this.unasked && !this.socket.destroyed && !this.dead;
    this.detachBody();
    if (reusable) {
      if (this.paused) {
        this.paused = false;
        if (!this.parser.consuming) this.socket.resume();
      }
      this.pool.release(this);
    } else this.kill();
    h.onComplete!(NO_TRAILERS);
  }

  /** The exchange failed: the connection closes (or, when nothing was written, is released clean). */
  private fail(err: Error): void {
    const h = this.handler;
    if (h === undefined) return;
    this.handler = undefined;
    this.waiting = Timer.None;
    this.detachBody();
    if (this.written) this.kill();
    else this.pool.release(this);
    h.onError!(err);
  }

  private failed(err: Error): void {
    this.error ??= err;
  }

  private ended(): void {
    // A body read until the connection closes ends here.
    this.parser.finish();
    if (this.done && this.handler !== undefined) {
      this.keepAlive = false;
      return this.complete();
    }
    if (this.handler !== undefined && this.written) this.fail(codedError('UND_ERR_SOCKET', 'other side closed'));
    this.kill();
  }

  private closed(): void {
    if (this.handler !== undefined) {
      const err = this.error ?? codedError('UND_ERR_SOCKET', 'other side closed');
      if (this.written) this.fail(err);
      else {
        // Never connected (or closed before a byte went): the handler never heard onConnect.
        const h = this.handler;
        this.handler = undefined;
        this.kill();
        h.onError!(err);
      }
    }
    this.kill();
    if (this.parser.owner === this) giveBackParser(this.parser);
  }

  /** Close the connection; it no longer counts in its pool. */
  kill(): void {
    this.waiting = Timer.None;
    this.headDeadline.dispose();
    this.bodyDeadline.dispose();
    if (!this.dead) {
      this.dead = true;
      this.pool.gone(this);
    }
    if (!this.socket.destroyed) this.socket.destroy();
  }

  // --- timers ----------------------------------------------------------------------------------

  private wait(kind: Timer, ms: number): void {
    if (!(ms > 0)) {
      this.waiting = Timer.None;
      return;
    }
    this.waiting = kind;
    if (kind === Timer.Body) this.bodyDeadline.set(ms);
    else this.headDeadline.set(ms);
  }

  private readonly headTimedOut = (): void => {
    const kind = this.waiting;
    if (kind === Timer.Connect) {
      this.waiting = Timer.None;
      const h = this.handler;
      this.handler = undefined;
      this.kill();
      h?.onError!(codedError('UND_ERR_CONNECT_TIMEOUT', `connecting to ${this.pool.origin} timed out`));
    } else if (kind === Timer.Head) {
      this.waiting = Timer.None;
      this.fail(codedError('UND_ERR_HEADERS_TIMEOUT', 'Headers Timeout Error'));
    }
  };

  private readonly bodyTimedOut = (): void => {
    if (this.waiting !== Timer.Body) return;
    // Paused for a slow client: the member is not the slow one.
    if (this.paused) return this.wait(Timer.Body, this.bodyTimeoutMs);
    this.waiting = Timer.None;
    this.fail(codedError('UND_ERR_BODY_TIMEOUT', 'Body Timeout Error'));
  };
}
