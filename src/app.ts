/**
 * One homing process: runtime + faces (HTTP/HTTPS listeners, admin, RESP). Used by the CLI and by
 * tests, which start real instances on port 0. `apply` puts a new config in force while it runs
 * (see src/reload.ts for what triggers it and src/runtime.ts for what carries over).
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { pino, type Logger } from 'pino';
import type { Config } from './config/schema.js';
import type { HostPort } from './config/units.js';
import type { ConfigFile } from './config/load.js';
import { Runtime } from './runtime.js';
import { AdminServer } from './admin/server.js';
import { Metrics } from './admin/metrics.js';
import { addressOf, createListener, createListeners, listen, retireListener, updateListener, type Listener } from './proxy/server.js';
import { VERSION } from './version.js';
import type { ClusterBus } from './state/cluster.js';
import type { DirectoryBus } from './state/directory.js';
import type { PoolStateReplica } from './state/pools.js';
import { startRespServer, type RespServer } from './resp/server.js';
import { runtimeRespBackend } from './resp/wire.js';
import { RespMetrics } from './resp/metrics.js';
import { AccessLog } from './proxy/access-log.js';
import { ConfigReloads, restartNeeded, type Applied } from './reload.js';

export interface StartOptions {
  log?: Logger;
  /** Serve the admin API from this process (false in cluster workers: the primary serves it). */
  admin?: boolean;
  metrics?: Metrics;
  /** The worker's cluster bus (affinity shared between workers). */
  cluster?: ClusterBus;
  /** In a cluster worker: members and health come from the primary (see RuntimeOptions.pools). */
  pools?: PoolStateReplica;
  /** In a cluster worker: directory answers come from the primary (see RuntimeOptions.directoryBus). */
  directoryBus?: DirectoryBus;
  /** The response cache's wall clock (tests move one instead of sleeping). */
  cacheClock?: () => number;
  /**
   * The file the config was read from: the process then reloads it (`POST /api/v1/reload`,
   * `reload.watch`, SIGHUP through the CLI; see `Homing.reloads`) and `/status` shows its
   * generation and hash. Not in a cluster worker (its primary reloads and tells it).
   */
  source?: ConfigFile & { config: Config };
}

export interface Homing {
  readonly runtime: Runtime;
  /** The listeners in force (a reload that moves one replaces it). */
  readonly listeners: readonly Listener[];
  readonly admin: AdminServer | undefined;
  /**
   * Graceful shutdown: not ready at once (`/readyz` 503), stop accepting, let requests in flight
   * finish within `shutdown.timeout` (each answer closes its connection; idle keep-alive
   * connections are closed), websocket tunnels within `shutdown.websocketGrace`; then `close()`.
   */
  drain(): Promise<void>;
  /** Bound addresses (port 0 resolved). */
  readonly http: HostPort | undefined;
  readonly https: HostPort | undefined;
  readonly adminAddress: HostPort | undefined;
  /** The RESP router, when `resp` is configured. */
  readonly resp: RespServer | undefined;
  /** The access log, when `accessLog` is configured. */
  readonly accessLog: AccessLog | undefined;
  /** Reopen log files at their paths (what SIGUSR1 does, for logrotate). */
  reopenLogs(): void;
  /**
   * Put a new, valid config in force between requests: the runtime's generation (runtime.ts), the
   * listeners (one whose address changed is bound anew before the switch and the old one closed
   * gracefully after it; one that stays keeps its socket and connections, and takes the new
   * timeouts and, for https, the certificate read again), log level and admin token. Rejects, the
   * old config still in force, when something new cannot start (an address in use).
   */
  apply(cfg: Config): Promise<Applied>;
  /** The reloads of `StartOptions.source` (undefined without it). */
  readonly reloads: ConfigReloads | undefined;
  close(): Promise<void>;
}

/**
 * In a node:cluster primary: SIGUSR1 (logrotate's "reopen your logs") goes on to every worker,
 * which writes the access log. Answers the function that stops relaying.
 */
