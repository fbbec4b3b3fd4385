/**
 * Live config reload: the config file is read again — on SIGHUP, on `POST /api/v1/reload`, and with
 * `reload.watch` when the file changes — and goes through `validateConfig`, the validation of
 * `homing check` and `homing serve`. An invalid file is refused with the messages `homing check`
 * prints, and nothing changes; a valid one is applied by the process (`Homing.apply`, or in a
 * cluster primary its runtime and then every worker). Each applied config is a new generation,
 * numbered from 1 (the config the process started with); `/status` shows the generation and a
 * short hash of the file's text, for the primary and for each worker.
 *
 * Reloads run one at a time, in the order they were asked for: a file written during a reload is
 * read by the next one.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { configHash, describeProblems, readConfigFile, type ConfigFile } from './config/load.js';
import type { Config } from './config/schema.js';
import type { Metrics } from './admin/metrics.js';
import { WatchedText } from './state/watched-file.js';

/** Which config a process runs. */
export interface ConfigVersion {
  /** 1 for the config it started with, one more for each reload applied. */
  generation: number;
  /** The first 12 hex digits of the SHA-256 of the file's text. */
  hash: string;
}

/** A worker's config, as its primary knows it. */
export interface WorkerVersion extends Partial<ConfigVersion> {
  pid: number;
  /** Why its last reload failed (it still runs `generation`). */
  error?: string;
}

/** What one reload did. */
export type ReloadOutcome =
  | ({ result: 'ok'; restartNeeded: string[]; workers?: WorkerVersion[] } & ConfigVersion)
  | ({
      result: 'error';
      code: 'HOMING_ERR_CONFIG_INVALID' | 'HOMING_ERR_RELOAD_FAILED';
      message: string;
      /** The validation problems, one a line as `homing check` prints them. */
      problems?: string[];
      workers?: WorkerVersion[];
    } & ConfigVersion);

/** What applying a valid config reports; it throws when nothing could be switched. */
export interface Applied {
  /** Keys whose change takes a restart (they kept their old value). */
  restartNeeded: string[];
  /** Workers of a cluster primary, after the switch (with `error` where one did not switch). */
  workers?: WorkerVersion[];
}

export interface ConfigReloadsOptions {
  /** The file the process started from (its text and hash). */
  source: ConfigFile & { config: Config };
  /** Put a valid config in force as `generation`; rejects (the old one still in force) when it cannot. */
  apply(config: ConfigFile & { config: Config }, generation: number): Promise<Applied>;
  metrics: Metrics;
  log: Logger;
  /** The watch of `reload.watch` (tests shorten it). */
  watch?: { debounceMs?: number; pollMs?: number };
}

/**
 * Keys of the config a reload cannot change in a running process: it applies everything else and
 * says which of these changed (they take a restart; a rolling restart of the workers does not
 * re-read them either, the primary holds them).
 */
export function restartNeeded(before: Config, after: Config): string[] {
  const resp = (c: Config): unknown => (c.resp ? { ...c.resp, route: undefined, routes: undefined } : undefined);
  const checks: [string, unknown, unknown][] = [
    ['workers', before.workers, after.workers],
    ['admin.address', before.admin?.address, after.admin?.address],
    ['admin.insecure', before.admin?.insecure, after.admin?.insecure],
    ['resp (but route, routes)', resp(before), resp(after)],
    ['accessLog', before.accessLog, after.accessLog],
    ['tracing.otlp', before.tracing?.otlp, after.tracing?.otlp],
    ['announce', before.announce, after.announce],
    ['engine', before.engine, after.engine],
  ];
  return checks.filter(([, a, b]) => !isDeepStrictEqual(a, b)).map(([key]) => key);
}

/** The reloads of one process's config file (a lone process, or a cluster primary). */
export class ConfigReloads {
  private version: ConfigVersion;
  private readonly file: string;
  private queue: Promise<unknown> = Promise.resolve();
  private watcher: WatchedText | undefined;
  private readonly counter: Counter<'result'>;
  private closed = false;

