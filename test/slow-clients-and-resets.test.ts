/**
 * Slow clients cannot starve a member, and members that die or drop connections cost no
 * idempotent request: request buffering (a body that fits is read whole before a member
 * connection is taken), the client body idle timeout (408), and re-sending after a reset on a
 * fresh connection or another member. Real homing, real node:http members (one in a child process
 * that is SIGKILLed and restarted on the same port), raw client sockets.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { Agent, request } from 'undici';
import { RawClient, errorCode, httpRequest, startRecordingBackend, startTestHoming, until } from './support/backends.js';
import { freePort } from './support/services.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function homing(yaml: string): Promise<Awaited<ReturnType<typeof startTestHoming>>> {
  const h = await startTestHoming(yaml);
  cleanups.push(() => h.close());
  return h;
}

describe('slow uploads', () => {
  test('300 trickling uploads hold no member connection; ordinary requests to the same member all succeed', async () => {
    const b = await startRecordingBackend('a');
    cleanups.push(() => b.close());
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b.id}'], connections: 16 } }
routes: [ { name: r, pool: p } ]
`);
    const uploads: RawClient[] = [];
    for (let i = 0; i < 300; i++) {
      const c = await RawClient.connect(h.http!.port);
      c.write(`POST /upload/${i} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n${'u'.repeat(10)}`);
      uploads.push(c);
    }
    cleanups.push(async () => uploads.forEach((c) => c.destroy()));
    // A trickle: a byte now and then from every client, for a while.
    for (let round = 0; round < 3; round++) {
      for (const c of uploads) c.write('t');
      const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => httpRequest(`${h.url}/ordinary/${round}-${i}`)));
      for (const r of rs) assert.equal(r.status, 200, r.text);
    }
    assert.equal(b.seen.filter((s) => s.url.startsWith('/upload')).length, 0, 'an unfinished upload reached the member');
    assert.ok(b.connections <= 16, `${b.connections} member connections`);
    // The uploads finish: every one is delivered whole.
    for (const c of uploads) c.write('d'.repeat(87));
    await Promise.all(uploads.map((c) => c.waitResponses(1, 30_000)));
    for (const c of uploads) assert.equal(c.finalResponses()[0]?.status, 200, c.text);
    const got = b.seen.filter((s) => s.url.startsWith('/upload'));
    assert.equal(got.length, 300);
    for (const s of got) assert.equal(s.body.length, 100);
  });

  for (const [name, route] of [
    ['buffered', ''],
    ['streamed (requestBuffering: false)', ', requestBuffering: false'],
  ] as const) {
    test(`an upload that stalls for timeouts.clientBody is answered 408 and closed (${name})`, async () => {
      const b = await startRecordingBackend('a');
      cleanups.push(() => b.close());
      const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: r, pool: p, timeouts: { clientBody: 300ms }${route} } ]
`);
      const c = await RawClient.connect(h.http!.port);
      c.write('POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc');
      const [res] = await c.waitResponses(1, 10_000);
      assert.ok(res, c.text);
      assert.equal(res.status, 408, c.text);
      assert.equal(errorCode(res.body), 'HOMING_ERR_CLIENT_TIMEOUT');
      assert.ok(await c.waitClosed(5000), 'the connection is closed');
      c.destroy();
      // The member never completed a request it would act on.
      await until(() => b.seen.every((s) => s.closed), 5000);
      assert.ok(b.seen.every((s) => !s.complete));
    });
  }
});

describe('a slow member is not a slow client', () => {
  test('a streamed upload waiting on a member that reads slowly is not timed out by timeouts.clientBody', async () => {
    const b = await startRecordingBackend('a', {
      onRequest: (req) => {
        // Read a little, then nothing for three times clientBody, then the rest.
        req.once('data', () => {
          req.pause();
          setTimeout(() => req.resume(), 1000);
        });
        return undefined;
      },
    });
    cleanups.push(() => b.close());
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: r, pool: p, requestBuffering: false, timeouts: { clientBody: 300ms } } ]
`);
    const body = Buffer.alloc(16 * 1024 * 1024, 7);
    const r = await httpRequest(`${h.url}/big`, { method: 'PUT', body, timeout: 30_000 });
    assert.equal(r.status, 200, r.text);
    assert.equal(b.seen[0]!.body.length, body.length);
  });
});

/** A node:http member in a child process, on a given port, that can be SIGKILLed. */
function spawnMember(port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `require('http').createServer((q,s)=>{q.resume();q.on('end',()=>{s.setHeader('content-type','application/json');s.end(JSON.stringify({id:'child'}))})}).listen(${port},'127.0.0.1',()=>process.stdout.write('up\\n'))`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout!.once('data', () => resolve(child));
  });
}

