/**
 * The HTTP proxy: match → resolve → forward (DESIGN §2). One Exchange object per request is the
 * undici dispatch handler (no per-request closures); response bodies stream with backpressure.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { ErrorCode } from '../errors.js';
import type { Member } from '../members/member.js';
import type { Route } from '../routing/route.js';
import type { RequestView } from '../routing/keys.js';
import type { Decision } from '../routing/strategy.js';
import type { Metrics } from '../admin/metrics.js';
import { downstreamHeaders, upstreamHead } from './headers.js';
import { parseTarget, routingHost } from './path.js';
import { sendError } from './respond.js';
import type { UpstreamOptions, Upstreams } from './upstreams.js';

export interface HealthReporter {
  /** A request to `member` of route's pool failed at connect/reset/timeout (passive health). */
  failure(route: Route, member: Member): void;
  success(route: Route, member: Member): void;
}

export interface ProxyDeps {
  routes: readonly Route[];
  upstreams: Upstreams;
  upstreamOptions(route: Route): UpstreamOptions;
  metrics: Metrics;
  health?: HealthReporter;
  log: Logger;
  /** Request headers never forwarded (lower-case): principal metadata, internal protocol headers. */
  dropRequestHeaders: ReadonlySet<string>;
}

/** Errors where undici had not written anything: safe to try another member. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

const kExchange = Symbol('homing.exchange');
type Res = ServerResponse & { [kExchange]?: Exchange };

function onResClose(this: Res): void {
  this[kExchange]?.clientClosed();
}
function onResDrain(this: Res): void {
  this[kExchange]?.drained();
}
function onReqError(): void {
  // The client's upload failed (abort/reset); undici aborts the upstream request via its own listener.
}

/** Counts request body bytes for chunked uploads and fails past the route's maxBody. */
class BodyLimit extends Transform {
  private seen = 0;
  exceeded = false;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      this.exceeded = true;
      cb(new Error('request body too large'));
      return;
    }
    cb(null, chunk);
  }
}

export class Proxy {
  private readonly routes: readonly Route[];
  constructor(private readonly deps: ProxyDeps) {
    this.routes = deps.routes;
  }

  /** Route for a request, with its regex match. */
  match(method: string, host: string, path: string): { route: Route; match: RegExpExecArray | null } | undefined {
    for (const route of this.routes) {
      const m = route.matches(method, host, path);
      if (m !== false) return { route, match: m };
    }
    return undefined;
  }

  handle(req: IncomingMessage, res: ServerResponse, proto: 'http' | 'https'): void {
    req.on('error', onReqError);
    const target = parseTarget(req.url ?? '');
    if (!target) return this.fail(res, undefined, 'HOMING_ERR_BAD_REQUEST', 'invalid request target');
    const rawHost = target.authority ?? req.headers.host;
    if (rawHost === undefined) return this.fail(res, undefined, 'HOMING_ERR_BAD_REQUEST', 'missing Host header');
    const host = routingHost(rawHost);
    if (host === undefined) return this.fail(res, undefined, 'HOMING_ERR_BAD_REQUEST', 'invalid Host header');
    const method = req.method ?? 'GET';
    const found = this.match(method, host, target.path);
    if (!found) return this.fail(res, undefined, 'HOMING_ERR_NO_ROUTE', 'no route matches this request');
    const { route } = found;

    const head = upstreamHead(req.rawHeaders, this.deps.dropRequestHeaders);
    if (head.hostCount > 1) return this.fail(res, route, 'HOMING_ERR_BAD_REQUEST', 'more than one Host header');
    if (head.badExpect) return this.fail(res, route, 'HOMING_ERR_EXPECTATION_FAILED', 'only Expect: 100-continue is supported');
    if (target.authority !== undefined) {
      // Absolute-form: the target's authority is the host (RFC 9112 §3.2.2).
      for (let i = 0; i < head.headers.length; i += 2) if (head.headers[i]!.toLowerCase() === 'host') head.headers[i + 1] = target.authority;
      if (head.hostCount === 0) head.headers.push('host', target.authority);
    }

    const cl = req.headers['content-length'];
    const chunked = req.headers['transfer-encoding'] !== undefined;
    let body: IncomingMessage | BodyLimit | null = null;
    if (cl !== undefined) {
      const n = Number(cl);
      if (n > route.config.maxBody) return this.fail(res, route, 'HOMING_ERR_BODY_TOO_LARGE', `request body over ${route.config.maxBody} bytes`, true);
      if (n > 0) body = req;
    } else if (chunked) {
      const limit = new BodyLimit(route.config.maxBody);
      req.pipe(limit);
      limit.on('error', onReqError);
      body = limit;
    }

    const remote = req.socket.remoteAddress ?? '';
    head.headers.push(
      'x-forwarded-for', remote.startsWith('::ffff:') ? remote.slice(7) : remote,
      'x-forwarded-proto', proto,
      'x-forwarded-host', rawHost,
      'via', head.via === undefined ? '1.1 homing' : `${head.via}, 1.1 homing`,
      'x-request-id', head.requestId ?? randomUUID(),
    );

    const view: RequestView = { method, uri: target.uri, path: target.path, host, headers: req.headers, match: found.match };
    const ex = new Exchange(this.deps, route, req, res as Res, view, head.headers, body);
    ex.start();
  }