  constructor(private readonly opts: ConfigReloadsOptions) {
    this.file = opts.source.file;
    this.version = { generation: 1, hash: opts.source.hash };
    this.counter = opts.metrics.reloads();
    this.watch(opts.source.config);
  }

  /** The config in force here: its generation, hash and file. */
  get current(): ConfigVersion & { file: string } {
    return { ...this.version, file: this.file };
  }

  /** Read the file again and apply it (after any reload already asked for). `trigger` is for the log. */
  reload(trigger: string): Promise<ReloadOutcome> {
    const run = this.queue.then(() => this.once(trigger));
    this.queue = run.catch(() => {});
    return run;
  }

  private async once(trigger: string): Promise<ReloadOutcome> {
    const { log } = this.opts;
    if (this.closed) return { result: 'error', code: 'HOMING_ERR_RELOAD_FAILED', message: 'homing is stopping', ...this.version };
    const read = readConfigFile(this.file);
    if (!read.config) {
      this.counter.labels('error').inc();
      log.error({ trigger, file: this.file, problems: read.problems }, 'config reload refused: the file is invalid; the config in force is unchanged');
      return { result: 'error', code: 'HOMING_ERR_CONFIG_INVALID', message: describeProblems(read.problems, this.file), problems: read.problems, ...this.version };
    }
    const generation = this.version.generation + 1;
    let applied: Applied;
    try {
      applied = await this.opts.apply(read as ConfigFile & { config: Config }, generation);
    } catch (e) {
      this.counter.labels('error').inc();
      const message = `the config is valid but could not be applied: ${(e as Error).message}`;
      log.error({ trigger, file: this.file, err: (e as Error).message }, `config reload failed: ${message}; the config in force is unchanged`);
      return { result: 'error', code: 'HOMING_ERR_RELOAD_FAILED', message, ...this.version };
    }
    this.version = { generation, hash: read.hash };
    this.watch(read.config);
    if (applied.restartNeeded.length) log.warn({ keys: applied.restartNeeded }, 'config reload: these keys changed and take a restart; they keep their old values');
    const failed = (applied.workers ?? []).filter((w) => w.error !== undefined);
    if (failed.length > 0) {
      this.counter.labels('error').inc();
      const message = `generation ${generation} is in force here, but ${failed.length === 1 ? 'a worker' : `${failed.length} workers`} did not switch (they keep their config; a rolling restart replaces them): ${failed.map((w) => `worker ${w.pid}: ${w.error}`).join('; ')}`;
      log.error({ trigger, generation, hash: read.hash, workers: failed }, `config reload: ${message}`);
      return { result: 'error', code: 'HOMING_ERR_RELOAD_FAILED', message, ...this.version, workers: applied.workers };
    }
    this.counter.labels('ok').inc();
    log.info({ trigger, generation, hash: read.hash }, 'config reloaded');
    return { result: 'ok', ...this.version, restartNeeded: applied.restartNeeded, workers: applied.workers };
  }

  /** Watch the file while `reload.watch` says so. */
  private watch(config: Config): void {
    if (this.closed) return;
    if (config.reload.watch && !this.watcher) {
      const w = (this.watcher = new WatchedText(this.file, 'config file', this.opts.watch));
      // Every text that differs from the one in force is a reload; an invalid one is refused and
      // logged like any other, once, until the file changes again.
      w.start(
        (text) => {
          if (configHash(text) !== this.version.hash) void this.reload('watch');
        },
        (err) => this.opts.log.warn({ err: err.message }, 'config watch: cannot read the config file'),
      ).catch((err: unknown) => {
        // Not watching: the next reload that keeps `watch` on tries again.
        if (this.watcher === w) this.watcher = undefined;
        this.opts.log.warn({ err: (err as Error).message }, 'config watch: cannot read the config file; not watching it');
      });
    } else if (!config.reload.watch && this.watcher) {
      void this.watcher.stop();
      this.watcher = undefined;
    }
  }

  /** Stop watching; a reload in progress ends first. */
  async close(): Promise<void> {
    this.closed = true;
    await this.watcher?.stop();
    this.watcher = undefined;
    await this.queue;
  }
}
