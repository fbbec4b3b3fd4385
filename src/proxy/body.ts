/**
 * Request bodies. A body up to a route's buffering size is read whole before a member is asked
 * (like nginx's request buffering): a slow client never holds a member connection, and the body
 * can be re-sent byte for byte, with a correct Content-Length, after a reset or a backend
 * redirect. Larger bodies stream. Either way a client that sends nothing for `clientBody` ms is
 * answered 408 and its connection closed.
 */
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';
import type { ClientRequest } from './transport.js';

/** Counts body bytes of a streamed upload: fails past `limit`, or when no byte came for `idleMs`. */
export class BodyLimit extends Transform {
  private seen: number;
  exceeded = false;
  timedOut = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly limit: number,
    idleMs: number,
    /** Bytes of the body read before this counts (they count towards `limit`). */
    before = 0,
  ) {
    super();
    this.seen = before;
    this.timer = setTimeout(() => {
      // Timers run before sockets are read: after this process was busy (or not scheduled) past
      // the deadline, bytes may be waiting unread. Let them be read, then decide.
      const seen = this.seen;
      setImmediate(() => {
        if (this.destroyed || this.writableFinished) return;
        // A byte came meanwhile, or bytes wait for the member to take them: the client is not
        // the slow one (only time spent waiting for the client counts, like nginx's client_body_timeout).
        if (this.seen !== seen || this.readableLength > 0 || this.writableLength > 0) return void this.timer.refresh();
        this.timedOut = true;
        this.destroy(new Error('request body stalled'));
      });
    }, idleMs);
    this.timer.unref();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.timer.refresh();
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      this.exceeded = true;
      cb(new Error('request body too large'));
      return;
    }
    cb(null, chunk);
  }

  /** Body bytes read so far (those read before included). */
  get received(): number {
    return this.seen;
  }

  override _flush(cb: TransformCallback): void {
    clearTimeout(this.timer);
    cb();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    clearTimeout(this.timer);
    cb(err);
  }
}

export type CollectedBody =
  | { kind: 'buffer'; body: Buffer }
  /** Larger than the cap: the part read so far followed by the rest, streamed. */
  | { kind: 'stream'; body: Readable; limit: BodyLimit }
  | { kind: 'too-large' }
  | { kind: 'timeout' }
  | { kind: 'aborted' };

/**
 * Read `req` up to `cap` bytes. Answers a Buffer when the whole body fits, else a stream of what
 * was read plus the rest (not replayable). Over `maxBody` → too-large; no byte for `idleMs` → timeout.
 */
export function collectBody(req: ClientRequest, cap: number, maxBody: number, idleMs: number, done: (r: CollectedBody) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  // As in BodyLimit: a deadline that fired while bytes waited unread is checked after they are read.
  const timer = setTimeout(() => {
    const seen = size;
    setImmediate(() => {
      if (finished) return;
      if (size !== seen) timer.refresh();
      else finish({ kind: 'timeout' });
    });
  }, idleMs);
  const finish = (r: CollectedBody): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', onError);
    req.off('aborted', onError);
    done(r);
  };
  const onData = (c: Buffer): void => {
    timer.refresh();
    size += c.length;
    if (size > maxBody) {
      req.pause();
      finish({ kind: 'too-large' });
      return;
    }
    chunks.push(c);
    if (size > cap) {
      req.pause();
      const pass = new PassThrough();
      for (const b of chunks) pass.write(b);
      const limit = new BodyLimit(maxBody, idleMs, size);
      finish({ kind: 'stream', body: req.pipe(limit).pipe(pass), limit });
      limit.on('error', (e) => pass.destroy(e));
      req.resume();
    }
  };
  const onEnd = (): void => finish({ kind: 'buffer', body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
  const onError = (): void => finish({ kind: 'aborted' });
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onError);
  req.on('aborted', onError);
}
