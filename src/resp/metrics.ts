/**
 * Prometheus metrics of the RESP router's memory bounds, on a prom-client Registry
 * (`Metrics.registry`). They read the servers' own counters when scraped, so serving a command
 * costs nothing more than the additions the server makes anyway.
 *
 * In a node:cluster each worker runs its own RESP server with its own bound; the primary sums the
 * workers' values.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { RespServer } from './server.js';

/** Why a client was closed for memory; each reason is reported, 0 included, so rates start at once. */
const REASONS = {
  /** All clients together passed maxTotalBuffer; the ones holding the most were closed. */
  total_buffer: (s: RespServer) => s.stats.evictedClients,
  /** A request passed maxQueryBuffer (or the bulk or line length limit). */
  query_buffer: (s: RespServer) => s.stats.queryLimitCloses,
  /** Unsent replies passed maxOutputBuffer. */
  output_buffer: (s: RespServer) => s.stats.outputLimitCloses,
} as const;

export class RespMetrics {
  private readonly servers = new Set<RespServer>();

  /** One RespMetrics per registry (a second would register the same names twice). */
  static of(registry: Registry): RespMetrics {
    let m = byRegistry.get(registry);
    if (!m) byRegistry.set(registry, (m = new RespMetrics(registry)));
    return m;
  }

  private constructor(registry: Registry) {
    const registers = [registry];
    const servers = this.servers;
    new Gauge({
      name: 'homing_resp_buffered_bytes',
      help: "Memory holding RESP clients' unparsed input and unsent output (bounded by resp.maxTotalBuffer per process).",
      registers,
      collect() {
        let n = 0;
        for (const s of servers) n += s.buffered;
        this.set(n);
      },
    });
    new Counter({
      name: 'homing_resp_memory_closes_total',
      help: 'RESP clients closed for memory, by reason: total_buffer (all clients over maxTotalBuffer, the largest holders closed), query_buffer (a request over maxQueryBuffer), output_buffer (unread replies over maxOutputBuffer).',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, count] of Object.entries(REASONS)) {
          let n = 0;
          for (const s of servers) n += count(s);
          this.inc({ reason }, n);
        }
      },
    });
  }

  /** Report `server` until the returned function is called (when it closes). */
  track(server: RespServer): () => void {
    this.servers.add(server);
    return () => void this.servers.delete(server);
  }
}

const byRegistry = new WeakMap<Registry, RespMetrics>();
