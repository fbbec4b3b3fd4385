// Starting the things the bench measures. Every start function returns a Peer:
//   { name, label, url?, port?, pgids: [pid…] (process groups whose CPU counts as the peer's),
//     child, stop() }  or  { name, label, skipped: 'reason' }.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { start, startNode, stop, freePort, sleep } from './proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PEERS_DIR = path.resolve(here, '../peers');
export const REPO = path.resolve(here, '../..');
export const HOMING_CLI = path.join(REPO, 'dist/cli/main.js');

function tail(file, n = 2000) {
  try {
    const s = readFileSync(file, 'utf8');
    return s.slice(-n).trim();
  } catch {
    return '';
  }
}

/** Waits for an IPC {type:'ready', port} from a forked peer script. */
export function readyPort(child, name, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name}: no ready message within ${timeoutMs} ms; log: ${tail(child.logFile)}`)), timeoutMs);
    child.on('message', (m) => {
      if (m?.type === 'ready') {
        clearTimeout(t);
        resolve(m.port);
      }
    });
    child.exited.then((info) => {
      clearTimeout(t);
      reject(new Error(`${name} exited (${info.code ?? info.signal}) before ready; log: ${tail(child.logFile)}`));
    });
  });
}

/** One GET (with `headers`, {name: value}); resolves {status, headers, length} or rejects. */
export function httpGet(url, timeoutMs = 2000, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs, headers }, (res) => {
      let length = 0;
      res.on('data', (d) => (length += d.length));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, length }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** One POST with `body` (a Buffer); resolves {status, headers, text} or rejects. */
export function httpPost(url, body, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, timeout: timeoutMs, headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls `url` until it answers with any HTTP status; fails early if `child` exits. */
async function waitHttp(url, child, name, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    if (child.exitInfo) throw new Error(`${name} exited (${child.exitInfo.code ?? child.exitInfo.signal}) before answering; log:\n${tail(child.logFile)}`);
    try {
      return await httpGet(url, 1000);
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`${name}: ${url} did not answer within ${timeoutMs} ms (${last?.message}); log:\n${tail(child.logFile)}`);
}

/** Sends PING to a RESP port; resolves true on +PONG. */
export function respPing(port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    const done = (v) => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('*1\r\n$4\r\nPING\r\n'));
    sock.on('data', (d) => {
      buf += d;
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

export async function waitRespPing(port, timeoutMs) {
  const until = Date.now() + timeoutMs;
  do {
    if (await respPing(port)) return true;
    await sleep(100);
  } while (Date.now() < until);
  return false;
}

// ---------------------------------------------------------------------------------------------

/** The shared backend: its own process; stats() → {connections, closed, open, requests, bodies, bodyBytes}. */
export async function startBackend(h) {
  const child = startNode('backend', path.join(PEERS_DIR, 'backend.mjs'), [], { logFile: path.join(h.tmp, 'backend.log') });
  const port = await readyPort(child, 'backend');
  let seq = 0;
  const pending = new Map();
  child.on('message', (m) => {
    if (m?.type === 'stats' && pending.has(m.id)) {
      pending.get(m.id)(m);
      pending.delete(m.id);
    }
  });
  return {
    name: 'backend',
    label: 'backend',
    port,
    url: `http://127.0.0.1:${port}/bench`,
    pgids: [child.pid],
    child,
    stats: () =>
      new Promise((resolve, reject) => {
        const id = ++seq;
        const t = setTimeout(() => {
          pending.delete(id);
          reject(new Error('backend did not answer stats'));
        }, 3000);
        pending.set(id, (m) => {
          clearTimeout(t);
          resolve({ connections: m.connections, closed: m.closed, open: m.open, requests: m.requests, bodies: m.bodies, bodyBytes: m.bodyBytes });
        });
        child.send({ type: 'stats', id });
      }),
    stop: () => stop(child),
  };
}

export function directPeer(h) {
  return { name: 'direct', label: 'direct to the backend', kind: 'direct', url: h.backend.url, pgids: [], stop: async () => {} };
}

/**
 * A floor peer (bench/peers/node-relay.mjs or node-llhttp.mjs): the least a Node process does as
 * a TCP relay, or as an HTTP proxy on llhttp, on this box. Not proxies anyone would run (no
 * routing, no limits, one backend connection per client connection): the HTTP section reads
 * homing's CPU per request against them. Kind `floor`: left out of the churn check.
 */
export async function startNodeFloor(h, name, label) {
  const child = startNode(name, path.join(PEERS_DIR, `${name}.mjs`), [String(h.backend.port)], { logFile: path.join(h.tmp, `${name}.log`) });
  const port = await readyPort(child, name);
  return { name, label, kind: 'floor', port, url: `http://127.0.0.1:${port}/bench`, pgids: [child.pid], child, stop: () => stop(child) };
}

export async function startHttpProxy(h) {
  const name = 'http-proxy';
  if (!existsSync(path.join(REPO, 'node_modules/http-proxy'))) return { name, label: name, skipped: 'node_modules/http-proxy missing (npm install)' };
  const child = startNode(name, path.join(PEERS_DIR, 'http-proxy.mjs'), [String(h.backend.port)], { logFile: path.join(h.tmp, 'http-proxy.log') });
  const port = await readyPort(child, name);
  return { name, label: '`http-proxy` package, 1 process', kind: 'proxy', port, url: `http://127.0.0.1:${port}/bench`, pgids: [child.pid], child, stop: () => stop(child) };
}

