/**
 * Node's own HTTP/1.1 parser for the fast engine: llhttp through the `HTTPParser` binding that
 * `node:http` drives (exposed by `_http_common`), so the fast engine refuses exactly what
 * `node:http` refuses. Rules: strict (no lenient flag, never insecureHTTPParser), heads up to
 * homing's 16 KiB (`MAX_HEADER_SIZE`), one parser per connection, taken from and given back to a
 * free list. Callbacks are slots on the parser (`kOn…`), called with the parser as `this`; the
 * owner (a client or member connection) hangs on the parser.
 *
 * As node:http's server does, a parser may consume its socket: reads then go from libuv straight
 * into llhttp, with no Buffer, stream or 'data' event per read, and `execute` (the kOnExecute
 * callback) reports each read's outcome. A connection that must stop reading (a held request, a
 * slow consumer) leaves that mode for good: its bytes then come through 'data' events and are
 * given to `execute` by the connection.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { MAX_HEADER_SIZE } from '../headers.js';

/** What `execute` answers for bytes llhttp refuses (or a pause). */
export interface ParseError extends Error {
  code: string;
  reason: string;
  bytesParsed: number;
}

export interface HttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  /** Bytes parsed, or why it stopped (a `ParseError`, `HPE_PAUSED` included). */
  execute(data: Buffer): number | ParseError;
  /** The connection ended: completes a body read until close, or says the message was cut. */
  finish(): ParseError | undefined;
  resume(): void;
  /** Read the socket's handle directly (libuv → llhttp). */
  consume(handle: unknown): void;
  unconsume(): void;
  /** A copy of the read being parsed (in consuming mode, inside a callback or `execute`). */
  getCurrentBuffer(): Buffer;
  remove(): void;
  free(): void;
  close(): void;
  [slot: number]: unknown;
  owner: unknown;
  /** REQUEST or RESPONSE, for the free list. */
  type: number;
  /** It reads its socket's handle itself. */
  consuming: boolean;
}

interface Binding {
  new (): HttpParser;
  REQUEST: number;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
  kLenientNone: number;
}

const common = createRequire(import.meta.url)('_http_common') as { HTTPParser: Binding; methods: string[] };
const Parser = common.HTTPParser;

export const REQUEST = Parser.REQUEST;
export const RESPONSE = Parser.RESPONSE;
/** Request methods by llhttp's index (the headers-complete callback's `method`). */
export const METHODS: readonly string[] = common.methods;

/** What a headers-complete callback answers llhttp: go on, no body follows (HEAD), or stop here (HPE_PAUSED). */
export const PROCEED = 0;
export const SKIP_BODY = 1;
export const PAUSE = 21;

/**
 * (versionMajor, versionMinor, headers, method, url, statusCode, statusMessage, upgrade, keepAlive).
 * `headers` and `url` are undefined when they came in pieces through `kOnHeaders` (over 32 lines).
 */
export type HeadersComplete = (
  this: HttpParser,
  major: number,
  minor: number,
  headers: string[] | undefined,
  method: number,
  url: string | undefined,
  status: number,
  statusMessage: string,
  upgrade: boolean,
  keepAlive: boolean,
) => number;

/** A parser's callbacks (`this` is the parser; `this.owner` the connection). */
export interface ParserCallbacks {
  messageBegin: (this: HttpParser) => void;
  headers: (this: HttpParser, headers: string[], url: string) => void;
  headersComplete: HeadersComplete;
  body: (this: HttpParser, chunk: Buffer) => void;
  messageComplete: (this: HttpParser) => void;
  /** In consuming mode: a read was parsed (bytes parsed, or why it stopped). */
  execute: (this: HttpParser, result: number | ParseError) => void;
}

/** Free parsers by type (a parser keeps its type's callbacks). */
const free = new Map<number, HttpParser[]>([
  [REQUEST, []],
  [RESPONSE, []],
]);
const FREE_MAX = 1000;
const RESOURCE = {};

/** A parser of `type` (REQUEST or RESPONSE) with `cb`, ready for a new connection; `owner` is `this.owner` in the callbacks. */
export function takeParser(type: number, cb: ParserCallbacks, owner: unknown): HttpParser {
  let p = free.get(type)!.pop();
  if (p === undefined) {
    p = new Parser();
    p[Parser.kOnMessageBegin] = cb.messageBegin;
    p[Parser.kOnHeaders] = cb.headers;
    p[Parser.kOnHeadersComplete] = cb.headersComplete;
    p[Parser.kOnBody] = cb.body;
    p[Parser.kOnMessageComplete] = cb.messageComplete;
    p[Parser.kOnExecute] = cb.execute;
    p.type = type;
    p.consuming = false;
  }
  p.initialize(type, RESOURCE, MAX_HEADER_SIZE, Parser.kLenientNone);
  p.owner = owner;
  return p;
}

/** Let `p` read `socket` itself (when the socket is a libuv stream); answers whether it does. */
export function consume(p: HttpParser, socket: Socket): boolean {
  const handle = (socket as unknown as { _handle?: { isStreamBase?: boolean } })._handle;
  if (handle?.isStreamBase !== true) return false;
  p.consume(handle);
  p.consuming = true;
  return true;
}

/** Back to 'data' events: the socket's reads go to its stream again. */
export function unconsume(p: HttpParser): void {
  if (!p.consuming) return;
  p.consuming = false;
  p.unconsume();
}

/** The connection is gone: the parser goes back to the free list (or is closed once the stack has unwound). */
export function giveBackParser(p: HttpParser): void {
  unconsume(p);
  p.owner = undefined;
  p.remove();
  const list = free.get(p.type)!;
  if (list.length < FREE_MAX) {
    p.free();
    list.push(p);
  } else setImmediate(() => p.close());
}
