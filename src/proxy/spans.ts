/**
 * What the phases tell a span exporter (`tracing.otlp`, src/tracing/otlp.ts, loaded only when
 * configured): a request's span, its resolution, each upstream attempt and redirect hop. Only
 * sampled requests get one; times are performance.now() values.
 */
import type { Resolution, ResolveResult } from '../routing/strategy.js';
import type { Exchange } from './exchange.js';

export interface SpanExporter {
  /** The span of a sampled request: its id is the request head's `spanId`, its parent the client's. */
  request(x: Exchange): RequestSpan;
  /** Send what is buffered, then stop. */
  close(): Promise<void>;
}

export interface RequestSpan {
  /** The resolve phase ran from `started` to now, and answered `r`. */
  resolved(started: number, r: ResolveResult): void;
  /**
   * An upstream attempt to `r` begins (a redirect hop when `hop` > 0); answers the attempt span's
   * id, the member's parent in the traceparent it is sent.
   */
  attempt(r: Resolution, attempt: number, hop: number): string;
  /** The attempt ended: the member answered `status` (0: no answer) or failed with `error`. */
  attemptEnd(status: number, error: string | undefined): void;
  /** The request is over: the client was sent `status`. */
  end(status: number, error: string | undefined, aborted: string | undefined): void;
}