/**
 * The cache variant of nginx.conf.tmpl: a disk cache in the peer's temp dir (served from the page
 * cache), used for /cached/; the default key ($scheme$proxy_host$request_uri), lifetimes from the
 * backend's Cache-Control. $upstream_cache_status goes out as X-Cache-Status (the section checks
 * its warm-up with it).
 */
const NGINX_CACHE = {
  http: '    proxy_cache_path {{PREFIX}}/cache levels=1:2 keys_zone=bench:10m max_size=256m inactive=60m use_temp_path=off;',
  server: `        location /cached/ {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            add_header X-Cache-Status $upstream_cache_status;
        }`,
};

/**
 * nginx, 1 worker, proxy_pass to the backend with upstream keep-alive. `errorLogLevel` is `warn`;
 * `error` keeps nginx from writing a warning per request where one would come (a request body
 * larger than client_body_buffer_size is buffered to a temp file with a warning each time).
 * `cache: true` adds `proxy_cache` under /cached/ (NGINX_CACHE; other paths are proxied as before).
 */
export async function startNginx(h, { name = 'nginx', label, keepalive = 512, errorLogLevel = 'warn', cache = false } = {}) {
  label ??= `nginx, 1 worker, upstream keepalive ${keepalive}${cache ? ', proxy_cache under /cached/' : ''}`;
  if (!h.have('nginx')) return { name, label, skipped: 'nginx not installed (scripts/install-system-deps.sh)' };
  const prefix = path.join(h.tmp, name);
  mkdirSync(prefix, { recursive: true });
  // Run as root, nginx's workers run as `nobody`: they must be able to reach the temp dirs under
  // the (0700) harness temp dir to buffer a request body to a file (a 500 otherwise).
  if (process.getuid?.() === 0) chmodSync(h.tmp, 0o711);
  const port = await freePort();
  const conf = readFileSync(path.join(PEERS_DIR, 'nginx.conf.tmpl'), 'utf8')
    .replaceAll('{{HTTP_EXTRA}}', cache ? NGINX_CACHE.http : '')
    .replaceAll('{{SERVER_EXTRA}}', cache ? NGINX_CACHE.server : '')
    .replaceAll('{{PREFIX}}', prefix)
    .replaceAll('{{PORT}}', String(port))
    .replaceAll('{{BACKEND}}', String(h.backend.port))
    .replaceAll('{{KEEPALIVE}}', String(keepalive))
    .replaceAll('{{ERROR_LOG_LEVEL}}', errorLogLevel);
  const confFile = path.join(prefix, 'nginx.conf');
  writeFileSync(confFile, conf);
  const child = start(name, h.bin('nginx'), ['-p', prefix, '-e', path.join(prefix, 'error.log'), '-c', confFile, '-g', 'daemon off;'], {
    logFile: path.join(prefix, 'stdout.log'),
  });
  const url = `http://127.0.0.1:${port}/bench`;
  try {
    await waitHttp(url, child, name);
  } catch (e) {
    await stop(child);
    throw new Error(`${e.message}\nnginx error.log:\n${tail(path.join(prefix, 'error.log'))}`, { cause: e });
  }
  return {
    name,
    label,
    kind: 'proxy',
    port,
    url,
    pgids: [child.pid],
    child,
    stop: () => stop(child, { signal: 'SIGQUIT' }),
  };
}

/**
 * homing itself: `node dist/cli/main.js serve -c <tmp yaml>`. `routes`/`extra` let later sections
 * add their own routes (affinity…) or top-level keys (resp…). Skips with a message when the CLI
 * is not built.
 */
/** A homing peer (`homing serve` from the build); `engine` written into its config when given, else HOMING_ENGINE or node decides. */
export async function startHoming(h, { name = 'homing', label, workers = 1, engine, routes, pools, extra = {}, logLevel = 'warn', cli = HOMING_CLI } = {}) {
  label ??= `homing, workers: ${workers}`;
  if (!existsSync(cli)) return { name, label, skipped: `${path.relative(REPO, cli)} does not exist (npm run build; the CLI may not be written yet)` };
  const port = await freePort();
  const adminPort = await freePort();
  const cfg = {
    listen: { http: `127.0.0.1:${port}` },
    admin: `127.0.0.1:${adminPort}`,
    workers,
    ...(engine ? { engine } : {}),
    log: { level: logLevel },
    pools: pools ?? { bench: { members: [`127.0.0.1:${h.backend.port}`] } },
    routes: routes ?? [{ name: 'bench', match: { path: '/' }, pool: 'bench', hash: { key: 'path', algorithm: 'ring' } }],
    ...extra,
  };
  const dir = path.join(h.tmp, name);
  mkdirSync(dir, { recursive: true });
  const cfgFile = path.join(dir, 'homing.yaml');
  writeFileSync(cfgFile, YAML.stringify(cfg));
  const logFile = path.join(dir, 'homing.log');
  const child = start(name, process.execPath, [cli, 'serve', '-c', cfgFile], { logFile, cwd: REPO });
  const url = `http://127.0.0.1:${port}/bench`;
  try {
    await waitHttp(url, child, name, 20_000);
  } catch (e) {
    await stop(child);
    throw e;
  }
  // Admin readiness (all workers up) if the admin side answers; not fatal when it does not.
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    const r = await httpGet(`http://127.0.0.1:${adminPort}/readyz`, 500).catch(() => undefined);
    if (r?.status === 200) break;
    await sleep(100);
  }
  if (workers !== 1) await sleep(500);
  return { name, label, kind: 'proxy', homing: true, port, adminPort, url, cfgFile, logFile, config: cfg, pgids: [child.pid], child, stop: () => stop(child, { graceMs: 3000 }) };
}

export { tail };
