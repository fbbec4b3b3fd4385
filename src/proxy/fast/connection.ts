/**
 * One client connection of the fast engine: llhttp parses the socket's bytes into requests, and
 * each goes through the same phases as on node:http (`Proxy.handle`) with a FastRequest and a
 * FastResponse. Rules:
 * - one request at a time, in order: a head parsed while an answer is in progress is held (the
 *   parser stops right after it, reading stops) and acted on once that answer is over;
 * - after an answer that ends the connection (a refusal, `Connection: close`, HTTP/1.0) nothing more
 *   is acted on: later bytes are read and dropped until the connection closes;
 * - bytes llhttp refuses are answered (400, 431) and close the connection; in a request's body
 *   they abort that request, and an answer already begun is cut instead;
 * - a body read faster than it is consumed stops reading; a body its answer did not wait for is
 *   read and dropped, so the next request can follow;
 * - the client ending its side ends the connection, as on node:http (an answer in progress is cut);
 * - a websocket upgrade hands the socket (and the bytes after its head) to the upgrade path;
 * - the listener's timeouts (keep-alive, head, whole request) read the times kept here.
 * llhttp reads the socket itself while nothing asks to stop reading (see http-parser.ts); from then
 * on the connection gives it the bytes of each 'data' event.
 */
import type { Socket } from 'node:net';
import { handleUpgrade } from '../upgrade.js';
import { refuseUnparsed } from '../respond.js';
import type { Proxy } from '../proxy.js';
import {
  consume, giveBackParser, METHODS, PAUSE, PROCEED, REQUEST, takeParser, unconsume, type HttpParser, type ParseError, type ParserCallbacks,
} from './http-parser.js';
import { FastRequest, type ConnectionView, type RequestOwner } from './request.js';
import { FastResponse, type ResponseOwner } from './response.js';
import { atTurnEnd, turnNow } from './turn.js';

/** What a connection needs of its listener. */
export interface ConnectionHost {
  readonly proxy: Proxy;
  /** Answers close their connections (the listener is being retired). */
  readonly retired: boolean;
  readonly keepAliveLines: string;
  /** The connection is gone (or handed over): the listener stops tracking it. */
  forget(c: ClientConnection): void;
}

/** A head parsed while an answer was in progress. */
interface Held {
  major: number;
  minor: number;
  headers: string[];
  method: number;
  url: string;
  upgrade: boolean;
  keepAlive: boolean;
}

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
/**
 * Pending writes up to this many bytes wait for the answer's end, or the end of this turn of the
 * event loop (setImmediate: after every I/O callback of the turn, so a whole answer read from a
 * member in one read leaves in one write), to leave as one.
 */
const COALESCE = 16 * 1024;

const CALLBACKS: ParserCallbacks = {
  messageBegin(this: HttpParser) {
    (this.owner as ClientConnection).messageBegin();
  },
  headers(this: HttpParser, headers: string[], url: string) {
    (this.owner as ClientConnection).headPart(headers, url);
  },
  headersComplete(major, minor, headers, method, url, _status, _message, upgrade, keepAlive) {
    return (this.owner as ClientConnection).head(major, minor, headers, method, url, upgrade, keepAlive);
  },
  body(this: HttpParser, chunk: Buffer) {
    (this.owner as ClientConnection).body(chunk);
  },
  messageComplete(this: HttpParser) {
    (this.owner as ClientConnection).messageEnd();
  },
  execute(this: HttpParser, result: number | ParseError) {
    (this.owner as ClientConnection).executed(result, undefined);
  },
};

/** `Expect: 100-continue` among the raw headers (hygiene has refused any other expectation). */
function expectsContinue(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 6 && raw[i]!.toLowerCase() === 'expect') return true;
  return false;
}

