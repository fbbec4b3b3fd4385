/**
 * Upstream-request and body phases of a plain request on `node:http` + undici: the exchange is
 * the undici dispatch handler itself (legacy raw-header API: no header parsing twice, no
 * per-request closures). The response body streams with backpressure; a redirect's body is
 * discarded and the request re-sent to the member it names; failures are retried on another
 * member only while nothing reached the first.
 */
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ERRORS, type ErrorCode } from '../errors.js';
import type { RequestView } from '../routing/keys.js';
import { isResolution, type Route } from '../routing/route.js';
import type { Resolution, ResolveResult } from '../routing/strategy.js';
import type { BodyLimit } from './body.js';
import { RouteCache, type Context as CacheContext, type Fill, type Lookup, type StoredResponse } from '../cache/index.js';
import { cacheRequest, refreshInBackground } from './cache.js';
import type { Refusal, RequestHead } from './context.js';
import { Exchange, type PipelineDeps } from './exchange.js';
import { logAnswer, logEnd, logError, type Aborted } from './log.js';
import type { RedirectTarget } from './redirect.js';
import { countAffinity, resolveTarget } from './resolve.js';
import { sendError } from './respond.js';
import type { ClientRequest, ClientResponse } from './transport.js';
import type { UpstreamPool } from './upstreams.js';
import { debugValue, dropHomingCacheControl, judgeResponseHead, memberHead } from './response-head.js';

/** Errors where undici had not written anything: safe to try another member. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);
/** homing's own answers for a backend it could not get an answer from (no member, connect, reset, timeout). */
const UNREACHABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['HOMING_ERR_NO_LIVE_MEMBER', 'HOMING_ERR_UPSTREAM_CONNECT', 'HOMING_ERR_UPSTREAM_RESET', 'HOMING_ERR_UPSTREAM_TIMEOUT']);
/** The member closed or reset the connection after the request went out, before any answer. */
const RESET_ERRORS = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED']);

const kExchange = Symbol('homing.exchange');
type Res = ClientResponse & { [kExchange]?: HttpExchange };

function onResClose(this: Res): void {
  this[kExchange]?.closed();
}
function onResDrain(this: Res): void {
  this[kExchange]?.drained();
}

export type Body = Buffer | Readable | null;

export class HttpExchange extends Exchange implements Dispatcher.DispatchHandler {
  private abortUpstream: ((err?: Error) => void) | undefined;
  private resume: (() => void) | undefined;
  private connected = false;
  private responded = false;
  private finished = false;
  /** Re-sends after a reset so far (bounded by the route's `retries`). */
  private resets = 0;
  /** The undici pool of the current attempt. */
  private upstream: UpstreamPool | undefined;
  private drainHooked = false;
  /** Why the member's answer is not HTTP (an impossible status code): answered 502 once undici aborts. */
  private invalid: string | undefined;
  /** A redirect to follow, or refuse, once the member's answer to this hop is read. */
  private pending: RedirectTarget | Refusal | undefined;
  private readonly res: Res;
  /** Body bytes written to the client (the access log's bytesOut). */
  private bytesOut = 0;
  /** Who cut the answer short, when homing destroyed the response. */
  private cut: Aborted;
  /** The cache's reading of the request (cached routes, GET and HEAD). */
  private cacheCtx: CacheContext | undefined;
  /** A stale stored answer being revalidated (served on a 304, or when the backend fails and stale-if-error allows). */
  private stored: StoredResponse | undefined;
  /** Where the answer goes into the store as it streams, when it may be stored. */
  private fill: Fill | undefined;
  /** A successful answer invalidates the stored answers for this URL (an unsafe method). */
  private invalidates = false;
  /** A stored answer to give once the member's answer (a 304, or an error answer) is read and discarded. */
  private serveAfter: { entry: StoredResponse; outcome: 'revalidated' | 'stale' } | undefined;

  constructor(
    deps: PipelineDeps,
    route: Route,
    head: RequestHead,
    view: RequestView,
    replayable: boolean,
    private readonly req: ClientRequest,
    res: ClientResponse,
    private readonly body: Body,
    /** What counts a streamed body's bytes and idle time, when it streams. */
    private readonly limit?: BodyLimit,
  ) {
    super(deps, route, head, view, replayable);
    this.res = res as Res;
    this.res[kExchange] = this;
    res.on('close', onResClose);
  }