  fail(res: ServerResponse, route: Route | undefined, code: ErrorCode, message: string, close = false): void {
    this.deps.metrics.errors.labels(route?.name ?? '', code).inc();
    sendError(res, code, message, close);
  }
}

/** One proxied request: the undici dispatch handler (legacy raw-header API: no header parsing twice). */
class Exchange implements Dispatcher.DispatchHandler {
  private attempt = 0;
  private tried: Set<Member> | undefined;
  private decision: Decision | undefined;
  private abortUpstream: ((err?: Error) => void) | undefined;
  private resume: (() => void) | undefined;
  private connected = false;
  private responded = false;
  private finished = false;
  private resetRetried = false;
  private started = 0;

  constructor(
    private readonly deps: ProxyDeps,
    private readonly route: Route,
    private readonly req: IncomingMessage,
    private readonly res: Res,
    private readonly view: RequestView,
    private readonly headers: string[],
    private readonly body: IncomingMessage | BodyLimit | null,
  ) {
    res[kExchange] = this;
    res.on('close', onResClose);
  }

  start(): void {
    const d = this.route.resolve(this.view, this.attempt, this.tried);
    if (!d) {
      if (this.attempt === 0) return this.error('HOMING_ERR_NO_LIVE_MEMBER', `pool "${this.route.pool.name}" has no live member`);
      return this.error('HOMING_ERR_UPSTREAM_CONNECT', 'no member could be connected to');
    }
    this.decision = d;
    this.connected = false;
    d.member.inflight++;
    this.started = performance.now();
    const cfg = this.route.config;
    const pool = this.deps.upstreams.get(d.member, this.deps.upstreamOptions(this.route));
    pool.dispatch(
      {
        path: this.view.uri,
        method: this.view.method,
        headers: this.headers,
        body: this.body,
        headersTimeout: cfg.timeouts.header,
        bodyTimeout: cfg.timeouts.body,
      },
      this,
    );
  }

  private release(): void {
    if (this.decision) {
      this.decision.member.inflight--;
    }
  }

  // --- undici handler -------------------------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    this.connected = true;
    this.abortUpstream = abort;
    if (this.finished) abort();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const d = this.decision!;
    const route = this.route;
    this.responded = true;
    this.resume = resume;
    this.deps.health?.success(route, d.member);
    this.deps.metrics.request(route.name, d.member.id, statusCode);
    this.deps.metrics.latency(route.name, d.member.id, (performance.now() - this.started) / 1000);
    const headers = downstreamHeaders(rawHeaders, NO_DROP);
    if (route.config.debugHeader) {
      headers.push('x-homing', `route=${route.name}; target=${d.member.id}; by=${d.by}; cache=bypass; hops=0`);
    }
    const res = this.res;
    if (res.destroyed) return false;
    res.on('drain', onResDrain);
    try {
      res.writeHead(statusCode, headers);
    } catch (err) {
      this.deps.log.warn({ err, route: route.name, member: d.member.id }, 'upstream response head rejected');
      this.abortUpstream?.(err as Error);
      return false;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }

