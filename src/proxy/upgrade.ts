/**
 * WebSocket upgrades (PITFALLS §D): the same route match and resolution as any request (affinity,
 * hash, balance), a backend redirect followed before the 101, then both sockets piped. Only
 * `websocket` is tunnelled and only after a real 101; any other answer is relayed and both
 * sockets closed; either side closing or failing destroys the other.
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { ErrorCode } from '../errors.js';
import type { Member } from '../members/member.js';
import type { Route } from '../routing/route.js';
import type { RequestView } from '../routing/keys.js';
import type { Decision } from '../routing/strategy.js';
import { HOP_BY_HOP, forwarding, upstreamHead } from './headers.js';
import { parseTarget, routingHost } from './path.js';
import { isClosing, socketError } from './respond.js';
import { parseRedirect } from './redirect.js';
import { HttpRequestView, type Proxy } from './proxy.js';

function destroyBoth(a: Duplex, b: Duplex): void {
  a.destroy();
  b.destroy();
}

/** A response head as raw bytes, hop-by-hop removed unless `keepUpgrade` (the 101 keeps Upgrade/Connection). */
function headBytes(res: IncomingMessage, keepUpgrade: boolean, drop: ReadonlySet<string>): string {
  let s = `HTTP/1.1 ${res.statusCode} ${res.statusMessage || STATUS_CODES[res.statusCode ?? 500] || ''}\r\n`;
  const raw = res.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (drop.has(lower)) continue;
    if (HOP_BY_HOP.has(lower) && !(keepUpgrade && (lower === 'upgrade' || lower === 'connection'))) continue;
    s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  if (!keepUpgrade) s += 'connection: close\r\n';
  return s + '\r\n';
}

export function handleUpgrade(proxy: Proxy, req: IncomingMessage, socket: Duplex, head: Buffer, proto: 'http' | 'https'): void {
  // Error listeners first: a reset around the upgrade must never crash the process (PITFALLS §D 20).
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
  const fail = (code: ErrorCode, message: string, route?: Route): void => {
    deps.metrics.errors.labels(route?.name ?? '', code).inc();
    socketError(socket, code, message);
  };
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return fail('HOMING_ERR_BAD_REQUEST', 'only websocket upgrades are proxied');
  const target = parseTarget(req.url ?? '');
  const rawHost = target?.authority ?? req.headers.host;
  const host = rawHost === undefined ? undefined : routingHost(rawHost);
  if (!target || host === undefined || rawHost === undefined) return fail('HOMING_ERR_BAD_REQUEST', 'invalid request target or Host');
  const method = req.method ?? 'GET';
  const found = proxy.match(method, host, target.path);
  if (!found) return fail('HOMING_ERR_NO_ROUTE', 'no route matches this request');
  const route = found.route;
  const h = upstreamHead(req.rawHeaders, deps.dropRequestHeaders);
  if (h.hostCount > 1) return fail('HOMING_ERR_BAD_REQUEST', 'more than one Host header', route);
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < h.headers.length; i += 2) {
    const k = h.headers[i]!.toLowerCase();
    const prev = headers[k];
    headers[k] = prev === undefined ? h.headers[i + 1]! : Array.isArray(prev) ? [...prev, h.headers[i + 1]!] : [prev, h.headers[i + 1]!];
  }
  const fwd = forwarding(h, req.socket.remoteAddress ?? '', proto === 'https' ? 'wss' : 'ws', rawHost, deps.trustedProxies);
  headers['x-forwarded-for'] = fwd.for;
  headers['x-forwarded-proto'] = fwd.proto;
  headers['x-forwarded-host'] = fwd.host;
  headers['via'] = h.via === undefined ? '1.1 homing' : `${h.via}, 1.1 homing`;
  headers['x-request-id'] = h.requestId ?? randomUUID();
  headers['connection'] = 'Upgrade';
  headers['upgrade'] = 'websocket';
  const view: RequestView = new HttpRequestView(req, method, target.uri, target.path, host, found.match);
  const affKey = route.affinityKey?.(view);
  new UpgradeExchange(proxy, route, socket, head, view, headers, affKey).start();
}

class UpgradeExchange {
  private attempt = 0;
  private hops = 0;
  private readonly tried = new Set<Member>();
  private uri: string;
  private done = false;

  constructor(
    private readonly proxy: Proxy,
    private readonly route: Route,
    private readonly socket: Duplex,
    private readonly head: Buffer,
    private readonly view: RequestView,
    private readonly headers: Record<string, string | string[]>,
    private readonly affKey: string | undefined,
  ) {
    this.uri = view.uri;
    socket.once('close', () => {
      this.done = true;
    });
  }

