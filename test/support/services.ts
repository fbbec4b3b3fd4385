/**
 * Real servers for tests (never mocks of them): redis-server, nginx, HAProxy and etcd from Debian's packages,
 * each started in the foreground as a child process, on loopback, in its own mkdtemp directory.
 * `stop()` kills the process group and removes the directory; anything still running when the
 * test process exits (or gets SIGINT/SIGTERM) is killed too.
 *
 * The binaries are installed by scripts/install-system-deps.sh (run by `npm test`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface Service {
  /** The main port (the first reserved one). */
  readonly port: number;
  /** Every port reserved for the service (ports[0] === port). */
  readonly ports: readonly number[];
  /** Its temp directory (config, pid, logs). */
  readonly dir: string;
  readonly pid: number;
  /** What the process wrote to stdout and stderr so far (the last 64 KiB), for failure messages. */
  output(): string;
  /** Kills the process (group) and removes the directory. Safe to call twice. */
  stop(): Promise<void>;
}

const LOOPBACK = '127.0.0.1';

/** Ports `bottom` … `bottom + span - 1`, walked from a place of this process's own (its pid). */
class PortWalk {
  private next: number;
  constructor(
    private readonly bottom: number,
    private readonly span: number,
  ) {
    this.next = bottom + ((process.pid * 7919) % span);
  }

  /** The first port from here on that `host` can listen on now; the kernel's pick after 200 taken ones. */
  async take(host: string): Promise<number> {
    for (let tries = 0; tries < 200; tries++) {
      const port = this.next;
      this.next = port + 1 < this.bottom + this.span ? port + 1 : this.bottom;
      if (await bindable(port, host)) return port;
    }
    return kernelPort(host);
  }
}

/**
 * Where freePort and deadPort look: the ports just below the kernel's ephemeral range
 * (net.ipv4.ip_local_port_range). A port the kernel picks for a socket bound to port 0 or for a
 * connection out (this process's, or another test file's running at the same time) is never one
 * of them, so a port handed out here stays free between the check and its use. The lower half is
 * for servers (freePort), the upper half for ports that must refuse connections (deadPort): a
 * port one test holds as dead is never given to a server by another test file running at the
 * same time. Each test process starts at its own place in each half (from its pid) and moves on
 * from there. Undefined when the range leaves too little room below it: the kernel then picks.
 */
const BELOW_EPHEMERAL = ((): { servers: PortWalk; dead: PortWalk } | undefined => {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // not Linux: the usual default
  }
  const bottom = Math.max(1024, low - 12000);
  const half = Math.floor((low - bottom) / 2);
  if (half < 500) return undefined;
  return { servers: new PortWalk(bottom, half), dead: new PortWalk(bottom + half, half) };
})();

/** Whether `port` can be listened on at `host` right now. */
function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** A port the kernel picks (bind to port 0, read it, close). */
function kernelPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** A TCP port free on 127.0.0.1 now, for a server a test starts next (see BELOW_EPHEMERAL). */
export function freePort(host = LOOPBACK): Promise<number> {
  return BELOW_EPHEMERAL ? BELOW_EPHEMERAL.servers.take(host) : kernelPort(host);
}

/**
 * A port nothing listens on, that no test starts a server on (see BELOW_EPHEMERAL): connecting
 * to it is refused.
 */
export function deadPort(host = LOOPBACK): Promise<number> {
  return BELOW_EPHEMERAL ? BELOW_EPHEMERAL.dead.take(host) : kernelPort(host);
}

/** Several distinct free ports. */
export async function freePorts(n: number, host = LOOPBACK): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort(host));
  return [...out];
}

// ---------------------------------------------------------------------------------------------
// Child process bookkeeping: kill everything on exit.

interface Running {
  child: ChildProcess;
  dir: string;
}

const running = new Set<Running>();
let hooksInstalled = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal); // the whole group: nginx's workers too
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

