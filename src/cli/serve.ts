/**
 * `homing serve`: one process, or with `workers: auto|n` a node:cluster primary that forks the
 * workers (they share the listeners) and replaces any that dies. The admin API is served by the
 * primary, with metrics aggregated from every worker. Discovery and active health checks run once,
 * in the primary; the workers follow its pools (src/state/pools.ts). The primary reads the config
 * file, and reloads it on SIGHUP (src/reload.ts); the workers take its text from the primary
 * (src/state/config-bus.ts).
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Config } from '../config/schema.js';
import { checkConfigText, describeProblems, loadConfig } from '../config/load.js';
import { createLogger, relayReopenSignal, startHoming, type Homing } from '../app.js';
import { Metrics } from '../admin/metrics.js';
import { Runtime } from '../runtime.js';
import { AdminServer } from '../admin/server.js';
import { listen } from '../proxy/server.js';
import { VERSION } from '../version.js';
import { ClusterBus } from '../state/cluster.js';
import { DirectoryBus } from '../state/directory.js';
import { PoolStatePublisher, PoolStateReplica } from '../state/pools.js';
import { ConfigPublisher, ConfigReplica, type ConfigText } from '../state/config-bus.js';
import { MetricsCollector, answerMetrics } from '../state/metrics-bus.js';
import { ConfigReloads, restartNeeded, type ReloadOutcome, type WorkerVersion } from '../reload.js';

export function workerCount(cfg: Config): number {
  return cfg.workers === 'auto' ? Math.max(1, availableParallelism()) : cfg.workers;
}

/** SIGTERM/SIGINT: `stop` (a graceful drain), then exit; a second signal exits at once. */
function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/**
 * SIGHUP: read the config file again and apply it (the outcome is logged by the reload itself).
 * Listened to from the start, so a SIGHUP while homing starts does not end the process (its
 * default): it reloads once homing serves. Answers the function that names the reload.
 */
function onReloadSignal(): (reload: () => Promise<ReloadOutcome>) => void {
  let reload: (() => Promise<ReloadOutcome>) | undefined;
  let asked = false;
  process.on('SIGHUP', () => {
    if (reload) void reload();
    else asked = true;
  });
  return (r) => {
    reload = r;
    if (asked) void r();
  };
}

export async function serve(file: string): Promise<void> {
  if (cluster.isWorker) return worker(file);
  const reloadOn = onReloadSignal();
  const source = loadConfig(file);
  const cfg = source.config;
  const log = createLogger(cfg);
  const n = workerCount(cfg);
  if (n <= 1) {
    const h = await startHoming(cfg, { log, source });
    announce(log, h);
    reloadOn(() => h.reloads!.reload('SIGHUP'));
    onSignals(() => h.drain());
    return;
  }
  return primary(source, n, log, reloadOn);
}

/**
 * A cluster worker: its config is the primary's text (validated here again, against the file's
 * directory), and a reload is the primary telling it to switch; a SIGHUP sent to it is ignored.
 */
async function worker(file: string): Promise<void> {
  process.on('SIGHUP', () => {});
  // The primary says why, once for the box (every worker would fail alike: a port in use).
  const failed = (message: string): void => {
    const exit = (): never => process.exit(1);
    if (!process.connected || !process.send) exit();
    process.send!({ homing: 'failed', message } satisfies WorkerMessage, undefined, undefined, exit);
  };
  const configs = new ConfigReplica();
  let first: ConfigText;
  try {
    first = await configs.fetch();
  } catch (e) {
    return failed((e as Error).message);
  }
  const checked = checkConfigText(first.text, file);
  if (!checked.config) return failed(describeProblems(checked.problems, file));
  const cfg = checked.config;
  const log = createLogger(cfg);
  const metrics = new Metrics();
  // The primary's /metrics sums what each worker answers (src/state/metrics-bus.ts).
  answerMetrics([metrics.registry], log);
  // Affinity learned in this worker reaches the others through the primary; members and their
  // health come from the primary, before this worker serves.
  let h: Homing;
  try {
    h = await startHoming(cfg, { log, admin: false, metrics, cluster: new ClusterBus({ log }), pools: new PoolStateReplica({ log }), directoryBus: new DirectoryBus(false, log) });
  } catch (e) {
    return failed((e as Error).message);
  }
  configs.follow(first, async (c) => {
    const next = checkConfigText(c.text, file);
    if (!next.config) throw new Error(describeProblems(next.problems, file));
    await h.apply(next.config);
    log.info({ generation: c.generation, hash: c.hash }, 'config reloaded');
  });
  // A send to a primary that is gone (it is stopping) fails; the worker ends with the channel.
  process.send?.({ homing: 'ready' } satisfies WorkerMessage, undefined, undefined, () => {});
  onSignals(() => h.drain());
}

