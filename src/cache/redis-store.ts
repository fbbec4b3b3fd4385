/**
 * The shared tier of the response store (`cache.store: redis`): every stored answer is also
 * written to Redis, and a local miss reads Redis before the backend is asked, so instances share
 * what any of them stored. The process's memory store stays in front as a near cache.
 *
 * Keys (under `shared.prefix`):
 * - `cache:e:<variant>` — one answer: a 4-byte length, its head as JSON (status, headers, policy,
 *   vary, tags…), then the body bytes; expires when the answer is no use any more (`keepFor`);
 * - `cache:r:<resource>` — a hash: `url`, `v:<names>` → each Vary name list seen, `k:<variant>` →
 *   each stored variant (what a purge by URL deletes);
 * - `cache:t:<tag>` — a set of variants (what a purge by tag deletes).
 *
 * Redis is a tier, never a dependency: every read is bounded by the shared command timeout, and
 * Redis down means each instance has its own memory store only.
 */
import { Cluster } from 'ioredis';
import type { Client, SharedRedis } from '../state/redis.js';
import type { StoredResponse } from './store.js';

/** An answer read back from Redis, its policy not yet bound to a clock. */
export type RemoteEntry = Omit<StoredResponse, 'policy'> & { policy: object };

type Head = Omit<RemoteEntry, 'body' | 'size'>;

function encode(e: StoredResponse): Buffer {
  const head: Head = { key: e.key, primary: e.primary, url: e.url, vary: e.vary, status: e.status, headers: e.headers, cookies: e.cookies, policy: e.policy.toObject(), tags: e.tags, principal: e.principal };
  const json = Buffer.from(JSON.stringify(head));
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([len, json, e.body]);
}

function decode(b: Buffer): RemoteEntry | undefined {
  try {
    const n = b.readUInt32BE(0);
    const head = JSON.parse(b.subarray(4, 4 + n).toString()) as Head;
    if (typeof head.key !== 'string' || !Array.isArray(head.headers) || typeof head.policy !== 'object') return undefined;
    const body = b.subarray(4 + n);
    return { ...head, body, size: b.length };
  } catch {
    return undefined;
  }
}

/** The masters to scan: every master of a cluster, or the one server. */
function scanTargets(c: Client): Client[] {
  return c instanceof Cluster ? (c.nodes('master') as Client[]) : [c];
}

export class RedisResponseStore {
  private readonly p: string;

  constructor(
    private readonly redis: SharedRedis,
    private readonly timeout: number,
  ) {
    this.p = `${redis.prefix}cache:`;
  }

  /**
   * The stored answer for a resource whose variant `keyOf` computes for each Vary name list the
   * resource has (undefined: this request cannot select one), or undefined.
   */
  async read(primary: string, keyOf: (names: readonly string[]) => string | undefined): Promise<RemoteEntry | undefined> {
    const rec = await this.redis.run('cache read', this.timeout, (c) => c.hgetall(`${this.p}r:${primary}`));
    if (rec === undefined) return undefined;
    for (const f in rec) {
      if (!f.startsWith('v:')) continue;
      let names: unknown;
      try {
        names = JSON.parse(rec[f]!);
      } catch {
        continue;
      }
      if (!Array.isArray(names)) continue;
      const key = keyOf(names as string[]);
      if (key === undefined || rec[`k:${key}`] === undefined) continue;
      const b = await this.redis.run('cache read', this.timeout, (c) => c.getBuffer(`${this.p}e:${key}`));
      const e = b ? decode(b) : undefined;
      if (e !== undefined) return e;
    }
    return undefined;
  }

  /**
   * Write an answer through (fire and forget), to expire after `ttlMs`. The indexes (its resource,
   * its tags) are written before the answer itself: whoever can read the answer can also find it
   * to purge it, so a purge that runs once the answer is readable never leaves it behind.
   */
  write(e: StoredResponse, ttlMs: number): void {
    const ttl = Math.max(1000, Math.ceil(ttlMs));
    const p = this.p;
    void this.redis.run('cache write', this.timeout, async (c) => {
      const r = `${p}r:${e.primary}`;
      await c.hset(r, 'url', e.url, `v:${e.vary.join(',')}`, JSON.stringify(e.vary), `k:${e.key}`, '1');
      // The resource lives as long as its longest-lived variant.
      const left = await c.pttl(r);
      if (left < ttl) await c.pexpire(r, ttl);
      for (const t of e.tags) {
        await c.sadd(`${p}t:${t}`, e.key);
        await c.pexpire(`${p}t:${t}`, Math.max(ttl, 86_400_000));
      }
      await c.set(`${p}e:${e.key}`, encode(e), 'PX', ttl);
    });
  }

  /** One stored answer (superseded). */
  remove(e: StoredResponse): void {
    const p = this.p;
    void this.redis.run('cache purge', this.timeout, async (c) => {
      await c.del(`${p}e:${e.key}`);
      await c.hdel(`${p}r:${e.primary}`, `k:${e.key}`);
    });
  }

  /** Every variant of a resource. */
  async purgeResource(primary: string): Promise<void> {
    const p = this.p;
    await this.redis.run('cache purge', this.timeout, async (c) => {
      const r = `${p}r:${primary}`;
      const rec = await c.hgetall(r);
      for (const f in rec) if (f.startsWith('k:')) await c.del(`${p}e:${f.slice(2)}`);
      await c.del(r);
    });
  }

  async purgeTag(tag: string): Promise<void> {
    const p = this.p;
    await this.redis.run('cache purge', this.timeout, async (c) => {
      const keys = await c.smembers(`${p}t:${tag}`);
      for (const k of keys) await c.del(`${p}e:${k}`);
      await c.del(`${p}t:${tag}`);
    });
  }

  /** Resources whose URL starts with `prefix` (a scan: an operator's action, not a request's). */
  async purgePrefix(prefix: string): Promise<void> {
    const p = this.p;
    await this.scan(`${p}r:*`, async (c, key) => {
      const url = await c.hget(key, 'url');
      if (url !== null && url.startsWith(prefix)) await this.purgeResource(key.slice(p.length + 2));
    });
  }

  /** Everything the cache holds in Redis. */
  async clear(): Promise<void> {
    await this.scan(`${this.p}*`, (c, key) => c.del(key).then(() => undefined));
  }

  private async scan(match: string, each: (c: Client, key: string) => Promise<void>): Promise<void> {
    await this.redis.run('cache purge', Math.max(this.timeout, 30_000), async (c) => {
      for (const node of scanTargets(c)) {
        let cursor = '0';
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', match, 'COUNT', 500);
          cursor = next;
          for (const k of keys) await each(c, k);
        } while (cursor !== '0');
      }
    });
  }
}
