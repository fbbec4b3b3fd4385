/**
 * `homing demo` (what `npm start` runs): three in-process demo backends and homing in front of
 * them on a hash route and a balance route, on 127.0.0.1:8080 with admin on 127.0.0.1:9090
 * (`--port` and `--admin-port` choose others; 0 picks a free one, printed at start).
 */
import { createServer, type Server } from 'node:http';
import { parseArgs } from 'node:util';
import { parseConfig } from '../config/load.js';
import { startHoming, type Homing } from '../app.js';

function demoBackend(name: string): Server {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/health') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok\n');
        return;
      }
      const body = JSON.stringify({ member: name, method: req.method, url: req.url, bytes: Buffer.concat(chunks).length, forwardedFor: req.headers['x-forwarded-for'] }) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
}

export interface DemoOptions {
  http?: string;
  admin?: string;
}

function portArg(name: string, v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new Error(`--${name} wants a port number (0-65535; 0: any free port), got "${v}"`);
  return n;
}

/** `homing demo [--port 8080] [--admin-port 9090]` → where the demo listens (on 127.0.0.1). */
export function parseDemoArgs(args: string[]): Required<DemoOptions> {
  const { values } = parseArgs({ args, options: { port: { type: 'string', default: '8080' }, 'admin-port': { type: 'string', default: '9090' } } });
  return { http: `127.0.0.1:${portArg('port', values.port)}`, admin: `127.0.0.1:${portArg('admin-port', values['admin-port'])}` };
}

export async function runDemo(opts: DemoOptions = {}): Promise<{ homing: Homing; backends: Server[]; close(): Promise<void> }> {
  const backends = ['alpha', 'bravo', 'charlie'].map(demoBackend);
  const ports: number[] = [];
  for (const b of backends) {
    await new Promise<void>((resolve) => b.listen(0, '127.0.0.1', resolve));
    ports.push((b.address() as { port: number }).port);
  }
  const yaml = `
listen: { http: ${opts.http ?? '127.0.0.1:8080'} }
admin: ${opts.admin ?? '127.0.0.1:9090'}
log: { level: info }
pools:
  demo:
    members: [${ports.map((p) => `127.0.0.1:${p}`).join(', ')}]
    health:
      active: { path: /health, interval: 2s, timeout: 1s }
      passive: { failures: 3, ejectFor: 10s }
routes:
  - name: documents
    match: { pathRegex: '^/documents/(.*)$' }
    pool: demo
    hash: { key: path:1, algorithm: ring }
    debugHeader: true
  - name: default
    match: { path: / }
    pool: demo
    balance: round-robin
    debugHeader: true
`;
  const cfg = parseConfig(yaml, process.cwd(), 'demo config');
  let homing: Homing;
  try {
    homing = await startHoming(cfg);
  } catch (e) {
    for (const b of backends) b.close();
    throw e;
  }
  return {
    homing,
    backends,
    async close() {
      await homing.close();
      await Promise.all(backends.map((b) => new Promise((r) => b.close(r))));
    },
  };
}
