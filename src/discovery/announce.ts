/**
 * `announce: { etcd: { endpoints, prefix, ttl }, address? }`: this homing instance registers itself
 * in etcd, so whatever discovers homing instances (another homing's etcd discovery, a deploy
 * script) finds it. The key is `<prefix><host:port>`, its value `{"address": "host:port"}` (the
 * form etcd discovery reads), held by a lease of `ttl` that the client keeps alive.
 *
 * - `stop` revokes the lease, which removes the key at once; a process that dies without stopping
 *   leaves it to expire after `ttl`.
 * - When the lease is lost (etcd was away longer than it lasts, or came back without its data),
 *   a new lease is granted and the key written again, with back-off while etcd is still away.
 *   Failures are logged once until the announcement is back.
 */
import type { Logger } from 'pino';
import type { Etcd3, Lease } from 'etcd3';
import { formatHostPort, type HostPort } from '../config/units.js';
import { createEtcdClient, type EtcdConnection } from './etcd-client.js';

export interface EtcdAnnouncerOptions extends EtcdConnection {
  prefix: string;
  /** Lease time to live in ms; etcd counts whole seconds (rounded up, at least 1s). */
  ttlMs: number;
  /** The address announced (and the key's last part). */
  address: HostPort;
  log: Logger;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;
/** Longest wait for the revocation on stop (etcd may be away; the lease then expires). */
const REVOKE_TIMEOUT_MS = 2000;

export class EtcdAnnouncer {
  readonly key: string;
  readonly value: string;
  private client: Etcd3 | undefined;
  private lease: Lease | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_MIN_MS;
  private lastError: string | undefined;
  private stopped = false;

  constructor(private readonly opts: EtcdAnnouncerOptions) {
    const address = formatHostPort(opts.address.host, opts.address.port);
    this.key = `${opts.prefix}${address}`;
    this.value = JSON.stringify({ address });
  }

  private get ttlSeconds(): number {
    return Math.max(1, Math.ceil(this.opts.ttlMs / 1000));
  }

  /**
   * Resolves after the first attempt to register, whether it worked or not (serving does not wait
   * for etcd; a failed attempt is logged and tried again). Rejects only when the client cannot be
   * made (a TLS file that cannot be read).
   */
  async start(): Promise<void> {
    this.client = await createEtcdClient(this.opts);
    await this.register();
  }

  private async register(): Promise<void> {
    if (this.stopped) return;
    const lease = this.client!.lease(this.ttlSeconds);
    this.lease = lease;
    lease.on('lost', (err: Error) => this.lost(lease, err));
    try {
      await lease.put(this.key).value(this.value);
    } catch (e) {
      this.lost(lease, e as Error);
      return;
    }
    if (lease !== this.lease) return;
    this.retryMs = RETRY_MIN_MS;
    this.lastError = undefined;
    this.opts.log.info({ key: this.key, ttl: this.ttlSeconds }, 'announced in etcd');
  }

  /** The lease is gone or could not be had: a new one after a pause. */
  private lost(lease: Lease, err: Error): void {
    if (lease !== this.lease || this.stopped) return;
    this.lease = undefined;
    // Stop its keep-alives; it is not revoked, since the key may already be written again under
    // the next lease by the time the revocation arrives.
    lease.release();
    if (err.message !== this.lastError) {
      this.lastError = err.message;
      this.opts.log.warn({ key: this.key, err: err.message }, 'etcd announcement lost; registering again');
    }
    this.timer = setTimeout(() => void this.register(), this.retryMs);
    this.timer.unref();
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  /** Remove the announcement (revoke the lease) and close the client. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    const lease = this.lease;
    this.lease = undefined;
    if (lease) {
      await lease.revoke({ deadline: Date.now() + REVOKE_TIMEOUT_MS }).catch((e: Error) => {
        this.opts.log.warn({ key: this.key, err: e.message }, 'could not withdraw the etcd announcement; it expires with its lease');
      });
    }
    this.client?.close();
  }
}
