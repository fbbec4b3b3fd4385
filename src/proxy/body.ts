/**
 * Request bodies. Streamed by default; on routes that may have to re-send them (affinity
 * redirects) a body up to `maxReplayBody` is read first, like nginx's request buffering, so a
 * redirect can replay it byte for byte with a correct Content-Length.
 */
import type { IncomingMessage } from 'node:http';
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';

/** Counts body bytes of a streamed (chunked) upload and fails past `limit`. */
export class BodyLimit extends Transform {
  private seen = 0;
  exceeded = false;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      this.exceeded = true;
      cb(new Error('request body too large'));
      return;
    }
    cb(null, chunk);
  }
}

export type CollectedBody =
  | { kind: 'buffer'; body: Buffer }
  /** Larger than the replay cap: the part read so far followed by the rest, streamed. */
  | { kind: 'stream'; body: Readable }
  | { kind: 'too-large' }
  | { kind: 'aborted' };

/**
 * Read `req` up to `replayCap` bytes. Answers a Buffer when the whole body fits, else a stream of
 * what was read plus the rest (not replayable). Over `maxBody` → too-large.
 */
export function collectBody(req: IncomingMessage, replayCap: number, maxBody: number, done: (r: CollectedBody) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (r: CollectedBody): void => {
    if (finished) return;
    finished = true;
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', onError);
    req.off('aborted', onError);
    done(r);
  };
  const onData = (c: Buffer): void => {
    size += c.length;
    if (size > maxBody) {
      req.pause();
      finish({ kind: 'too-large' });
      return;
    }
    chunks.push(c);
    if (size > replayCap) {
      req.pause();
      const pass = new PassThrough();
      for (const b of chunks) pass.write(b);
      const limit = new BodyLimit(maxBody - size);
      finish({ kind: 'stream', body: req.pipe(limit).pipe(pass) });
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
