/**
 * `discovery: { http: { url, interval } }`: a JSON member list (`["host:port", …]`,
 * `[{ address, weight }, …]` or `{ members: [...] }`) fetched every `interval`. A failed or bad
 * answer keeps the last good list. The request closes its connection (`reset`): one poll every
 * few seconds gains nothing from keep-alive, and an idle socket would hold the process open.
 */
import { request } from 'undici';
import type { MemberSpec } from '../members/pool.js';
import { parseMemberList, ReloadingSource } from './source.js';

export interface HttpSourceOptions {
  /** Poll period in ms. */
  intervalMs: number;
  /** Whole-request deadline in ms. Default min(interval, 5000). */
  timeoutMs?: number;
  /** Largest answer accepted, in bytes. Default 8 MiB. */
  maxBytes?: number;
}

export class HttpSource extends ReloadingSource {
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly inflight = new Set<AbortController>();

  constructor(
    readonly url: string,
    opts: HttpSourceOptions,
  ) {
    if (!(opts.intervalMs > 0)) throw new Error(`HttpSource: intervalMs must be > 0, got ${opts.intervalMs}`);
    super(opts.intervalMs);
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`discovery url ${url}: only http and https are supported`);
    this.timeoutMs = opts.timeoutMs ?? Math.min(opts.intervalMs, 5000);
    this.maxBytes = opts.maxBytes ?? 8 * 1024 * 1024;
  }

  protected async load(): Promise<MemberSpec[]> {
    const where = `discovery url ${this.url}`;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Error(`timed out after ${this.timeoutMs}ms`)), this.timeoutMs);
    this.inflight.add(ac);
    let text: string;
    try {
      const res = await request(this.url, {
        method: 'GET',
        headers: { accept: 'application/json', 'user-agent': 'homing-discovery' },
        signal: ac.signal,
        reset: true,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > this.maxBytes) {
          res.body.destroy();
          throw new Error(`answer larger than ${this.maxBytes} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      if (res.statusCode < 200 || res.statusCode > 299) throw new Error(`HTTP ${res.statusCode}`);
      text = Buffer.concat(chunks).toString('utf8');
    } catch (e) {
      const reason = ac.signal.aborted && ac.signal.reason instanceof Error ? ac.signal.reason.message : (e as Error).message;
      throw new Error(`${where}: ${reason}`, { cause: e });
    } finally {
      clearTimeout(timer);
      this.inflight.delete(ac);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new Error(`${where}: invalid JSON: ${(e as Error).message}`, { cause: e });
    }
    return parseMemberList(raw, where);
  }

  protected override async beforeStop(): Promise<void> {
    for (const ac of this.inflight) ac.abort(new Error('stopped'));
  }
}
