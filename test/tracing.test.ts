/**
 * W3C trace context through homing to real backends: a valid traceparent keeps its trace id and
 * gets homing's span as the member's parent, anything else starts a new trace; tracestate only
 * with a valid traceparent; the trace id in the access log.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import { httpRequest, oneRouteConfig, startBackend, startTestHoming, until, type Backend } from './support/backends.js';

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
