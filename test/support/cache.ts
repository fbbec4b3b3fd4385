/**
 * The cache tests' fixtures: an origin whose answers a test scripts per path (it counts renders and
 * keeps what it saw of each request), homing in front of it with a wall clock the test moves, and a
 * request helper that reads homing's `X-Homing` cache outcome. Time never passes by sleeping.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseConfig } from '../../src/config/load.js';
import { startHoming, type Homing } from '../../src/app.js';
import { httpRequest, silentLog, startBackend, type Backend, type SimpleResponse } from './backends.js';

const cleanups: (() => Promise<void>)[] = [];

/** Close every origin and homing started here (newest first): a test file's `after`. */
export async function stopAll(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c();
}

export type Script = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/** An origin whose answers the test scripts per path; counts renders per path. */
export interface Origin {
  b: Backend;
  renders: Map<string, number>;
  /** What the origin saw of each request (headers), newest last. */
  seen: IncomingMessage['headers'][];
  script(path: string, fn: Script): void;
}

export async function startOrigin(): Promise<Origin> {
  const scripts = new Map<string, Script>();
  const renders = new Map<string, number>();
  const seen: IncomingMessage['headers'][] = [];
  const b = await startBackend('origin', (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const n = (renders.get(path) ?? 0) + 1;
    renders.set(path, n);
    seen.push(req.headers);
    const fn = scripts.get(path);
    if (fn) return fn(req, res, n);
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('no script');
  });
  cleanups.push(() => b.close());
  return { b, renders, seen, script: (p, fn) => scripts.set(p, fn) };
}

export interface CachedHoming {
  h: Homing;
  url: string;
  adminUrl: string;
  /** Move the cache's clock forward. */
  advance(seconds: number): void;
}

/**
 * Homing with one route `r` (debug header on, `cache: routeCache`) to `origin`, `top` appended to the
 * config and `listen` more of the listener's settings (`trustedProxies: [...]`).
 */
export async function startCachedHoming(origin: Origin, routeCache = '', top = '', listen = ''): Promise<CachedHoming> {
  let now = Date.now();
  const yaml = `
listen: { http: 127.0.0.1:0${listen && `, ${listen}`} }
admin: 127.0.0.1:0
pools:
  p: { members: ['${origin.b.id}'] }
routes:
  - name: r
    pool: p
    debugHeader: true
    cache: ${routeCache || 'true'}
${top}`;
  const h = await startHoming(parseConfig(yaml, process.cwd(), 'test'), { log: silentLog, cacheClock: () => now });
  cleanups.push(() => h.close());
  return { h, url: `http://127.0.0.1:${h.http!.port}`, adminUrl: `http://127.0.0.1:${h.adminAddress!.port}`, advance: (s) => (now += s * 1000) };
}

/** The cache outcome homing's debug header names (hit, miss, stale, revalidated, bypass). */
export function cacheOf(r: { headers: Record<string, string | string[] | undefined> }): string {
  const x = String(r.headers['x-homing'] ?? '');
  return /cache=(\w+)/.exec(x)?.[1] ?? '';
}

export type CachedResponse = SimpleResponse & { cache: string };

/** One request to homing, with its cache outcome. */
export async function fetchVia(c: CachedHoming, path: string, opts: Parameters<typeof httpRequest>[1] = {}): Promise<CachedResponse> {
  const r = await httpRequest(`${c.url}${path}`, opts);
  return Object.assign(r, { cache: cacheOf(r) });
}