function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill('SIGKILL');
  });
}

describe('resets cost no idempotent request', () => {
  test('a member SIGKILLed and restarted three times under steady GET load: 0 failed GETs', async () => {
    const other = await startRecordingBackend('b');
    cleanups.push(() => other.close());
    const port = await freePort();
    let child = await spawnMember(port);
    cleanups.push(() => killed(child));
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['127.0.0.1:${port}', '${other.id}'] } }
routes: [ { name: r, pool: p, balance: round-robin, retries: 2 } ]
`);
    const agent = new Agent({ connections: 8 });
    cleanups.push(() => agent.close());
    let stop = false;
    const failures: string[] = [];
    let ok = 0;
    const loop = async (): Promise<void> => {
      while (!stop) {
        try {
          const r = await request(`${h.url}/get`, { dispatcher: agent });
          const text = await r.body.text();
          if (r.statusCode === 200) ok++;
          else failures.push(`${r.statusCode} ${text}`);
        } catch (e) {
          failures.push(String(e));
        }
      }
    };
    const loops = Array.from({ length: 8 }, loop);
    for (let i = 0; i < 3; i++) {
      const before = ok;
      await until(() => ok >= before + 200, 20_000, 5);
      await killed(child);
      const during = ok;
      await until(() => ok >= during + 100, 20_000, 5);
      child = await spawnMember(port);
    }
    const last = ok;
    await until(() => ok >= last + 200, 20_000, 5);
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${ok + failures.length} GETs failed`);
  });

  test('a member that resets its kept-alive connections as they are reused (within 5 ms): 0 failed GETs', async () => {
    const healthy = await startRecordingBackend('b');
    cleanups.push(() => healthy.close());
    const sockets = new Set<Socket>();
    let stale = new Set<Socket>();
    let resets = 0;
    // A request on a connection kept alive from before the drop is met with an RST a moment
    // later: what a member that restarted or dropped its idle connections looks like to homing.
    const resetting: Server = createServer((req, res) => {
      if (stale.has(req.socket)) {
        resets++;
        setTimeout(() => req.socket.resetAndDestroy(), resets % 6);
        return;
      }
      req.resume();
      req.on('end', () => res.end(JSON.stringify({ id: 'resetting' })));
    });
    resetting.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((r) => resetting.listen(0, '127.0.0.1', r));
    const rport = (resetting.address() as { port: number }).port;
    cleanups.push(() => new Promise<void>((r) => { resetting.close(() => r()); for (const s of sockets) s.destroy(); }));
    for (const [route, by] of [['balance: round-robin', 'another member'], ["hash: { key: 'path' }", 'the same member, fresh connection']] as const) {
      const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['127.0.0.1:${rport}', '${healthy.id}'] } }
routes: [ { name: r, pool: p, ${route} } ]
`);
      stale = new Set();
      // Fill homing's pool with kept-alive connections to the resetting member.
      for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: 20 }, (_, j) => httpRequest(`${h.url}/warm/${j}`)));
      assert.ok(sockets.size > 1, 'homing keeps several connections');
      stale = new Set(sockets);
      const before = resets;
      const rs = await Promise.all(Array.from({ length: 30 }, (_, i) => httpRequest(`${h.url}/after/${i}`)));
      const failed = rs.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.text}`);
      assert.ok(resets > before, `${route}: no reused connection was reset`);
      assert.deepEqual(failed, [], `${route} (re-sent to ${by})`);
      await h.close();
    }
  });

  test('a POST whose member resets after the body was sent is never re-sent', async () => {
    const b = await startRecordingBackend('a', { onEnd: (req, res) => (req.url === '/alive' ? void res.end('ok') : void req.socket.resetAndDestroy()) });
    cleanups.push(() => b.close());
    const h = await homing(`
log: { level: silent }
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: r, pool: p, retries: 3, retryMethods: [GET, PUT] } ]
`);
    const post = await httpRequest(`${h.url}/post`, { method: 'POST', body: 'x'.repeat(100) });
    assert.equal(post.status, 502);
    assert.equal(errorCode(post.body), 'HOMING_ERR_UPSTREAM_RESET');
    assert.equal(b.seen.filter((s) => s.url === '/post').length, 1);
    // PUT is listed in retryMethods: re-sent (retries: 3 → four attempts), then 502.
    const put = await httpRequest(`${h.url}/put`, { method: 'PUT', body: 'y'.repeat(100) });
    assert.equal(put.status, 502);
    assert.equal(b.seen.filter((s) => s.url === '/put').length, 4);
  });
});
