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
import type { SecureContextOptions, Server as TlsServer } from 'node:tls';
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
/** Set on a listener being retired (see `retireListener`). */
const kRetired = Symbol('homing.retired');

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

/** Node's server settings from `listen` (a reload sets them again on a listener it keeps). */
function serverTimeouts(server: Pick<Server, 'keepAliveTimeout' | 'headersTimeout' | 'requestTimeout'>, listen: Config['listen']): void {
  // Set after construction, in this order: Node checks them against each other as they are assigned.
  server.keepAliveTimeout = listen.keepAliveTimeout;
  server.headersTimeout = listen.headersTimeout;
  server.requestTimeout = listen.requestTimeout;
}

/** A listener of `proto` (`listen.http` or `listen.https`) on `proxy`, not yet listening. */
export function createListener(cfg: Config, proxy: Proxy, proto: 'http' | 'https'): Listener {
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
  if (proto === 'http' && cfg.engine === 'fast') {
    // The fast engine serves plain HTTP; TLS stays on node:https.
    const fast = new FastServer(proxy, { ...cfg.listen, checkEvery: common.connectionsCheckingInterval });
    return { server: fast, proto, address: () => addressOf(fast) };
  }
  const server =
    proto === 'http' ? createHttpServer(common) : (createHttpsServer({ ...common, cert: readFileSync(cfg.listen.https!.cert), key: readFileSync(cfg.listen.https!.key) }) as unknown as Server);
  const s = server as Server & { [kProxy]: Proxy; [kRetired]?: boolean };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // A listener a reload moved: each answer closes its connection, so clients move to the new one.
    if (s[kRetired]) res.shouldKeepAlive = false;
    proxy.handle(req, res, proto);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => handleUpgrade(proxy, req, socket, head, proto));
  s[kProxy] = proxy;
  server.on('clientError', onClientError);
  // Expect other than 100-continue: the proxy answers its JSON 417 (Node's default is a bare 417).
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => proxy.handle(req, res, proto));
  // Node drops header lines past maxHeadersCount silently; keep one more than the limit so the proxy sees the excess.
  server.maxHeadersCount = MAX_HEADER_COUNT + 1;
  serverTimeouts(server, cfg.listen);
  return { server, proto, address: () => addressOf(server) };
}

export function createListeners(cfg: Config, proxy: Proxy): Listener[] {
  const out: Listener[] = [];
  if (cfg.listen.http) out.push(createListener(cfg, proxy, 'http'));
  if (cfg.listen.https) out.push(createListener(cfg, proxy, 'https'));
  return out;
}

/**
 * A listener a reload keeps (same address): it takes the new `listen` timeouts and, for https,
 * `secure` (the certificate and key read again). Its open connections carry on.
 */
export function updateListener(l: Listener, listen: Config['listen'], secure?: SecureContextOptions): void {
  serverTimeouts(l.server, listen);
  if (secure) (l.server as unknown as TlsServer).setSecureContext(secure);
}

/**
 * Stop a listener gracefully: no new connections; a request in flight finishes and its answer
 * closes the connection; idle connections are closed as soon as they are idle; whatever is left
 * after `timeoutMs` is closed. Resolves once the listener is closed.
 */
export async function retireListener(l: Listener, timeoutMs: number): Promise<void> {
  if (l.server instanceof FastServer) l.server.retired = true;
  else (l.server as Server & { [kRetired]?: boolean })[kRetired] = true;
  const closed = new Promise<void>((r) => l.server.close(() => r()));
  // A connection whose answer began before now goes idle afterwards: close it then.
  const idle = setInterval(() => l.server.closeIdleConnections(), 100);
  let deadline: NodeJS.Timeout | undefined;
  await Promise.race([closed, new Promise<void>((r) => (deadline = setTimeout(r, timeoutMs)))]);
  clearInterval(idle);
  clearTimeout(deadline);
  l.server.closeAllConnections();
  await closed;
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