  start(): void {
    const rc = this.route.cache;
    if (rc === undefined) return this.next();
    // A GET or HEAD with a body has no defined meaning for a cache: it goes by (and unsafe methods still invalidate).
    const safe = this.head.method === 'GET' || this.head.method === 'HEAD';
    if (safe && this.body !== null) return this.cached(rc, { kind: 'bypass', invalidates: false });
    const l = rc.lookup(cacheRequest(this));
    if (!(l instanceof Promise)) return this.cached(rc, l);
    l.then(
      (v) => this.cached(rc, v),
      (err: unknown) => {
        this.deps.log.error({ err, route: this.route.name }, 'cache look-up failed');
        this.cacheOutcome = 'bypass';
        this.next();
      },
    );
  }

  /** Cache look-up phase: answer from the store, or go on to the backend (conditionally for a stale answer). */
  private cached(rc: RouteCache, l: Lookup): void {
    if (this.finished) {
      // The client left while the look-up waited: a fill it would have made must not hold others.
      if (l.kind === 'fetch') l.fill?.giveUp();
      else if (l.kind === 'hit') l.refresh?.giveUp();
      return;
    }
    switch (l.kind) {
      case 'bypass':
        this.cacheOutcome = 'bypass';
        this.invalidates = l.invalidates;
        return this.next();
      case 'unsatisfiable':
        this.cacheOutcome = 'miss';
        return this.error('HOMING_ERR_NOT_CACHED', 'the request is only-if-cached and nothing stored answers it');
      case 'hit':
        this.serveStored(rc, l.entry, l.ctx, l.outcome);
        if (l.refresh !== undefined) refreshInBackground(this, rc, l.entry, l.refresh);
        return;
      case 'fetch':
        this.cacheOutcome = 'miss';
        this.cacheCtx = l.ctx;
        this.fill = l.fill;
        if (l.entry !== undefined) {
          this.stored = l.entry;
          // Ask with the stored answer's validators (the client's own conditions are answered here).
          const h = this.head.headers;
          const c = RouteCache.conditional(l.entry, h);
          h.length = 0;
          for (const v of c) h.push(v);
        }
        return this.next();
    }
  }

  /** Answer from the store: the client's conditions decide between the stored answer and a 304. */
  private serveStored(rc: RouteCache, e: StoredResponse, ctx: CacheContext, outcome: 'hit' | 'stale' | 'revalidated'): void {
    this.finished = true;
    this.cacheOutcome = outcome;
    const res = this.res;
    if (res.destroyed) return;
    if (this.deps.drain.draining) res.shouldKeepAlive = false;
    const head = rc.answerHead(e, ctx);
    if (this.route.config.debugHeader) head.push('x-homing', debugValue(this, this.resolution?.member.id ?? '-', this.resolution?.by ?? '-'));
    if (rc.notModified(e, ctx)) {
      res.writeHead(304, RouteCache.notModifiedHead(head));
      res.end();
      return;
    }
    const noBody = e.status === 204 || e.status === 304;
    if (!noBody) head.push('content-length', String(e.body.length));
    res.writeHead(e.status, head);
    if (this.head.method === 'HEAD' || noBody) res.end();
    else {
      this.bytesOut = e.body.length;
      res.end(e.body);
    }
  }

  /** Resolve, then send (or answer why not). */
  private next(): void {
    const r = resolveTarget(this);
    if (!(r instanceof Promise)) return this.dispatchTo(r);
    r.then(
      (x) => this.dispatchTo(x),
      (err: unknown) => {
        this.deps.log.error({ err, route: this.route.name }, 'resolve failed');
        this.error('HOMING_ERR_INTERNAL', 'could not resolve a target');
      },
    );
  }

  private dispatchTo(r: ResolveResult): void {
    if (this.finished) return;
    if (!isResolution(r)) {
      if (this.attempt === 0) return this.error(r.error, r.message);
      return this.error('HOMING_ERR_UPSTREAM_CONNECT', 'no member could be connected to');
    }
    countAffinity(this, r);
    this.send(r);
  }

