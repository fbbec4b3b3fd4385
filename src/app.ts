/**
 * One homing process: runtime + faces (HTTP/HTTPS listeners, admin, RESP). Used by the CLI and by
 * tests, which start real instances on port 0.
 */
import cluster from 'node:cluster';
import { pino, type Logger } from 'pino';
import type { Config } from './config/schema.js';
import type { HostPort } from './config/units.js';
import { Runtime } from './runtime.js';
import { AdminServer } from './admin/server.js';
import { Metrics } from './admin/metrics.js';
import { addressOf, createListeners, listen, type Listener } from './proxy/server.js';
import { VERSION } from './version.js';
import type { ClusterBus } from './state/cluster.js';
import type { DirectoryBus } from './state/directory.js';
import type { PoolStateReplica } from './state/pools.js';
import { startRespServer, type RespServer } from './resp/server.js';
import { runtimeRespBackend } from './resp/wire.js';
import { RespMetrics } from './resp/metrics.js';
import { AccessLog } from './proxy/access-log.js';

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
}

export interface Homing {
  readonly runtime: Runtime;
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
  const listeners = createListeners(cfg, runtime.proxy);
  let ready = false;
  let admin: AdminServer | undefined;
  let resp: RespServer | undefined;
  let untrackResp = (): void => {};
  try {
    for (const l of listeners) await listen(l.server, l.proto === 'http' ? cfg.listen.http! : cfg.listen.https!.address);
    if (cfg.admin && opts.admin !== false) {
      admin = new AdminServer(runtime, { token: cfg.admin.token, ready: () => ready, startedAt: Date.now(), version: VERSION });
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
  const httpL = listeners.find((l) => l.proto === 'http');
  const httpsL = listeners.find((l) => l.proto === 'https');
  const homing: Homing = {
    runtime,
    listeners,
    admin,
    http: httpL?.address(),
    https: httpsL?.address(),
    adminAddress: admin ? addressOf(admin.server) : undefined,
    resp,
    async drain() {
      ready = false;
      const drain = runtime.drain;
      drain.draining = true;
      const { timeout, websocketGrace } = cfg.shutdown;
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
    async close() {
      ready = false;
      process.off('SIGUSR1', reopenLogs);
      await runtime.withdraw();
      await Promise.all([...listeners.map((l) => closeServer(l.server)), admin ? closeServer(admin.server) : undefined, resp?.close()]);
      untrackResp();
      await runtime.close();
      await access?.close();
      await spans?.close();
    },
  };
  return homing;
}
