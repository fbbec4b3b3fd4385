/** Real node:http backends on port 0 for tests, counting requests and connections. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { startHoming, type Homing } from '../../src/app.js';

export interface Backend {
  name: string;
  port: number;
  id: string;
  server: Server;
  requests: number;
  connections: number;
  /** Last request seen: headers, raw headers, body. */
  last: { method: string; url: string; headers: IncomingMessage['headers']; rawHeaders: string[]; body: Buffer } | undefined;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer, b: Backend) => void;

/** Default answer: JSON naming the backend. */
export const echo: Handler = (req, res, body, b) => {
  const text = JSON.stringify({ member: b.name, id: b.id, method: req.method, url: req.url, bytes: body.length });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

export async function startBackend(name: string, handler: Handler = echo, opts: { readBody?: boolean } = {}): Promise<Backend> {
  const sockets = new Set<Socket>();
  const b = { name, requests: 0, connections: 0, last: undefined } as Backend;
  const server = createServer((req, res) => {
    b.requests++;
    if (opts.readBody === false) {
      b.last = { method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0) };
      handler(req, res, Buffer.alloc(0), b);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      b.last = { method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body };
      handler(req, res, body, b);
    });
  });
  server.on('connection', (s) => {
    b.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.server = server;
  b.port = (server.address() as { port: number }).port;
  b.id = `127.0.0.1:${b.port}`;
  b.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      for (const s of sockets) s.destroy();
    });
  return b;
}

/** A port that refuses connections (bound, then closed). */
export async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

export const silentLog = pino({ level: 'silent' });

/** Start homing in-process from YAML text (listen/admin on port 0 unless given). */
export async function startTestHoming(yaml: string): Promise<Homing & { url: string; adminUrl: string }> {
  const cfg = parseConfig(yaml, process.cwd(), 'test config');
  const h = await startHoming(cfg, { log: silentLog });
  return Object.assign(h, {
    url: h.http ? `http://127.0.0.1:${h.http.port}` : '',
    adminUrl: h.adminAddress ? `http://127.0.0.1:${h.adminAddress.port}` : '',
  });
}

/** Send raw bytes to host:port and collect everything until the server closes (or `ms`). */
export function rawRequest(port: number, data: string | Buffer, ms = 2000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = (): void => {
      clearTimeout(t);
      s.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const t = setTimeout(done, ms);
    s.on('data', (c) => chunks.push(c));
    s.on('end', done);
    s.on('close', done);
    s.on('error', done);
    s.write(data);
  });
}

/** Poll until `cond` holds or the deadline passes. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, step = 20): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, step));
  }
  throw new Error('condition not met in time');
}
