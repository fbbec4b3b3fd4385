/**
 * The config schema. Every key is validated here, with its default; an error names the
 * YAML path (see load.ts, which adds the line). Unknown keys are errors: a typo must not be ignored.
 * Rules that span keys (pools a route names, route names, `path:<n>` against `pathRegex`) and what
 * the running parts check when they are built live in rules.ts, which runs even when this schema
 * finds problems, so every problem is reported at once.
 */
import { z } from 'zod';
import { BlockList, isIP } from 'node:net';
import { formatHostPort, parseDuration, parseHostPort, parseSize } from './units.js';
import { compileKey } from '../routing/keys.js';

function isIpOrCidr(v: string): boolean {
  const [ip, bits, extra] = v.split('/');
  if (extra !== undefined || !ip) return false;
  const kind = isIP(ip);
  if (kind === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (kind === 4 ? 32 : 128);
}

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const hostPort = (allowZeroPort: boolean) => z.string().transform((v, ctx) => {
  try {
    return parseHostPort(v, allowZeroPort);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});
/** A member or remote address: port 1..65535. */
const address = hostPort(false);
/** A local listening address: port 0 lets the OS pick (tests). */
const bindAddress = hostPort(true);

/** A key expression (`host`, `path`, `header:<name>`, …), compiled as the routes compile it (routing/keys.ts). */
const keyExpr = z.string().superRefine((v, ctx) => {
  try {
    compileKey(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
  }
});

/** An HTTP header name (RFC 9110 token): no CR, LF, NUL, space or colon can reach a header homing writes. */
const headerName = z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'must be a header name (token characters only)');
/** Text that may end up in a header value: no CR, LF or NUL. */
const headerText = z.string().regex(/^[^\r\n\0]*$/, 'must not contain CR, LF or NUL');

const memberEntry = z.union([
  address.transform((a) => ({ ...a, weight: 1 })),
  z.strictObject({ address, weight: z.number().int().min(1).max(1000).default(1) }).transform((m) => ({ ...m.address, weight: m.weight })),
]);

const health = z.strictObject({
  active: z
    .strictObject({
      path: z.string().startsWith('/').default('/health'),
      interval: duration.default(2000),
      timeout: duration.default(1000),
      rise: z.number().int().min(1).default(2),
      fall: z.number().int().min(1).default(3),
      /** Status codes counted as healthy: 2xx and 3xx by default. */
      expectStatus: z.array(z.number().int()).optional(),
    })
    .optional(),
  passive: z
    .strictObject({
      failures: z.number().int().min(1).default(5),
      ejectFor: duration.default(30_000),
    })
    .optional(),
});

/**
 * How to reach etcd (v3 API): `endpoints` as host:port, user and password when etcd has auth on,
 * `tls: true` (the system's CAs) or `{ ca, cert, key }` files (a CA and/or a client certificate).
 */
const etcdConnection = {
  endpoints: z.array(z.string().regex(/^(?![A-Za-z][A-Za-z0-9+.-]*:\/\/)/, 'write host:port, without a scheme (TLS is `tls`)').pipe(address)).min(1),
  username: z.string().min(1).optional(),
  password: z.string().optional(),
  tls: z
    .union([z.literal(true), z.strictObject({ ca: z.string().optional(), cert: z.string().optional(), key: z.string().optional() })])
    .refine((t) => t === true || (t.cert === undefined) === (t.key === undefined), 'a client certificate needs both cert and key')
    .optional(),
};
const etcdPrefix = z.string().min(1, 'must not be empty (it would take every key)');
const etcdDiscovery = z
  .strictObject({ ...etcdConnection, prefix: etcdPrefix })
  .refine((e) => (e.username === undefined) === (e.password === undefined), 'give username and password together');

/**
 * `announce:` this instance registers itself in etcd under `<prefix><host:port>`, with a lease of
 * `ttl` kept alive while it runs: its HTTP listen address, or `address` (needed when it listens on
 * 0.0.0.0 or ::).
 */
const announce = z.strictObject({
  etcd: z
    .strictObject({ ...etcdConnection, prefix: etcdPrefix, ttl: duration.default(10_000).refine((v) => v >= 1000 && v <= 86_400_000, 'announce ttl is between 1s and 24h') })
    .refine((e) => (e.username === undefined) === (e.password === undefined), 'give username and password together'),
  address: address.optional(),
});

const discovery = z.strictObject({
  file: z.string().optional(),
  dns: z.strictObject({ name: z.string(), port: z.number().int().min(1).max(65535).optional(), type: z.enum(['A', 'AAAA', 'SRV']).default('A'), interval: duration.default(30_000) }).optional(),
  etcd: etcdDiscovery.optional(),
  http: z.strictObject({ url: z.url(), interval: duration.default(10_000) }).optional(),
}).refine((d) => [d.file, d.dns, d.etcd, d.http].filter(Boolean).length === 1, 'discovery needs exactly one of file, dns, etcd, http');

const pool = z
  .strictObject({
    members: z.array(memberEntry).optional(),
    discovery: discovery.optional(),
    health: health.optional(),
    /** Keep-alive connections per member (undici Pool `connections`); sized for peak concurrency. */
    connections: z.number().int().min(1).max(4096).default(256),
    /** Idle keep-alive sockets are closed after this; keep it below the backend's own idle timeout. */
    keepAliveTimeout: duration.default(4000),
  })
  .refine((p) => (p.members ? 1 : 0) + (p.discovery ? 1 : 0) === 1, 'a pool needs exactly one of members, discovery');

const balance = z.enum(['round-robin', 'random', 'least-connections', 'power-of-two-choices']);

const hash = z.strictObject({
  key: keyExpr,
  algorithm: z.enum(['ring', 'maglev', 'rendezvous']).default('ring'),
  /** Points per unit of weight on the ring (ketama uses 160). */
  vnodes: z.number().int().min(1).max(10_000).default(160),
  /** Maglev lookup table size: a prime larger than the member count (ideally ≥ 100 × members), at most 2^24. */
  tableSize: z.number().int().min(7).max(1 << 24).default(65537),
  /** Ring only: probes per key (multi-probe consistent hashing); 2 keeps max/mean load ≈ 1.05 at 160 vnodes, 1 is classic ketama. */
  probes: z.number().int().min(1).max(8).default(2),
  /** Consistent hashing with bounded loads: no member above ceil(c × average in-flight). */
  boundedLoad: z.number().min(1).optional(),
  /** Ring only: `nginx` maps every key to the member nginx's `hash <key> consistent` picks over the same servers and weights. */
  compat: z.enum(['nginx']).optional(),
});

const affinity = z.strictObject({
  key: keyExpr,
  redirect: z
    .strictObject({
      header: headerName.default('X-Accel-Redirect'),
      prefix: headerText.startsWith('/').default('/internal_redirect/'),
      maxHops: z.number().int().min(1).max(16).default(2),
    })
    .optional(),
  owner: headerName.optional(),
  /** Lease of a learned owner, renewed by every answer; at most 24 days (the table's clock range). */
  ttl: duration.default(3_600_000).refine((v) => v <= 2 ** 31 - 1, 'affinity ttl is at most 24d'),
  capacity: z.number().int().min(1).default(1_000_000),
  maxReplayBody: size.default(1024 * 1024),
  /**
   * How long a key missing from this process's table waits for the next tier (Redis with
   * `shared.redis`, else the primary in a worker) before it is guessed. Default: 50ms for Redis
   * (whose reads also end at `shared.commandTimeout`), 20ms for the primary.
   */
  missTimeout: duration.refine((v) => v >= 1 && v <= 60_000, 'affinity missTimeout is between 1ms and 60s').optional(),
});

/**
 * `directory:` on a route: ask an external directory which pool (or member) holds a key, and
 * cache the answer. Exactly one of `lookup.url` (HTTP: `{key}` in the template is replaced by the
 * key, percent-encoded as one path segment) or `lookup.redis` (a `GET <keyPrefix><key>`).
 */
const directory = z
  .strictObject({
    key: keyExpr,
    lookup: z
      .strictObject({
        url: z
          .string()
          .regex(/^https?:\/\/[^/?#\s]+/i, 'must be an http:// or https:// URL')
          .refine((u) => u.split('{key}').length === 2, 'must contain {key} once, where the key goes')
          .optional(),
        redis: z.strictObject({ url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL'), keyPrefix: z.string().default('') }).optional(),
        /** Longest wait for one directory answer; past it an unknown key is a 503. */
        timeout: duration.default(500),
        /** Extra request headers for the HTTP directory (e.g. an API token). */
        headers: z.record(headerName, headerText).optional(),
        /** Let the directory's Cache-Control max-age set an entry's ttl (off: routing data is often sent no-store). */
        respectCacheControl: z.boolean().default(false),
      })
      .refine((l) => (l.url === undefined) !== (l.redis === undefined), 'give exactly one of url or redis'),
    /** How long an answer is used before the directory is asked again. */
    ttl: duration.default(300_000),
    /** How long a "no such key" answer (404, nil) is remembered. */
    negativeTtl: duration.default(10_000),
    /** How long past its ttl an answer still routes while the directory is failing. */
    staleIfError: duration.default(3_600_000),
    /** Fraction of ttl after which a used entry is refreshed in the background (requests never wait for it). */
    refreshAhead: z.number().gt(0).max(1).default(0.8),
    /** Most keys cached (least recently used dropped first). */
    capacity: z.number().int().min(1).default(100_000),
    /** A YAML or JSON map of key → pool name or host:port, loaded at start and reloaded when it changes. */
    seed: z.string().optional(),
  });

/**
 * A route's response cache (`cache: true`, or options): `ttl` is the lifetime given to answers
 * that may have a heuristic one (status cacheable by default, or `public`) and name neither an
 * explicit lifetime nor a Last-Modified (none by default: such answers are not stored);
 * `maxObject` caps what one answer may take (at most the cache's own); `lock` is how long a miss
 * waits for a concurrent miss of the same variant before it goes to the backend on its own.
 */
const routeCache = z.union([
  z.boolean(),
  z.strictObject({ ttl: duration.optional(), maxObject: size.optional(), lock: duration.optional() }),
]);

const route = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'route names use letters, digits, _ . -'),
    match: z
      .strictObject({
        host: z.string().optional(),
        path: z.string().startsWith('/').optional(),
        pathRegex: z.string().optional(),
        method: z.union([z.string(), z.array(z.string())]).optional(),
      })
      .default({ path: '/' }),
    pool: z.string().optional(),
    pools: z.array(z.string()).optional(),
    affinity: affinity.optional(),
    hash: hash.optional(),
    directory: directory.optional(),
    balance: balance.default('round-robin'),
    cache: routeCache.optional(),
    /** Opt-in `X-Homing` response header: route, target, how it was chosen, hops. */
    debugHeader: z.boolean().default(false),
    /** Largest request body accepted (413 above). */
    maxBody: size.default(64 * 1024 * 1024),
    timeouts: z
      .strictObject({
        connect: duration.default(2000),
        header: duration.default(60_000),
        body: duration.default(300_000),
        /** Longest wait between two reads of a client's request body (nginx client_body_timeout): 408 past it. */
        clientBody: duration.default(60_000),
      })
      .default({ connect: 2000, header: 60_000, body: 300_000, clientBody: 60_000 }),
    /**
     * Attempts after the first: on another member when connecting failed (nothing sent), and for
     * `retryMethods` after the member reset or closed the connection before any byte of its answer.
     */
    retries: z.number().int().min(0).max(10).default(2),
    /**
     * Methods re-sent after a reset (like nginx `proxy_next_upstream error`): idempotent ones.
     * PUT and DELETE only when listed; POST and PATCH never (their body may have been acted on).
     */
    retryMethods: z
      .array(z.enum(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']))
      .default(['GET', 'HEAD', 'OPTIONS']),
    /**
     * Request bodies up to `memory` are read whole before a member connection is taken, so a slow
     * client never holds one (and the body can be re-sent after a reset or a redirect); larger
     * bodies stream. `false` streams every body.
     */
    requestBuffering: z
      .union([z.literal(false), z.strictObject({ memory: size.default(64 * 1024) })])
      .default({ memory: 64 * 1024 }),
  });

const listen = z
  .strictObject({
    http: bindAddress.optional(),
    https: z.strictObject({ address: bindAddress, cert: z.string(), key: z.string() }).optional(),
    /**
     * Peers (IPs or CIDRs, e.g. 10.0.0.0/8) whose X-Forwarded-For/-Proto/-Host homing keeps and
     * appends to, when it runs behind nginx, HAProxy or a cloud LB. Everyone else's are replaced.
     */
    trustedProxies: z.array(z.string().refine((v) => isIpOrCidr(v), 'must be an IP address or CIDR (e.g. 10.0.0.0/8)')).default([]),
    /**
     * Node server timeouts: keepAlive < headers ≤ request. Behind a load balancer keepAliveTimeout must
     * outlast the balancer's idle timeout, or it reuses a connection homing is closing.
     */
    keepAliveTimeout: duration.default(65_000),
    headersTimeout: duration.default(66_000),
    requestTimeout: duration.default(300_000),
  })
  .refine((l) => l.http || l.https, 'listen needs http or https')
  .refine((l) => l.headersTimeout > l.keepAliveTimeout && l.headersTimeout <= l.requestTimeout, 'needs keepAliveTimeout < headersTimeout ≤ requestTimeout');

/** 127.0.0.0/8 and ::1 (IPv4-mapped forms included). */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Only this machine can connect to a listener on this host: a loopback address or the name localhost. */
function isLoopback(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const kind = isIP(host);
  return kind !== 0 && LOOPBACK.check(host, kind === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The admin API reads and changes routing state, so it listens beyond loopback only with a token,
 * or when the config says in so many words (`insecure: true`) that whoever reaches it may use it.
 */
const admin = z
  .union([
    bindAddress.transform((a) => ({ address: a, token: undefined as string | undefined, insecure: false })),
    z.strictObject({ address: bindAddress, token: z.string().min(16).optional(), insecure: z.boolean().default(false) }),
  ])
  .superRefine((a, ctx) => {
    if (a.token !== undefined || a.insecure || isLoopback(a.address.host)) return;
    ctx.addIssue({
      code: 'custom',
      message:
        `the admin API would listen on ${formatHostPort(a.address.host, a.address.port)}, which is not loopback, without a token: ` +
        'set admin.token (a bearer token, ≥ 16 characters), bind it to loopback (127.0.0.1, ::1 or localhost), ' +
        'or write insecure: true (admin: { address: …, insecure: true }) to let anyone who can reach it use it',
    });
  });

/** A size of at least 1 KiB (buffer limits: below that even a GET with a long key does not fit). */
const bufferSize = size.refine((v) => v >= 1024, 'must be at least 1KiB');

const resp = z
  .strictObject({
    address: bindAddress,
    route: z.string().optional(),
    routes: z.array(z.string()).optional(),
    maxClients: z.number().int().min(1).default(10_000),
    idleTimeout: duration.default(300_000),
    maxPipeline: z.number().int().min(1).default(1024),
    /** Most bytes one request may occupy; a client sending more is answered a protocol error and closed. */
    maxQueryBuffer: bufferSize.default(1024 * 1024),
    /** A client whose unsent replies pass this is closed. */
    maxOutputBuffer: bufferSize.default(8 * 1024 * 1024),
    /** Memory all clients together may hold in unparsed input and unsent output; past it the clients holding the most are closed. */
    maxTotalBuffer: bufferSize.default(64 * 1024 * 1024),
  })
  .refine((r) => r.maxTotalBuffer >= 2 * r.maxQueryBuffer, { message: 'maxTotalBuffer must be at least twice maxQueryBuffer (one client may hold that much)', path: ['maxTotalBuffer'] });

/**
 * `cache:` the response store shared by the routes that cache: `memory` bounds its bytes (least
 * recently used evicted first; per process, so each worker holds its own), `maxObject` one
 * answer, `maxVariants` the variants one URL may have; `store: redis` shares answers between
 * instances through `shared.redis` (memory stays in front). `principal`: the trusted vary headers —
 * their values come only from what backends answered for the same principal (`key`), learned for
 * `ttl`, at most `capacity` principals.
 */
const cache = z.strictObject({
  memory: size.default(256 * 1024 * 1024),
  maxObject: size.default(8 * 1024 * 1024),
  maxVariants: z.number().int().min(1).default(64),
  /** `redis`: answers are also written to `shared.redis` and read from it on a local miss (shared between instances). */
  store: z.enum(['memory', 'redis']).default('memory'),
  principal: z
    .strictObject({
      key: keyExpr,
      headers: z.array(headerName).min(1),
      ttl: duration.default(600_000),
      capacity: z.number().int().min(1).default(1_000_000),
    })
    .optional(),
});

/** The cache's settings when routes cache and no top-level `cache` is given. */
export const CACHE_DEFAULTS = cache.parse({});

const shared = z.strictObject({
  redis: z.union([
    z.strictObject({ url: z.string() }),
    z.strictObject({ sentinels: z.array(address).min(1), name: z.string() }),
    z.strictObject({ cluster: z.array(address).min(1) }),
  ]),
  prefix: z.string().default('homing:'),
  /**
   * Deadline of one Redis command (default 250ms): a read on a local miss ends here at the latest,
   * and consecutive misses open the circuit (Redis skipped for a while).
   */
  commandTimeout: duration.refine((v) => v >= 1 && v <= 60_000, 'shared commandTimeout is between 1ms and 60s').optional(),
});

/**
 * `accessLog:` one line per request, written asynchronously (off when absent). `to` is stdout,
 * stderr or a file (reopened on SIGUSR1, for logrotate); `format` json (the fields below) or
 * combined (nginx's, for tools that read it). Answers homing gave itself are always written; other
 * requests when they took at least `slowerThan`, then with probability `sample`.
 */
export const ACCESS_LOG_FIELDS = [
  'time', 'id', 'trace', 'client', 'method', 'path', 'status', 'bytesIn', 'bytesOut', 'ms', 'upstreamMs',
  'route', 'pool', 'member', 'by', 'cache', 'hops', 'error', 'aborted', 'referer', 'userAgent',
] as const;
export type AccessLogField = (typeof ACCESS_LOG_FIELDS)[number];
/** What a json line carries unless `fields` says otherwise (Referer and User-Agent only when asked for). */
export const DEFAULT_ACCESS_LOG_FIELDS: readonly AccessLogField[] = ACCESS_LOG_FIELDS.filter((f) => f !== 'referer' && f !== 'userAgent');

const accessLog = z
  .strictObject({
    to: z.string().min(1).default('stdout'),
    format: z.enum(['json', 'combined']).default('json'),
    sample: z.number().min(0).max(1).default(1),
    slowerThan: duration.default(0),
    /** json only: the fields of a line, in this order. */
    fields: z.array(z.enum(ACCESS_LOG_FIELDS)).min(1).optional(),
    /** The query string in `path` (and in combined's request line): off, as it often carries tokens. */
    query: z.boolean().default(false),
  })
  .refine((a) => a.format === 'json' || a.fields === undefined, { message: 'fields applies to the json format (combined has a fixed layout)', path: ['fields'] });

/**
 * `tracing:` homing takes part in W3C trace context: every request gets homing's span in the
 * `traceparent` sent to the member (see src/proxy/hygiene.ts); new traces are sampled with
 * probability `sample`. With `otlp`, spans of sampled requests go to an OTLP/HTTP (JSON) receiver.
 */
const tracing = z.strictObject({
  sample: z.number().min(0).max(1).default(1),
  otlp: z
    .strictObject({
      url: z.string().regex(/^https?:\/\/[^/?#\s]+/i, 'must be an http:// or https:// URL (an OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces)'),
      headers: z.record(headerName, headerText).optional(),
      /** homing's service.name on the spans. */
      service: z.string().min(1).default('homing'),
    })
    .optional(),
});

export const ENGINES = ['node', 'fast'] as const;

export const configSchema = z
  .strictObject({
    listen,
    admin: admin.optional(),
    resp: resp.optional(),
    workers: z.union([z.number().int().min(1).max(256), z.literal('auto')]).default(1),
    /**
     * What carries plain HTTP: `node` (node:http and undici) or `fast` (homing's own HTTP/1.1 on raw
     * sockets, src/proxy/fast/). The same phases either way; TLS and websocket tunnels stay on node.
     */
    engine: z.enum(ENGINES).default('node'),
    /**
     * On SIGTERM/SIGINT: stop accepting, let requests in flight finish within `timeout` (keep-alive
     * connections are closed after their answer), websocket tunnels within `websocketGrace`, then
     * close what is left. A second signal stops at once.
     */
    shutdown: z
      .strictObject({ timeout: duration.default(30_000), websocketGrace: duration.default(10_000) })
      .default({ timeout: 30_000, websocketGrace: 10_000 }),
    log: z.strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).default({ level: 'info' }),
    pools: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/), pool),
    routes: z.array(route).min(1),
    cache: cache.optional(),
    shared: shared.optional(),
    announce: announce.optional(),
    accessLog: accessLog.optional(),
    tracing: tracing.optional(),
    /**
     * Live reload: SIGHUP and `POST /api/v1/reload` always re-read the config file; with `watch`,
     * so does a change of the file (its directory watched, plus a slow poll).
     */
    reload: z.strictObject({ watch: z.boolean().default(false) }).default({ watch: false }),
  })
  .superRefine((c, ctx) => {
    if (!c.announce || c.announce.address) return;
    const bound = c.listen.http ?? c.listen.https?.address;
    if (bound && (bound.host === '0.0.0.0' || bound.host === '::')) {
      ctx.addIssue({ code: 'custom', message: `homing listens on ${formatHostPort(bound.host, bound.port)}, which is no address to reach it at: set announce.address`, path: ['announce'] });
    }
  });

export type Config = z.output<typeof configSchema>;
export type PoolConfig = Config['pools'][string];
export type RouteConfig = Config['routes'][number];
export type HashConfig = NonNullable<RouteConfig['hash']>;
export type AffinityConfig = NonNullable<RouteConfig['affinity']>;
export type BalanceName = RouteConfig['balance'];
export type HealthConfig = NonNullable<PoolConfig['health']>;
export type AccessLogConfig = NonNullable<Config['accessLog']>;
export type TracingConfig = NonNullable<Config['tracing']>;