function cleanupAll(): void {
  for (const r of running) {
    killGroup(r.child, 'SIGKILL');
    rmSync(r.dir, { recursive: true, force: true });
  }
  running.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupAll();
      process.off(sig, onSignal);
      process.kill(process.pid, sig); // then die of it as we would have
    };
    process.on(sig, onSignal);
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function tryConnect(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

interface LaunchSpec {
  name: string;
  cmd: string;
  args: string[];
  dir: string;
  ports: number[];
  /** Ready when this resolves true; polled until timeoutMs. Default: every port in waitPorts accepts. */
  ready?: () => Promise<boolean>;
  waitPorts: number[];
  timeoutMs: number;
  /** Signal for a clean stop. */
  stopSignal: NodeJS.Signals;
}

class StartFailed extends Error {
  constructor(
    message: string,
    readonly output: string,
    readonly portConflict: boolean,
  ) {
    super(message);
  }
}

async function launch(spec: LaunchSpec): Promise<Service> {
  installHooks();
  const child = spawn(spec.cmd, spec.args, { cwd: spec.dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const entry: Running = { child, dir: spec.dir };
  running.add(entry);
  let out = '';
  const keep = (chunk: Buffer): void => {
    out += chunk.toString();
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!exited(child)) {
      killGroup(child, spec.stopSignal);
      if (!(await waitExit(child, 3000))) {
        killGroup(child, 'SIGKILL');
        await waitExit(child, 2000);
      }
    }
    // Workers of a group may outlive the leader by a moment; make sure none is left.
    killGroup(child, 'SIGKILL');
    running.delete(entry);
    rmSync(spec.dir, { recursive: true, force: true });
  };

  const ready = spec.ready ?? (async () => (await Promise.all(spec.waitPorts.map((p) => tryConnect(p, LOOPBACK)))).every(Boolean));
  const deadline = Date.now() + spec.timeoutMs;
  for (;;) {
    if (spawnError || exited(child)) {
      await stop();
      const conflict = /address already in use|EADDRINUSE|cannot bind socket/i.test(out);
      throw new StartFailed(`${spec.name} exited during start-up (${spawnError?.message ?? `code ${String(child.exitCode)}`}):\n${out}`, out, conflict);
    }
    if (await ready()) break;
    if (Date.now() > deadline) {
      await stop();
      throw new StartFailed(`${spec.name} did not become ready within ${spec.timeoutMs} ms:\n${out}`, out, false);
    }
    await sleep(25);
  }
  return {
    port: spec.ports[0]!,
    ports: spec.ports,
    dir: spec.dir,
    pid: child.pid!,
    output: () => out,
    stop,
  };
}

/** Retries start-up on another set of ports when the chosen ones were taken in the meantime. */
async function withPortRetry<T>(attempts: number, start: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await start();
    } catch (err) {
      if (!(err instanceof StartFailed) || !err.portConflict || i >= attempts) throw err;
    }
  }
}

function makeDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `homing-${name}-`));
  // nginx workers run as an unprivileged user when the tests run as root: let them in.
  chmodSync(dir, 0o755);
  return dir;
}