  start(): void {
    const d = this.route.resolve(this.view, this.attempt, this.tried, this.affKey);
    if (d === undefined || 'member' in d) this.send(d);
    else d.then((x) => this.send(x), () => this.fail('HOMING_ERR_INTERNAL', 'could not resolve a target'));
  }

  private fail(code: ErrorCode, message: string): void {
    this.done = true;
    this.proxy.deps.metrics.errors.labels(this.route.name, code).inc();
    socketError(this.socket, code, message);
  }

  private send(d: Decision | undefined): void {
    if (this.done) return;
    if (!d) return this.fail(this.attempt === 0 ? 'HOMING_ERR_NO_LIVE_MEMBER' : 'HOMING_ERR_UPSTREAM_CONNECT', 'no live member for this upgrade');
    const deps = this.proxy.deps;
    const cfg = this.route.config;
    const m = d.member;
    let connected = false;
    const preq = httpRequest({ host: m.host, port: m.port, method: this.view.method, path: this.uri, headers: this.headers, agent: false, timeout: cfg.timeouts.header });
    preq.on('socket', (s) => s.once('connect', () => (connected = true)));
    preq.on('timeout', () => preq.destroy(Object.assign(new Error('timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' })));
    preq.on('error', (err: Error & { code?: string }) => {
      if (this.done) return;
      deps.health?.failure(this.route, m);
      if (d.by === 'affinity') this.route.affinity?.dropOwner(m.id);
      if (!connected && this.attempt < cfg.retries && this.hops === 0) {
        this.tried.add(m);
        this.attempt++;
        return this.start();
      }
      if (err.code === 'UND_ERR_HEADERS_TIMEOUT') return this.fail('HOMING_ERR_UPSTREAM_TIMEOUT', `${m.id} did not answer the upgrade in time`);
      this.fail(connected ? 'HOMING_ERR_UPSTREAM_RESET' : 'HOMING_ERR_UPSTREAM_CONNECT', `upgrade to ${m.id} failed: ${err.code ?? err.message}`);
    });
    preq.on('response', (pres) => {
      // Not upgraded: a backend redirect to the owner, or an answer relayed as is, then close (PITFALLS §D 18).
      const redirect = this.route.redirectHeader ? pres.headers[this.route.redirectHeader] : undefined;
      if (typeof redirect === 'string') {
        pres.resume();
        pres.on('end', () => this.follow(d, redirect));
        pres.on('error', () => {});
        return;
      }
      deps.health?.success(this.route, m);
      deps.metrics.request(this.route.name, m.id, pres.statusCode ?? 0);
      if (this.done) return void pres.destroy();
      this.socket.write(headBytes(pres, false, this.route.dropResponseHeaders));
      pres.pipe(this.socket);
      pres.on('error', () => destroyBoth(this.socket, preq.socket ?? this.socket));
      pres.on('end', () => this.socket.end());
    });
    preq.on('upgrade', (pres, psocket, phead) => {
      psocket.on('error', () => destroyBoth(psocket, this.socket));
      if (this.done) return void psocket.destroy();
      deps.health?.success(this.route, m);
      deps.metrics.request(this.route.name, m.id, 101);
      if (this.affKey !== undefined) this.route.affinity?.set(this.affKey, m.id);
      m.inflight++;
      let released = false;
      const release = (): void => {
        if (!released) {
          released = true;
          m.inflight--;
        }
      };
      let headText = headBytes(pres, true, this.route.dropResponseHeaders);
      if (this.route.config.debugHeader) headText = headText.slice(0, -2) + `x-homing: route=${this.route.name}; target=${m.id}; by=${d.by}; cache=bypass; hops=${this.hops}\r\n\r\n`;
      this.socket.write(headText);
      if (phead.length) this.socket.write(phead);
      if (this.head.length) psocket.write(this.head);
      psocket.pipe(this.socket);
      this.socket.pipe(psocket);
      // Either side going away tears down both (destroy, not end: PITFALLS §D 19).
      psocket.on('close', () => {
        release();
        this.socket.destroy();
      });
      this.socket.on('close', () => {
        release();
        psocket.destroy();
      });
    });
    preq.end();
  }

  private follow(from: Decision, value: string): void {
    if (this.done) return;
    const aff = this.route.config.affinity?.redirect;
    if (!aff) return this.fail('HOMING_ERR_REDIRECT_TARGET', 'backend redirect on a route without redirects');
    const r = parseRedirect(value, aff.prefix, this.route.pool);
    if ('error' in r) return this.fail(r.error, r.message);
    const member = r.member;
    this.hops++;
    this.tried.add(from.member);
    if (this.hops > aff.maxHops || this.tried.has(member)) return this.fail('HOMING_ERR_REDIRECT_LOOP', 'backend redirects loop or exceed maxHops');
    this.uri = r.uri;
    this.send({ member, by: from.by });
  }
}
