/** Answers homing gives itself: the JSON error body every error of the catalogue uses. */
import type { Duplex } from 'node:stream';
import { ERRORS, errorBody, type ErrorCode } from '../errors.js';
import type { PipelineDeps } from './exchange.js';
import { logUnrouted } from './log.js';
import type { ClientResponse } from './transport.js';

const kClosing = Symbol('homing.closing');
type Marked = { [kClosing]?: true };

/**
 * The connection ends after the response in progress: homing refused a request on it, or the
 * client asked to close. Node's parser reads ahead, so requests pipelined behind that one may
 * already be parsed (even from the same read); `isClosing` tells the listeners to act on none of
 * them. For a framing refusal the next request's boundary is undefined anyway; for the others the
 * client broke the protocol, and an answer to a later request could never be delivered.
 */
export function markClosing(socket: object | null | undefined): void {
  if (socket) (socket as Marked)[kClosing] = true;
}

export function isClosing(socket: object | null | undefined): boolean {
  return socket !== null && socket !== undefined && (socket as Marked)[kClosing] === true;
}

/**
 * Send a JSON error unless headers already went out (then the connection is cut). `close` answers
 * with `Connection: close` and marks the connection so nothing after this request is acted on.
 * Answers the body's length, or -1 when the connection was cut.
 */
export function sendError(res: ClientResponse, code: ErrorCode, message: string, close = false): number {
  if (close) markClosing(res.req?.socket);
  if (res.headersSent) {
    res.destroy();
    return -1;
  }
  const body = errorBody(code, message);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (close) headers.connection = 'close';
  res.writeHead(ERRORS[code].status, headers);
  res.end(body);
  return headers['content-length'] as number;
}

/** An error answer on a raw socket (client errors before a request object exists); answers the body's length, or -1. */
export function socketError(socket: Duplex, code: ErrorCode, message: string): number {
  if (!socket.writable) {
    socket.destroy();
    return -1;
  }
  const body = errorBody(code, message);
  const status = ERRORS[code].status;
  socket.end(
    `HTTP/1.1 ${status} ${statusText(status)}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  return Buffer.byteLength(body);
}

function statusText(status: number): string {
  switch (status) {
    case 400: return 'Bad Request';
    case 408: return 'Request Timeout';
    case 413: return 'Payload Too Large';
    case 414: return 'URI Too Long';
    case 431: return 'Request Header Fields Too Large';
    default: return 'Error';
  }
}

/**
 * A request the parser refused (llhttp's error `code`) is answered on the socket — 431 for a head
 * over 16 KiB, else 400 — and the connection closed; its access-log line knows no method nor target.
 */
export function refuseUnparsed(deps: PipelineDeps, socket: Duplex & { readonly remoteAddress?: string | undefined }, parseCode: string | undefined): void {
  const [code, message]: [ErrorCode, string] =
    parseCode === 'HPE_HEADER_OVERFLOW' ? ['HOMING_ERR_HEADERS_TOO_LARGE', 'request head larger than 16 KiB'] : ['HOMING_ERR_BAD_REQUEST', `malformed request (${parseCode ?? 'parse error'})`];
  const sent = socketError(socket, code, message);
  if (deps.access === undefined) return;
  const c = { method: '-', url: '-', rawHeaders: [], httpMinor: 1, remoteAddress: socket.remoteAddress ?? '', proto: 'http', upgrade: false, arrived: performance.now() } as const;
  logUnrouted(deps, c, undefined, undefined, ERRORS[code].status, code, Math.max(0, sent));
}
