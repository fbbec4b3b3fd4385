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

export { deadPort } from './services.js';

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

/**
 * How long a test waits, at most, for something that should happen (an answer, a close, a
 * condition): a deadline, not a sleep. Generous, because it costs nothing when the event comes,
 * and a machine running other tests at the same time can be slow.
 */
export const WAIT = 20_000;

/** Send raw bytes to host:port and collect everything until the server closes (or `ms`). */
export function rawRequest(port: number, data: string | Buffer, ms = WAIT): Promise<string> {
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
export async function until(cond: () => boolean | Promise<boolean>, ms = WAIT, step = 20): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, step));
  }
  throw new Error('condition not met in time');
}

// --- Helpers for the hostile-input tests (raw sockets, response parsing, plain requests) -----------

/** One HTTP/1.1 response parsed from raw bytes. */
export interface RawResponse {
  status: number;
  /** Header lines in order, names lower-cased. */
  headers: [string, string][];
  body: Buffer;
  /** Trailer lines of a chunked body, names lower-cased. */
  trailers: [string, string][];
  /** The body's framing was complete (CL bytes seen, or the last chunk and its CRLF). */
  complete: boolean;
  /** Framing: content-length, chunked, or until-close. */
  framing: 'length' | 'chunked' | 'close' | 'none';
}

/** Values of header `name` (lower-case) in a parsed response. */
export function headerValues(r: { headers: [string, string][] }, name: string): string[] {
  return r.headers.filter(([n]) => n === name).map(([, v]) => v);
}

function parseFields(lines: string[]): [string, string][] {
  return lines.map((l) => {
    const c = l.indexOf(':');
    return c < 0 ? [l.toLowerCase(), ''] : [l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim()];
  });
}

/**
 * Parse every response in `buf` (pipelined answers, 1xx interim answers included). The last one may
 * be incomplete. `closed`: the connection has ended, so an until-close body is complete.
 */
export function parseResponses(buf: Buffer, closed = false): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) break;
    const status = Number(m[1]);
    const headers = parseFields(lines.slice(1));
    let p = end + 4;
    const te = headers.find(([n]) => n === 'transfer-encoding')?.[1];
    const cl = headers.find(([n]) => n === 'content-length')?.[1];
    if (status < 200 || status === 204 || status === 304) {
      out.push({ status, headers, body: Buffer.alloc(0), trailers: [], complete: true, framing: 'none' });
      at = p;
      continue;
    }
    if (te !== undefined && /chunked/i.test(te)) {
      const parts: Buffer[] = [];
      let complete = false;
      let trailers: [string, string][] = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p);
        if (le < 0) break;
        const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0]!, 16);
        if (Number.isNaN(size)) break;
        if (size === 0) {
          const te2 = buf.indexOf('\r\n\r\n', le);
          if (te2 < 0 && buf.subarray(le, le + 4).toString() !== '\r\n\r\n') break;
          const tEnd = buf.subarray(le, le + 4).toString() === '\r\n\r\n' ? le : te2;
          const tLines = buf.subarray(le + 2, tEnd).toString('latin1').split('\r\n').filter((l) => l !== '');
          trailers = parseFields(tLines);
          p = tEnd + 4;
          complete = true;
          break;
        }
        if (le + 2 + size + 2 > buf.length) {
          parts.push(buf.subarray(le + 2, Math.min(buf.length, le + 2 + size)));
          p = buf.length;
          break;
        }
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      out.push({ status, headers, body: Buffer.concat(parts), trailers, complete, framing: 'chunked' });
      if (!complete) break;
      at = p;
      continue;
    }
    if (cl !== undefined) {
      const n = Number(cl);
      const body = buf.subarray(p, Math.min(buf.length, p + n));
      out.push({ status, headers, body, trailers: [], complete: body.length === n, framing: 'length' });
      if (body.length < n) break;
      at = p + n;
      continue;
    }
    out.push({ status, headers, body: buf.subarray(p), trailers: [], complete: closed, framing: 'close' });
    break;
  }
  return out;
}

