/**
 * The etcd v3 client (the `etcd3` package, over gRPC) that etcd discovery and `announce` share the
 * making of: endpoints, user and password, TLS, and how it behaves while etcd is away.
 *
 * - A unary call (a get, a put, a lease grant) ends at its deadline (5s), so a read never hangs
 *   on a partitioned etcd; one more attempt goes to another endpoint.
 * - An endpoint that fails three calls in a row is skipped for a second (circuit breaker), so with
 *   several endpoints the live ones answer at once.
 * - A watch stream that breaks is opened again by the client, with exponential back-off from
 *   100ms up to 5s (and gRPC keep-alive pings notice a stream that died without an error).
 *
 * The package (gRPC and its protobuf definitions) is loaded on first use, so a homing without etcd
 * does not pay for it at start.
 */
import { readFileSync } from 'node:fs';
import type { Etcd3, IOptions } from 'etcd3';
import { formatHostPort, type HostPort } from '../config/units.js';

/** Client TLS: `true` trusts the system's CAs; files add a CA and/or a client certificate. */
export type EtcdTls = true | { ca?: string; cert?: string; key?: string };

export interface EtcdConnection {
  endpoints: readonly HostPort[];
  username?: string;
  password?: string;
  tls?: EtcdTls;
}

/** Deadline of one unary call. */
const CALL_TIMEOUT_MS = 5000;

/** `endpoints` as the client wants them: URLs, https with TLS. */
export function etcdHosts(conn: EtcdConnection): string[] {
  const scheme = conn.tls ? 'https' : 'http';
  return conn.endpoints.map((e) => `${scheme}://${formatHostPort(e.host, e.port)}`);
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`etcd tls.${what}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** A client for `conn`; throws when a TLS file cannot be read. Nothing is sent before the first call. */
export async function createEtcdClient(conn: EtcdConnection): Promise<Etcd3> {
  const [{ Etcd3, isRecoverableError }, { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, retry }] = await Promise.all([import('etcd3'), import('cockatiel')]);
  const recoverable = handleWhen(isRecoverableError);
  const options: IOptions = {
    hosts: etcdHosts(conn),
    dialTimeout: CALL_TIMEOUT_MS,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    grpcOptions: { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000 },
    faultHandling: {
      host: () => circuitBreaker(recoverable, { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(recoverable, { maxAttempts: 1 }),
      // The client asks this factory for a fresh back-off after each successful (re)connection.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 5000 }) as unknown as NonNullable<IOptions['faultHandling']>['watchBackoff'],
    },
  };
  if (conn.username !== undefined) options.auth = { username: conn.username, password: conn.password ?? '' };
  if (typeof conn.tls === 'object') {
    const { ca, cert, key } = conn.tls;
    options.credentials = {
      // No CA file: the system's CAs (gRPC's default when the root is left out).
      rootCertificate: (ca === undefined ? undefined : readPem(ca, 'ca')) as Buffer,
      privateKey: key === undefined ? undefined : readPem(key, 'key'),
      certChain: cert === undefined ? undefined : readPem(cert, 'cert'),
    };
  }
  return new Etcd3(options);
}
