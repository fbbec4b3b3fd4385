/** Answers homing gives itself: the JSON error body of DESIGN §8. */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ERRORS, errorBody, type ErrorCode } from '../errors.js';

/** Send a JSON error unless headers already went out (then the connection is cut). */
export function sendError(res: ServerResponse, code: ErrorCode, message: string, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
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
}

/** An error answer on a raw socket (client errors before a request object exists). */
export function socketError(socket: Duplex, code: ErrorCode, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(code, message);
  const status = ERRORS[code].status;
  socket.end(
    `HTTP/1.1 ${status} ${statusText(status)}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
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