export class ClientConnection implements RequestOwner, ResponseOwner, ConnectionView {
  private readonly parser: HttpParser;
  /** The answer in progress. */
  private current: FastResponse | undefined;
  /** The request whose body the parser is in (its answer may be over already). */
  private reading: FastRequest | undefined;
  /** A head waiting for the answer in progress, and the bytes after it. */
  private held: Held | undefined;
  private rest: Buffer | undefined;
  /** A parse error past the answer in progress: answered once that answer is over. */
  private failed: ParseError | undefined;
  /** An upgrade request: the socket goes to the upgrade path once its head is parsed. */
  private upgrade: FastRequest | undefined;
  /** Nothing more is acted on. */
  private closing = false;
  private pausedForBody = false;
  /** llhttp is parsing: what waits for the end of a parse runs after it. */
  private inExecute = false;
  private doneInExecute = false;
  /** Writes of this turn, leaving as one. */
  private pending: (string | Buffer)[] = [];
  private pendingBytes = 0;
  private flushQueued = false;
  /** Head lines and target of a head that came in pieces. */
  private headLines: string[] = [];
  private headUrl = '';
  /** Date.now() (as of this turn) when the head being read began, the request being read began, the connection went idle (0: not). */
  headStart: number;
  requestStart: number;
  idleSince = 0;
  /** The peer's address, read once (node:net asks the kernel on the first read of it). */
  readonly remoteAddress: string | undefined;

  constructor(
    private readonly host: ConnectionHost,
    readonly socket: Socket,
  ) {
    this.remoteAddress = socket.remoteAddress;
    // A new connection is a head on its way (its first request is coming): not idle, and timed as a head.
    this.headStart = this.requestStart = turnNow();
    this.parser = takeParser(REQUEST, CALLBACKS, this);
    socket.on('data', (chunk: Buffer) => this.data(chunk));
    socket.on('end', () => this.peerEnd());
    socket.on('error', noop);
    socket.on('close', () => this.closed());
    socket.on('drain', () => this.current?.drained());
    consume(this.parser, socket);
  }

  get keepAliveLines(): string {
    return this.host.keepAliveLines;
  }

  /** Between requests, nothing in flight: the listener may close it (keep-alive timeout, shutdown). */
  get idle(): boolean {
    return this.current === undefined && this.reading === undefined && this.held === undefined && this.headStart === 0;
  }

  /** Bytes from a 'data' event (llhttp does not read the socket itself). */
  private data(chunk: Buffer): void {
    if (this.closing) return;
    if (this.held !== undefined) {
      // Read before the pause took hold: parsed after the held head.
      this.rest = this.rest === undefined ? chunk : Buffer.concat([this.rest, chunk]);
      return;
    }
    this.execute(chunk);
  }

  private execute(chunk: Buffer): void {
    this.inExecute = true;
    this.executed(this.parser.execute(chunk), chunk);
  }

  /** llhttp parsed `chunk` (undefined: the read it took from the socket itself). */
  executed(r: number | ParseError, chunk: Buffer | undefined): void {
    this.inExecute = false;
    if (this.closing) return;
    if (typeof r === 'number') {
      if (this.upgrade !== undefined) this.handOver((chunk ?? this.parser.getCurrentBuffer()).subarray(r));
    } else if (r.code === 'HPE_PAUSED') {
      if (this.held !== undefined) {
        this.rest = (chunk ?? this.parser.getCurrentBuffer()).subarray(r.bytesParsed);
        this.stopReading();
      }
    } else this.parseFailed(r);
    if (this.pausedForBody) this.stopReading();
    if (this.doneInExecute) {
      this.doneInExecute = false;
      this.next();
    }
  }

  /** Reading stops (a held request, a slow body consumer): for good off llhttp's own reading. */
  private stopReading(): void {
    unconsume(this.parser);
    this.socket.pause();
  }

  messageBegin(): void {
    this.inExecute = true;
    this.idleSince = 0;
    if (this.headStart === 0) this.headStart = this.requestStart = turnNow();
  }

  headPart(headers: string[], url: string): void {
    this.inExecute = true;
    // After a head: a chunked body's trailers, dropped.
    if (this.reading !== undefined) return;
    for (const h of headers) this.headLines.push(h);
    this.headUrl += url;
  }

