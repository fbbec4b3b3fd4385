/**
 * `homing demo` (what `npm start` runs): homing in front of in-process demo backends, with one
 * route per pattern, all on 127.0.0.1 — proxy :8080, admin :9090, the Redis-protocol router :6380
 * (`--port`, `--admin-port` and `--resp-port` choose others; 0 picks a free one, printed at start):
 *
 *  - `sessions` (/sessions/…, learned affinity keyed by the X-Session header): the backends hold
 *    sessions like session servers do. One that does not hold a request's session answers
 *    `X-Accel-Redirect: /internal_redirect/<host:port>/<uri>` naming the one that does; a session
 *    nobody holds yet is created where it first lands and held there from then on. The session
 *    `alice` is created at start on a member other than homing's first guess for it, so her first
 *    call is redirected once and later calls go straight to her member.
 *  - `documents` (/documents/<id>, consistent hashing), also answered over RESP (SELECT 0).
 *  - `tenants` (/app/…, directory keyed by Host): a tiny in-process directory service answers a
 *    pool per host (acme.test → east, globex.test → west, any other host: unknown).
 *  - `market` (/market/…, shared cache): the backends say which region each caller (X-Token) is in
 *    (X-Region) and answer prices that vary on it; homing caches one answer per region and takes a
 *    caller's region only from what a backend said about that caller.
 *  - `default` (everything else): round-robin.
 *
 * With `guide` (the CLI), a guide is printed once homing runs: per pattern, commands (curl,
 * redis-cli) and what each shows, verbatim (`# ⇒` lines). test/demo.test.ts runs every command.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { parseConfig } from '../config/load.js';
import { startHoming, type Homing } from '../app.js';
import { isResolution } from '../routing/route.js';

const BACKENDS = ['alpha', 'bravo', 'charlie'] as const;
/** The directory's answers: Host → pool. */
const TENANTS: Record<string, string> = { 'acme.test': 'east', 'globex.test': 'west' };
/** The market's callers and the region the backend says each is in. */
const REGIONS: Record<string, string> = { ann: 'north', bob: 'north', cid: 'south' };
/** The session created at start away from homing's first guess. */
const DEMO_SESSION = 'alice';

interface DemoBackend {
  name: string;
  server: Server;
  /** host:port, once listening. */
  id: string;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * A demo backend: `/health`; `/sessions/…` held per X-Session (`sessions`: session → the id of the
 * backend that holds it, shared by the demo's backends as a session registry would be); anything
 * else answers who served it.
 */
function demoBackend(name: string, sessions: Map<string, string>): DemoBackend {
  const b: DemoBackend = { name, id: '', server: undefined as unknown as Server };
  /** Prices pages this backend rendered (a cache hit renders none). */
  let renders = 0;
  b.server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/health') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok\n');
        return;
      }
      if (req.url!.startsWith('/sessions/')) {
        const session = req.headers['x-session'];
        if (typeof session !== 'string' || session === '') return json(res, 400, { member: name, error: 'send an X-Session header' });
        let owner = sessions.get(session);
        let created = false;
        if (owner === undefined) {
          sessions.set(session, (owner = b.id));
          created = true;
        }
        // Not ours: name the member that holds it; homing re-sends the request there.
        if (owner !== b.id) return json(res, 200, { member: name, redirect: owner }, { 'x-accel-redirect': `/internal_redirect/${owner}${req.url}` });
        return json(res, 200, { member: name, session, created, method: req.method, url: req.url });
      }
      if (req.url!.startsWith('/market/')) {
        const region = REGIONS[String(req.headers['x-token'])];
        if (region === undefined) return json(res, 401, { member: name, error: 'send X-Token: ann, bob or cid' });
        // Who the caller is stays private; the prices are shared by everyone in a region.
        if (req.url === '/market/me') return json(res, 200, { member: name, region }, { 'cache-control': 'private, no-store', 'x-region': region });
        renders++;
        return json(res, 200, { member: name, region, prices: { tritanium: region === 'north' ? 5.1 : 4.7 }, render: renders }, { 'cache-control': 'max-age=30', vary: 'X-Region', 'x-region': region });
      }
      json(res, 200, { member: name, method: req.method, url: req.url, bytes: Buffer.concat(chunks).length, forwardedFor: req.headers['x-forwarded-for'] });
    });
  });
  return b;
}

