/**
 * WebSocket upgrades through the same phases as any request (hygiene, match, resolve, response
 * head with redirect follow and learning, log); only the transport differs: the member is asked
 * with `node:http` and, after a real 101, both sockets are piped. Only `websocket` is tunnelled;
 * any other answer is relayed and both sockets closed; either side closing or failing destroys
 * the other (destroy, never end: a half-open tunnel leaks a socket).
 */
import { request as httpRequest, STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ERRORS, type ErrorCode } from '../errors.js';
import type { RequestView } from '../routing/keys.js';
import { isResolution, type Route } from '../routing/route.js';
import type { Resolution, ResolveResult } from '../routing/strategy.js';
import { isRefusal, type RequestHead } from './context.js';
import { Exchange, type PipelineDeps } from './exchange.js';
import { requestHygiene } from './hygiene.js';
import { logAnswer, logEnd, logError, logUnrouted } from './log.js';
import { clientHead, HttpRequestView, type Proxy } from './proxy.js';
import { countAffinity, resolveTarget } from './resolve.js';
import { isClosing, socketError } from './respond.js';
import { dropHomingCacheControl, judgeResponseHead, memberHead } from './response-head.js';
import type { ClientRequest } from './transport.js';

function headText(status: number, message: string | undefined, headers: readonly string[], close: boolean): string {
  let s = `HTTP/1.1 ${status} ${message || STATUS_CODES[status] || ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  if (close) s += 'connection: close\r\n';
  return s + '\r\n';
}

export function handleUpgrade(proxy: Proxy, req: ClientRequest, socket: Duplex, head: Buffer, proto: 'http' | 'https'): void {
  // Error listeners first: a reset around the upgrade must never crash the process.
  socket.on('error', () => socket.destroy());
  // Pipelined behind a request whose answer is still being written: the socket is ours only
  // once that answer is out (Node hands it over as soon as it parses the upgrade).
  const current = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (current && !current.writableFinished) {
    current.once('close', () => handleUpgrade(proxy, req, socket, head, proto));
    return;
  }
  // Pipelined behind a request homing refused: end the connection, act on nothing.
  if (isClosing(socket)) return void socket.end();
  const deps = proxy.deps;
  const c = clientHead(req, proto, true);
  const fail = (code: ErrorCode, message: string, head?: RequestHead): void => {
    logError(deps, undefined, code, message);
    const sent = socketError(socket, code, message);
    logUnrouted(deps, c, head, undefined, ERRORS[code].status, code, Math.max(0, sent));
  };
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return fail('HOMING_ERR_BAD_REQUEST', 'only websocket upgrades are proxied');
  const h = requestHygiene(c, deps.hygiene);
  if (isRefusal(h)) return fail(h.code, h.message);
  const found = deps.router.match(h.method, h.host, h.path);
  if (!found) return fail('HOMING_ERR_NO_ROUTE', 'no route matches this request', h);
  deps.inflight.hold(socket);
  const view = new HttpRequestView(req, h.method, h.uri, h.path, h.host, found.match);
  new UpgradeExchange(deps, found.route, h, view, socket, head).start();
}

/** Bytes a socket has carried (a TLS socket counts its plaintext). */
function bytesOf(s: Duplex): { read: number; written: number } {
  const n = s as Partial<Socket>;
  return { read: n.bytesRead ?? 0, written: n.bytesWritten ?? 0 };
}

class UpgradeExchange extends Exchange {
  private done = false;
  /** What the client was sent: 101, a relayed answer's status or homing's error (0: nothing yet). */
  private sent = 0;
  /** The client socket's byte counts when the exchange began (the tunnel's are the difference). */
  private readonly before: { read: number; written: number };

  constructor(
    deps: PipelineDeps,
    route: Route,
    head: RequestHead,
    view: RequestView,
    private readonly socket: Duplex,
    private readonly early: Buffer,
  ) {
    // No body (the hygiene phase refuses one): a redirect can always re-send the request.
    super(deps, route, head, view, true);
    this.before = bytesOf(socket);
    socket.once('close', () => {
      this.done = true;
      // One access-log line for the whole exchange, when the client's connection (the tunnel) closes.
      const now = bytesOf(socket);
      logEnd(this, this.sent || 499, now.read - this.before.read, now.written - this.before.written, this.sent ? undefined : 'client');
    });
  }

  start(): void {
    const r = resolveTarget(this);
    if (!(r instanceof Promise)) return this.dispatchTo(r);
    r.then(
      (x) => this.dispatchTo(x),
      () => this.fail('HOMING_ERR_INTERNAL', 'could not resolve a target'),
    );
  }

  private fail(code: ErrorCode, message: string): void {
    this.done = true;
    this.errorCode = code;
    logError(this.deps, this.route, code, message, this);
    if (socketError(this.socket, code, message) >= 0) this.sent = ERRORS[code].status;
  }

  private dispatchTo(r: ResolveResult): void {
    if (this.done) return;
    if (!isResolution(r)) return this.fail(this.attempt === 0 ? r.error : 'HOMING_ERR_UPSTREAM_CONNECT', this.attempt === 0 ? r.message : 'no member could be connected to');
    countAffinity(this, r);
    this.send(r);
  }

  private send(r: Resolution): void {
    if (this.done) return;
    this.take(r);
    const cfg = this.route.config;
    const m = r.member;
    let connected = false;
    let released = false;
    const release = (error?: string): void => {
      if (!released) {
        released = true;
        this.release(error);
      }
    };
    const preq = httpRequest({ host: m.host, port: m.port, method: this.head.method, path: this.uri, headers: this.head.headers, agent: false, timeout: cfg.timeouts.header });
    preq.on('socket', (s) => s.once('connect', () => (connected = true)));
    preq.on('timeout', () => preq.destroy(Object.assign(new Error('timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' })));
    preq.on('error', (err: Error & { code?: string }) => {
      release(err.code ?? err.message);
      if (this.done) return;
      this.memberFailed(connected);
      if (!connected && this.attempt < cfg.retries && this.hops === 0) {
        this.markTried();
        return this.start();
      }
      if (err.code === 'UND_ERR_HEADERS_TIMEOUT') return this.fail('HOMING_ERR_UPSTREAM_TIMEOUT', `${m.id} did not answer the upgrade in time`);
      this.fail(connected ? 'HOMING_ERR_UPSTREAM_RESET' : 'HOMING_ERR_UPSTREAM_CONNECT', `upgrade to ${m.id} failed: ${err.code ?? err.message}`);
    });
    preq.on('response', (pres) => {
      // Not upgraded: a backend redirect to follow, or an answer relayed as is, then close.
      pres.on('error', () => this.socket.destroy());
      this.deps.health?.success(r.pool, m);
      logAnswer(this, pres.statusCode ?? 0);
      const v = judgeResponseHead(this, pres.statusCode ?? 0, memberHead(pres.rawHeaders, this.route.redirectHeader, this.route.ownerHeader, this.deps.dropResponseHeaders));
      if (!('deliver' in v)) {
        pres.resume();
        pres.on('end', () => {
          release();
          if (this.done) return;
          if ('code' in v) return this.fail(v.code, v.message);
          this.send(this.redirected(v.follow));
        });
        return;
      }
      pres.on('close', () => release());
      if (this.done) return void pres.destroy();
      dropHomingCacheControl(v.deliver);
      this.sent = pres.statusCode ?? 502;
      this.socket.write(headText(pres.statusCode ?? 502, pres.statusMessage, v.deliver, true));
      pres.pipe(this.socket);
      pres.on('end', () => this.socket.end());
    });
    preq.on('upgrade', (pres, psocket, phead) => {
      psocket.on('error', () => {
        psocket.destroy();
        this.socket.destroy();
      });
      if (this.done) {
        release();
        return void psocket.destroy();
      }
      this.deps.health?.success(r.pool, m);
      logAnswer(this, 101);
      const v = judgeResponseHead(this, 101, memberHead(pres.rawHeaders, this.route.redirectHeader, this.route.ownerHeader, this.deps.dropResponseHeaders, true));
      if (!('deliver' in v)) {
        // A redirect cannot follow a 101: the connection already belongs to the member.
        release();
        psocket.destroy();
        return this.fail('HOMING_ERR_UPSTREAM_BAD_RESPONSE', `${m.id} switched protocols and redirected at once`);
      }
      dropHomingCacheControl(v.deliver);
      this.sent = 101;
      this.socket.write(headText(101, pres.statusMessage, v.deliver, false));
      if (phead.length) this.socket.write(phead);
      if (this.early.length) psocket.write(this.early);
      psocket.pipe(this.socket);
      this.socket.pipe(psocket);
      // Either side going away tears down both.
      const tunnels = this.deps.drain.tunnels;
      tunnels.add(this.socket);
      psocket.on('close', () => {
        release();
        this.socket.destroy();
      });
      this.socket.on('close', () => {
        release();
        tunnels.delete(this.socket);
        psocket.destroy();
      });
    });
    preq.end();
  }
}
