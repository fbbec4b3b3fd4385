/**
 * A client's request on the fast engine: the head as llhttp parsed it and the body as a stream
 * (`ClientRequest`, what the phases read of node:http's IncomingMessage). Body bytes are pushed
 * by the connection as they are parsed; a full buffer pauses the socket and reading on resumes it
 * (`_read`). The end of a body is pushed only once someone reads it, so a request without a body
 * costs no stream machinery. `Expect: 100-continue` is answered when the body is first read, so a
 * request refused on its head (413) never invites the body.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { ClientRequest } from '../transport.js';

/**
 * What the phases see as the request's socket: the connection itself, whose identity marks it
 * closing (respond.ts) and whose peer address was read once, when it was accepted.
 */
export interface ConnectionView {
  readonly remoteAddress: string | undefined;
}

/** What the request asks of its connection. */
export interface RequestOwner {
  /** Someone reads `req`'s body: the socket may go on (and a 100 Continue be sent). */
  bodyWanted(req: FastRequest): void;
}

/** Header lines node:http keeps only the first of (as IncomingMessage.headers does). */
const SINGLE = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after',
  'server', 'user-agent',
]);

/** Node's header object from raw lines: lower-case names, Set-Cookie a list, Cookie joined by "; ", others by ", ". */
function headerObject(raw: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const v = raw[i + 1]!;
    const prev = out[k];
    if (k === 'set-cookie') {
      if (prev === undefined) out[k] = [v];
      else (prev as string[]).push(v);
    } else if (prev === undefined) out[k] = v;
    else if (!SINGLE.has(k)) out[k] = `${prev as string}${k === 'cookie' ? '; ' : ', '}${v}`;
  }
  return out as IncomingHttpHeaders;
}

export class FastRequest extends Readable implements ClientRequest {
  /** The whole body arrived. */
  complete = false;
  /** Its answer is over before its body: the rest of the body is read and dropped. */
  discard = false;
  /** `Expect: 100-continue` from an HTTP/1.1 client, not yet answered. */
  expectContinue = false;
  /** Someone has read (or piped) the body. */
  wanted = false;
  private parsed: IncomingHttpHeaders | undefined;

  constructor(
    private readonly owner: RequestOwner,
    readonly socket: ConnectionView,
    readonly method: string,
    readonly url: string,
    readonly rawHeaders: string[],
    readonly httpVersionMajor: number,
    readonly httpVersionMinor: number,
  ) {
    super();
  }

  get headers(): IncomingHttpHeaders {
    return (this.parsed ??= headerObject(this.rawHeaders));
  }

  /** The body ended: its end is pushed now if someone reads it, else when someone does. */
  ended(): void {
    this.complete = true;
    if (this.wanted && !this.discard) this.push(null);
  }

  override _read(): void {
    this.wanted = true;
    if (this.complete) this.push(null);
    else this.owner.bodyWanted(this);
  }

  /** The body will never be whole (the client went away, or its framing broke): 'aborted', then destroyed. */
  abort(): void {
    if (this.complete || this.destroyed) return;
    this.emit('aborted');
    // As node:http: an ECONNRESET error, reported only when someone listens for it.
    this.destroy(this.listenerCount('error') > 0 ? Object.assign(new Error('aborted'), { code: 'ECONNRESET' }) : undefined);
  }
}
