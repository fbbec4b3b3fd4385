/**
 * The metrics of a box of node:cluster workers: each worker counts its own requests; a scrape of
 * the primary's `/metrics` asks the workers that serve for their registry (as prom-client's JSON)
 * and sums them with prom-client's aggregators (counters and histograms add up, gauges by each
 * metric's `aggregator`).
 *
 * Messages over the cluster IPC channel:
 *
 *   primary → worker  { homing: 'metrics?', id }
 *   worker → primary  { homing: 'metrics', id, metrics }     its registries, as JSON
 *   worker → primary  { homing: 'metrics', id, error }       it could not collect them
 *
 * Only a worker that said it serves is asked. One still starting has counted nothing, and may not
 * listen to its channel yet: a question sent to it would be lost and the scrape would wait for
 * its timeout. A worker that exits while asked is left out (its counts went with it). One that
 * does not answer within `timeout` ms, or answers an error, fails the scrape: a sum that silently
 * missed a live worker would make its counters go backwards.
 */
import type { Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { kind, listenToWorkers, sendToPrimary } from './ipc.js';

interface Ask {
  waiting: Set<Worker>;
  answers: object[];
  /** Settle with the error, or the answers once nobody is waited for. */
  settle(err?: Error): void;
}

/** The primary's side: collects and sums the serving workers' metrics. */
export class MetricsCollector {
  private seq = 0;
  private readonly asks = new Map<number, Ask>();
  /** Stops listening to the workers (set while it listens). */
  private unlisten: (() => void) | undefined;

  constructor(
    /** The workers that serve now. */
    private readonly serving: () => Iterable<Worker>,
    private readonly opts: { timeout?: number } = {},
  ) {}

  /** Listen to the workers' answers. */
  start(): this {
    this.unlisten ??= listenToWorkers(this.onMessage, this.onExit);
    return this;
  }

  close(): void {
    this.unlisten?.();
    this.unlisten = undefined;
    for (const ask of this.asks.values()) ask.settle(new Error('metrics collection stopped'));
  }

  /** The serving workers' metrics, summed, in Prometheus's text format ('' when none serves). */
  async collect(): Promise<string> {
    const workers = [...this.serving()].filter((w) => w.isConnected());
    if (workers.length === 0) return '';
    const id = ++this.seq;
    const answers = await new Promise<object[]>((resolve, reject) => {
      const timer = setTimeout(() => ask.settle(new Error(`a worker did not answer for its metrics within ${this.opts.timeout ?? 5000} ms`)), this.opts.timeout ?? 5000);
      const ask: Ask = {
        waiting: new Set(workers),
        answers: [],
        settle: (err) => {
          if (!this.asks.delete(id)) return;
          clearTimeout(timer);
          if (err) reject(err);
          else resolve(ask.answers);
        },
      };
      this.asks.set(id, ask);
      for (const w of workers) {
        const gone = (): void => this.answered(ask, w);
        try {
          w.send({ homing: 'metrics?', id }, undefined, undefined, (err) => {
            if (err) gone();
          });
        } catch {
          gone();
        }
      }
    });
    return AggregatorRegistry.aggregate(answers).metrics();
  }

  /** `w` is no longer waited for in `ask` (it answered, or it is gone). */
  private answered(ask: Ask, w: Worker): void {
    if (ask.waiting.delete(w) && ask.waiting.size === 0) ask.settle();
  }

  private readonly onMessage = (w: Worker, msg: unknown): void => {
    if (kind(msg) !== 'metrics') return;
    const m = msg as { id?: unknown; metrics?: unknown; error?: unknown };
    const ask = typeof m.id === 'number' ? this.asks.get(m.id) : undefined;
    if (!ask || !ask.waiting.has(w)) return;
    if (typeof m.error === 'string' || !Array.isArray(m.metrics)) return ask.settle(new Error(`worker ${w.process.pid ?? '?'} could not collect its metrics: ${String(m.error)}`));
    for (const registry of m.metrics) if (Array.isArray(registry)) ask.answers.push(registry);
    this.answered(ask, w);
  };

  private readonly onExit = (w: Worker): void => {
    for (const ask of [...this.asks.values()]) this.answered(ask, w);
  };
}

/** A worker's side: answer the primary's questions with `registries`' metrics. */
export function answerMetrics(registries: readonly Registry[], log?: Logger): void {
  process.on('message', (msg: unknown) => {
    if (kind(msg) !== 'metrics?') return;
    const id = (msg as { id?: unknown }).id;
    Promise.all(registries.map((r) => r.getMetricsAsJSON())).then(
      (metrics) => sendToPrimary({ homing: 'metrics', id, metrics }, log),
      (e: unknown) => sendToPrimary({ homing: 'metrics', id, error: e instanceof Error ? e.message : String(e) }, log),
    );
  });
}
