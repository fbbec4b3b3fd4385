/**
 * `hash: { algorithm: ring, compat: nginx }` against a real nginx (Debian's) with
 * `hash <key> consistent` over the same weighted servers: 10,000 distinct keys go through nginx
 * to real node:http members that name themselves, and each one must land where homing says
 * (`Route.resolve(key, 'lookup')` on its runtime) and where homing itself proxies it. Every key,
 * not a share of them.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { startBackend, startTestHoming, type Backend } from './support/backends.js';
import { startNginx, type Service } from './support/services.js';
import { Member, MemberSet } from '../src/members/member.js';
import { crc32 } from '../src/routing/hash/crc32.js';
import { nginxPoints } from '../src/routing/hash/nginx.js';
import { RingPicker } from '../src/routing/hash/ring.js';
import { isResolution } from '../src/routing/route.js';

const KEYS = 10_000;
const PARALLEL = 32;

/** Members that name themselves in a header of every answer. */
async function members(n: number): Promise<Backend[]> {
  const out: Backend[] = [];
  for (let i = 0; i < n; i++) {
    out.push(
      await startBackend(`m${i}`, (_req, res, _body, b) => {
        res.writeHead(200, { 'x-served-by': b.id, 'content-length': 2 });
        res.end('ok');
      }),
    );
  }
  return out;
}

/** Distinct keys that nginx and homing read alike (no percent-escapes, no dot segments). */
function keys(prefix: string): string[] {
  let x = 0x9e3779b9;
  return Array.from({ length: KEYS }, (_, i) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return `${prefix}${(x >>> 0).toString(36)}-${i}`;
  });
}

