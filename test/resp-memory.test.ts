/**
 * The RESP router's memory bounds over real TCP sockets: the memory held for all clients
 * (unparsed input and unsent output) stays under resp.maxTotalBuffer by closing the clients
 * holding the most, one request may not pass resp.maxQueryBuffer, well-behaved clients are served
 * throughout, and /metrics reports the bytes held and the closes by reason.
 */
import { strict as assert } from 'node:assert';
import { after, describe, it } from 'node:test';
import { request } from 'undici';
import type { RespBackend } from '../src/resp/backend.js';
import { startRespServer } from '../src/resp/server.js';
import { startBackend, startTestHoming, until } from './support/backends.js';
import { RespTestConnection } from './support/services.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function homingWith(respKeys: string, withAdmin = true): Promise<Awaited<ReturnType<typeof startTestHoming>> & { member: string }> {
  const b = await startBackend('only');
  cleanups.push(() => b.close());
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
${withAdmin ? 'admin: 127.0.0.1:0' : ''}
resp: { address: 127.0.0.1:0, route: r, ${respKeys} }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: r, pool: p, hash: { key: path } } ]
`);
  cleanups.push(() => h.close());
  return Object.assign(h, { member: b.id });
}

/** The value of a sample in a Prometheus text exposition, or undefined when absent. */
function sample(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `)) return Number(line.slice(name.length + 1));
  }
  return undefined;
}

async function scrape(adminUrl: string): Promise<string> {
  return (await request(`${adminUrl}/metrics`)).body.text();
}

/** `qbuf` of each client CLIENT LIST shows, by the client's port. */
async function queryBuffers(watcher: RespTestConnection): Promise<Map<number, number>> {
  const list = (await watcher.call('CLIENT', 'LIST')) as string;
  const out = new Map<number, number>();
  for (const line of list.split('\n')) {
    const m = /addr=[^ ]*:(\d+) .*qbuf=(\d+)/.exec(line);
    if (m) out.set(Number(m[1]), Number(m[2]));
  }
  return out;
}

