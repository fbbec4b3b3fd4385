/**
 * W3C trace context through homing to real backends: a valid traceparent keeps its trace id and
 * gets homing's span as the member's parent, anything else starts a new trace; tracestate only
 * with a valid traceparent; the trace id in the access log. With `tracing.otlp`, spans of sampled
 * requests reach a real OTLP/HTTP receiver (a node:http server decoding the JSON), and a config
 * without it never loads the OpenTelemetry packages.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';
import { deadPort, httpRequest, oneRouteConfig, startBackend, startTestHoming, until, type Backend } from './support/backends.js';
import { freePort } from './support/services.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${PARENT}-01`;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'homing-trace-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function backend(name = 'a', handler?: Parameters<typeof startBackend>[1]): Promise<Backend> {
  const b = await startBackend(name, handler);
  cleanups.push(() => b.close());
  return b;
}

async function homing(members: (number | string)[], top: string, route = '') {
  const h = await startTestHoming(`${oneRouteConfig(members, { route })}${top}\n`);
  let closed = false;
  cleanups.push(() => (closed ? undefined : h.close()));
  return Object.assign(h, {
    stop: async () => {
      closed = true;
      await h.close();
    },
  });
}

/** The traceparent and tracestate lines the member was sent. */
function sent(b: Backend): { traceparent: string[]; tracestate: string[] } {
  const raw = b.last!.rawHeaders;
  const pick = (n: string): string[] => {
    const out: string[] = [];
    for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === n) out.push(raw[i + 1]!);
    return out;
  };
  return { traceparent: pick('traceparent'), tracestate: pick('tracestate') };
}

test('without tracing, traceparent and tracestate pass untouched, and a valid trace id is in the access log', async () => {
  const b = await backend();
  const file = join(tempDir(), 'access.log');
  const h = await homing([b.port], `accessLog: { to: ${file}, fields: [trace, path] }`);
  await httpRequest(`${h.url}/one`, { headers: { traceparent: VALID, tracestate: 'vendor=x' } });
  assert.deepEqual(sent(b), { traceparent: [VALID], tracestate: ['vendor=x'] });
  await httpRequest(`${h.url}/two`, { headers: { traceparent: 'not-a-traceparent' } });
  assert.deepEqual(sent(b).traceparent, ['not-a-traceparent']);
  await until(() => existsSync(file) && readFileSync(file, 'utf8').split('\n').length > 2);
  assert.deepEqual(readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown), [{ trace: TRACE, path: '/one' }, { path: '/two' }]);
});

test('with tracing: a valid traceparent keeps its trace id and flags and gets homing\'s span as parent; tracestate passes', async () => {
  const b = await backend();
  const file = join(tempDir(), 'access.log');
  const h = await homing([b.port], `tracing: { sample: 0 }\naccessLog: { to: ${file}, fields: [trace] }`);
  // (Raw header lists: Node adds no Host to them.)
  assert.equal((await httpRequest(`${h.url}/x`, { headers: ['host', 'a', 'traceparent', VALID, 'tracestate', 'a=1', 'tracestate', 'b=2'] })).status, 200);
  const s = sent(b);
  assert.equal(s.traceparent.length, 1);
  const m = TRACEPARENT.exec(s.traceparent[0]!);
  assert.ok(m, s.traceparent[0]);
  assert.equal(m[1], TRACE);
  assert.notEqual(m[2], PARENT, 'homing is a hop: the member\'s parent is homing\'s span');
  assert.notEqual(m[2], '0000000000000000');
  assert.equal(m[3], '01', 'the incoming sampled flag is kept, whatever the sample rate');
  assert.deepEqual(s.tracestate, ['a=1,b=2']);
  // Unsampled flags are kept too; a later version is continued as version 00.
  await httpRequest(`${h.url}/x`, { headers: { traceparent: `00-${TRACE}-${PARENT}-00` } });
  assert.match(sent(b).traceparent[0]!, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`));
  await httpRequest(`${h.url}/x`, { headers: { traceparent: `cc-${TRACE}-${PARENT}-01-what-the-future-holds` } });
  assert.match(sent(b).traceparent[0]!, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
  await until(() => existsSync(file) && readFileSync(file, 'utf8').split('\n').length > 3);
  for (const l of readFileSync(file, 'utf8').trim().split('\n')) assert.deepEqual(JSON.parse(l), { trace: TRACE });
});

test('with tracing: an absent or invalid traceparent starts a new trace (sampled per config), its tracestate dropped', async () => {
  const b = await backend();
  const sampled = await homing([b.port], 'tracing: { sample: 1 }');
  const seen = new Set<string>();
  const invalid = [
    undefined,
    `00-${TRACE.toUpperCase()}-${PARENT}-01`, // upper-case hex
    `00-${'0'.repeat(32)}-${PARENT}-01`, // all-zero trace id
    `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero parent id
    `ff-${TRACE}-${PARENT}-01`, // version ff
    `00-${TRACE}-${PARENT}-01-extra`, // version 00 with more after it
    `00-${TRACE}-${PARENT}`, // too short
    `00_${TRACE}-${PARENT}-01`, // wrong separator
  ];
  for (const tp of invalid) {
    await httpRequest(`${sampled.url}/x`, { headers: tp === undefined ? { tracestate: 'a=1' } : { traceparent: tp, tracestate: 'a=1' } });
    const s = sent(b);
    assert.equal(s.traceparent.length, 1, String(tp));
    const m = TRACEPARENT.exec(s.traceparent[0]!);
    assert.ok(m, `${tp} → ${s.traceparent[0]}`);
    assert.notEqual(m[1], TRACE);
    assert.notEqual(m[1], '0'.repeat(32));
    assert.equal(m[3], '01');
    assert.deepEqual(s.tracestate, [], 'tracestate goes only with a valid traceparent');
    seen.add(m[1]!);
  }
  assert.equal(seen.size, invalid.length, 'every new trace has its own id');
  // Two traceparent lines are no valid trace context either.
  assert.equal((await httpRequest(`${sampled.url}/two`, { headers: ['host', 'a', 'traceparent', VALID, 'traceparent', VALID] })).status, 200);
  assert.equal(b.last!.url, '/two');
  assert.doesNotMatch(sent(b).traceparent[0]!, new RegExp(TRACE));
  assert.equal(sent(b).traceparent.length, 1);
  const unsampled = await homing([b.port], 'tracing: { sample: 0 }');
  await httpRequest(`${unsampled.url}/x`);
  assert.match(sent(b).traceparent[0]!, /-00$/);
});

