/**
 * The config of a box of node:cluster workers: the primary reads and validates the config file
 * (once, for the box) and hands its text to the workers; each worker validates it again against
 * the file's directory (the files it names) and says which generation it runs. A worker never
 * reads the file itself, so every worker of a box runs the primary's text, including one forked
 * after a reload (a replacement, a rolling restart).
 *
 * Messages over the cluster IPC channel:
 *
 *   worker → primary  { homing: 'config?' }                               the config, please (at start)
 *   primary → worker  { homing: 'config', text, generation, hash }        the one in force
 *   primary → worker  { homing: 'reload', text, generation, hash }        switch to this one
 *   worker → primary  { homing: 'generation', generation, hash }          I run this one now
 *   worker → primary  { homing: 'reload-failed', generation, message }    I could not switch to it
 *
 * A worker that started from an older text than the primary's (it asked just before a reload) says
 * so in its first 'generation' message and is sent the current one at once.
 */
import type { Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { kind, listenToWorkers, sendToPrimary } from './ipc.js';
import type { ConfigVersion, WorkerVersion } from '../reload.js';

/** A config's text, as the primary hands it over. */
export interface ConfigText extends ConfigVersion {
  text: string;
}

interface ConfigMessage extends ConfigText {
  homing: 'config' | 'reload';
}

interface GenerationReport extends ConfigVersion {
  homing: 'generation';
}

interface ReloadFailure {
  homing: 'reload-failed';
  generation: number;
  message: string;
}

function isConfigText(m: Partial<ConfigText>): m is ConfigText {
  return typeof m.text === 'string' && typeof m.generation === 'number' && typeof m.hash === 'string';
}

/** What the primary knows of one worker's config. */
interface WorkerState {
  pid: number;
  version?: ConfigVersion;
  /** The generation it failed to switch to, and why. */
  failed?: { generation: number; message: string };
}

/** The primary's side: answers workers' requests for the config, tells them of reloads, tracks what each runs. */
export class ConfigPublisher {
  private current: ConfigText;
  private readonly states = new Map<Worker, WorkerState>();
  /** Re-checked after every report and exit (publish waits on them). */
  private readonly watchers = new Set<() => void>();
  /** Stops listening to the workers (set while it listens). */
  private unlisten: (() => void) | undefined;

  constructor(
    initial: ConfigText,
    private readonly opts: { log?: Logger; timeout?: number } = {},
  ) {
    this.current = initial;
  }

  /** Listen to the workers. Call before forking. */
  start(): this {
    this.unlisten ??= listenToWorkers(this.onMessage, this.onExit);
    return this;
  }

  /** The config each live worker runs (in the order of `cluster.workers`). */
  workers(): WorkerVersion[] {
    return [...this.states.values()].map((s) => ({ pid: s.pid, ...s.version, ...(s.failed && s.failed.generation > (s.version?.generation ?? 0) ? { error: s.failed.message } : {}) }));
  }

  /** What the worker with this pid runs, if it said. */
  versionOf(pid: number): WorkerVersion | undefined {
    return this.workers().find((w) => w.pid === pid);
  }

  /**
   * Make `next` the box's config: every worker that runs an earlier one is told to switch, and the
   * answer comes once each has switched, failed, or gone (or `timeout` ms passed: that one is
   * reported as not answering). Workers still starting take `next` when they ask for the config,
   * or are told once they say what they run.
   */
  async publish(next: ConfigText): Promise<WorkerVersion[]> {
    this.current = next;
    const waiting = [...this.states.entries()].filter(([w, s]) => w.isConnected() && s.version !== undefined);
    for (const [w] of waiting) this.send(w, { homing: 'reload', ...next });
    const settled = (): boolean => waiting.every(([w, s]) => !this.states.has(w) || (s.version?.generation ?? 0) >= next.generation || (s.failed?.generation ?? 0) >= next.generation);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.opts.timeout ?? 60_000);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      const check = (): void => {
        if (!settled()) return;
        this.watchers.delete(check);
        done();
      };
      this.watchers.add(check);
      check();
    });
    const gone = waiting.filter(([w]) => !this.states.has(w)).map(([, s]): WorkerVersion => ({ pid: s.pid, ...s.version, error: 'exited before it switched' }));
    const late = (w: WorkerVersion): WorkerVersion =>
      waiting.some(([, s]) => s.pid === w.pid) && w.error === undefined && (w.generation ?? 0) < next.generation ? { ...w, error: `did not switch within ${this.opts.timeout ?? 60_000} ms` } : w;
    return [...this.workers().map(late), ...gone];
  }

  private send(w: Worker, msg: ConfigMessage): void {
    if (!w.isConnected()) return;
    try {
      w.send(msg, undefined, (err: Error | null) => {
        if (err) this.opts.log?.warn({ worker: w.process.pid, err: err.message }, 'config not sent to a worker');
      });
    } catch (e) {
      this.opts.log?.warn({ worker: w.process.pid, err: (e as Error).message }, 'config not sent to a worker');
    }
  }

  private stateOf(w: Worker): WorkerState {
    let s = this.states.get(w);
    if (!s) this.states.set(w, (s = { pid: w.process.pid ?? 0 }));
    return s;
  }

  private readonly onMessage = (w: Worker, msg: unknown): void => {
    const k = kind(msg);
    if (k === 'config?') {
      this.stateOf(w);
      return this.send(w, { homing: 'config', ...this.current });
    }
    if (k === 'generation') {
      const r = msg as GenerationReport;
      if (typeof r.generation !== 'number' || typeof r.hash !== 'string') return;
      const s = this.stateOf(w);
      s.version = { generation: r.generation, hash: r.hash };
      // It started from the text in force before a reload it was not told of.
      if (r.generation < this.current.generation) this.send(w, { homing: 'reload', ...this.current });
    } else if (k === 'reload-failed') {
      const r = msg as ReloadFailure;
      if (typeof r.generation !== 'number') return;
      this.stateOf(w).failed = { generation: r.generation, message: String(r.message) };
      this.opts.log?.error({ worker: w.process.pid, generation: r.generation, err: r.message }, 'a worker could not switch to the reloaded config; it keeps its config');
    } else return;
    for (const check of [...this.watchers]) check();
  };

  private readonly onExit = (w: Worker): void => {
    if (!this.states.delete(w)) return;
    for (const check of [...this.watchers]) check();
  };

  close(): void {
    this.unlisten?.();
    this.unlisten = undefined;
  }
}