/** A raw TCP client: write anything, see everything, know when the peer closed. */
export class RawClient {
  readonly chunks: Buffer[] = [];
  received = 0;
  closed = false;
  /** The peer ended (FIN) or the socket errored/closed. */
  readonly done: Promise<void>;
  error: (Error & { code?: string }) | undefined;

  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.received += c.length;
    });
    socket.on('error', (e) => {
      this.error = e;
    });
    this.done = new Promise((resolve) => {
      const fin = (): void => {
        this.closed = true;
        resolve();
      };
      socket.on('end', fin);
      socket.on('close', fin);
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, host);
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(new RawClient(s));
      });
      s.once('error', reject);
    });
  }

  /** Write, ignoring EPIPE/ECONNRESET once the server has given up on us. */
  write(data: string | Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(data, () => {});
  }

  get buffer(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get text(): string {
    return this.buffer.toString('latin1');
  }

  responses(): RawResponse[] {
    return parseResponses(this.buffer, this.closed);
  }

  /** Complete final (non-1xx) responses so far. */
  finalResponses(): RawResponse[] {
    return this.responses().filter((r) => r.status >= 200 && r.complete);
  }

  /** Wait until `n` complete final responses arrived; returns them. */
  async waitResponses(n = 1, ms = WAIT): Promise<RawResponse[]> {
    await until(() => this.finalResponses().length >= n || (this.closed && this.finalResponses().length < n), ms, 5);
    return this.finalResponses();
  }

  /** Wait for the peer to close; true when it did within `ms`. */
  async waitClosed(ms = WAIT): Promise<boolean> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => {
      t = setTimeout(() => r(false), ms);
    });
    const r = await Promise.race([this.done.then(() => true), timeout]);
    clearTimeout(t);
    return r;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A raw TCP "backend": every connection goes to `onConnection`; sockets are tracked and closed. */
export interface RawBackend {
  port: number;
  id: string;
  server: Server;
  connections: number;
  /** Bytes received on each connection, in order of arrival. */
  received: Buffer[];
  close(): Promise<void>;
}

import { createServer as createNetServer, type Server as NetServer } from 'node:net';

export async function startRawBackend(onConnection: (socket: Socket, index: number, b: RawBackend) => void): Promise<RawBackend> {
  const sockets = new Set<Socket>();
  const b = { connections: 0, received: [] as Buffer[] } as unknown as RawBackend;
  const server: NetServer = createNetServer((s) => {
    const i = b.connections++;
    b.received[i] = Buffer.alloc(0);
    sockets.add(s);
    s.on('data', (c: Buffer) => {
      b.received[i] = Buffer.concat([b.received[i]!, c]);
    });
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onConnection(s, i, b);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.server = server as unknown as Server;
  b.port = (server.address() as { port: number }).port;
  b.id = `127.0.0.1:${b.port}`;
  b.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      for (const s of sockets) s.destroy();
    });
  return b;
}

export interface SimpleResponse {
  status: number;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  trailers: IncomingMessage['trailers'];
  body: Buffer;
  text: string;
}

