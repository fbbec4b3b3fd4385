/**
 * Spans of sampled requests, exported over OTLP/HTTP (JSON) with the OpenTelemetry SDK. Loaded
 * only when `tracing.otlp` is configured (a dynamic import in app.ts): a config without it never
 * loads these packages. One span per request (its id is the span id homing put in the member's
 * traceparent at the hygiene phase, its parent the client's span), one for the resolution (with
 * `by`), one per upstream attempt and per redirect hop, each the parent the member is told of.
 * Spans are batched and sent in the background; the request never waits for the collector.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, type IdGenerator } from '@opentelemetry/sdk-trace-base';
import type { TracingConfig } from '../config/schema.js';
import type { Exchange } from '../proxy/exchange.js';
import type { RequestSpan, SpanExporter } from '../proxy/spans.js';
import { newSpanId, newTraceId } from '../proxy/trace.js';
import type { Resolution, ResolveResult } from '../routing/strategy.js';
import { VERSION } from '../version.js';

/**
 * Random ids, except for a request's span, whose ids the hygiene phase already chose (they are in
 * the traceparent sent upstream): set just before the synchronous `startSpan` that takes them.
 */
class HomingIds implements IdGenerator {
  nextTrace: string | undefined;
  nextSpan: string | undefined;
  generateTraceId(): string {
    const id = this.nextTrace ?? newTraceId();
    this.nextTrace = undefined;
    return id;
  }
  generateSpanId(): string {
    const id = this.nextSpan ?? newSpanId();
    this.nextSpan = undefined;
    return id;
  }
}

class OtlpRequestSpan implements RequestSpan {
  private readonly ctx;
  private current: Span | undefined;

  constructor(
    private readonly tracer: Tracer,
    private readonly span: Span,
  ) {
    this.ctx = trace.setSpan(ROOT_CONTEXT, span);
  }

  resolved(started: number, r: ResolveResult): void {
    const attributes: Attributes = 'error' in r ? { 'error.type': r.error } : { 'homing.by': r.by, 'homing.pool': r.pool.name, 'homing.member': r.member.id };
    const s = this.tracer.startSpan('resolve', { startTime: started, attributes }, this.ctx);
    if ('error' in r) s.setStatus({ code: SpanStatusCode.ERROR, message: r.message });
    s.end();
  }

  attempt(r: Resolution, attempt: number, hop: number): string {
    this.current?.end();
    const m = r.member;
    this.current = this.tracer.startSpan(
      hop > 0 ? 'redirect' : 'upstream',
      {
        kind: SpanKind.CLIENT,
        attributes: { 'server.address': m.host, 'server.port': m.port, 'homing.member': m.id, 'homing.pool': r.pool.name, 'homing.attempt': attempt, 'homing.hop': hop, 'homing.by': r.by },
      },
      this.ctx,
    );
    return this.current.spanContext().spanId;
  }

  attemptEnd(status: number, error: string | undefined): void {
    const s = this.current;
    if (s === undefined) return;
    this.current = undefined;
    if (status > 0) s.setAttribute('http.response.status_code', status);
    if (error !== undefined) {
      s.setAttribute('error.type', error);
      s.setStatus({ code: SpanStatusCode.ERROR, message: error });
    }
    s.end();
  }

  end(status: number, error: string | undefined, aborted: string | undefined): void {
    this.current?.end();
    this.current = undefined;
    const s = this.span;
    s.setAttribute('http.response.status_code', status);
    if (aborted !== undefined) s.setAttribute('homing.aborted', aborted);
    if (error !== undefined) s.setAttribute('error.type', error);
    if (error !== undefined || status >= 500) s.setStatus({ code: SpanStatusCode.ERROR, message: error });
    s.end();
  }
}

class OtlpExporter implements SpanExporter {
  private readonly ids = new HomingIds();
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;

  constructor(cfg: TracingConfig) {
    const o = cfg.otlp!;
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': o.service, 'service.version': VERSION }),
      idGenerator: this.ids,
      // Which requests are sampled was decided at the hygiene phase (the traceparent's flag).
      sampler: new AlwaysOnSampler(),
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: o.url, headers: o.headers }))],
    });
    this.tracer = this.provider.getTracer('homing', VERSION);
  }

  request(x: Exchange): RequestSpan {
    const h = x.head;
    const parent =
      h.parentId === undefined
        ? ROOT_CONTEXT
        : trace.setSpanContext(ROOT_CONTEXT, { traceId: h.traceId!, spanId: h.parentId, traceFlags: TraceFlags.SAMPLED, isRemote: true });
    if (h.parentId === undefined) this.ids.nextTrace = h.traceId;
    this.ids.nextSpan = h.spanId;
    const span = this.tracer.startSpan(
      h.method,
      {
        kind: SpanKind.SERVER,
        startTime: h.arrived,
        attributes: { 'http.request.method': h.method, 'url.path': h.path, 'client.address': h.client, 'homing.route': x.route.name, 'homing.request_id': h.requestId },
      },
      parent,
    );
    return new OtlpRequestSpan(this.tracer, span);
  }

  close(): Promise<void> {
    return this.provider.shutdown();
  }
}

/** The exporter `tracing.otlp` describes. */
export function createOtlpExporter(cfg: TracingConfig): SpanExporter {
  return new OtlpExporter(cfg);
}