/** A worker's side: asks for the config at start, switches when told, says what it runs. */
export class ConfigReplica {
  private queue: Promise<unknown> = Promise.resolve();
  private waiting: ((c: ConfigText) => void) | undefined;
  private apply: ((c: ConfigText) => Promise<void>) | undefined;
  /** The generation this worker runs. */
  private running = 0;
  private listening = false;

  constructor(private readonly opts: { log?: Logger } = {}) {}

  /** The primary's config (rejects when there is no primary, or no answer within `timeoutMs`). */
  fetch(timeoutMs = 10_000): Promise<ConfigText> {
    this.listen();
    return new Promise<ConfigText>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new Error(`no config from the cluster primary within ${timeoutMs}ms`));
      }, timeoutMs);
      this.waiting = (c) => {
        clearTimeout(timer);
        this.waiting = undefined;
        resolve(c);
      };
      this.send({ homing: 'config?' }, (err) => {
        clearTimeout(timer);
        this.waiting = undefined;
        reject(new Error(`cannot ask the cluster primary for the config: ${err.message}`));
      });
    });
  }

  /**
   * From now on, switch to each config the primary sends (one at a time) with `apply`, and tell it
   * the outcome. `running` is the config this worker runs now.
   */
  follow(running: ConfigVersion, apply: (c: ConfigText) => Promise<void>): void {
    this.listen();
    this.apply = apply;
    this.running = running.generation;
    this.report(running);
  }

  private report(v: ConfigVersion): void {
    this.send({ homing: 'generation', generation: v.generation, hash: v.hash } satisfies GenerationReport);
  }

  private listen(): void {
    if (this.listening) return;
    this.listening = true;
    process.on('message', this.onMessage);
  }

  private send(msg: object, onError?: (err: Error) => void): void {
    sendToPrimary(msg, this.opts.log, onError);
  }


  private readonly onMessage = (msg: unknown): void => {
    const k = kind(msg);
    if (k !== 'config' && k !== 'reload') return;
    const m = msg as Partial<ConfigText>;
    if (!isConfigText(m)) return;
    const c: ConfigText = { text: m.text, generation: m.generation, hash: m.hash };
    if (k === 'config') return this.waiting?.(c);
    const apply = this.apply;
    if (!apply) return;
    this.queue = this.queue.then(async () => {
      if (c.generation <= this.running) return;
      try {
        await apply(c);
        this.running = c.generation;
        this.report(c);
      } catch (e) {
        this.send({ homing: 'reload-failed', generation: c.generation, message: (e as Error).message } satisfies ReloadFailure);
      }
    });
  };

  close(): void {
    if (!this.listening) return;
    this.listening = false;
    process.off('message', this.onMessage);
  }
}
