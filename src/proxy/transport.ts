/**
 * What the phases use of a client's request and response, whichever engine carries them:
 * `node:http`'s IncomingMessage and ServerResponse (`engine: node`), or the fast engine's own on a
 * raw socket (`engine: fast`, src/proxy/fast/). The phases (proxy.ts, forward.ts, body.ts,
 * respond.ts, upgrade.ts) are typed against these, so the compiler checks that both engines give
 * every member they read; nothing else of either engine's objects may be used there.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

/** The client's request: its head, and its body as a stream. */
export interface ClientRequest extends Readable {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  /** [name, value, name, value…] as received, repeats kept. */
  readonly rawHeaders: string[];
  /** Node's parsed header object (built on first read by the fast engine). */
  readonly headers: IncomingHttpHeaders;
  readonly httpVersionMinor: number;
  /** The whole body arrived. */
  readonly complete: boolean;
  /** The client's connection: its identity marks a closing connection (respond.ts), its address is the peer. */
  readonly socket: { readonly remoteAddress?: string | undefined };
}

/** The client's response: a head, then a body streamed with backpressure ('drain'), then the end. */
export interface ClientResponse {
  readonly req: ClientRequest;
  statusCode: number;
  /** False: this answer closes the connection (`Connection: close`). */
  shouldKeepAlive: boolean;
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  /** Every byte of the answer went to the socket. */
  readonly writableFinished: boolean;
  writeHead(status: number, headers?: string[] | Record<string, string | number | string[]>): this;
  writeEarlyHints(hints: Record<string, string | string[]>): void;
  /** False: the client reads slower than this is written; 'drain' says when to go on. */
  write(chunk: Buffer): boolean;
  end(chunk?: Buffer | string): this;
  /** Cut the connection (an answer that cannot be finished must not look whole). */
  destroy(): this;
  /** 'close': the answer is over (written to the end, or the connection gone); 'drain': see write. */
  on(event: 'close' | 'drain', listener: () => void): this;
}

/** Compiles only when `T` has every member of `U`. */
type Provides<T extends U, U> = T;
/** node:http's objects are what `engine: node` hands the phases. */
export type NodeEngineProvides = [Provides<IncomingMessage, ClientRequest>, Provides<ServerResponse, ClientResponse>];
