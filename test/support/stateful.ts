/**
 * A stateful test cluster: real node:http backends sharing one session registry in the test
 * process. A token's session is created on the member where it first lands; any other member
 * answers `X-Accel-Redirect: /internal_redirect/<owner>/<uri>` (like the session servers behind
 * nginx that homing replaces).
 */
import { createHash } from 'node:crypto';
import { request } from 'undici';
import { startBackend, type Backend } from './backends.js';

export interface Served {
  token: string;
  member: string;
  method: string;
  url: string;
  sha256: string;
  bytes: number;
}

export interface StatefulCluster {
  backends: Backend[];
  /** token → owner member id */
  sessions: Map<string, string>;
  /** token → redirects answered for it */
  redirects: Map<string, number>;
  served: Served[];
  /** Make member `id` answer with this redirect header value instead (hostile backends). */
  override: Map<string, (url: string) => string>;
  close(): Promise<void>;
}

export async function statefulCluster(n: number, opts: { ownerHeader?: string } = {}): Promise<StatefulCluster> {
  const c: StatefulCluster = { backends: [], sessions: new Map(), redirects: new Map(), served: [], override: new Map(), close: async () => {} };
  for (let i = 0; i < n; i++) {
    const b = await startBackend(`s${i}`, (req, res, body, self) => {
      if (req.url === '/health') {
        res.writeHead(200);
        res.end('ok');
        return;
      }
      const token = req.headers.authorization;
      if (!token) {
        res.writeHead(401);
        res.end();
        return;
      }
      const ov = c.override.get(self.id);
      if (ov) {
        res.writeHead(200, { 'x-accel-redirect': ov(req.url!) });
        res.end('redirect body that must not reach the client');
        return;
      }
      let owner = c.sessions.get(token);
      if (owner === undefined || !c.backends.some((x) => x.id === owner)) {
        owner = self.id;
        c.sessions.set(token, owner);
      }
      if (owner !== self.id) {
        c.redirects.set(token, (c.redirects.get(token) ?? 0) + 1);
        res.writeHead(200, { 'x-accel-redirect': `/internal_redirect/${owner}${req.url}` });
        res.end('redirect body that must not reach the client');
        return;
      }
      const sha256 = createHash('sha256').update(body).digest('hex');
      c.served.push({ token, member: self.id, method: req.method!, url: req.url!, sha256, bytes: body.length });
      const text = JSON.stringify({ member: self.id, token, method: req.method, url: req.url, sha256, bytes: body.length });
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
      if (opts.ownerHeader) headers[opts.ownerHeader] = self.id;
      res.writeHead(200, headers);
      res.end(text);
    });
    c.backends.push(b);
  }
  c.close = async () => {
    await Promise.all(c.backends.map((b) => b.close()));
  };
  return c;
}

/**
 * Pin `token`'s session on a member other than homing's first guess for it on route `route` (the
 * route's hash pick, read from the admin API at `adminUrl`), so the guess is always redirected:
 * the `nth` other member (mod their count). Returns the owner.
 */
export async function pinAwayFromGuess(c: StatefulCluster, adminUrl: string, token: string, opts: { route?: string; nth?: number } = {}): Promise<string> {
  const url = `${adminUrl}/api/v1/routes/${opts.route ?? 'crest'}/lookup?key=${encodeURIComponent(token)}`;
  const look = (await (await request(url)).body.json()) as { target: string; by: string };
  if (look.by !== 'hash') throw new Error(`${token}: homing would not guess by hash (by=${look.by}): pin it before its first request`);
  const others = c.backends.filter((b) => b.id !== look.target);
  const owner = others[(opts.nth ?? 0) % others.length]!.id;
  c.sessions.set(token, owner);
  return owner;
}
