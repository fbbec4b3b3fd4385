/**
 * What the box's IPC channels (pools, config, metrics) share: a message's kind, a worker's send to
 * the primary, and the primary's listening to its workers.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';

/** The primary hears its workers' messages and exits until the function returned is called. */
export function listenToWorkers(onMessage: (w: Worker, msg: unknown) => void, onExit: (w: Worker) => void): () => void {
  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  return () => {
    cluster.off('message', onMessage);
    cluster.off('exit', onExit);
  };
}

/** The `homing` field that names a message's kind (undefined for anything else). */
export function kind(msg: unknown): unknown {
  return typeof msg === 'object' && msg !== null ? (msg as { homing?: unknown }).homing : undefined;
}

/**
 * A worker sends `msg` to the cluster primary. A failure (no channel, or one that closed) is
 * logged at debug level and handed to `onError`; it never throws.
 */
export function sendToPrimary(msg: object, log: Logger | undefined, onError?: (err: Error) => void): void {
  const failed = (e: unknown): void => {
    log?.debug({ err: e instanceof Error ? e.message : String(e) }, 'message not sent to the cluster primary');
    onError?.(e instanceof Error ? e : new Error(String(e)));
  };
  if (!process.connected || !process.send) return failed(new Error('IPC channel closed'));
  try {
    process.send(msg, undefined, undefined, (err) => {
      if (err) failed(err);
    });
  } catch (e) {
    failed(e);
  }
}
