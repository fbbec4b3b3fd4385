/**
 * The HTTP proxy on `node:http`: one request's life as a fixed sequence of phases —
 * request hygiene → route match → cache look-up → resolve → upstream request → response head
 * (redirect follow, learn) → body → log. Each phase lives in its own file and speaks homing's own
 * types (`context.ts`); this file only adapts `node:http` to them and picks how the request body
 * travels. Upgrades (`upgrade.ts`) go through the same phases.
 */
import { performance } from 'node:perf_hooks';
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestView } from '../routing/keys.js';
import { rawHeaderValue } from '../routing/keys.js';
import { BodyLimit, collectBody } from './body.js';
import { isRefusal, refusal, type ClientHead, type Refusal, type RequestHead } from './context.js';
import type { PipelineDeps } from './exchange.js';
import { HttpExchange } from './forward.js';
import { requestHygiene } from './hygiene.js';
import { logError, logUnrouted } from './log.js';
import { isClosing, markClosing, sendError } from './respond.js';
import type { ClientRequest, ClientResponse } from './transport.js';

export type { AffinityObserver, HealthReporter, PipelineDeps } from './exchange.js';

function ignoreError(): void {
  // The client's upload failed (abort/reset); undici aborts the upstream request via its own listener.
}

/** What key expressions read of a request; `headers` is Node's parsed object, built only if read. */
export class HttpRequestView implements RequestView {
  constructor(
    private readonly req: ClientRequest,
    readonly method: string,
    readonly uri: string,
    readonly path: string,
    readonly host: string,
    readonly match: RegExpExecArray | null,
  ) {}
  get headers(): IncomingHttpHeaders {
    return this.req.headers;
  }
  header(lowerName: string): string | undefined {
    return rawHeaderValue(this.req.rawHeaders, lowerName);
  }
}

/** The client's head in homing's terms. */
export function clientHead(req: ClientRequest, proto: 'http' | 'https', upgrade: boolean): ClientHead {
  return {
    method: req.method ?? 'GET',
    url: req.url ?? '',
    rawHeaders: req.rawHeaders,
    httpMinor: req.httpVersionMinor,
    remoteAddress: req.socket.remoteAddress ?? '',
    proto,
    upgrade,
    arrived: performance.now(),
  };
}

export class Proxy {
  /**
   * What the phases use. A config reload puts another in its place between requests; a request
   * reads it once, when it arrives, and keeps that one (its routes, options and pools) to its end.
   */
  constructor(public deps: PipelineDeps) {}

  handle(req: ClientRequest, res: ClientResponse, proto: 'http' | 'https'): void {
    req.on('error', ignoreError);
    // Pipelined behind a refused request or a `Connection: close` one: never acted on (the socket
    // is closed once the earlier answer is out, so this one is never answered either).
    if (isClosing(req.socket)) return;
    const deps = this.deps;
    if (deps.drain.draining) res.shouldKeepAlive = false;
    if (!res.shouldKeepAlive) markClosing(req.socket);
    const c = clientHead(req, proto, false);
    const head = requestHygiene(c, deps.hygiene);
    if (isRefusal(head)) return this.refuse(deps, res, head, c);
    const found = deps.router.match(head.method, head.host, head.path);
    if (!found) return this.refuse(deps, res, refusal('HOMING_ERR_NO_ROUTE', 'no route matches this request'), c, head);
    deps.inflight.hold(res);
    const { route } = found;
    const view = new HttpRequestView(req, head.method, head.uri, head.path, head.host, found.match);
    const cfg = route.config;
    const n = head.contentLength;
    if ((n === undefined && !head.chunked) || n === 0) {
      new HttpExchange(deps, route, head, view, true, req, res, null).start();
      return;
    }
    if (n !== undefined && n > cfg.maxBody) return this.refuse(deps, res, refusal('HOMING_ERR_BODY_TOO_LARGE', `request body over ${cfg.maxBody} bytes`, true, route), c, head);
    const idle = cfg.timeouts.clientBody;
    // Read whole first when it fits the route's buffering (or must be kept for a redirect's re-send).
    const cap = Math.max(cfg.requestBuffering ? cfg.requestBuffering.memory : -1, cfg.affinity?.redirect ? cfg.affinity.maxReplayBody : -1);
    if (cap >= 0 && (n === undefined || n <= cap)) {
      collectBody(req, cap, cfg.maxBody, idle, (r) => {
        if (r.kind === 'aborted') {
          res.destroy();
          return logUnrouted(deps, c, head, route, 499, undefined, 0);
        }
        if (r.kind === 'too-large') return this.refuse(deps, res, refusal('HOMING_ERR_BODY_TOO_LARGE', `request body over ${cfg.maxBody} bytes`, true, route), c, head);
        if (r.kind === 'timeout') return this.refuse(deps, res, refusal('HOMING_ERR_CLIENT_TIMEOUT', `the request body stalled for more than ${idle} ms`, true, route), c, head);
        // A buffered body goes up with a Content-Length (undici sets it), never chunked framing.
        if (r.kind === 'buffer') new HttpExchange(deps, route, head, view, true, req, res, r.body).start();
        else new HttpExchange(deps, route, head, view, false, req, res, r.body, r.limit).start();
      });
      return;
    }
    const limit = new BodyLimit(cfg.maxBody, idle);
    limit.on('error', ignoreError);
    new HttpExchange(deps, route, head, view, false, req, res, req.pipe(limit), limit).start();
  }

  /** Answer a refusal: its JSON error, closing the connection when it says so; then its access-log line. */
  refuse(deps: PipelineDeps, res: ClientResponse, r: Refusal, c: ClientHead, head?: RequestHead): void {
    logError(deps, r.route, r.code, r.message);
    const sent = sendError(res, r.code, r.message, r.close);
    logUnrouted(deps, c, head, r.route, res.statusCode, r.code, Math.max(0, sent));
  }
}