async function primary(source: ReturnType<typeof loadConfig>, n: number, log: ReturnType<typeof createLogger>, reloadOn: ReturnType<typeof onReloadSignal>): Promise<void> {
  const cfg = source.config;
  // Primary: relay affinity between workers, fork them, serve admin with aggregated metrics,
  // replace dead workers. The primary keeps its own runtime (same config ⇒ same rings), built
  // before the first fork: it runs discovery and active health checks for the whole box and sends
  // the pools' state to the workers (each asks for it before serving) and takes their passive
  // reports; its affinity tables mirror what every worker learns (the relay applies each op to
  // them), which answers a worker's query on a local miss; and it serves the admin API.
  const bus = new ClusterBus({ log }).startClusterRelay();
  const pools = new PoolStatePublisher({ log }).start();
  const configs = new ConfigPublisher({ text: source.text, generation: 1, hash: source.hash }, { log }).start();
  const metrics = new Metrics(false);
  const rt = await Runtime.create(cfg, { log, metrics, cluster: bus, pools, directoryBus: new DirectoryBus(true, log) });
  let admin: AdminServer | undefined;
  let collector: MetricsCollector | undefined;
  // A reload: validated here, once; applied to the primary's runtime (pools, health, discovery and
  // the tables the workers ask), then to every worker.
  const reloads = new ConfigReloads({
    source,
    metrics,
    log,
    apply: async (next, generation) => {
      const before = rt.config;
      const restart = restartNeeded(before, next.config);
      await rt.reload(next.config);
      if (next.config.log.level !== before.log.level) log.level = next.config.log.level;
      admin?.setToken(next.config.admin?.token);
      const workers = await configs.publish({ text: next.text, generation, hash: next.hash });
      return { restartNeeded: restart, workers };
    },
  });
  let stopping = false;
  const readyPids = new Set<number>();
  let served = false;
  /** Workers stopped on purpose by a rolling restart: not replaced when they exit. */
  const retiring = new Set<Worker>();
  let failure: string | undefined;
  /** Fork a worker; settles true once it serves, false if it dies or is not ready within `readyWithin` ms. */
  const fork = (readyWithin = 60_000): Promise<boolean> => {
    const w = cluster.fork();
    w.on('error', () => {});
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), readyWithin);
      t.unref();
      w.on('message', (m: { homing?: unknown; message?: unknown } | null) => {
        if (m?.homing === 'ready' && w.process.pid) {
          readyPids.add(w.process.pid);
          served = true;
          clearTimeout(t);
          resolve(true);
        }
        if (m?.homing === 'failed' && !served) cannotStart((failure = String(m.message)));
      });
      w.on('exit', () => {
        readyPids.delete(w.process.pid ?? -1);
        clearTimeout(t);
        resolve(false);
      });
    });
  };
  /**
   * Rolling restart (SIGUSR2, `POST /api/v1/restart-workers`): one worker at a time, a new one
   * forked first and the old one drained only once the new one serves, so the box never has
   * fewer serving workers — how a new homing version is rolled out without dropping a request.
   * A new worker that does not become ready stops the roll (the old one keeps serving).
   */
  let rolling: Promise<{ restarted: number; failed: boolean }> | undefined;
  const restartWorkers = (): Promise<{ restarted: number; failed: boolean }> =>
    (rolling ??= (async () => {
      let restarted = 0;
      try {
        for (const old of Object.values(cluster.workers ?? {})) {
          if (!old || old.isDead() || stopping) continue;
          if (!(await fork())) {
            log.error({ worker: old.process.pid }, 'rolling restart stopped: the new worker did not become ready');
            return { restarted, failed: true };
          }
          retiring.add(old);
          const gone = new Promise<void>((r) => old.once('exit', () => r()));
          old.kill('SIGTERM');
          await gone;
          restarted++;
        }
        log.info({ restarted }, 'rolling restart done');
        return { restarted, failed: false };
      } finally {
        rolling = undefined;
      }
    })());
  if (cfg.admin) {
    // The serving workers' sum, and the reloads, which only the primary counts.
    const sum = new MetricsCollector(() => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w?.process.pid && readyPids.has(w.process.pid))).start();
    collector = sum;
    const own = (): Promise<string> => metrics.registry.getSingleMetricAsString('homing_config_reloads_total');
    metrics.registry.metrics = async () => `${(await sum.collect()).replace(/\n*$/, '\n')}${await own()}\n`;
    const workers = (): ({ ready: boolean } & WorkerVersion)[] =>
      Object.values(cluster.workers ?? {}).flatMap((w) => (w?.process.pid ? [{ pid: w.process.pid, ready: readyPids.has(w.process.pid), ...configs.versionOf(w.process.pid) }] : []));
    admin = new AdminServer(rt, {
      token: cfg.admin.token,
      ready: () => readyPids.size > 0,
      startedAt: Date.now(),
      version: VERSION,
      workers,
      restartWorkers,
      config: () => reloads.current,
      reload: () => reloads.reload('POST /api/v1/reload'),
    });
    try {
      await listen(admin.server, cfg.admin.address);
    } catch (e) {
      await rt.close();
      throw e;
    }
  }
  const stop = async (): Promise<void> => {
    stopping = true;
    // Workers drain (each within shutdown.timeout); the primary answers /readyz 503 meanwhile.
    readyPids.clear();
    const exited = Object.values(cluster.workers ?? {}).map((w) => (w && !w.isDead() ? new Promise<void>((r) => w.once('exit', () => r())) : undefined));
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
    await Promise.all(exited);
    await reloads.close();
    configs.close();
    bus.close();
    collector?.close();
    admin?.server.close();
    await rt.close();
  };
  // Workers that cannot start before any has served (a port in use, a certificate the listener
  // refuses) fail alike: one line, exit 1, rather than replacing them forever.
  const cannotStart = (message: string): void => {
    if (stopping) return;
    process.stderr.write(`homing: ${message}\n`);
    void stop().finally(() => process.exit(1));
  };
  cluster.on('exit', (w, code, signal) => {
    if (stopping || retiring.delete(w)) return;
    // Its message may still be on its way: a moment for it.
    if (!served) return void setTimeout(() => cannotStart(failure ?? `a worker exited (${signal ?? `code ${code}`}) before serving`), 50);
    log.warn({ worker: w.process.pid, code, signal }, 'worker died; starting a new one');
    // Not unref'd: with every worker dead, this timer is what keeps the primary alive to fork.
    setTimeout(() => void fork(), 100);
  });
  for (let i = 0; i < n; i++) void fork();
  process.on('SIGUSR2', () => void restartWorkers());
  reloadOn(() => reloads.reload('SIGHUP'));
  // The workers write the access log: logrotate's SIGUSR1 to the primary goes on to them.
  if (cfg.accessLog) relayReopenSignal(() => Object.values(cluster.workers ?? {}));
  log.info({ workers: n, http: cfg.listen.http, admin: cfg.admin?.address }, 'homing primary started');
  onSignals(stop);
}

/** What a worker tells the primary. */
type WorkerMessage = { homing: 'ready' } | { homing: 'failed'; message: string };

function announce(log: ReturnType<typeof createLogger>, h: Homing): void {
  log.info({ http: h.http, https: h.https, admin: h.adminAddress, engine: h.runtime.config.engine }, 'homing started');
}