function writeFiles(dir: string, files: Record<string, string> | undefined): void {
  for (const [name, text] of Object.entries(files ?? {})) {
    const path = join(dir, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  }
}

// ---------------------------------------------------------------------------------------------
// Redis

export interface RedisService extends Service {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
}

/** One RESP round trip on a fresh connection; answers the first reply line. */
export function respCommandLine(port: number, command: string, host = LOOPBACK, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host });
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('timeout'));
    }, timeoutMs);
    s.once('connect', () => s.write(`${command}\r\n`));
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\r\n');
      if (i >= 0) {
        clearTimeout(t);
        s.destroy();
        resolve(buf.slice(0, i));
      }
    });
    s.once('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

/**
 * A throwaway redis-server on 127.0.0.1 (no persistence), ready once PING answers PONG.
 * `args` are extra command-line options, e.g. ['--maxmemory', '10mb']. `port` restarts a Redis
 * where a stopped one was (clients reconnect to it); by default a free port is chosen.
 */
export function startRedis(opts: { args?: string[]; timeoutMs?: number; port?: number } = {}): Promise<RedisService> {
  return withPortRetry(opts.port === undefined ? 5 : 1, async () => {
    const port = opts.port ?? (await freePort());
    const dir = makeDir('redis');
    const svc = await launch({
      name: 'redis-server',
      cmd: 'redis-server',
      args: ['--port', String(port), '--bind', LOOPBACK, '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--logfile', '', ...(opts.args ?? [])],
      dir,
      ports: [port],
      waitPorts: [port],
      ready: async () => {
        try {
          return (await respCommandLine(port, 'PING', LOOPBACK, 500)) === '+PONG';
        } catch {
          return false;
        }
      },
      timeoutMs: opts.timeoutMs ?? 10_000,
      stopSignal: 'SIGTERM',
    });
    return { ...svc, url: `redis://${LOOPBACK}:${port}` };
  });
}

// ---------------------------------------------------------------------------------------------
// etcd

export interface EtcdService extends Service {
  /** `127.0.0.1:<client port>`, as homing's config names an endpoint. */
  readonly endpoint: string;
  /** The peer port (ports[1]); pass it back with `port` to restart the same member. */
  readonly peerPort: number;
  /** Where the data lives: inside `dir` (removed on stop) unless `dataDir` was given. */
  readonly dataDir: string;
}

/** Answers true once etcd's /health says the member is healthy (it has a leader). */
function etcdHealthy(port: number, tls: EtcdTlsFiles | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls
      ? tlsConnect({ port, host: LOOPBACK, rejectUnauthorized: false, cert: readFileSync(tls.cert), key: readFileSync(tls.key) })
      : net.connect({ port, host: LOOPBACK });
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 1000);
    s.once(tls ? 'secureConnect' : 'connect', () => s.write(`GET /health HTTP/1.1\r\nHost: ${LOOPBACK}\r\nConnection: close\r\n\r\n`));
    s.on('data', (d: Buffer) => (buf += d.toString()));
    s.once('close', () => {
      clearTimeout(t);
      resolve(/^HTTP\/1\.1 200/.test(buf) && /"health":\s*"true"/.test(buf));
    });
    s.once('error', () => {});
  });
}

/** PEM files for an etcd serving TLS: its certificate and key, and with `ca` it asks clients for a certificate signed by it. */
export interface EtcdTlsFiles {
  cert: string;
  key: string;
  ca?: string;
}

/**
 * A single-member etcd on 127.0.0.1 (v3 API over gRPC; plain unless `tls`), ready once /health
 * answers healthy. `port` and `peerPort` restart one where a stopped one was (clients reconnect to
 * it); with the same `dataDir` it keeps its keys and leases, with a new one it starts empty.
 * `args` are extra command-line flags.
 */
export function startEtcd(opts: { port?: number; peerPort?: number; dataDir?: string; tls?: EtcdTlsFiles; args?: string[]; timeoutMs?: number } = {}): Promise<EtcdService> {
  return withPortRetry(opts.port === undefined ? 5 : 1, async () => {
    const [port, peerPort] = opts.port === undefined ? await freePorts(2) : [opts.port, opts.peerPort ?? (await freePort())];
    const dir = makeDir('etcd');
    const dataDir = opts.dataDir ?? join(dir, 'data');
    const client = `${opts.tls ? 'https' : 'http'}://${LOOPBACK}:${port}`;
    const tls = opts.tls ? ['--cert-file', opts.tls.cert, '--key-file', opts.tls.key, ...(opts.tls.ca ? ['--trusted-ca-file', opts.tls.ca, '--client-cert-auth'] : [])] : [];
    const peer = `http://${LOOPBACK}:${peerPort}`;
    const svc = await launch({
      name: 'etcd',
      cmd: 'etcd',
      args: [
        '--name', 'homing-test',
        '--data-dir', dataDir,
        '--listen-client-urls', client,
        '--advertise-client-urls', client,
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `homing-test=${peer}`,
        '--initial-cluster-state', 'new',
        '--logger', 'zap',
        '--log-outputs', 'stderr',
        '--log-level', 'warn',
        ...tls,
        ...(opts.args ?? []),
      ],
      dir,
      ports: [port!, peerPort!],
      waitPorts: [port!],
      ready: () => etcdHealthy(port!, opts.tls),
      timeoutMs: opts.timeoutMs ?? 15_000,
      stopSignal: 'SIGTERM',
    });
    return { ...svc, endpoint: `${LOOPBACK}:${port}`, peerPort: peerPort!, dataDir };
  });
}

// ---------------------------------------------------------------------------------------------
// nginx