export function relayReopenSignal(workers: () => Iterable<{ process: { kill(signal: 'SIGUSR1'): unknown } } | undefined>): () => void {
  const relay = (): void => {
    for (const w of workers()) w?.process.kill('SIGUSR1');
  };
  process.on('SIGUSR1', relay);
  return () => process.off('SIGUSR1', relay);
}

export function createLogger(cfg: Config): Logger {
  return pino({ level: cfg.log.level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}

function closeServer(s: { close(cb: () => void): unknown; closeAllConnections?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    s.close(() => resolve());
    s.closeAllConnections?.();
  });
}

export async function startHoming(cfg: Config, opts: StartOptions = {}): Promise<Homing> {
  const log = opts.log ?? createLogger(cfg);
  const access = cfg.accessLog ? AccessLog.open(cfg.accessLog, (err) => log.error({ err: err.message }, 'access log write failed')) : undefined;
  // The OpenTelemetry packages load only when spans are exported.
  const spans = cfg.tracing?.otlp ? (await import('./tracing/otlp.js')).createOtlpExporter(cfg.tracing) : undefined;
  let runtime: Runtime;
  try {
    runtime = await Runtime.create(cfg, { log, metrics: opts.metrics ?? new Metrics(), cluster: opts.cluster, pools: opts.pools, directoryBus: opts.directoryBus, access, spans, cacheClock: opts.cacheClock });
  } catch (e) {
    await access?.close();
    await spans?.close();
    throw e;
  }
  let listeners = createListeners(cfg, runtime.proxy);
  /** Listeners a reload moved, closing gracefully. */
  const retired = new Set<Listener>();
  let ready = false;
  let admin: AdminServer | undefined;
  let resp: RespServer | undefined;
  let reloads: ConfigReloads | undefined;
  let untrackResp = (): void => {};
  try {
    for (const l of listeners) await listen(l.server, l.proto === 'http' ? cfg.listen.http! : cfg.listen.https!.address);
    if (cfg.admin && opts.admin !== false) {
      admin = new AdminServer(runtime, {
        token: cfg.admin.token,
        ready: () => ready,
        startedAt: Date.now(),
        version: VERSION,
        config: () => reloads?.current,
        reload: opts.source ? () => reloads!.reload('POST /api/v1/reload') : undefined,
      });
      await listen(admin.server, cfg.admin.address);
    }
    if (cfg.resp) {
      const r = cfg.resp;
      resp = await startRespServer(
        {
          host: r.address.host,
          port: r.address.port,
          maxClients: r.maxClients,
          idleTimeout: r.idleTimeout,
          maxPipeline: r.maxPipeline,
          maxOutputBuffer: r.maxOutputBuffer,
          maxTotalBuffer: r.maxTotalBuffer,
          limits: { maxQueryBuffer: r.maxQueryBuffer },
          log,
        },
        runtimeRespBackend(runtime),
      );
      untrackResp = RespMetrics.of(runtime.metrics.registry).track(resp);
    }
    // Once it serves: announced in etcd (`announce`), withdrawn first on close.
    if (!opts.pools) await runtime.announce((listeners.find((l) => l.proto === 'http') ?? listeners[0])?.address());
  } catch (e) {
    if (admin?.server.listening) await closeServer(admin.server);
    await Promise.all(listeners.map((l) => (l.server.listening ? closeServer(l.server) : undefined)));
    await runtime.close();
    await access?.close();
    await spans?.close();
    throw e;
  }
  // logrotate moves the file, then sends SIGUSR1: the next lines go to a new file at the path.
  const reopenLogs = (): void => access?.reopen();
  if (access?.file !== undefined) process.on('SIGUSR1', reopenLogs);
  ready = true;
  const bound = (proto: 'http' | 'https'): HostPort | undefined => listeners.find((l) => l.proto === proto)?.address();
  let http = bound('http');
  let https = bound('https');

  /**
   * The listeners `next` asks for: those at an unchanged address are kept (https with its
   * certificate and key read again), the others bound now (still routing by the config in force
   * until the runtime switches). Rejects, having closed what it bound, when one cannot be bound.
   */
  const planListeners = async (next: Config): Promise<{ commit(): void; abandon(): Promise<void> }> => {
    const kept: Listener[] = [];
    const added: Listener[] = [];
    const moved: Listener[] = [];
    let secure: SecureContextOptions | undefined;
    try {
      for (const proto of ['http', 'https'] as const) {
        const was = listenAddress(runtime.config, proto);
        const want = listenAddress(next, proto);
        const l = listeners.find((x) => x.proto === proto);
        if (l && was && want && was.host === want.host && was.port === want.port) {
          kept.push(l);
          if (proto === 'https') {
            secure = { cert: readFileSync(next.listen.https!.cert), key: readFileSync(next.listen.https!.key) };
            createSecureContext(secure); // throws for a certificate and key that do not go together
          }
          continue;
        }
        if (l) moved.push(l);
        if (!want) continue;
        const nl = createListener(next, runtime.proxy, proto);
        added.push(nl);
        await listen(nl.server, want);
      }
    } catch (e) {
      await Promise.all(added.map((l) => closeServer(l.server)));
      throw e;
    }
    return {
      abandon: async () => {
        await Promise.all(added.map((l) => closeServer(l.server)));
      },
      commit: () => {
        for (const l of kept) updateListener(l, next.listen, l.proto === 'https' ? secure : undefined);
        listeners = [...kept, ...added].sort((a, b) => (a.proto === b.proto ? 0 : a.proto === 'http' ? -1 : 1));
        http = bound('http');
        https = bound('https');
        for (const l of moved) {
          retired.add(l);
          void retireListener(l, next.shutdown.timeout).finally(() => retired.delete(l));
        }
      },
    };
  };

  const homing: Homing = {
    runtime,
    get listeners() {
      return listeners;
    },
    admin,
    get http() {
      return http;
    },
    get https() {
      return https;
    },
    adminAddress: admin ? addressOf(admin.server) : undefined,
    resp,
    async drain() {
      ready = false;
      const drain = runtime.drain;
      drain.draining = true;
      const { timeout, websocketGrace } = runtime.config.shutdown;
      const done = Promise.all(listeners.map((l) => new Promise<void>((r) => l.server.close(() => r()))));
      // A connection whose answer began before the drain goes idle afterwards: close it then.
      const idle = setInterval(() => {
        for (const l of listeners) l.server.closeIdleConnections();
      }, 100);
      const ws = setTimeout(() => {
        for (const t of drain.tunnels) t.destroy();
      }, Math.min(websocketGrace, timeout));
      let deadline: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((r) => (deadline = setTimeout(r, timeout)))]);
      // A worker lingers a moment after its listener closed: a connection the cluster primary was
      // handing over meanwhile is answered "not accepted" (and given to another worker), not lost
      // with this process.
      if (cluster.isWorker) await new Promise((r) => setTimeout(r, 250));
      clearInterval(idle);
      clearTimeout(ws);
      clearTimeout(deadline);
      await homing.close();
    },
    accessLog: access,
    reopenLogs,
    async apply(next) {
      if (runtime.drain.draining) throw new Error('homing is shutting down');
      const before = runtime.config;
      const restart = restartNeeded(before, next);
      const plan = await planListeners(next);
      try {
        await runtime.reload(next);
      } catch (e) {
        await plan.abandon();
        throw e;
      }
      plan.commit();
      if (next.log.level !== before.log.level) log.level = next.log.level;
      admin?.setToken(next.admin?.token);
      return { restartNeeded: restart };
    },
    get reloads() {
      return reloads;
    },
    async close() {
      ready = false;
      process.off('SIGUSR1', reopenLogs);
      await reloads?.close();
      await runtime.withdraw();
      await Promise.all([...[...listeners, ...retired].map((l) => closeServer(l.server)), admin ? closeServer(admin.server) : undefined, resp?.close()]);
      untrackResp();
      await runtime.close();
      await access?.close();
      await spans?.close();
    },
  };
  if (opts.source) reloads = new ConfigReloads({ source: opts.source, apply: (next) => homing.apply(next.config), metrics: runtime.metrics, log });
  return homing;
}

/** Where `cfg` has the `proto` listener listen. */
function listenAddress(cfg: Config, proto: 'http' | 'https'): HostPort | undefined {
  return proto === 'http' ? cfg.listen.http : cfg.listen.https?.address;
}