/** The directory: `GET /tenants/<host>` → the host's pool name as text, 404 for any other host. */
function demoDirectory(): Server {
  return createServer((req, res) => {
    const m = /^\/tenants\/([^/?]+)$/.exec(req.url ?? '');
    const pool = m ? TENANTS[decodeURIComponent(m[1]!).toLowerCase()] : undefined;
    res.writeHead(pool ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(pool ?? 'unknown tenant\n');
  });
}

export interface DemoOptions {
  http?: string;
  admin?: string;
  resp?: string;
  /** Print the guide (commands per pattern) once homing runs, after what the caller prints. */
  guide?: boolean;
}

function portArg(name: string, v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new Error(`--${name} wants a port number (0-65535; 0: any free port), got "${v}"`);
  return n;
}

/** `homing demo [--port 8080] [--admin-port 9090] [--resp-port 6380]` → where the demo listens (on 127.0.0.1). */
export function parseDemoArgs(args: string[]): Required<DemoOptions> {
  const { values } = parseArgs({ args, options: { port: { type: 'string', default: '8080' }, 'admin-port': { type: 'string', default: '9090' }, 'resp-port': { type: 'string', default: '6380' } } });
  return {
    http: `127.0.0.1:${portArg('port', values.port)}`,
    admin: `127.0.0.1:${portArg('admin-port', values['admin-port'])}`,
    resp: `127.0.0.1:${portArg('resp-port', values['resp-port'])}`,
    guide: true,
  };
}

export interface Demo {
  homing: Homing;
  backends: Server[];
  /** name → host:port of each demo backend. */
  members: Record<string, string>;
  directory: Server;
  /** The guide: commands per pattern and what each shows. */
  guide: string;
  close(): Promise<void>;
}

function listenLocal(s: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port));
  });
}

function closeServer(s: Server): Promise<void> {
  return new Promise((resolve) => {
    s.close(() => resolve());
    s.closeAllConnections();
  });
}

export async function runDemo(opts: DemoOptions = {}): Promise<Demo> {
  const sessions = new Map<string, string>();
  const backends = BACKENDS.map((n) => demoBackend(n, sessions));
  const directory = demoDirectory();
  const servers = [...backends.map((b) => b.server), directory];
  let homing: Homing | undefined;
  try {
    for (const b of backends) b.id = `127.0.0.1:${await listenLocal(b.server)}`;
    const dirPort = await listenLocal(directory);
    const [alpha, bravo, charlie] = backends.map((b) => b.id);
    const yaml = `
listen: { http: ${opts.http ?? '127.0.0.1:8080'} }
admin: ${opts.admin ?? '127.0.0.1:9090'}
resp: { address: ${opts.resp ?? '127.0.0.1:6380'}, routes: [documents, sessions, tenants] }
log: { level: info }
pools:
  demo:
    members: [${alpha}, ${bravo}, ${charlie}]
    health:
      active: { path: /health, interval: 2s, timeout: 1s }
      passive: { failures: 3, ejectFor: 10s }
  east: { members: [${alpha}] }
  west: { members: [${charlie}] }
routes:
  - name: sessions
    match: { path: /sessions/ }
    pool: demo
    affinity: { key: 'header:x-session', redirect: { maxHops: 2 } }
    debugHeader: true
  - name: documents
    match: { pathRegex: '^/documents/(.*)$' }
    pool: demo
    hash: { key: path:1, algorithm: ring }
    debugHeader: true
  - name: tenants
    match: { path: /app/ }
    pools: [east, west]
    directory: { key: host, lookup: { url: 'http://127.0.0.1:${dirPort}/tenants/{key}', timeout: 500ms }, ttl: 1m }
    debugHeader: true
  - name: market
    match: { path: /market/ }
    pool: demo
    cache: true
    debugHeader: true
  - name: default
    match: { path: / }
    pool: demo
    balance: round-robin
    debugHeader: true
cache:
  principal: { key: 'header:x-token', headers: [X-Region] }
`;
    homing = await startHoming(parseConfig(yaml, process.cwd(), 'demo config'));
    const h = homing;
    const lookup = async (route: string, key: string): Promise<string> => {
      const r = await h.runtime.route(route)!.resolve(key, 'lookup');
      if (!isResolution(r)) throw new Error(`demo: route ${route} has no member for ${key}: ${r.message}`);
      return r.member.id;
    };
    // alice's session lives on the member after homing's first guess: her first call is redirected.
    const guess = await lookup('sessions', DEMO_SESSION);
    const owner = backends[(backends.findIndex((b) => b.id === guess) + 1) % backends.length]!;
    sessions.set(DEMO_SESSION, owner.id);
    const members = Object.fromEntries(backends.map((b) => [b.name, b.id]));
    const guide = demoGuide(h, { members, guess, owner: owner.id, document: await lookup('documents', '42'), dirPort });
    if (opts.guide) setImmediate(() => process.stdout.write(guide));
    return {
      homing: h,
      backends: backends.map((b) => b.server),
      members,
      directory,
      guide,
      async close() {
        await h.close();
        await Promise.all(servers.map(closeServer));
      },
    };
  } catch (e) {
    await homing?.close();
    await Promise.all(servers.map((s) => (s.listening ? closeServer(s) : undefined)));
    throw e;
  }
}

