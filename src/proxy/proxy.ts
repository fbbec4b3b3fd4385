/**
 * The HTTP proxy: match → resolve → forward → learn (DESIGN §2). One Exchange object per request
 * is the undici dispatch handler (no per-request closures on the plain path); response bodies
 * stream with backpressure; backend redirects are followed inside (DESIGN §5).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BlockList } from 'node:net';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { ErrorCode } from '../errors.js';
import type { Member } from '../members/member.js';
import type { Route } from '../routing/route.js';
import { rawHeaderValue, type RequestView } from '../routing/keys.js';
import type { Decision } from '../routing/strategy.js';
import type { Metrics } from '../admin/metrics.js';
import { MAX_HEADER_COUNT, downstreamHeaders, forwarding, rawHeader, upstreamHead } from './headers.js';
import { parseTarget, routingHost } from './path.js';
import { isClosing, markClosing, sendError } from './respond.js';
import { BodyLimit, collectBody } from './body.js';
import { memberId, parseRedirect, type RedirectRefusal, type RedirectTarget } from './redirect.js';
import type { UpstreamOptions, Upstreams } from './upstreams.js';

export interface HealthReporter {
  /** A request to `member` of route's pool failed at connect/reset/timeout (passive health). */
  failure(route: Route, member: Member): void;
  success(route: Route, member: Member): void;
}

/** Optional observers of the affinity protocol (metrics). */
export interface AffinityObserver {
  hit(route: Route): void;
  miss(route: Route): void;
  redirect(route: Route, hops: number): void;
}