export interface ConfigContext {
  /** The service's temp directory (absolute, no trailing slash). */
  readonly dir: string;
  /** ports[0]. */
  readonly port: number;
  /** The free ports reserved for the service (opts.ports of them). */
  readonly ports: readonly number[];
}

export interface NginxContext extends ConfigContext {
  /** `load_module` lines for ngx_devel_kit and the Lua module (main context). */
  readonly luaModules: string;
  /** Temp-path directives pointing into dir (http context), so nothing needs /var/lib/nginx. */
  readonly httpTemp: string;
  /** lua_package_path covering Debian's Lua libraries (resty.redis is `require "nginx.redis"` there, also `resty.*`). */
  readonly luaPath: string;
}

export interface StartOptions {
  /** How many free loopback ports to reserve for the config (default 1). */
  ports?: number;
  /** Ports that must accept connections before the service counts as started (default: ports[0]). */
  waitPorts?: (ctx: ConfigContext) => number[];
  /** Extra files written into the temp directory before start (name → content), e.g. Lua modules. */
  files?: Record<string, string>;
  timeoutMs?: number;
}

const MODULE_DIRS = ['/usr/share/nginx/modules', '/usr/lib/nginx/modules'];

function modulePath(file: string): string | undefined {
  for (const d of MODULE_DIRS) {
    const p = join(d, file);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Replaces {{dir}}, {{port}}, {{port0}}, {{port1}}… and any other {{name}} of ctx. */
function render<C extends ConfigContext>(conf: string | ((ctx: C) => string), ctx: C): string {
  if (typeof conf === 'function') return conf(ctx);
  return conf.replace(/\{\{(\w+)\}\}/g, (whole, name: string) => {
    const m = /^port(\d+)$/.exec(name);
    if (m) return String(ctx.ports[Number(m[1])] ?? whole);
    const v = (ctx as unknown as Record<string, unknown>)[name];
    return typeof v === 'string' || typeof v === 'number' ? String(v) : whole;
  });
}

/**
 * nginx in the foreground with `conf` as its whole nginx.conf (a string with {{placeholders}} or a
 * function of the context). `daemon off`, `pid` and the main `error_log` go into the temp dir
 * unless the config sets them. Example:
 *
 *   startNginx((c) => `${c.luaModules} events {} http { ${c.httpTemp} server { listen 127.0.0.1:${c.port}; ... } }`)
 */
export function startNginx(conf: string | ((ctx: NginxContext) => string), opts: StartOptions = {}): Promise<Service> {
  return withPortRetry(5, async () => {
    const ports = await freePorts(opts.ports ?? 1);
    const dir = makeDir('nginx');
    const ndk = modulePath('ndk_http_module.so');
    const lua = modulePath('ngx_http_lua_module.so');
    const ctx: NginxContext = {
      dir,
      port: ports[0]!,
      ports,
      luaModules: [ndk, lua]
        .filter(Boolean)
        .map((p) => `load_module ${p!};`)
        .join('\n'),
      httpTemp: ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${dir}/${t}_temp;`).join('\n'),
      luaPath: `lua_package_path "${dir}/?.lua;/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;";`,
    };
    const text = renderOrClean(dir, () => {
      writeFiles(dir, opts.files);
      return render(conf, ctx);
    });
    const confPath = join(dir, 'nginx.conf');
    writeFileSync(confPath, text);
    const globals: string[] = [];
    if (!/^\s*daemon\s/m.test(text)) globals.push('daemon off;');
    if (!/^\s*pid\s/m.test(text)) globals.push(`pid ${dir}/nginx.pid;`);
    if (!/^\s*error_log\s/m.test(text)) globals.push(`error_log ${dir}/error.log warn;`);
    const args = ['-p', `${dir}/`, '-c', confPath, '-e', `${dir}/error.log`];
    if (globals.length > 0) args.push('-g', globals.join(' '));
    return launch({
      name: 'nginx',
      cmd: 'nginx',
      args,
      dir,
      ports,
      waitPorts: opts.waitPorts ? opts.waitPorts(ctx) : [ctx.port],
      timeoutMs: opts.timeoutMs ?? 10_000,
      stopSignal: 'SIGTERM', // fast shutdown: master stops its workers
    });
  });
}

/** Render a config into its temp dir; the dir is removed if rendering throws (no leaked dirs). */
function renderOrClean(dir: string, fn: () => string): string {
  try {
    return fn();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * HAProxy in the foreground (`-db`) with `cfg` as its configuration (a string with
 * {{placeholders}} or a function of the context). Lua is built in (`lua-load {{dir}}/x.lua`
 * with the file passed in opts.files).
 */
export function startHaproxy(cfg: string | ((ctx: ConfigContext) => string), opts: StartOptions = {}): Promise<Service> {
  return withPortRetry(5, async () => {
    const ports = await freePorts(opts.ports ?? 1);
    const dir = makeDir('haproxy');
    const ctx: ConfigContext = { dir, port: ports[0]!, ports };
    const text = renderOrClean(dir, () => {
      writeFiles(dir, opts.files);
      return render(cfg, ctx);
    });
    const cfgPath = join(dir, 'haproxy.cfg');
    writeFileSync(cfgPath, text);
    return launch({
      name: 'haproxy',
      cmd: 'haproxy',
      args: ['-db', '-f', cfgPath],
      dir,
      ports,
      waitPorts: opts.waitPorts ? opts.waitPorts(ctx) : [ctx.port],
      timeoutMs: opts.timeoutMs ?? 10_000,
      stopSignal: 'SIGTERM',
    });
  });
}

// ---------------------------------------------------------------------------------------------
// A raw RESP connection for protocol tests: write any bytes, read decoded replies, see the close.

export type RespReply = string | number | null | { error: string } | RespReply[];

/** Decodes one RESP2 reply at `offset`; null when incomplete. */
function decodeOne(buf: Buffer, offset: number): { value: RespReply; end: number } | null {
  if (offset >= buf.length) return null;
  const lf = buf.indexOf(10, offset);
  if (lf < 0) return null;
  const type = String.fromCharCode(buf[offset]!);
  const line = buf.toString('utf8', offset + 1, lf - 1);
  const after = lf + 1;
  switch (type) {
    case '+':
      return { value: line, end: after };
    case '-':
      return { value: { error: line }, end: after };
    case ':':
      return { value: Number(line), end: after };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: after };
      if (buf.length < after + n + 2) return null;
      return { value: buf.toString('utf8', after, after + n), end: after + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: after };
      const items: RespReply[] = [];
      let pos = after;
      for (let i = 0; i < n; i++) {
        const item = decodeOne(buf, pos);
        if (item === null) return null;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`not a RESP reply at byte ${offset}: ${JSON.stringify(buf.toString('latin1', offset, offset + 40))}`);
  }
}

export class RespTestConnection {
  /** Bytes received and not yet decoded. */
  private buf: Buffer = Buffer.alloc(0);
  /** Every byte received so far. */
  received = 0;
  closed = false;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.received += d.length;
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(port: number, host = LOOPBACK): Promise<RespTestConnection> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RespTestConnection(s));
      });
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private changed(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(data, () => resolve());
    });
  }

  /** Sends a command as a multibulk request. */
  send(...args: string[]): Promise<void> {
    let s = `*${args.length}\r\n`;
    for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    return this.write(s);
  }

  /** Reads exactly n replies (throws on timeout or close before they arrive). */
  async replies(n: number, timeoutMs = 20_000): Promise<RespReply[]> {
    const out: RespReply[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (out.length < n) {
        const r = decodeOne(this.buf, 0);
        if (r === null) break;
        out.push(r.value);
        this.buf = this.buf.subarray(r.end);
      }
      if (out.length === n) return out;
      if (this.closed) throw new Error(`connection closed after ${out.length} of ${n} replies`);
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.changed(left))) throw new Error(`timed out after ${out.length} of ${n} replies`);
    }
  }

  async reply(timeoutMs?: number): Promise<RespReply> {
    return (await this.replies(1, timeoutMs))[0]!;
  }

  /** Sends one command and reads its reply. */
  async call(...args: string[]): Promise<RespReply> {
    await this.send(...args);
    return this.reply();
  }

  /** Bytes received but not decoded as replies. */
  pending(): Buffer {
    return this.buf;
  }

  /** Resolves true once the server has closed the connection (false on timeout). */
  async waitClosed(timeoutMs = 20_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.changed(left))) return this.closed;
    }
    return true;
  }

  close(): void {
    this.socket.destroy();
  }
}