/** One request on a fresh connection (no agent, no pooling), body read in full. */
export function httpRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string | string[]> | string[]; body?: string | Buffer; timeout?: number } = {},
): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequestRaw(url, { method: opts.method ?? 'GET', headers: opts.headers as never, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, trailers: res.trailers, body, text: body.toString() });
      });
    });
    req.setTimeout(opts.timeout ?? WAIT, () => req.destroy(new Error('httpRequest timed out')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

import { request as httpRequestRaw } from 'node:http';

/** The `{error:{code,message}}` body of an answer homing gave itself; throws if the shape is wrong. */
export function errorCode(body: Buffer | string): string {
  const j = JSON.parse(body.toString()) as { error?: { code?: unknown; message?: unknown } };
  if (!j.error || typeof j.error.code !== 'string' || typeof j.error.message !== 'string' || !j.error.code.startsWith('HOMING_ERR_')) {
    throw new Error(`not a homing error body: ${body.toString()}`);
  }
  return j.error.code;
}

/** Minimal YAML for one route `r` over pool `p` with the given members; `extra` merges into the route. */
export function oneRouteConfig(members: (number | string)[], opts: { route?: string; pool?: string; listen?: string } = {}): string {
  const ms = members.map((m) => `'${typeof m === 'number' ? `127.0.0.1:${m}` : m}'`).join(', ');
  return `
log: { level: silent }
listen: { http: 127.0.0.1:0${opts.listen ? `, ${opts.listen}` : ''} }
pools: { p: { members: [${ms}]${opts.pool ? `, ${opts.pool}` : ''} } }
routes: [ { name: r, match: { path: / }, pool: p, timeouts: { connect: 500ms, header: 2s, body: 2s }${opts.route ? `, ${opts.route}` : ''} } ]
`;
}

/** One request as a recording backend saw it, filled in as it arrives. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  trailers: IncomingMessage['trailers'];
  body: Buffer;
  /** The body ended normally (all of it arrived). */
  complete: boolean;
  /** The request stream closed (normally or not). */
  closed: boolean;
  /** Index of the connection it came on (0-based, in order of connection). */
  connection: number;
  /** 1 for the first request on its connection, 2 for the second, … */
  onConnection: number;
}

export interface RecordingBackend {
  name: string;
  port: number;
  id: string;
  server: Server;
  seen: SeenRequest[];
  connections: number;
  /** Connections currently open. */
  open: number;
  /** Indexes of the connections that have closed. */
  closedConnections: Set<number>;
  close(): Promise<void>;
}

export interface RecordingOptions {
  /** Called when the head arrives; return 'handled' to skip the default answer at the body's end. */
  onRequest?: (req: IncomingMessage, res: ServerResponse, s: SeenRequest, b: RecordingBackend) => void | 'handled';
  /** Called when the body has ended (default: JSON `{member,url,method,bytes}`). */
  onEnd?: (req: IncomingMessage, res: ServerResponse, s: SeenRequest, b: RecordingBackend) => void;
  /** Listen on this port (restarts on the same port); 0 by default. */
  port?: number;
  /** Node server keepAliveTimeout (ms). */
  keepAliveTimeout?: number;
}

/** A node:http backend recording every request, complete or not, with per-connection counts. */
export async function startRecordingBackend(name: string, opts: RecordingOptions = {}): Promise<RecordingBackend> {
  const sockets = new Set<Socket>();
  const perSocket = new WeakMap<Socket, { index: number; n: number }>();
  const b = { name, seen: [] as SeenRequest[], connections: 0, open: 0, closedConnections: new Set<number>() } as RecordingBackend;
  const server = createServer((req, res) => {
    const info = perSocket.get(req.socket) ?? { index: -1, n: 0 };
    info.n++;
    const s: SeenRequest = {
      method: req.method!,
      url: req.url!,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      trailers: {},
      body: Buffer.alloc(0),
      complete: false,
      closed: false,
      connection: info.index,
      onConnection: info.n,
    };
    b.seen.push(s);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      chunks.push(c);
      s.body = Buffer.concat(chunks);
    });
    req.on('error', () => {});
    req.on('close', () => {
      s.closed = true;
    });
    req.on('end', () => {
      s.body = Buffer.concat(chunks);
      s.trailers = req.trailers;
      s.complete = true;
      if (handled && !opts.onEnd) return;
      if (res.headersSent || res.destroyed) return;
      if (opts.onEnd) return opts.onEnd(req, res, s, b);
      const text = JSON.stringify({ member: name, method: req.method, url: req.url, bytes: s.body.length });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
    const handled = opts.onRequest?.(req, res, s, b) === 'handled';
  });
  if (opts.keepAliveTimeout !== undefined) server.keepAliveTimeout = opts.keepAliveTimeout;
  server.on('connection', (sock: Socket) => {
    const index = b.connections++;
    perSocket.set(sock, { index, n: 0 });
    b.open++;
    sockets.add(sock);
    sock.on('close', () => {
      b.open--;
      b.closedConnections.add(index);
      sockets.delete(sock);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  b.server = server;
  b.port = (server.address() as { port: number }).port;
  b.id = `127.0.0.1:${b.port}`;
  b.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      for (const sk of sockets) sk.destroy();
    });
  return b;
}

/** homing still proxies a normal GET to `b` (no crash, nothing wedged); returns the response. */
export async function assertProxies(homingUrl: string, b: RecordingBackend, path = '/alive'): Promise<SimpleResponse> {
  const before = b.seen.length;
  const r = await httpRequest(homingUrl + path);
  if (r.status !== 200) throw new Error(`a normal request through homing answered ${r.status}: ${r.text}`);
  // Other (aborted) requests of the test may still land, so look for this one among the new ones.
  if (b.seen.slice(before).filter((s) => s.url === path && s.complete).length !== 1) throw new Error(`the normal request did not reach ${b.name} as ${path}`);
  return r;
}

/**
 * A raw TCP backend for bodiless requests: for each request head on a connection, `respond` gives
 * the exact bytes to answer (a string is written as latin1), or null to leave it unanswered.
 * `heads` records every request head received.
 */
export async function startScriptedBackend(
  respond: (head: string, index: number, socket: Socket) => string | Buffer | null,
): Promise<RawBackend & { heads: string[] }> {
  const heads: string[] = [];
  const b = await startRawBackend((socket) => {
    let buf = '';
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        heads.push(head);
        const out = respond(head, heads.length - 1, socket);
        if (out !== null && !socket.destroyed) socket.write(typeof out === 'string' ? Buffer.from(out, 'latin1') : out);
      }
    });
  });
  return Object.assign(b, { heads });
}

import { spawn } from 'node:child_process';

/**
 * An address where connecting hangs: a listener in a child process whose event loop is blocked
 * (so it never accepts) with its accept queue filled; the kernel then drops new SYNs and a
 * connect waits until the client's own timeout. Real TCP, no routing tricks.
 */
export async function startBlackhole(): Promise<{ id: string; port: number; close(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    ['-e', `const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>{process.stdout.write(s.address().port+'\\n',()=>Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0))})`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  // Fill the accept queue (backlog 1 holds two): every later connect hangs.
  const fillers: Socket[] = [];
  for (;;) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
    const connected = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 300);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    if (!connected) break;
    if (fillers.length > 16) throw new Error('blackhole: the accept queue never filled');
  }
  return {
    id: `127.0.0.1:${port}`,
    port,
    async close() {
      for (const s of fillers) s.destroy();
      child.kill('SIGKILL');
      if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
    },
  };
}