  head(major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): number {
    this.inExecute = true;
    if (headers === undefined) {
      headers = this.headLines;
      this.headLines = [];
    }
    if (url === undefined) {
      url = this.headUrl;
      this.headUrl = '';
    }
    this.headStart = 0;
    if (this.closing || this.upgrade !== undefined) return PAUSE;
    if (this.current !== undefined) {
      this.held = { major, minor, headers, method, url, upgrade, keepAlive };
      // Its body is not read while it waits: the request timeout starts again when it is acted on.
      this.requestStart = 0;
      return PAUSE;
    }
    this.begin(major, minor, headers, method, url, upgrade, keepAlive);
    return PROCEED;
  }

  /** Act on a request: the phases take it from here. */
  private begin(major: number, minor: number, headers: string[], method: number, url: string, upgrade: boolean, keepAlive: boolean): void {
    const req = new FastRequest(this, this, METHODS[method] ?? 'GET', url, headers, major, minor);
    if (upgrade) {
      this.upgrade = req;
      return;
    }
    if (minor >= 1 && expectsContinue(headers)) req.expectContinue = true;
    // A listener a reload moved: each answer closes its connection, so clients move to the new one.
    const res = new FastResponse(this, req, keepAlive && !this.host.retired);
    this.current = res;
    this.reading = req;
    this.host.proxy.handle(req, res, 'http');
  }

  body(chunk: Buffer): void {
    this.inExecute = true;
    const req = this.reading;
    if (req === undefined || req.discard) return;
    // A full buffer stops reading once this parse is over.
    if (!req.push(chunk)) this.pausedForBody = true;
  }

  messageEnd(): void {
    this.inExecute = true;
    const req = this.reading;
    this.reading = undefined;
    this.requestStart = 0;
    req?.ended();
    if (this.pausedForBody) {
      // The whole body is in: nothing more to hold back (a next head waits its turn as any other).
      this.pausedForBody = false;
      if (this.held === undefined && !this.parser.consuming) this.socket.resume();
    }
    if (this.current === undefined && this.held === undefined && !this.closing) this.idleSince = turnNow();
  }

  bodyWanted(req: FastRequest): void {
    if (req !== this.reading) return;
    if (req.expectContinue) {
      req.expectContinue = false;
      if (this.current?.req === req && !this.current.headersSent) {
        this.send(CONTINUE);
        this.flush();
      }
    }
    if (this.pausedForBody) {
      this.pausedForBody = false;
      if (this.held === undefined && !this.parser.consuming) this.socket.resume();
    }
  }

  send(piece: string | Buffer): void {
    this.pending.push(piece);
    this.pendingBytes += piece.length;
    if (this.pendingBytes >= COALESCE) this.flush();
    else if (!this.flushQueued) {
      this.flushQueued = true;
      atTurnEnd(this.turnEnded);
    }
  }

  flush(done?: () => void): void {
    const p = this.pending;
    const n = p.length;
    const s = this.socket;
    if (n === 1) {
      const piece = p[0]!;
      if (typeof piece === 'string') s.write(piece, 'latin1');
      else s.write(piece);
    } else if (n > 1) {
      const out = Buffer.allocUnsafe(this.pendingBytes);
      let at = 0;
      for (const piece of p) at += typeof piece === 'string' ? out.write(piece, at, 'latin1') : piece.copy(out, at);
      s.write(out);
    }
    p.length = 0;
    this.pendingBytes = 0;
    if (done === undefined || s.destroyed) return;
    // Everything went to the kernel at once (the usual case): done, once this callback is over (a
    // microtask, not a tick: no tick queue to run per answer); else once what waits is out.
    if (s.writableLength === 0) queueMicrotask(done);
    else s.write('', 'latin1', (err) => err || done());
  }

  /** The turn is over: what it wrote leaves. */
  private readonly turnEnded = (): void => {
    this.flushQueued = false;
    if (this.pending.length > 0 && !this.socket.destroyed) this.flush();
  };

  cut(): void {
    // What was written goes first: the head and part of a body show the client an answer cut short.
    if (this.pending.length > 0) this.flush();
    this.socket.destroy();
  }