test('a websocket upgrade carries homing\'s traceparent too', async () => {
  let seen: IncomingMessage | undefined;
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((r) => wss.once('listening', r));
  wss.on('connection', (_ws, req) => (seen = req));
  cleanups.push(() => new Promise<void>((r) => wss.close(() => r())));
  const h = await homing([(wss.address() as { port: number }).port], 'tracing: {}');
  const ws = new WebSocket(`ws://127.0.0.1:${h.http!.port}/ws`, { headers: { traceparent: VALID } });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.close();
  assert.match(String(seen!.headers.traceparent), new RegExp(`^00-${TRACE}-(?!${PARENT})[0-9a-f]{16}-01$`));
});

// --- OTLP export ------------------------------------------------------------------------------

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number>;
  status?: { code?: number };
}

/** A real OTLP/HTTP receiver: decodes the JSON payloads it is posted. */
async function otlpReceiver(): Promise<{ url: string; spans: OtlpSpan[]; resources: Record<string, string | number>[]; contentTypes: string[] }> {
  const spans: OtlpSpan[] = [];
  const resources: Record<string, string | number>[] = [];
  const contentTypes: string[] = [];
  type KV = { key: string; value: { stringValue?: string; intValue?: string | number; boolValue?: boolean } };
  const attrs = (list: KV[] | undefined): Record<string, string | number> =>
    Object.fromEntries((list ?? []).map((a) => [a.key, a.value.stringValue ?? (a.value.intValue !== undefined ? Number(a.value.intValue) : String(a.value.boolValue))]));
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      contentTypes.push(String(req.headers['content-type']));
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resourceSpans: { resource: { attributes: KV[] }; scopeSpans: { spans: (Omit<OtlpSpan, 'attributes'> & { attributes: KV[] })[] }[] }[];
      };
      for (const rs of body.resourceSpans) {
        resources.push(attrs(rs.resource.attributes));
        for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, attributes: attrs(s.attributes) });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/traces`, spans, resources, contentTypes };
}

test('tracing.otlp: spans of the request, its resolution, each attempt and redirect hop reach an OTLP/HTTP receiver as JSON', async () => {
  const rx = await otlpReceiver();
  const dead = await deadPort();
  const owner: { b?: Backend } = {};
  const redirecting: Parameters<typeof startBackend>[1] = (req, res, _body, me) => {
    if (req.headers['x-user'] !== undefined && me !== owner.b) {
      res.writeHead(200, { 'x-accel-redirect': `/internal_redirect/${owner.b!.id}${req.url}`, 'content-length': '0' });
      return res.end();
    }
    res.end(me.name);
  };
  const a = await backend('a', redirecting);
  const b = await backend('b', redirecting);
  owner.b = b;
  const h = await homing(
    [a.port, b.port, dead],
    `tracing: { otlp: { url: '${rx.url}', service: homing-test } }`,
    'affinity: { key: header:x-user, redirect: {} }, balance: round-robin, retries: 2',
  );
  // Plain requests (no affinity key): round-robin over a, b and the dead member, so one of three meets it and is retried.
  const plain: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await httpRequest(`${h.url}/plain/${i}`, { headers: { traceparent: `00-${TRACE.slice(0, 30)}${i}0-${PARENT}-01` } });
    assert.equal(r.status, 200);
    plain.push(`${TRACE.slice(0, 30)}${i}0`);
  }
  // Keyed requests until one is guessed away from the owner (to a): it is redirected to b, one hop.
  for (let n = 0; ; n++) {
    assert.ok(n < 64, 'no key was guessed to a');
    const before = a.requests;
    assert.equal((await httpRequest(`${h.url}/keyed/${n}`, { headers: { 'x-user': `user-${n}` } })).text, 'b');
    if (a.requests > before) break;
  }
  const tracedByB = b.last!.headers.traceparent as string;
  await h.stop(); // shutting down sends what is batched
  await until(() => rx.spans.length > 0);
  assert.ok(rx.contentTypes.every((c) => c.startsWith('application/json')), rx.contentTypes.join());
  assert.equal(rx.resources[0]!['service.name'], 'homing-test');
  const byTrace = new Map<string, OtlpSpan[]>();
  for (const s of rx.spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);

  // Each plain request: a server span whose parent is the client's span, a resolve span with `by`, attempt spans.
  let retried = 0;
  for (const t of plain) {
    const spans = byTrace.get(t) ?? [];
    const req = spans.find((s) => s.kind === 2);
    assert.ok(req, `no request span for ${t}: ${JSON.stringify(spans)}`);
    assert.equal(req.parentSpanId, PARENT);
    assert.equal(req.name, 'GET');
    assert.equal(req.attributes['homing.route'], 'r');
    assert.equal(req.attributes['http.response.status_code'], 200);
    const resolves = spans.filter((s) => s.name === 'resolve');
    assert.ok(resolves.length >= 1 && resolves.every((s) => s.parentSpanId === req.spanId && s.attributes['homing.by'] === 'balance'));
    const attempts = spans.filter((s) => s.name === 'upstream');
    assert.ok(attempts.every((s) => s.parentSpanId === req.spanId && s.kind === 3));
    if (attempts.length > 1) {
      retried++;
      assert.equal(attempts[0]!.attributes['homing.member'], `127.0.0.1:${dead}`);
      assert.ok(attempts[0]!.attributes['error.type']);
      assert.equal(attempts[0]!.status?.code, 2);
    }
    assert.equal(attempts.at(-1)!.attributes['http.response.status_code'], 200);
  }
  assert.ok(retried >= 1, 'a plain request met the dead member and was retried');

  // The keyed request: its redirect hop is a span, and the owner's parent in its traceparent is that span.
  const m = TRACEPARENT.exec(tracedByB);
  assert.ok(m, tracedByB);
  const spans = byTrace.get(m[1]!) ?? [];
  const hop = spans.find((s) => s.name === 'redirect');
  assert.ok(hop, JSON.stringify(spans));
  assert.equal(hop.spanId, m[2], 'the member\'s parent is the redirect hop\'s span');
  assert.equal(hop.attributes['homing.hop'], 1);
  assert.equal(hop.attributes['homing.member'], b.id);
  const req = spans.find((s) => s.kind === 2)!;
  assert.equal(req.parentSpanId, undefined, 'no incoming traceparent: the request span is the root');
  assert.equal(hop.parentSpanId, req.spanId);
  assert.ok(spans.some((s) => s.name === 'upstream' && s.attributes['homing.member'] === a.id && s.attributes['homing.hop'] === 0));
});

test('tracing.otlp exports sampled requests only', async () => {
  const rx = await otlpReceiver();
  const b = await backend();
  const h = await homing([b.port], `tracing: { sample: 0, otlp: { url: '${rx.url}' } }`);
  await httpRequest(`${h.url}/unsampled`);
  await httpRequest(`${h.url}/sampled`, { headers: { traceparent: VALID } });
  await h.stop();
  await until(() => rx.spans.length > 0);
  assert.deepEqual([...new Set(rx.spans.map((s) => s.traceId))], [TRACE]);
});

test('a config without tracing.otlp never loads the OpenTelemetry packages (the built CLI, with a loader that refuses them)', async () => {
  const dir = tempDir();
  const b = await backend();
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `export async function resolve(specifier, context, next) {\n  if (specifier.startsWith('@opentelemetry/')) throw new Error('refused to load ' + specifier);\n  return next(specifier, context);\n}\n`,
  );
  writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`);
  const run = async (tracing: string): Promise<{ status?: number; stderr: string }> => {
    const port = await freePort();
    const cfg = join(dir, `homing-${port}.yaml`);
    writeFileSync(cfg, `log: { level: warn }\nlisten: { http: 127.0.0.1:${port} }\npools: { p: { members: ['${b.id}'] } }\nroutes: [ { name: r, pool: p } ]\n${tracing}\n`);
    const proc = spawn(process.execPath, ['--import', pathToFileURL(join(dir, 'register.mjs')).href, 'dist/cli/main.js', 'serve', '-c', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    cleanups.push(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    });
    let status: number | undefined;
    await until(async () => {
      if (proc.exitCode !== null) return true;
      status = (await httpRequest(`http://127.0.0.1:${port}/`).catch(() => undefined))?.status;
      return status !== undefined;
    });
    return { status, stderr };
  };
  assert.equal((await run('tracing: { sample: 1 }')).status, 200, 'propagation alone loads nothing');
  const exported = await run(`tracing: { otlp: { url: 'http://127.0.0.1:1/v1/traces' } }`);
  assert.equal(exported.status, undefined);
  assert.match(exported.stderr, /refused to load @opentelemetry\//, 'the loader does refuse them when spans are exported');
});
