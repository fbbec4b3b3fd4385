/**
 * The RESP router's memory bounds over real TCP sockets: the memory held for all clients
 * (unparsed input and unsent output) stays under maxTotalBuffer by closing the clients holding
 * the most, and well-behaved clients are served throughout.
 */
import { strict as assert } from 'node:assert';
import { after, describe, it } from 'node:test';
import type { RespBackend } from '../src/resp/backend.js';
import { startRespServer } from '../src/resp/server.js';
import { until } from './support/backends.js';
import { RespTestConnection } from './support/services.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('RESP memory: the total bound (maxTotalBuffer)', () => {
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
