/**
 * The client-facing listeners: plain HTTP and optional TLS termination, both on the same Proxy.
 * Plain HTTP is served by node:http (`engine: node`) or by the fast engine on raw sockets
 * (`engine: fast`, src/proxy/fast/); TLS always by node:https. Node's strict parser is kept (no
 * insecureHTTPParser): CL+TE, bad chunk framing, bare CR and obs-fold are refused by llhttp and
 * answered as JSON 400/431: a proxy that accepts what its members parse differently lets requests
 * be smuggled past it.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Config } from '../config/schema.js';
import { formatHostPort, type HostPort } from '../config/units.js';
import type { Proxy } from './proxy.js';
import { isClosing, refuseUnparsed } from './respond.js';
import { MAX_HEADER_COUNT, MAX_HEADER_SIZE } from './headers.js';
import { handleUpgrade } from './upgrade.js';
import { FastServer } from './fast/listener.js';

export interface Listener {
  /** node:http's server, or the fast engine's (`engine: fast`, plain HTTP only). */
  server: Server | FastServer;
  proto: 'http' | 'https';
  address(): HostPort;
}

const kProxy = Symbol('homing.proxy');

function onClientError(this: Server & { [kProxy]: Proxy }, err: Error & { code?: string }, socket: Socket): void {
  // Bytes after a request that ends the connection (a refusal, `Connection: close`, HTTP/1.0):
  // the answer in progress is the last one and closes the socket; nothing more is said.
  if (isClosing(socket)) return;
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'ERR_HTTP_HEADERS_TIMEOUT') {
    socket.destroy();
    return;
  }
  refuseUnparsed(this[kProxy].deps, socket, err.code);
}

export function createListeners(cfg: Config, proxy: Proxy): Listener[] {
  const common = {
    maxHeaderSize: MAX_HEADER_SIZE,
    insecureHTTPParser: false,
    requireHostHeader: false, // answered by the proxy as a JSON 400
    joinDuplicateHeaders: false,
    keepAliveTimeout: cfg.listen.keepAliveTimeout,
    headersTimeout: cfg.listen.headersTimeout,
    requestTimeout: cfg.listen.requestTimeout,
    // How often Node enforces headersTimeout/requestTimeout (default 30 s would let a slow-loris
    // client trickle headers far past headersTimeout).
    connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(cfg.listen.headersTimeout / 4))),
    noDelay: true,
  };
  const out: Listener[] = [];
  const wire = (server: Server, proto: 'http' | 'https'): void => {
    server.on('request', (req: IncomingMessage, res: ServerResponse) => proxy.handle(req, res, proto));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => handleUpgrade(proxy, req, socket, head, proto));
    (server as Server & { [kProxy]: Proxy })[kProxy] = proxy;
    server.on('clientError', onClientError);
    // Expect other than 100-continue: the proxy answers its JSON 417 (Node's default is a bare 417).
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => proxy.handle(req, res, proto));
    // Node drops header lines past maxHeadersCount silently; keep one more than the limit so the proxy sees the excess.
    server.maxHeadersCount = MAX_HEADER_COUNT + 1;
    // Set again after construction, in this order: Node checks them against each other as they are assigned.
    server.keepAliveTimeout = cfg.listen.keepAliveTimeout;
    server.headersTimeout = cfg.listen.headersTimeout;
    server.requestTimeout = cfg.listen.requestTimeout;
    out.push({ server, proto, address: () => addressOf(server) });
  };
  if (cfg.listen.http && cfg.engine === 'fast') {
    // The fast engine serves plain HTTP; TLS (below) stays on node:https.
    const server = new FastServer(proxy, { ...cfg.listen, checkEvery: common.connectionsCheckingInterval });
    out.push({ server, proto: 'http', address: () => addressOf(server) });
  } else if (cfg.listen.http) wire(createHttpServer(common), 'http');
  if (cfg.listen.https) {
    const { cert, key } = cfg.listen.https;
    wire(createHttpsServer({ ...common, cert: readFileSync(cert), key: readFileSync(key) }) as unknown as Server, 'https');
  }
  return out;
}

export function addressOf(server: { address(): unknown }): HostPort {
  const a = server.address() as { address: string; port: number } | null;
  if (!a) throw new Error('server is not listening');
  return { host: a.address, port: a.port };
}

export function listen(server: { listen(port: number, host: string, cb: () => void): unknown; once(ev: 'error', cb: (e: Error) => void): unknown }, at: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => resolve());
  });
}

export function describe(at: HostPort, proto = 'http'): string {
  return `${proto}://${formatHostPort(at.host, at.port)}`;
}