  responseDone(res: FastResponse, last: boolean): void {
    if (this.current !== res) return;
    this.current = undefined;
    if (last) {
      this.closing = true;
      return this.closeSoon();
    }
    if (this.inExecute) this.doneInExecute = true;
    else this.next();
  }

  /** The answer in progress is over: go on with what waited for it. */
  private next(): void {
    if (this.closing || this.socket.destroyed) return;
    const req = this.reading;
    if (req !== undefined) {
      if (req.expectContinue) {
        // The client waits for a 100 Continue that will not come: its body never follows.
        this.closing = true;
        return this.closeSoon();
      }
      // The answer did not wait for the whole body: the rest is read and dropped.
      req.discard = true;
      if (this.pausedForBody) {
        this.pausedForBody = false;
        if (!this.parser.consuming) this.socket.resume();
      }
      return;
    }
    const failed = this.failed;
    if (failed !== undefined) return this.refuse(failed);
    const h = this.held;
    if (h === undefined) {
      this.idleSince = turnNow();
      return;
    }
    this.held = undefined;
    const rest = this.rest;
    this.rest = undefined;
    this.requestStart = turnNow();
    this.begin(h.major, h.minor, h.headers, h.method, h.url, h.upgrade, h.keepAlive);
    if (this.upgrade !== undefined) return this.handOver(rest ?? Buffer.alloc(0));
    this.parser.resume();
    if (rest !== undefined && rest.length > 0) this.execute(rest);
    if (this.held === undefined && !this.pausedForBody && !this.closing) this.socket.resume();
  }

  /** llhttp refused bytes: nothing after them can be read. */
  private parseFailed(err: ParseError): void {
    const res = this.current;
    const req = this.reading;
    if (res !== undefined && res.req !== req) {
      // A later request is malformed: the answer in progress finishes first.
      this.failed = err;
      this.stopReading();
      return;
    }
    this.closing = true;
    this.reading = undefined;
    if (res !== undefined && res.headersSent) {
      // An answer is on its way: it cannot be finished, and must not look whole.
      req?.abort();
      return this.cut();
    }
    // The 400 is the connection's answer; the exchange reading this body learns it was cut.
    if (res !== undefined) res.detached = true;
    this.refuse(err);
    req?.abort();
  }

  private refuse(err: ParseError): void {
    this.closing = true;
    this.failed = undefined;
    if (this.pending.length > 0) this.flush();
    refuseUnparsed(this.host.proxy.deps, this.socket, err.code);
    this.closeSoon();
  }

  /**
   * The client ended its side: as node:http does, the connection ends with it — a body in progress
   * is cut, and so is an answer in progress (the client is taken as gone).
   */
  private peerEnd(): void {
    this.closing = true;
    this.reading?.abort();
    this.reading = undefined;
    if (this.pending.length > 0) this.flush();
    this.socket.end();
  }

  /** Close once what was written is out (FIN after the last byte, then the socket is released). */
  private closeSoon(): void {
    const s = this.socket;
    if (s.destroyed) return;
    if (this.pending.length > 0) this.flush();
    if (!s.writableEnded) s.end();
    if (s.writableFinished) s.destroy();
    else s.once('finish', () => s.destroy());
  }

  /** The socket goes to the upgrade path with the bytes read after the head. */
  private handOver(early: Buffer): void {
    const req = this.upgrade!;
    // Back to the socket's own stream, paused: nothing is read until the upgrade path pipes it.
    this.socket.pause();
    this.release();
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('end');
    this.socket.removeAllListeners('close');
    this.socket.removeAllListeners('drain');
    handleUpgrade(this.host.proxy, req, this.socket, early, 'http');
  }

  private closed(): void {
    this.release();
    this.reading?.abort();
    this.reading = undefined;
    const res = this.current;
    this.current = undefined;
    res?.gone();
  }

  private release(): void {
    if (this.parser.owner !== this) return;
    this.host.forget(this);
    giveBackParser(this.parser);
  }
}

function noop(): void {}
