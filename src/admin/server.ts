/**
 * The admin HTTP API: health, readiness, metrics, status, pools, route look-ups, the dashboard and
 * its event stream. Bound to loopback by default; an optional bearer token guards every endpoint
 * but /healthz and the dashboard page itself (static HTML and script without any data, so that a
 * browser can load it and ask for the token; the data comes from the event stream, which needs it).
 */
import { parseUrl, type PurgeSpec } from '../cache/index.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { errorBody, ERRORS, type ErrorCode } from '../errors.js';
import type { Runtime } from '../runtime.js';
import { isResolution } from '../routing/route.js';
import { MAX_ANSWER_BYTES, parseAnswer } from '../directory/answer.js';
import { DASHBOARD_HTML } from './dashboard.js';
import { AdminEvents } from './events.js';
import type { ConfigVersion, ReloadOutcome, WorkerVersion } from '../reload.js';

export interface AdminOptions {
  /** The bearer token (a reload may change it: `setToken`). */
  token?: string;
  /** Whether the process is ready (listeners bound, discovery loaded). */
  ready(): boolean;
  startedAt: number;
  version: string;
  /** Cluster workers (primary only): pid, whether it has started serving, and the config it runs. */
  workers?(): ({ ready: boolean } & WorkerVersion)[];
  /** Rolling restart of the workers (primary only): one at a time, each replaced once its successor serves. */
  restartWorkers?(): Promise<{ restarted: number; failed: boolean }>;
  /** The config this process runs (absent when it was not read from a file). */
  config?(): (ConfigVersion & { file: string }) | undefined;
  /** Read the config file again and apply it (`POST /api/v1/reload`; absent: nothing to reload). */
  reload?(): Promise<ReloadOutcome>;
}

