/**
 * `GET /api/v1/events`: the dashboard's one data path, as server-sent events (text/event-stream).
 *
 *   event: snapshot   on connect: status (routes, pools, members), hash shares, the history of the
 *                     last 15 minutes (see history.ts) and the latest totals
 *   event: tick       every second: one sample per route and member, totals, status (pools too)
 *   event: pools      at once when a member goes up or down or a pool's members change
 *                     (pools with health and in-flight counts, and the hash shares)
 *
 * Sampling runs while the admin server listens, whether or not anyone watches, so a dashboard
 * opened now shows the last 15 minutes. A client that stops reading (over 1 MiB unsent) is
 * dropped. The stream is behind the admin token like every data endpoint; a browser sends it as a
 * bearer header through fetch (an EventSource cannot send headers, and a token in the URL would
 * end up in logs).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Pool } from '../members/pool.js';
import { History, SAMPLE_INTERVAL_MS, type Tick, type Topology } from './history.js';

/** Unsent bytes past which a slow client is dropped. */
const MAX_UNSENT = 1024 * 1024;

export interface EventSourceDeps {
  registry: Registry;
  pools: () => Iterable<Pool>;
  routes: () => readonly { name: string; pools: readonly Pool[] }[];
  /** The same JSON as `GET /status`. */
  status: () => unknown;
  /** The same JSON as `GET /api/v1/pools`. */
  poolsJson: () => unknown;
  /** Hash routes' key shares: route → member → share. */
  shares: () => Record<string, Record<string, number>>;
  log: Logger;
}

export class AdminEvents {
  readonly history = new History();
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;
  private last: Tick | undefined;
  private sampling = false;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(private readonly deps: EventSourceDeps) {}

  /** Sample now and every second; tell clients about pool changes at once. */
  start(): void {
    if (this.timer) return;
    for (const p of this.deps.pools()) this.unsubscribe.push(p.onChange(() => this.broadcast('pools', this.poolsEvent())));
    void this.sample();
    this.timer = setInterval(() => void this.sample(), SAMPLE_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const u of this.unsubscribe.splice(0)) u();
    for (const c of this.clients) c.destroy();
    this.clients.clear();
  }

  /** Serve one event stream. */
  serve(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // Proxies in front of the admin API must pass events on as they come.
      'x-accel-buffering': 'no',
    });
    res.socket?.setNoDelay(true);
    this.clients.add(res);
    const drop = (): void => void this.clients.delete(res);
    req.on('close', drop);
    res.on('close', drop);
    this.send(res, 'snapshot', { status: this.deps.status(), shares: this.deps.shares(), history: this.history.toJSON(), last: this.last ?? null });
  }

  private poolsEvent(): unknown {
    return { pools: this.deps.poolsJson(), shares: this.deps.shares() };
  }

  private topology(): Topology {
    const members = new Set<string>();
    for (const p of this.deps.pools()) for (const m of p.members.members) members.add(m.id);
    const routes = this.deps.routes().map((r) => ({ name: r.name, members: [...new Set(r.pools.flatMap((p) => p.members.members.map((m) => m.id)))] }));
    return { routes, members };
  }

  private async sample(): Promise<void> {
    if (this.sampling) return; // a slow read (workers) is not stacked
    this.sampling = true;
    try {
      const text = await this.deps.registry.metrics();
      if (!this.timer) return;
      const tick = this.history.add(Date.now(), text, this.topology());
      this.last = tick;
      if (this.clients.size) this.broadcast('tick', { ...tick, status: this.deps.status() });
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'dashboard sample failed');
    } finally {
      this.sampling = false;
    }
  }

  private broadcast(event: string, data: unknown): void {
    if (this.clients.size === 0) return;
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const c of this.clients) this.write(c, frame);
  }

  private send(res: ServerResponse, event: string, data: unknown): void {
    this.write(res, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private write(res: ServerResponse, frame: string): void {
    if (res.writableLength > MAX_UNSENT) {
      this.clients.delete(res);
      res.destroy();
      return;
    }
    res.write(frame);
  }
}
