/** A scriptable origin and homing with a cache whose clock tests move, for the cache tests. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseConfig } from '../../src/config/load.js';
import { startHoming, type Homing } from '../../src/app.js';
import { silentLog, startBackend, type Backend } from './backends.js';

type Cleanups = (() => Promise<void>)[];

/** An origin whose answers the test scripts per path; counts renders per path. */
export interface Origin {
  b: Backend;
  renders: Map<string, number>;
  /** What the origin saw of each request (headers), newest last. */
  seen: IncomingMessage['headers'][];
  script(path: string, fn: (req: IncomingMessage, res: ServerResponse, n: number) => void): void;
}

export async function startOrigin(cleanups: Cleanups): Promise<Origin> {
  const scripts = new Map<string, (req: IncomingMessage, res: ServerResponse, n: number) => void>();
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

export async function startCachedHoming(cleanups: Cleanups, origin: Origin, routeExtra = '', top = ''): Promise<CachedHoming> {
  let now = Date.now();
  const yaml = `
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools:
  p: { members: ['${origin.b.id}'] }
routes:
  - name: r
    pool: p
    debugHeader: true
    cache: ${routeExtra || 'true'}
${top}`;
  const h = await startHoming(parseConfig(yaml, process.cwd(), 'test'), { log: silentLog, cacheClock: () => now });
  cleanups.push(() => h.close());
  return { h, url: `http://127.0.0.1:${h.http!.port}`, adminUrl: `http://127.0.0.1:${h.adminAddress!.port}`, advance: (s) => (now += s * 1000) };
}

/** The cache outcome the X-Homing debug header names. */
export function cacheOf(r: { headers: Record<string, string | string[] | undefined> }): string {
  const x = String(r.headers['x-homing'] ?? '');
  return /cache=(\w+)/.exec(x)?.[1] ?? '';
}