export type AdminHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => boolean | Promise<boolean>;

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function fail(res: ServerResponse, code: ErrorCode, message: string): void {
  const text = errorBody(code, message);
  res.writeHead(ERRORS[code].status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function tokenOk(req: IncomingMessage, token: string): boolean {
  const h = req.headers.authorization ?? '';
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(h);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Percent-decoded path segments, or undefined when one is not valid percent-encoded UTF-8. */
function decodeSegments(...segments: string[]): string[] | undefined {
  try {
    return segments.map((s) => decodeURIComponent(s));
  } catch {
    return undefined;
  }
}

/** The request body as text, or undefined past `max` bytes. */
function readBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Past the cap the rest is read and dropped (Node closes the connection if it never ends).
      if (size > max) return void resolve(undefined);
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Whether the raw request target is `/healthz` (with or without a query), before any parsing. */
function isHealthz(target: string): boolean {
  return target === '/healthz' || target.startsWith('/healthz?');
}

/**
 * Whether the raw request target is the dashboard page (`/` or `/dashboard`, with or without a
 * query): served without the token, since it holds no data and must be able to ask for the token.
 */
function isDashboardPage(target: string): boolean {
  const path = target.split('?', 1)[0];
  return path === '/' || path === '/dashboard';
}

/** Headers of the dashboard page: its own inline script and style only, never framed, no referrer. */
const DASHBOARD_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

/** A purge request's body as a PurgeSpec, or why it is not one. */
function purgeSpec(body: string): PurgeSpec | string {
  let j: unknown;
  try {
    j = JSON.parse(body);
  } catch {
    return 'the body is not JSON: give one of { "url" }, { "prefix" }, { "tag" } or { "all": true }';
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j) || Object.keys(j).length !== 1) return 'give exactly one of { "url" }, { "prefix" }, { "tag" } or { "all": true }';
  const o = j as Record<string, unknown>;
  if (o.all === true) return { all: true };
  for (const k of ['url', 'prefix', 'tag'] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v === '') return `"${k}" must be a non-empty string`;
    if (k === 'url' && parseUrl(v) === undefined) return `"${v}" is not a URL homing caches (http(s)://host/path?query or host/path?query)`;
    return k === 'url' ? { url: v } : k === 'prefix' ? { prefix: v } : { tag: v };
  }
  return 'give exactly one of { "url" }, { "prefix" }, { "tag" } or { "all": true }';
}

/** Keys sampled to show each member's share of a hash route. */
const SHARE_SAMPLE = 4096;

export class AdminServer {
  readonly server: Server;
  /** Extra handlers (affinity, directory, cache, dashboard) registered by their features. */
  private readonly extra: AdminHandler[] = [];
  /** The dashboard's event stream and the history behind it (sampling while the server listens). */
  readonly events: AdminEvents;

  constructor(private readonly rt: Runtime, private readonly opts: AdminOptions) {
    this.server = createServer({ maxHeaderSize: 16384 }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        rt.log.error({ err }, 'admin handler failed');
        if (!res.headersSent) fail(res, 'HOMING_ERR_INTERNAL', 'internal error');
        else res.destroy();
      });
    });
    this.events = new AdminEvents({
      registry: rt.metrics.registry,
      pools: () => rt.pools.values(),
      routes: () => rt.routes,
      status: () => this.status(),
      poolsJson: () => this.pools(),
      shares: () => this.shares(),
      log: rt.log,
    });
    this.server.on('listening', () => this.events.start());
    this.server.on('close', () => this.events.stop());
  }

  use(h: AdminHandler): void {
    this.extra.push(h);
  }

  /** A reloaded config's `admin.token` (undefined: none). */
  setToken(token: string | undefined): void {
    this.opts.token = token;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    // The token check comes first: nothing an unauthenticated caller sends is parsed, so a bad
    // target can neither fail in a way that tells it something nor reach a handler.
    if (req.method === 'GET' && isDashboardPage(target)) {
      res.writeHead(200, DASHBOARD_HEADERS);
      res.end(DASHBOARD_HTML);
      return;
    }
    if (!isHealthz(target) && this.opts.token && !tokenOk(req, this.opts.token)) return fail(res, 'HOMING_ERR_ADMIN_UNAUTHORIZED', 'missing or wrong bearer token');
    let url: URL;
    try {
      url = new URL(target, 'http://admin.invalid');
    } catch {
      return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', 'the request target is not a valid URL');
    }
    const path = url.pathname;
    if (path === '/healthz') return json(res, 200, { status: 'ok' });
    if (req.method === 'GET') {
      if (path === '/readyz') return this.opts.ready() ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'not ready' });
      if (path === '/metrics') {
        const text = await this.rt.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.rt.metrics.registry.contentType });
        res.end(text);
        return;
      }
      if (path === '/status') return json(res, 200, this.status());
      if (path === '/api/v1/pools') return json(res, 200, { pools: this.pools() });
      if (path === '/api/v1/events') return this.events.serve(req, res);
      const rm = /^\/api\/v1\/routes\/([^/]+)\/(share|lookup)$/.exec(path);
      if (rm) {
        const [name] = decodeSegments(rm[1]!) ?? [];
        if (name === undefined) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', 'the route name is not valid percent-encoded UTF-8');
        const route = this.rt.route(name);
        if (!route) return fail(res, 'HOMING_ERR_ADMIN_NOT_FOUND', `no route "${name}"`);
        if (rm[2] === 'share') return json(res, 200, { route: route.name, sample: SHARE_SAMPLE, share: route.hashShare(SHARE_SAMPLE) });
        const key = url.searchParams.get('key');
        if (key === null) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', 'missing ?key=');
        const r = await route.resolve(key, 'lookup');
        if (!isResolution(r)) return json(res, 200, { route: route.name, key, target: null, pool: null, by: null, error: { code: r.error, message: r.message } });
        return json(res, 200, { route: route.name, key, target: r.member.id, pool: r.pool.name, by: r.by });
      }
    }
    const am = /^\/api\/v1\/affinity\/([^/]+)\/(.+)$/.exec(path);
    if (am && (req.method === 'GET' || req.method === 'DELETE')) {
      const [name, key] = decodeSegments(am[1]!, am[2]!) ?? [];
      if (name === undefined || key === undefined) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', 'the route name or key is not valid percent-encoded UTF-8');
      const route = this.rt.route(name);
      if (!route) return fail(res, 'HOMING_ERR_ADMIN_NOT_FOUND', `no route "${name}"`);
      if (!route.affinity) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', `route "${name}" has no affinity`);
      const owner = (await route.affinity.get(key)) ?? null;
      // Forgotten on every tier even when no tier answered an owner (Redis may be down for reads
      // while deletes wait in its backlog); the answer says whether there was one to forget.
      if (req.method === 'DELETE') route.affinity.delete(key);
      if (owner === null) return fail(res, 'HOMING_ERR_ADMIN_NOT_FOUND', `no owner learned for that key on route "${name}"`);
      if (req.method === 'DELETE') return json(res, 200, { route: name, key, deleted: true, owner });
      return json(res, 200, { route: name, key, owner, live: route.liveMember(owner) !== undefined });
    }
    if (path === '/api/v1/restart-workers' && req.method === 'POST') {
      if (!this.opts.restartWorkers) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', 'this homing runs no workers (workers: 1)');
      const r = await this.opts.restartWorkers();
      if (r.failed) return fail(res, 'HOMING_ERR_SERVICE_UNAVAILABLE', `rolling restart stopped after ${r.restarted} worker(s): a new worker did not become ready (the old one keeps serving)`);
      return json(res, 200, r);
    }
    if (path === '/api/v1/cache/purge' && req.method === 'POST') return this.purge(req, res);
    if (path === '/api/v1/reload' && req.method === 'POST') {
      if (!this.opts.reload) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', 'this homing was not started from a config file: there is nothing to reload');
      const r = await this.opts.reload();
      if (r.result === 'ok') return json(res, 200, r);
      const { code, message, problems, ...rest } = r;
      return json(res, ERRORS[code].status, { error: { code, message, ...(problems ? { problems } : {}) }, ...rest });
    }
    const dm = /^\/api\/v1\/directory\/([^/]+)\/(.+)$/.exec(path);
    if (dm && (req.method === 'GET' || req.method === 'PUT' || req.method === 'DELETE')) return this.directory(req, res, dm[1]!, dm[2]!);
    for (const h of this.extra) if (await h(req, res, url)) return;
    fail(res, 'HOMING_ERR_ADMIN_NOT_FOUND', `no admin endpoint ${req.method} ${path}`);
  }

  /**
   * `GET|PUT|DELETE /api/v1/directory/<route>/<key>`: what the directory tier holds for a key; set
   * it by hand (an operator moving a tenant: the body is a pool name, `host:port`, or the JSON
   * `{ "pool" }` / `{ "target" }` forms a directory answers; it never expires until deleted); or
   * forget it, so the next request asks the directory.
   */
  private async directory(req: IncomingMessage, res: ServerResponse, rawRoute: string, rawKey: string): Promise<void> {
    const [name, key] = decodeSegments(rawRoute, rawKey) ?? [];
    if (name === undefined || key === undefined) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', 'the route name or key is not valid percent-encoded UTF-8');
    const route = this.rt.route(name);
    if (!route) return fail(res, 'HOMING_ERR_ADMIN_NOT_FOUND', `no route "${name}"`);
    const d = this.rt.directories.get(route);
    if (!d) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', `route "${name}" has no directory`);
    if (req.method === 'GET') {
      const e = d.table.peek(key);
      if (!e) return fail(res, 'HOMING_ERR_ADMIN_NOT_FOUND', `nothing cached for that key on route "${name}"`);
      return json(res, 200, { route: name, key, ...e });
    }
    if (req.method === 'DELETE') {
      // Forgotten everywhere (workers, other instances) even when this table held nothing.
      if (!this.rt.changeDirectory(route, key)) return fail(res, 'HOMING_ERR_ADMIN_NOT_FOUND', `nothing cached for that key on route "${name}"`);
      return json(res, 200, { route: name, key, deleted: true });
    }
    const body = await readBody(req, MAX_ANSWER_BYTES);
    if (body === undefined) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', `the body is larger than ${MAX_ANSWER_BYTES} bytes`);
    let value: string;
    try {
      value = parseAnswer(body);
    } catch (e) {
      return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', (e as Error).message);
    }
    if (!route.allowsDirectoryAnswer(value)) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', `"${value}" is not a pool of route "${name}" nor a member of one`);
    this.rt.changeDirectory(route, key, value);
    return json(res, 200, { route: name, key, ...d.table.peek(key) });
  }

  /**
   * `POST /api/v1/cache/purge` with one of `{ "url" }` (every variant of one URL: `http(s)://host[:port]/path?query`
   * or `host[:port]/path?query`), `{ "prefix" }` (URLs as `host[:port]/path…` starting with it), `{ "tag" }` (answers
   * whose Cache-Tag or Surrogate-Key named it) or `{ "all": true }`. Applied in every worker and, with
   * `shared.redis`, every instance; answers how many entries went here.
   */
  private async purge(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const cache = this.rt.cache;
    if (!cache) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', 'no route caches (no cache is configured)');
    const body = await readBody(req, MAX_ANSWER_BYTES);
    if (body === undefined) return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', `the body is larger than ${MAX_ANSWER_BYTES} bytes`);
    const spec = purgeSpec(body);
    if (typeof spec === 'string') return fail(res, 'HOMING_ERR_ADMIN_BAD_REQUEST', spec);
    return json(res, 200, { ...spec, purged: cache.purge(spec) });
  }

  /** Each hash route's key shares (member → share of SHARE_SAMPLE keys). */
  shares(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const r of this.rt.routes) {
      const share = r.config.hash ? r.hashShare(SHARE_SAMPLE) : null;
      if (share) out[r.name] = share;
    }
    return out;
  }

  pools(): unknown[] {
    return [...this.rt.pools.values()].map((p) => ({
      name: p.name,
      members: p.members.members.map((m) => ({ id: m.id, weight: m.weight, up: p.isUp(m.id), inflight: m.inflight })),
      live: p.live.size,
    }));
  }

  status(): unknown {
    return {
      version: this.opts.version,
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - this.opts.startedAt) / 1000),
      ready: this.opts.ready(),
      config: this.opts.config?.(),
      workers: this.opts.workers?.(),
      sharedRedis: this.rt.sharedRedis !== undefined,
      routes: this.rt.routes.map((r) => ({
        name: r.name,
        pool: r.pool.name,
        pools: r.pools.map((p) => p.name),
        strategy: (r.config.directory ? 'directory → ' : '') + (r.config.hash ? `hash:${r.config.hash.algorithm}` : `balance:${r.config.balance}`),
        affinity: Boolean(r.config.affinity),
        cache: Boolean(r.config.cache),
      })),
      pools: this.pools(),
    };
  }
}