/** GET every path (with its headers) through `base`, PARALLEL at a time, and answer who served each one. */
async function servedAll(agent: Agent, base: string, paths: readonly string[], headers?: (i: number) => Record<string, string>): Promise<string[]> {
  const out = new Array<string>(paths.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const i = next++;
      const r = await request(`${base}${paths[i]}`, { dispatcher: agent, headers: headers?.(i) });
      await r.body.dump();
      assert.equal(r.statusCode, 200, `${paths[i]} → ${r.statusCode}`);
      out[i] = String(r.headers['x-served-by']);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return out;
}

/** nginx proxying `location /` to an upstream of `servers` (lines after `hash … consistent`). */
function nginxHash(key: string, servers: readonly string[]): Promise<Service> {
  return startNginx(
    (c) => `
worker_processes 1;
events { worker_connections 1024; }
http {
  access_log off;
  ${c.httpTemp}
  upstream members {
    hash ${key} consistent;
${servers.map((x) => `    server ${x};`).join('\n')}
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${c.port};
    location / {
      proxy_pass http://members;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream off;
    }
  }
}
`,
  );
}

interface Setup {
  /** nginx `hash` key expression and homing key expression. */
  nginxKey: string;
  homingKey: string;
  /** Request path for key k. */
  path: (k: string) => string;
  /** Request headers for key k, if the key is in one. */
  headers?: (k: string) => Record<string, string>;
  /** The string both hash for that request: what homing is asked to look up. */
  hashed: (k: string) => string;
  keyPrefix: string;
}

const SETUPS: Setup[] = [
  { nginxKey: '$uri', homingKey: 'path', path: (k) => `/docs/${k}`, hashed: (k) => `/docs/${k}`, keyPrefix: '' },
  { nginxKey: '$arg_k', homingKey: 'query:k', path: (k) => `/q?a=1&k=${k}&z=2`, hashed: (k) => k, keyPrefix: 'tenant.' },
  { nginxKey: '$http_x_tenant', homingKey: 'header:x-tenant', path: () => '/h', headers: (k) => ({ 'x-tenant': k }), hashed: (k) => k, keyPrefix: 'acme ' },
  { nginxKey: '$cookie_sid', homingKey: 'cookie:sid', path: () => '/c', headers: (k) => ({ cookie: `theme=dark; sid=${k}` }), hashed: (k) => k, keyPrefix: 's' },
];

/**
 * Member lists: weights, and which member is down (`down` in nginx, which keeps its points and
 * walks past them; not in homing's pool, whose ring is built without it).
 */
const LISTS: Array<{ weights: number[]; down?: number; setups: readonly Setup[] }> = [
  { weights: [1, 2, 3], setups: SETUPS },
  { weights: [2, 1, 1, 3, 1], setups: SETUPS.slice(0, 2) },
  { weights: [2, 1, 1, 3, 1], down: 3, setups: SETUPS.slice(0, 1) },
];

for (const { weights, down, setups } of LISTS) {
  for (const s of setups) {
    const downText = down === undefined ? '' : `, member ${down} down`;
    describe(`compat nginx: hash ${s.nginxKey} consistent over ${weights.length} members, weights ${weights.join(',')}${downText}`, () => {
      let backends: Backend[];
      let nginx: Service;
      let homing: Awaited<ReturnType<typeof startTestHoming>>;
      const agent = new Agent({ connections: PARALLEL, keepAliveTimeout: 10_000 });

      before(async () => {
        backends = await members(weights.length);
        nginx = await nginxHash(s.nginxKey, backends.map((b, i) => `${b.id} weight=${weights[i]}${i === down ? ' down' : ''}`));
        homing = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools:
  p:
    members:
${backends
  .map((b, i) => (i === down ? '' : `      - { address: '${b.id}', weight: ${weights[i]} }\n`))
  .join('')}
routes:
  - { name: r, pool: p, hash: { key: '${s.homingKey}', algorithm: ring, compat: nginx } }
`);
      });

      after(async () => {
        await homing?.close();
        await nginx?.stop();
        await agent.close();
        for (const b of backends ?? []) await b.close();
      });

      test('every one of 10,000 keys lands on the member homing names for it, through nginx and through homing', async () => {
        const ks = keys(s.keyPrefix);
        const paths = ks.map(s.path);
        const route = homing.runtime.route('r')!;
        const named = ks.map((k) => {
          const r = route.resolve(s.hashed(k), 'lookup');
          assert.ok(!(r instanceof Promise) && isResolution(r), `no member for ${k}`);
          return r.member.id;
        });
        const headers = s.headers && ((i: number) => s.headers!(ks[i]!));
        const viaNginx = await servedAll(agent, `http://127.0.0.1:${nginx.port}`, paths, headers);
        const viaHoming = await servedAll(agent, homing.url, paths, headers);
        let wrong = 0;
        const examples: string[] = [];
        for (let i = 0; i < KEYS; i++) {
          if (viaNginx[i] === named[i] && viaHoming[i] === named[i]) continue;
          wrong++;
          if (examples.length < 5) examples.push(`${paths[i]}: nginx ${viaNginx[i]}, homing names ${named[i]}, homing proxied to ${viaHoming[i]}`);
        }
        assert.equal(wrong, 0, `${wrong} of ${KEYS} keys disagree, e.g.\n${examples.join('\n')}`);
        // Every member took keys, in proportion to its weight (so the weights were in play).
        const total = weights.reduce((a, b, i) => (i === down ? a : a + b), 0);
        for (const [i, b] of backends.entries()) {
          const share = named.filter((id) => id === b.id).length / KEYS;
          const want = i === down ? 0 : weights[i]! / total;
          assert.ok(share >= want * 0.6 && share <= want * 1.4, `${b.id} (weight ${weights[i]}${i === down ? ', down' : ''}) got ${share} of the keys`);
        }
      });
    });
  }
}

/**
 * Two servers whose rings share a point: nginx keeps the point of the server listed first in its
 * upstream block, homing that of the member whose id sorts first, so the two agree when the
 * upstream lists its servers sorted (and only then, which the reversed list shows).
 */
describe('compat nginx: a point two servers share', () => {
  const servers: Server[] = [];
  let pair: [string, string] | undefined;
  let shared = 0;

  /** A member on 127.0.0.1:port that names itself, or undefined when the port is taken. */
  async function listenOn(port: number): Promise<Server | undefined> {
    const srv = createServer((_req, res) => {
      res.writeHead(200, { 'x-served-by': `127.0.0.1:${port}`, 'content-length': 2 });
      res.end('ok');
    });
    return new Promise((resolve) => {
      srv.once('error', () => resolve(undefined));
      srv.listen(port, '127.0.0.1', () => resolve(srv));
    });
  }

  before(async () => {
    // Ports below the ephemeral range whose points collide, until both of a pair are free.
    const owner = new Map<number, number>();
    for (let port = 20_000; port < 32_000 && !pair; port++) {
      for (const point of nginxPoints(`127.0.0.1:${port}`, 160)) {
        const other = owner.get(point);
        if (other === undefined) {
          owner.set(point, port);
          continue;
        }
        const a = await listenOn(other);
        const b = a && (await listenOn(port));
        if (a && b) {
          servers.push(a, b);
          pair = [`127.0.0.1:${other}`, `127.0.0.1:${port}`].sort() as [string, string];
          shared = point;
          break;
        }
        await new Promise((r) => a?.close(r));
      }
    }
  });

  after(async () => {
    for (const srv of servers) await new Promise((r) => srv.close(r));
  });

  test('nginx with the servers listed sorted sends a key hashing onto the shared point where homing does; listed the other way, to the other', async () => {
    assert.ok(pair, 'no free pair of colliding ports');
    const ring = new RingPicker(new MemberSet(pair.map((id) => new Member('127.0.0.1', Number(id.split(':')[1])))), 160, 1, 'nginx');
    const entries = [...ring.entries()];
    const at = entries.findIndex((e) => e.point === shared);
    assert.equal(entries[at]!.member, pair[0]);
    // A URI whose hash falls in the arc that ends on the shared point.
    const from = at > 0 ? entries[at - 1]!.point : entries.at(-1)!.point;
    let uri = '';
    for (let i = 0; !uri; i++) {
      const h = crc32(`/tie/${i}`);
      if (at > 0 ? h > from && h <= shared : h > from || h <= shared) uri = `/tie/${i}`;
    }
    assert.equal(ring.pick(uri, 0)!.id, pair[0]);
    const agent = new Agent();
    try {
      for (const [order, want] of [[pair, pair[0]], [[pair[1], pair[0]], pair[1]]] as const) {
        const nginx = await nginxHash('$uri', order);
        try {
          const r = await request(`http://127.0.0.1:${nginx.port}${uri}`, { dispatcher: agent });
          await r.body.dump();
          assert.equal(r.headers['x-served-by'], want, `upstream ${order.join(', ')}: ${uri}`);
        } finally {
          await nginx.stop();
        }
      }
    } finally {
      await agent.close();
    }
  });
});