/** The guide: per pattern, commands and (`# ⇒`) the text each one's output contains. */
function demoGuide(h: Homing, d: { members: Record<string, string>; guess: string; owner: string; document: string; dirPort: number }): string {
  const base = `http://127.0.0.1:${h.http!.port}`;
  const admin = `http://127.0.0.1:${h.adminAddress!.port}`;
  const resp = h.resp!.address().port;
  const name = (id: string): string => Object.keys(d.members).find((n) => d.members[n] === id) ?? id;
  const header = (route: string, target: string, by: string, hops: number): string => `x-homing: route=${route}; target=${target}; by=${by}; cache=bypass; hops=${hops}`;
  const alice = `curl -si -H 'X-Session: ${DEMO_SESSION}' ${base}/sessions/cart`;
  return `  dashboard ${admin}/
  resp      redis-cli -p ${resp}   (SELECT 0: documents, 1: sessions, 2: tenants)
  members   ${Object.entries(d.members).map(([n, id]) => `${n} ${id}`).join(', ')}
  directory http://127.0.0.1:${d.dirPort}/tenants/<host>   (acme.test → pool east = alpha, globex.test → pool west = charlie)

Each pattern, with commands to try and (# ⇒) what each one's output shows, in this order:

Learned affinity — route sessions (/sessions/…, keyed by the X-Session header). The backends hold
sessions; one that does not hold a session redirects to the one that does (X-Accel-Redirect), and
homing follows and remembers. ${DEMO_SESSION}'s session lives on ${name(d.owner)}; homing's first guess is ${name(d.guess)}:
  ${alice}
    # ⇒ ${header('sessions', d.owner, 'hash', 1)}
  ${alice}
    # ⇒ ${header('sessions', d.owner, 'affinity', 0)}
  curl -s ${admin}/api/v1/affinity/sessions/${DEMO_SESSION}
    # ⇒ "owner":"${d.owner}"
  redis-cli -p ${resp} HOMING.ROUTE sessions ${DEMO_SESSION}
    # ⇒ ${d.owner}

Consistent hashing — route documents (/documents/<id>): the same id always lands on the same member,
whichever homing instance is asked, over HTTP or the Redis protocol:
  curl -si ${base}/documents/42
    # ⇒ ${header('documents', d.document, 'hash', 0)}
  curl -s '${admin}/api/v1/routes/documents/lookup?key=42'
    # ⇒ "target":"${d.document}"
  redis-cli -p ${resp} GET 42
    # ⇒ ${d.document}

Directory — route tenants (/app/…, keyed by Host): the directory names each tenant's pool; homing
caches the answer (and keeps routing cached tenants while the directory is down):
  curl -si -H 'Host: acme.test' ${base}/app/
    # ⇒ ${header('tenants', d.members.alpha!, 'directory', 0)}
  curl -si -H 'Host: globex.test' ${base}/app/
    # ⇒ ${header('tenants', d.members.charlie!, 'directory', 0)}
  curl -si -H 'Host: nobody.test' ${base}/app/
    # ⇒ HOMING_ERR_DIRECTORY_UNKNOWN_KEY
  curl -s ${admin}/api/v1/directory/tenants/acme.test
    # ⇒ "value":"east"

Shared cache — route market (/market/…). The backends say which region each caller (X-Token) is in
(X-Region) and answer prices that vary on it: homing keeps one answer per region, and takes a
caller's region only from what a backend said about that caller, never from the caller:
  curl -si -H 'X-Token: ann' ${base}/market/prices
    # ⇒ cache=miss
  curl -s -H 'X-Token: bob' ${base}/market/me
    # ⇒ "region":"north"
  curl -si -H 'X-Token: bob' ${base}/market/prices
    # ⇒ cache=hit
  curl -si -H 'X-Token: cid' -H 'X-Region: north' ${base}/market/prices
    # ⇒ "region":"south"

`;
}
