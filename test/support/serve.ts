/** The built CLI run as a real process, for tests of what only `homing serve` does (workers). */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { httpRequest, until } from './backends.js';
import { freePort } from './services.js';

export interface Status {
  ready: boolean;
  /** The config this process runs (the primary's, with workers). */
  config?: { generation: number; hash: string; file: string };
  workers?: { pid: number; ready: boolean; generation?: number; hash?: string; error?: string }[];
  pools: { name: string; members: { id: string; up: boolean }[] }[];
}

export interface Served {
  /** The process `homing serve` runs in (the primary, with workers). */
  pid: number;
  adminUrl: string;
  url: string;
  /** The config file it was started with (a test may rewrite it, then reload). */
  file: string;
  /** The head of the config file (listen, admin, workers, log) that `body` followed. */
  head: string;
  status(): Promise<Status | undefined>;
  /** pino lines the box has written so far (every process shares stdout). */
  logs(): { msg?: string; member?: string }[];
  stderr(): string;
  /** The `homing serve` process (signals), and how it ended. */
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `homing serve` from the built CLI (`npm run build` first, as `npm test` does) with `workers`,
 * ready once every worker is; its process and temp dir go in `cleanups`.
 */
export async function serveCli(body: string, workers: number, cleanups: (() => Promise<void> | void)[]): Promise<Served> {
  const port = await freePort();
  const adminPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'homing-serve-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'homing.yaml');
  const head = `listen: { http: 127.0.0.1:${port} }\nadmin: 127.0.0.1:${adminPort}\nworkers: ${workers}\nlog: { level: warn }\n`;
  writeFileSync(file, head + body);
  const proc: ChildProcess = spawn(process.execPath, ['dist/cli/main.js', 'serve', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  cleanups.push(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    // A graceful stop, then no mercy: a test that left a request hanging must not hold the suite.
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  });
  const served: Served = {
    pid: proc.pid!,
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    file,
    head,
    status: async () => {
      try {
        const r = await httpRequest(`http://127.0.0.1:${adminPort}/status`);
        return r.status === 200 ? (JSON.parse(r.text) as Status) : undefined;
      } catch {
        return undefined;
      }
    },
    logs: () =>
      out.split('\n').flatMap((l) => {
        try {
          return [JSON.parse(l) as { msg?: string; member?: string }];
        } catch {
          return [];
        }
      }),
    stderr: () => err,
    proc,
    exited,
  };
  await until(async () => {
    const s = await served.status();
    return s?.ready === true && (workers < 2 || s.workers?.filter((w) => w.ready).length === workers);
  }, 15000, 20);
  return served;
}