export interface ProxyDeps {
  routes: readonly Route[];
  upstreams: Upstreams;
  upstreamOptions(route: Route): UpstreamOptions;
  metrics: Metrics;
  health?: HealthReporter;
  affinity?: AffinityObserver;
  log: Logger;
  /** Request headers never forwarded (lower-case): principal metadata, internal protocol headers. */
  dropRequestHeaders: ReadonlySet<string>;
  /** Peers whose X-Forwarded-* homing keeps (listen.trustedProxies); undefined: trust no one. */
  trustedProxies?: BlockList;
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
function ignoreError(): void {
  // The client's upload failed (abort/reset); undici aborts the upstream request via its own listener.
}

type Body = Buffer | IncomingMessage | Readable | null;

/** What key expressions read of a request; `headers` is Node's parsed object, built only if read. */
export class HttpRequestView implements RequestView {
  constructor(
    private readonly req: IncomingMessage,
    readonly method: string,
    readonly uri: string,
    readonly path: string,
    readonly host: string,
    readonly match: RegExpExecArray | null,
  ) {}
  get headers(): IncomingMessage['headers'] {
    return this.req.headers;
  }
  header(lowerName: string): string | undefined {
    return rawHeaderValue(this.req.rawHeaders, lowerName);
  }
}

/** X-Request-Id for requests without a valid one: a random per-process prefix and a counter (unique, no crypto per request). */
const REQUEST_ID_PREFIX = randomBytes(8).toString('hex');
let requestCounter = 0;
function nextRequestId(): string {
  return `${REQUEST_ID_PREFIX}-${(++requestCounter).toString(36)}`;
}

export class Proxy {
  private readonly routes: readonly Route[];
  constructor(readonly deps: ProxyDeps) {
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
    req.on('error', ignoreError);
    // Pipelined behind a refused request or a `Connection: close` one: never acted on (the socket
    // is closed once the earlier answer is out, so this one is never answered either).
    if (isClosing(req.socket)) return;
    if (!res.shouldKeepAlive) markClosing(req.socket);
    const raw = req.rawHeaders;
    if (raw.length / 2 > MAX_HEADER_COUNT) return this.fail(res, undefined, 'HOMING_ERR_HEADERS_TOO_LARGE', `more than ${MAX_HEADER_COUNT} header lines`, true);
    const target = parseTarget(req.url ?? '');
    if (!target) return this.fail(res, undefined, 'HOMING_ERR_BAD_REQUEST', 'invalid request target', true);
    // One pass over the raw headers; req.headers (an object Node builds on first use) is left
    // alone unless a key expression reads it.
    const head = upstreamHead(raw, this.deps.dropRequestHeaders);
    const rawHost = target.authority ?? head.host;
    if (rawHost === undefined) return this.fail(res, undefined, 'HOMING_ERR_BAD_REQUEST', 'missing Host header', true);
    if (head.hostCount > 1) return this.fail(res, undefined, 'HOMING_ERR_BAD_REQUEST', 'more than one Host header', true);
    const host = routingHost(rawHost);
    if (host === undefined) return this.fail(res, undefined, 'HOMING_ERR_BAD_REQUEST', 'invalid Host header', true);
    const te = head.transferEncoding;
    if (te !== undefined) {
      if (te.trim().toLowerCase() !== 'chunked') return this.fail(res, undefined, 'HOMING_ERR_BAD_REQUEST', 'unsupported Transfer-Encoding (only a single chunked)', true);
      // HTTP/1.0 has no chunked framing: a Transfer-Encoding there means the framing is faulty (RFC 9112 §6.1).
      if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return this.fail(res, undefined, 'HOMING_ERR_BAD_REQUEST', 'Transfer-Encoding in an HTTP/1.0 request', true);
    }
    const method = req.method ?? 'GET';
    const found = this.match(method, host, target.path);
    if (!found) return this.fail(res, undefined, 'HOMING_ERR_NO_ROUTE', 'no route matches this request');
    const { route } = found;
    if (head.badExpect) return this.fail(res, route, 'HOMING_ERR_EXPECTATION_FAILED', 'only Expect: 100-continue is supported', true);
    if (target.authority !== undefined) {
      // Absolute-form: the target's authority is the host (RFC 9112 §3.2.2).
      let replaced = false;
      for (let i = 0; i < head.headers.length; i += 2) {
        if (head.headers[i]!.toLowerCase() === 'host') {
          head.headers[i + 1] = target.authority;
          replaced = true;
        }
      }
      if (!replaced) head.headers.push('host', target.authority);
    }
    const fwd = forwarding(head, req.socket.remoteAddress ?? '', proto, rawHost, this.deps.trustedProxies);
    head.headers.push(
      'x-forwarded-for', fwd.for,
      'x-forwarded-proto', fwd.proto,
      'x-forwarded-host', fwd.host,
      'via', head.via === undefined ? '1.1 homing' : `${head.via}, 1.1 homing`,
      'x-request-id', head.requestId ?? nextRequestId(),
    );
    const view = new HttpRequestView(req, method, target.uri, target.path, host, found.match);

    const cfg = route.config;
    const cl = head.contentLength;
    const chunked = te !== undefined;
    if (cl === undefined && !chunked) {
      new Exchange(this.deps, route, req, res as Res, view, head.headers, null, true).start();
      return;
    }
    const n = cl === undefined ? -1 : Number(cl);
    if (n > cfg.maxBody) return this.fail(res, route, 'HOMING_ERR_BODY_TOO_LARGE', `request body over ${cfg.maxBody} bytes`, true);
    if (n === 0) {
      new Exchange(this.deps, route, req, res as Res, view, head.headers, null, true).start();
      return;
    }
    const replayCap = cfg.affinity?.redirect ? cfg.affinity.maxReplayBody : -1;
    if (replayCap >= 0 && n <= replayCap) {
      // May have to be re-sent after a redirect: read it first (bounded by maxReplayBody).
      collectBody(req, replayCap, cfg.maxBody, (r) => {
        if (r.kind === 'aborted') return void res.destroy();
        if (r.kind === 'too-large') return this.fail(res, route, 'HOMING_ERR_BODY_TOO_LARGE', `request body over ${cfg.maxBody} bytes`, true);
        // A buffered body goes up with a Content-Length (undici sets it), never chunked framing.
        new Exchange(this.deps, route, req, res as Res, view, head.headers, r.body, r.kind === 'buffer').start();
      });
      return;
    }
    if (chunked) {
      const limit = new BodyLimit(cfg.maxBody);
      limit.on('error', ignoreError);
      new Exchange(this.deps, route, req, res as Res, view, head.headers, req.pipe(limit), false).start();
      return;
    }
    new Exchange(this.deps, route, req, res as Res, view, head.headers, req, false).start();
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
  private drainHooked = false;
  private uri: string;
  private hops = 0;
  private redirect: RedirectTarget | RedirectRefusal | undefined;
  private visited: Set<Member> | undefined;
  /** The request's affinity key, when the route has affinity. */
  private readonly affKey: string | undefined;

  constructor(
    private readonly deps: ProxyDeps,
    private readonly route: Route,
    private readonly req: IncomingMessage,
    private readonly res: Res,
    private readonly view: RequestView,
    private readonly headers: string[],
    private readonly body: Body,
    /** Whether the body can be sent again (absent or fully buffered). */
    private readonly replayable: boolean,
  ) {
    this.uri = view.uri;
    this.affKey = route.affinityKey?.(view);
    res[kExchange] = this;
    res.on('close', onResClose);
  }

  start(): void {
    const d = this.route.resolve(this.view, this.attempt, this.tried, this.affKey);
    if (d === undefined || 'member' in d) this.dispatchTo(d);
    else
      d.then(
        (x) => this.dispatchTo(x),
        (err: unknown) => {
          this.deps.log.error({ err, route: this.route.name }, 'resolve failed');
          this.error('HOMING_ERR_INTERNAL', 'could not resolve a target');
        },
      );
  }

  private dispatchTo(d: Decision | undefined): void {
    if (this.finished) return;
    if (!d) {
      if (this.attempt === 0) return this.error('HOMING_ERR_NO_LIVE_MEMBER', `pool "${this.route.pool.name}" has no live member`);
      return this.error('HOMING_ERR_UPSTREAM_CONNECT', 'no member could be connected to');
    }
    if (this.affKey !== undefined && this.attempt === 0 && this.hops === 0 && this.deps.affinity) {
      if (d.by === 'affinity') this.deps.affinity.hit(this.route);
      else this.deps.affinity.miss(this.route);
    }
    this.send(d);
  }

  private send(d: Decision): void {
    if (this.finished) return;
    this.decision = d;
    this.connected = false;
    this.responded = false;
    d.member.inflight++;
    this.started = performance.now();
    const cfg = this.route.config;
    const pool = this.deps.upstreams.get(d.member, this.deps.upstreamOptions(this.route));
    pool.dispatch(
      {
        path: this.uri,
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
    if (this.decision) this.decision.member.inflight--;
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
    const aff = route.config.affinity;
    if (aff) {
      if (aff.redirect) {
        const v = rawHeader(rawHeaders, route.redirectHeader!);
        if (v !== undefined) {
          // Follow it once this response is read (its body is discarded): the client never sees it.
          this.redirect = this.parseRedirect(v);
          return true;
        }
      }
      if (this.affKey !== undefined && statusCode < 500) this.learn(d, rawHeaders);
    }
    const headers = downstreamHeaders(rawHeaders, route.dropResponseHeaders);
    if (route.config.debugHeader) {
      headers.push('x-homing', `route=${route.name}; target=${d.member.id}; by=${d.by}; cache=bypass; hops=${this.hops}`);
    }
    const res = this.res;
    if (res.destroyed) return false;
    try {
      res.writeHead(statusCode, headers);
    } catch (err) {
      this.deps.log.warn({ err, route: route.name, member: d.member.id }, 'upstream response head rejected');
      this.abortUpstream?.(err as Error);
      return false;
    }
    return true;
  }

  /** key → owner: the owner header when it names a pool member, else the member that served. */
  private learn(d: Decision, rawHeaders: Buffer[]): void {
    const route = this.route;
    let owner = d.member.id;
    if (route.ownerHeader) {
      const v = rawHeader(rawHeaders, route.ownerHeader);
      if (v !== undefined) {
        const id = memberId(v.trim());
        if (id !== undefined && route.pool.members.has(id)) owner = id;
      }
    }
    // Every answer renews the lease (cheap when nothing changed), so a key in use never expires.
    route.affinity?.set(this.affKey!, owner);
  }

  private parseRedirect(v: string): RedirectTarget | RedirectRefusal {
    const r = parseRedirect(v, this.route.config.affinity!.redirect!.prefix, this.route.pool);
    if ('outside' in r) this.deps.log.warn({ route: this.route.name, from: this.decision?.member.id, target: r.outside }, 'refused backend redirect to an address outside the pool');
    return r;
  }

  onData(chunk: Buffer): boolean {
    if (this.redirect) return true; // the redirect response's body is discarded
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
    const r = this.redirect;
    if (r) {
      this.redirect = undefined;
      return this.follow(r);
    }
    // Trailers are dropped (PITFALLS §C 16).
    this.finished = true;
    this.res.end();
  }

  private follow(r: RedirectTarget | RedirectRefusal): void {
    if (this.finished) return;
    if ('error' in r) return this.error(r.error, r.message);
    const aff = this.route.config.affinity!.redirect!;
    const from = this.decision!.member;
    (this.visited ??= new Set()).add(from);
    this.hops++;
    if (this.hops > aff.maxHops) return this.error('HOMING_ERR_REDIRECT_LOOP', `more than ${aff.maxHops} backend redirects`);
    if (this.visited.has(r.member)) return this.error('HOMING_ERR_REDIRECT_LOOP', `backend redirects loop back to ${r.member.id}`);
    if (!this.replayable) return this.error('HOMING_ERR_REDIRECT_BODY_TOO_LARGE', `backend redirect needs the request body re-sent, and it is larger than maxReplayBody (${this.route.config.affinity!.maxReplayBody} bytes)`);
    // Counted once followed, one call per hop with its rank (the hop histogram relies on it).
    this.deps.affinity?.redirect(this.route, this.hops);
    // The redirect names the owner: learn it now, so a client that leaves mid-way still teaches
    // (the answer that follows confirms or corrects it).
    if (this.affKey !== undefined) this.route.affinity?.set(this.affKey, r.member.id);
    this.uri = r.uri;
    this.send({ member: r.member, by: this.decision!.by });
  }

  onError(err: Error & { code?: string }): void {
    this.release();
    const d = this.decision;
    const route = this.route;
    if (this.finished) return; // the client went away and we aborted
    if (this.responded && !this.redirect) {
      // Mid-body failure: cut the client connection so it cannot take a truncated body as whole.
      this.finished = true;
      this.res.destroy();
      return;
    }
    this.redirect = undefined;
    const code = err.code ?? '';
    const limited = this.body instanceof BodyLimit && this.body.exceeded;
    if (!this.connected && d) {
      // Nothing was written upstream: passive failure, then the next candidate.
      this.deps.health?.failure(route, d.member);
      if (d.by === 'affinity' || this.hops > 0) route.affinity?.dropOwner(d.member.id);
      if (limited) return this.error('HOMING_ERR_BODY_TOO_LARGE', 'request body too large', true);
      if (CONNECT_ERRORS.has(code) && this.attempt < route.config.retries && !this.clientGone() && this.hops === 0) {
        (this.tried ??= new Set()).add(d.member);
        this.attempt++;
        this.deps.metrics.retries.labels(route.name).inc();
        return this.start();
      }
      if (code === 'UND_ERR_CONNECT_TIMEOUT') return this.error('HOMING_ERR_UPSTREAM_TIMEOUT', `connecting to ${d.member.id} timed out`);
      return this.error('HOMING_ERR_UPSTREAM_CONNECT', `cannot connect to ${d.member.id}: ${code || err.message}`);
    }
    if (limited) return this.error('HOMING_ERR_BODY_TOO_LARGE', 'request body too large', true);
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      if (d) this.deps.health?.failure(route, d.member);
      return this.error('HOMING_ERR_UPSTREAM_TIMEOUT', `${d?.member.id} sent no response head within ${route.config.timeouts.header} ms`);
    }
    if (code === 'UND_ERR_HEADERS_OVERFLOW' || code.startsWith('HPE_') || code === 'UND_ERR_INFO' || err.name === 'HTTPParserError') {
      return this.error('HOMING_ERR_UPSTREAM_BAD_RESPONSE', `${d?.member.id} sent an invalid response head`);
    }
    if (code === 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_ABORTED' || this.clientGone()) {
      // The client's upload ended early or the client is gone: nothing useful to answer.
      this.finished = true;
      this.res.destroy();
      return;
    }
    // Sent (or began sending) and the connection failed before a response head. A stale pooled
    // socket closed by the upstream looks the same: one re-send when it is provably safe.
    if (d && !this.resetRetried && this.replayable && IDEMPOTENT.has(this.view.method) && (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET')) {
      this.resetRetried = true;
      this.deps.metrics.retries.labels(route.name).inc();
      return this.send(d);
    }
    if (d) this.deps.health?.failure(route, d.member);
    this.error('HOMING_ERR_UPSTREAM_RESET', `${d?.member.id} closed the connection before a response: ${code || err.message}`);
  }

  /** The client is gone (its upload aborted or its socket closed). `req.destroyed` alone is not it: Node destroys req once its body has been read. */
  private clientGone(): boolean {
    return this.res.destroyed || (this.req.destroyed && !this.req.complete);
  }

  clientClosed(): void {
    if (this.finished || this.res.writableEnded) return;
    this.finished = true;
    this.abortUpstream?.(new Error('client closed'));
    const b = this.body;
    if (b && !Buffer.isBuffer(b) && b !== this.req) (b as Readable).destroy();
  }

  private error(code: ErrorCode, message: string, close = false): void {
    this.finished = true;
    const d = this.decision;
    if (d && code !== 'HOMING_ERR_NO_LIVE_MEMBER') this.deps.log.warn({ route: this.route.name, member: d.member.id, code }, message);
    this.deps.metrics.errors.labels(this.route.name, code).inc();
    // A body we did not read to the end leaves the connection unusable: close it.
    sendError(this.res, code, message, close || !this.replayable || code === 'HOMING_ERR_UPSTREAM_RESET');
  }
}