  private send(r: Resolution): void {
    if (this.finished) return;
    this.take(r);
    this.connected = false;
    this.responded = false;
    const cfg = this.route.config;
    const pool = this.deps.upstreams.get(r.member, this.deps.upstreamOptions(this.route, r.pool));
    this.upstream = pool;
    pool.dispatch(
      {
        path: this.uri,
        method: this.head.method,
        headers: this.head.headers,
        body: this.body,
        headersTimeout: cfg.timeouts.header,
        bodyTimeout: cfg.timeouts.body,
      },
      this,
    );
  }

  // --- undici handler -------------------------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    this.connected = true;
    this.abortUpstream = abort;
    if (this.finished) abort();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const r = this.resolution!;
    const route = this.route;
    if (statusCode < 200) {
      // An interim answer (undici hands over every 1xx but 100 and 101): the final one follows.
      if (statusCode >= 100) return this.interim(statusCode, rawHeaders);
      // Not a status code at all (RFC 9110 §15: three digits, 1xx to 5xx).
      this.invalid = `${r.member.id} sent an invalid status code ${statusCode}`;
      this.abortUpstream?.(new Error(this.invalid));
      return false;
    }
    if (statusCode > 599) {
      this.invalid = `${r.member.id} sent an invalid status code ${statusCode}`;
      this.abortUpstream?.(new Error(this.invalid));
      return false;
    }
    this.responded = true;
    this.resume = resume;
    this.deps.health?.success(r.pool, r.member);
    logAnswer(this, statusCode);
    const v = judgeResponseHead(this, statusCode, memberHead(rawHeaders, route.redirectHeader, route.ownerHeader, this.deps.dropResponseHeaders));
    if (!('deliver' in v)) {
      // Acted on once this answer is read (its body is discarded): the client never sees it.
      this.pending = 'code' in v ? v : v.follow;
      return true;
    }
    const rc = route.cache;
    if (rc !== undefined) {
      const stored = this.stored;
      if (stored !== undefined && (statusCode === 304 || (statusCode >= 500 && rc.staleIfError(stored, this.cacheCtx!)))) {
        // Not for the client: a 304 refreshes the stored answer, an error gives way to it (stale-if-error).
        this.fill?.giveUp();
        this.fill = undefined;
        this.serveAfter = statusCode === 304 ? { entry: rc.refresh(stored, this.cacheCtx!, v.deliver), outcome: 'revalidated' } : { entry: stored, outcome: 'stale' };
        return true;
      }
      if (stored !== undefined && this.head.method === 'GET') rc.superseded(stored, statusCode);
      if (this.fill !== undefined && !this.fill.head(statusCode, v.deliver)) this.fill = undefined;
      if (this.invalidates) rc.invalidate(cacheRequest(this), statusCode, v.deliver);
    }
    // Read by the cache (when the route has one), and on every route kept from the client.
    dropHomingCacheControl(v.deliver);
    const res = this.res;
    if (res.destroyed) return false;
    // Shutting down: this answer is the connection's last.
    if (this.deps.drain.draining) res.shouldKeepAlive = false;
    try {
      res.writeHead(statusCode, v.deliver);
    } catch (err) {
      this.deps.log.warn({ err, route: route.name, member: r.member.id }, 'upstream response head rejected');
      this.abortUpstream?.(err as Error);
      return false;
    }
    return true;
  }

  /**
   * RFC 9110 §15.2: 103 Early Hints goes on to an HTTP/1.1 client (its Link headers let a browser
   * start fetching); other interim answers (102 Processing, …) are dropped. The final answer follows.
   */
  private interim(statusCode: number, rawHeaders: Buffer[]): boolean {
    if (statusCode !== 103 || this.req.httpVersionMinor < 1 || this.res.headersSent || this.res.destroyed) return true;
    const h = memberHead(rawHeaders, this.route.redirectHeader, this.route.ownerHeader, this.deps.dropResponseHeaders);
    const hints: Record<string, string | string[]> = {};
    for (let i = 0; i < h.headers.length; i += 2) {
      const k = h.headers[i]!.toLowerCase();
      const prev = hints[k];
      hints[k] = prev === undefined ? h.headers[i + 1]! : Array.isArray(prev) ? [...prev, h.headers[i + 1]!] : [prev, h.headers[i + 1]!];
    }
    try {
      this.res.writeEarlyHints(hints);
    } catch {
      // A Link value Node will not write: the hints are advisory, the final answer still comes.
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.pending || this.serveAfter) return true; // the redirect's (or the 304's) body is discarded
    this.fill?.data(chunk);
    this.bytesOut += chunk.length;
    if (this.res.write(chunk)) return true;
    // The client reads slower than the upstream sends: pause undici until the socket drains.
    if (!this.drainHooked) {
      this.drainHooked = true;
      this.res.on('drain', onResDrain);
    }
    return false;
  }

  drained(): void {
    this.resume?.();
  }

  onComplete(): void {
    this.release();
    const p = this.pending;
    if (p) {
      this.pending = undefined;
      if (this.finished) return;
      if ('code' in p) return this.error(p.code, p.message);
      return this.send(this.redirected(p));
    }
    const after = this.serveAfter;
    if (after !== undefined) {
      this.serveAfter = undefined;
      if (this.finished) return;
      return this.serveStored(this.route.cache!, after.entry, this.cacheCtx!, after.outcome);
    }
    // Trailers are dropped: a member's trailer never becomes a header of the client's answer.
    this.finished = true;
    this.fill?.complete();
    this.fill = undefined;
    this.res.end();
  }

  onError(err: Error & { code?: string }): void {
    this.release(err.code ?? err.message);
    this.fill?.giveUp();
    this.fill = undefined;
    this.serveAfter = undefined;
    const r = this.resolution;
    const route = this.route;
    if (this.finished) return; // the client went away and we aborted
    if (this.invalid !== undefined) return this.error('HOMING_ERR_UPSTREAM_BAD_RESPONSE', this.invalid);
    if (this.responded && !this.pending) {
      // Mid-body failure: cut the client connection so it cannot take a truncated body as whole.
      this.finished = true;
      this.cut = 'upstream';
      this.res.destroy();
      return;
    }
    this.pending = undefined;
    const code = err.code ?? '';
    const limited = this.limit?.exceeded === true;
    if (this.limit?.timedOut) {
      return this.error('HOMING_ERR_CLIENT_TIMEOUT', `the request body stalled for more than ${route.config.timeouts.clientBody} ms`, true);
    }
    if (!this.connected && r) {
      // Nothing was written upstream: passive failure, then the next candidate.
      this.memberFailed(false);
      if (limited) return this.error('HOMING_ERR_BODY_TOO_LARGE', 'request body too large', true);
      if (CONNECT_ERRORS.has(code) && this.attempt < route.config.retries && !this.clientGone() && this.hops === 0) {
        this.markTried();
        return this.next();
      }
      if (code === 'UND_ERR_CONNECT_TIMEOUT') return this.error('HOMING_ERR_UPSTREAM_TIMEOUT', `connecting to ${r.member.id} timed out`);
      return this.error('HOMING_ERR_UPSTREAM_CONNECT', `cannot connect to ${r.member.id}: ${code || err.message}`);
    }
    if (limited) return this.error('HOMING_ERR_BODY_TOO_LARGE', 'request body too large', true);
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      this.memberFailed(true);
      return this.error('HOMING_ERR_UPSTREAM_TIMEOUT', `${r?.member.id} sent no response head within ${route.config.timeouts.header} ms`);
    }
    if (code === 'UND_ERR_HEADERS_OVERFLOW' || code.startsWith('HPE_') || code === 'UND_ERR_INFO' || err.name === 'HTTPParserError') {
      return this.error('HOMING_ERR_UPSTREAM_BAD_RESPONSE', `${r?.member.id} sent an invalid response head`);
    }
    if (code === 'UND_ERR_SOCKET' && err.message === 'bad response') {
      // undici refuses a 100 Continue homing did not ask for (it never sends Expect upstream) and
      // an answer to no request: not HTTP it can relay, and sending again would meet it again.
      return this.error('HOMING_ERR_UPSTREAM_BAD_RESPONSE', `${r?.member.id} sent a response homing cannot relay (an unsolicited 100 Continue, or an answer to no request)`);
    }
    if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_ABORTED' || this.clientGone()) {
      // The client's upload ended early or the client is gone: nothing useful to answer.
      this.finished = true;
      this.cut = 'client';
      this.res.destroy();
      return;
    }
    // Sent (or began sending) and the connection failed before any byte of an answer: the member
    // died with the request in flight, or a pooled socket it had closed was reused. An idempotent
    // request is sent again (nothing reached the client yet) on a fresh connection: a balanced
    // request to another member, a keyed one (hash, affinity) to the same member, which moves
    // its keys only if connecting to it fails too. Never a body that could not be kept.
    if (r && RESET_ERRORS.has(code) && this.replayable && this.resets < route.config.retries && route.retryMethods.has(this.head.method)) {
      this.resets++;
      // A failure for passive health all the same (a success on the fresh connection clears it).
      this.memberFailed(true);
      if (this.upstream) this.deps.upstreams.discard(r.member, this.deps.upstreamOptions(route, r.pool), this.upstream);
      if (r.by === 'balance' && this.hops === 0) {
        // Another member while there is an untried one; else the same on a fresh connection.
        this.markTried();
        const alt = resolveTarget(this);
        return this.send(!(alt instanceof Promise) && isResolution(alt) ? alt : r);
      }
      this.deps.metrics.retries.labels(route.name).inc();
      return this.send(r);
    }
    this.memberFailed(true);
    this.error('HOMING_ERR_UPSTREAM_RESET', `${r?.member.id} closed the connection before a response: ${code || err.message}`);
  }

  /** The client is gone (its upload aborted or its socket closed). `req.destroyed` alone is not it: Node destroys req once its body has been read. */
  private clientGone(): boolean {
    return this.res.destroyed || (this.req.destroyed && !this.req.complete);
  }

  /** The response closed: written to the end, cut by homing, or the client went away first. */
  closed(): void {
    const res = this.res;
    let aborted = this.cut;
    this.fill?.giveUp();
    this.fill = undefined;
    if (!this.finished && !res.writableEnded) {
      this.finished = true;
      aborted = 'client';
      this.abortUpstream?.(new Error('client closed'));
      const b = this.body;
      if (b && !Buffer.isBuffer(b) && b !== this.req) (b as Readable).destroy();
    } else if (aborted === undefined && !res.writableFinished) aborted = 'client';
    this.route.cache?.count(this.cacheOutcome ?? 'bypass');
    // 499 (nginx's "client closed request") when the client left before any answer.
    logEnd(this, res.headersSent ? res.statusCode : 499, this.bytesIn(), this.bytesOut, aborted);
  }

  /** Request body bytes read from the client. */
  private bytesIn(): number {
    const b = this.body;
    if (b === null) return 0;
    if (Buffer.isBuffer(b)) return b.length;
    return this.limit?.received ?? 0;
  }

  private error(code: ErrorCode, message: string, close = false): void {
    this.fill?.giveUp();
    this.fill = undefined;
    const stored = this.stored;
    if (stored !== undefined && ERRORS[code].status >= 500 && code !== 'HOMING_ERR_NOT_CACHED' && !this.res.headersSent) {
      const rc = this.route.cache!;
      if (rc.staleIfError(stored, this.cacheCtx!)) {
        // The backend failed and the stored answer may stand in for it (stale-if-error).
        logError(this.deps, this.route, code, `${message}; answered from the cache (stale-if-error)`, this);
        return this.serveStored(rc, stored, this.cacheCtx!, 'stale');
      }
      if (UNREACHABLE.has(code) && rc.needsConfirmation(stored)) {
        // RFC 9111 §5.2.2.2: a cache that cannot reach the origin for such an answer says so (504).
        message = `${message}; the stored answer may not be served unconfirmed`;
        code = 'HOMING_ERR_NOT_REVALIDATED';
      }
    }
    this.finished = true;
    this.errorCode = code;
    logError(this.deps, this.route, code, message, this);
    // A body we did not read to the end leaves the connection unusable: close it.
    const sent = sendError(this.res, code, message, close || !this.replayable || code === 'HOMING_ERR_UPSTREAM_RESET');
    if (sent < 0) this.cut = 'upstream';
    else this.bytesOut = sent;
  }
}
