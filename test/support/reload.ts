/** homing started from a config file that a test rewrites and reloads, and a steady keep-alive load to run meanwhile. */
import { Agent, request } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { startHoming, type Homing } from '../../src/app.js';
import { echo, httpRequest, silentLog, startBackend, type Backend, type Handler } from './backends.js';

export interface FromFile {
  h: Homing;
  url: string;
  adminUrl: string;
  file: string;
  /** Rewrite the config file. */
  write(yaml: string): void;
  /** `POST /api/v1/reload`: status and JSON answer. */
  reload(): Promise<{ status: number; json: ReloadAnswer }>;
  status(): Promise<{ config?: { generation: number; hash: string }; routes: { name: string; strategy: string }[] }>;
}

export interface ReloadAnswer {
  result?: 'ok' | 'error';
  generation: number;
  hash: string;
  restartNeeded?: string[];
  workers?: { pid: number; generation?: number; hash?: string; error?: string }[];
  error?: { code: string; message: string; problems?: string[] };
}

/** Echo backends that name themselves as the owner of a session (`X-Session-Node`); closed by `cleanups`. */
export async function ownerBackends(cleanups: (() => Promise<void> | void)[], ...names: string[]): Promise<Backend[]> {
  const handler: Handler = (req, res, body, b) => {
    res.setHeader('x-session-node', b.id);
    echo(req, res, body, b);
  };
  const bs = await Promise.all(names.map((n) => startBackend(n, handler)));
  for (const b of bs) cleanups.push(() => b.close());
  return bs;
}

/** homing from `yaml` written to a temp file (so it can reload it); closed and removed by `cleanups`. */
export async function startFromFile(yaml: string, cleanups: (() => Promise<void> | void)[]): Promise<FromFile> {
  const dir = mkdtempSync(join(tmpdir(), 'homing-reload-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'homing.yaml');
  writeFileSync(file, yaml);
  const source = loadConfig(file);
  const h = await startHoming(source.config, { log: silentLog, source });
  cleanups.push(() => h.close());
  const adminUrl = `http://127.0.0.1:${h.adminAddress!.port}`;
  return {
    h,
    get url() {
      return `http://127.0.0.1:${h.http!.port}`;
    },
    adminUrl,
    file,
    write: (text) => writeFileSync(file, text),
    reload: async () => {
      const r = await httpRequest(`${adminUrl}/api/v1/reload`, { method: 'POST', timeout: 60_000 });
      return { status: r.status, json: JSON.parse(r.text) as ReloadAnswer };
    },
    status: async () => JSON.parse((await httpRequest(`${adminUrl}/status`)).text),
  };
}

/** One request of a load: what to send, and whether the answer is right (undefined: it is). */
export interface LoadRequest {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
  check?(status: number, body: string): string | undefined;
}

export interface Load {
  /** Answers that were right so far. */
  readonly ok: number;
  /** Everything that went wrong: a wrong status or body, a reset, a timeout. */
  readonly failures: string[];
  /** Stop sending; resolves once every loop's last request is over. */
  stop(): Promise<void>;
}

/**
 * `loops` concurrent request loops over keep-alive connections (one agent, one socket per loop at
 * most), each sending `next(loop, n)` at most once per `everyMs` (so a fast box does not turn a
 * steady load into a flood), until stopped.
 */
export function steadyLoad(base: string, opts: { loops: number; everyMs: number; next(loop: number, n: number): LoadRequest }): Load {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.loops });
  const failures: string[] = [];
  let ok = 0;
  let stopped = false;
  const send = (r: LoadRequest): Promise<void> =>
    new Promise((resolve) => {
      const headers: Record<string, string> = { ...r.headers };
      if (r.body !== undefined) headers['content-length'] = String(Buffer.byteLength(r.body));
      const req = request(`${base}${r.path}`, { method: r.method, agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => {
          failures.push(`${r.method} ${r.path}: response ${e.message}`);
          resolve();
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          const wrong = res.statusCode !== 200 ? `status ${res.statusCode}: ${text.slice(0, 200)}` : r.check?.(res.statusCode, text);
          if (wrong === undefined) ok++;
          else failures.push(`${r.method} ${r.path}: ${wrong}`);
          resolve();
        });
      });
      req.setTimeout(30_000, () => req.destroy(new Error('timed out')));
      req.on('error', (e) => {
        failures.push(`${r.method} ${r.path}: ${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`);
        resolve();
      });
      req.end(r.body);
    });
  const loop = async (i: number): Promise<void> => {
    for (let n = 0; !stopped; n++) {
      const started = Date.now();
      await send(opts.next(i, n));
      const left = opts.everyMs - (Date.now() - started);
      if (left > 0 && !stopped) await new Promise((r) => setTimeout(r, left));
    }
  };
  const loops = Array.from({ length: opts.loops }, (_, i) => loop(i));
  return {
    get ok() {
      return ok;
    },
    failures,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}