describe('RESP memory: the total bound (resp.maxTotalBuffer)', () => {
  it('many clients each holding a half-sent 512 KiB bulk: the total stays bounded, the largest holders are closed, others are served', async () => {
    const bound = 4 * MiB;
    const h = await homingWith(`maxTotalBuffer: 4MiB, maxQueryBuffer: 1MiB`);
    const resp = h.resp!;
    const port = resp.address().port;

    const idle = await RespTestConnection.connect(port);
    assert.equal(await idle.call('GET', '/before'), h.member);
    const watcher = await RespTestConnection.connect(port);

    // Each offender announces a 512 KiB key and sends half of it: 40 × 256 KiB is 10 MiB of input.
    const n = 40;
    const half = Buffer.alloc(256 * KiB, 0x61);
    const offenders = await Promise.all(Array.from({ length: n }, () => RespTestConnection.connect(port)));
    let peak = 0;
    await Promise.all(offenders.map((c) => c.write(Buffer.concat([Buffer.from(`*2\r\n$3\r\nGET\r\n$${512 * KiB}\r\n`), half]))));
    // Until every offender is either closed or has all of its half-bulk read by the server.
    await until(async () => {
      const held = resp.buffered;
      peak = Math.max(peak, held);
      assert.ok(held <= bound, `held ${held} > ${bound}`);
      const qbuf = await queryBuffers(watcher);
      return offenders.every((c) => c.closed || qbuf.get(c.socket.localPort!) === half.length);
    }, 10_000, 5);

    const closed = offenders.filter((c) => c.closed).length;
    const open = n - closed;
    assert.ok(closed > 0, 'offenders were closed');
    assert.ok(open > 0, 'not every offender was closed');
    assert.equal(resp.stats.evictedClients, closed);
    const held = resp.buffered;
    assert.ok(held <= bound, `held ${held}`);
    assert.ok(held >= open * half.length, `held ${held} for ${open} open offenders`);
    assert.ok(peak > bound / 2, `peak ${peak}: the bound was approached`);

    // Well-behaved clients: the idle one and a fresh one are answered.
    assert.equal(await idle.call('GET', '/after'), h.member);
    assert.ok(!idle.closed);
    const fresh = await RespTestConnection.connect(port);
    assert.equal(await fresh.call('GET', '/fresh'), h.member);

    const text = await scrape(h.adminUrl);
    assert.equal(sample(text, 'homing_resp_memory_closes_total{reason="total_buffer"}'), closed);
    assert.equal(sample(text, 'homing_resp_memory_closes_total{reason="query_buffer"}'), 0);
    const gauge = sample(text, 'homing_resp_buffered_bytes');
    assert.ok(gauge !== undefined && gauge >= open * half.length && gauge <= bound, `gauge ${gauge}`);
    const info = (await watcher.call('INFO', 'stats')) as string;
    assert.match(info, new RegExp(`evicted_clients:${closed}\r\n`));

    // A survivor finishes its key and is answered (alone: finishing all at once would pass the
    // bound again as their parsers grow); then nothing is held.
    const [survivor, ...rest] = offenders.filter((c) => !c.closed);
    for (const c of rest) c.close();
    await survivor!.write(Buffer.concat([half, Buffer.from('\r\n')]));
    assert.equal(await survivor!.reply(), h.member);
    await until(() => resp.buffered === 0);
    for (const c of [idle, watcher, fresh, ...offenders]) c.close();
  });

  it('counts unsent output too: clients that never read their replies are closed once all together pass the bound', async () => {
    const backend: RespBackend = { routes: ['r'], lookup: () => '10.0.0.1:80', members: () => [] };
    // Once the kernel's buffers are full, each client's unsent output stops growing at about one
    // flush (64 KiB) past the socket's high-water mark: under its own bound (1 MiB), but 8 such
    // clients pass the total (192 KiB).
    const bound = 192 * KiB;
    const srv = await startRespServer(
      { host: '127.0.0.1', port: 0, maxClients: 100, idleTimeout: 0, maxPipeline: 1024, maxOutputBuffer: MiB, maxTotalBuffer: bound, limits: { maxQueryBuffer: 16 * KiB } },
      backend,
    );
    cleanups.push(() => srv.close());
    const port = srv.address().port;
    const idle = await RespTestConnection.connect(port);
    assert.equal(await idle.call('PING'), 'PONG');
    const readers = await Promise.all(Array.from({ length: 8 }, () => RespTestConnection.connect(port)));
    for (const c of readers) c.socket.pause(); // never read
    // COMMAND's reply is a few KiB: small requests, large answers that pile up unsent.
    const burst = Buffer.from('COMMAND\r\n'.repeat(200));
    await until(() => {
      const held = srv.buffered;
      assert.ok(held <= bound, `held ${held}`);
      const open = readers.filter((c) => !c.closed);
      // Keep each writer's own queue short: the server stops reading a client it cannot answer.
      for (const c of open) if (c.socket.writableLength < 64 * KiB) c.socket.write(burst);
      return open.length < readers.length;
    }, 20_000, 2);
    assert.ok(srv.stats.evictedClients >= 1);
    assert.equal(srv.stats.outputLimitCloses, 0, 'no client reached its own output bound');
    assert.ok(srv.buffered <= bound);
    assert.equal(await idle.call('PING'), 'PONG');
    for (const c of [idle, ...readers]) c.close();
  });

  it('validates the bound against the per-client one and names it', async () => {
    const backend: RespBackend = { routes: ['r'], lookup: () => null, members: () => [] };
    const base = { host: '127.0.0.1', port: 0, maxClients: 10, idleTimeout: 0, maxPipeline: 16 };
    await assert.rejects(startRespServer({ ...base, maxTotalBuffer: 100 }, backend), /maxTotalBuffer/);
    await assert.rejects(startRespServer({ ...base, maxTotalBuffer: 3 * MiB, limits: { maxQueryBuffer: 2 * MiB } }, backend), /maxTotalBuffer .* twice maxQueryBuffer/);
  });
});

describe('RESP memory: the per-client bound (resp.maxQueryBuffer)', () => {
  it('a request over maxQueryBuffer is answered a protocol error and closed at once; one under it is answered', async () => {
    const h = await homingWith(`maxQueryBuffer: 64KiB, maxTotalBuffer: 1MiB`);
    const port = h.resp!.address().port;

    const ok = await RespTestConnection.connect(port);
    assert.equal(await ok.call('GET', `/${'k'.repeat(60 * KiB)}`), h.member);

    // One large key: refused on its header, before its bytes are sent.
    const big = await RespTestConnection.connect(port);
    await big.write(`*2\r\n$3\r\nGET\r\n$${100 * KiB}\r\n`);
    assert.deepEqual(await big.reply(), { error: 'ERR Protocol error: too big request' });
    assert.ok(await big.waitClosed(), 'closed');

    // Many small keys that add up past the bound.
    const many = await RespTestConnection.connect(port);
    await many.send('MGET', ...Array.from({ length: 20 }, (_, i) => `/${i}-${'k'.repeat(4 * KiB)}`));
    assert.deepEqual(await many.reply(), { error: 'ERR Protocol error: too big request' });
    assert.ok(await many.waitClosed(), 'closed');

    assert.equal(await ok.call('GET', '/still'), h.member);
    assert.equal(h.resp!.stats.queryLimitCloses, 2);
    const text = await scrape(h.adminUrl);
    assert.equal(sample(text, 'homing_resp_memory_closes_total{reason="query_buffer"}'), 2);
    assert.equal(sample(text, 'homing_resp_memory_closes_total{reason="total_buffer"}'), 0);
    ok.close();
  });
});