  drained(): void {
    this.resume?.();
  }

  onComplete(): void {
    // Trailers are dropped (PITFALLS §C 16).
    this.finished = true;
    this.release();
    this.res.end();
  }

  onError(err: Error & { code?: string }): void {
    this.release();
    const d = this.decision;
    const route = this.route;
    if (this.finished) return; // client went away and we aborted
    if (this.responded) {
      // Mid-body failure: cut the client connection so it cannot take a truncated body as whole.
      this.finished = true;
      this.res.destroy();
      return;
    }
    const code = err.code ?? '';
    if (!this.connected && d) {
      // Nothing was written upstream: passive failure, then the next candidate.
      this.deps.health?.failure(route, d.member);
      if (this.body instanceof BodyLimit && this.body.exceeded) return this.error('HOMING_ERR_BODY_TOO_LARGE', 'request body too large', true);
      if (CONNECT_ERRORS.has(code) && this.attempt < route.config.retries && !this.req.destroyed) {
        (this.tried ??= new Set()).add(d.member);
        this.attempt++;
        this.deps.metrics.retries.labels(route.name).inc();
        return this.start();
      }
      if (code === 'UND_ERR_CONNECT_TIMEOUT') return this.error('HOMING_ERR_UPSTREAM_TIMEOUT', `connecting to ${d.member.id} timed out`);
      return this.error('HOMING_ERR_UPSTREAM_CONNECT', `cannot connect to ${d.member.id}: ${code || err.message}`);
    }
    if (this.body instanceof BodyLimit && this.body.exceeded) return this.error('HOMING_ERR_BODY_TOO_LARGE', 'request body too large', true);
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      if (d) this.deps.health?.failure(route, d.member);
      return this.error('HOMING_ERR_UPSTREAM_TIMEOUT', `${d?.member.id} sent no response head within ${route.config.timeouts.header} ms`);
    }
    if (code === 'UND_ERR_HEADERS_OVERFLOW' || code.startsWith('HPE_') || code === 'UND_ERR_INFO') {
      return this.error('HOMING_ERR_UPSTREAM_BAD_RESPONSE', `${d?.member.id} sent an invalid response head`);
    }
    if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_ABORTED' || this.req.destroyed) {
      // The client's upload ended early or the client is gone: nothing useful to answer.
      this.finished = true;
      this.res.destroy();
      return;
    }
    // Sent (or began sending) and the connection failed before a response head. A stale pooled
    // socket closed by the upstream looks the same: one re-send when it is provably safe.
    if (d && !this.resetRetried && this.body === null && IDEMPOTENT.has(this.view.method) && (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET')) {
      this.resetRetried = true;
      (this.tried ??= new Set()).add(d.member);
      this.deps.metrics.retries.labels(route.name).inc();
      return this.start();
    }
    if (d) this.deps.health?.failure(route, d.member);
    this.error('HOMING_ERR_UPSTREAM_RESET', `${d?.member.id} closed the connection before a response: ${code || err.message}`);
  }

  clientClosed(): void {
    if (this.finished || this.res.writableEnded) return;
    this.finished = true;
    this.abortUpstream?.(new Error('client closed'));
    if (this.body && this.body !== this.req) this.body.destroy();
  }

  private error(code: ErrorCode, message: string, close = false): void {
    this.finished = true;
    const d = this.decision;
    if (d && code !== 'HOMING_ERR_NO_LIVE_MEMBER') this.deps.log.warn({ route: this.route.name, member: d.member.id, code }, message);
    this.deps.metrics.errors.labels(this.route.name, code).inc();
    sendError(this.res, code, message, close || this.body !== null);
  }
}

const NO_DROP: ReadonlySet<string> = new Set();
