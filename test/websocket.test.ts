import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { startTestHoming, until, rawRequest } from './support/backends.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface WsBackend {
  id: string;
  port: number;
  server: Server;
  wss: WebSocketServer;
  open: number;
  upgrades: number;
}

async function wsBackend(name: string, opts: { refuse?: number } = {}): Promise<WsBackend> {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${name} plain`);
  });
  const wss = new WebSocketServer({ noServer: true });
  const b = { server, wss, open: 0, upgrades: 0 } as WsBackend;
  server.on('upgrade', (req, socket, head) => {
    b.upgrades++;
    if (opts.refuse) {
      socket.end(`HTTP/1.1 ${opts.refuse} Nope\r\ncontent-type: text/plain\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      b.open++;
      ws.on('close', () => b.open--);
      ws.on('message', (m) => ws.send(`${name}:${m.toString()}`));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as { port: number }).port;
  b.id = `127.0.0.1:${b.port}`;
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return b;
}

function openWs(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
  });
}

function roundTrip(ws: WebSocket, msg: string): Promise<string> {
  return new Promise((resolve) => {
    ws.once('message', (m) => resolve(m.toString()));
    ws.send(msg);
  });
}

test('websocket upgrades follow the hash route and pipe both ways', async () => {
  const bs = [await wsBackend('a'), await wsBackend('b'), await wsBackend('c')];
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools: { p: { members: [${bs.map((b) => `'${b.id}'`).join(', ')}] } }
routes: [ { name: hub, match: { pathRegex: '^/hub/(.*)$' }, pool: p, hash: { key: 'path:1' } } ]
`);
  cleanups.push(() => h.close());
  for (const room of ['r1', 'r2', 'r3', 'r4', 'r5']) {
    const look = (await (await fetch(`${h.adminUrl}/api/v1/routes/hub/lookup?key=${room}`)).json()) as { target: string };
    const owner = bs.find((b) => b.id === look.target)!;
    const ws = await openWs(`ws://127.0.0.1:${h.http!.port}/hub/${room}`);
    const name = ['a', 'b', 'c'][bs.indexOf(owner)];
    assert.equal(await roundTrip(ws, 'hello'), `${name}:hello`);
    assert.equal(await roundTrip(ws, 'again'), `${name}:again`);
    ws.close();
  }
});

test('an upstream that refuses the upgrade: its answer is relayed, no tunnel, both sockets closed', async () => {
  const b = await wsBackend('r', { refuse: 404 });
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: hub, pool: p } ]
`);
  cleanups.push(() => h.close());
  const raw = await rawRequest(h.http!.port, 'GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  assert.match(raw, /^HTTP\/1\.1 404/);
  assert.match(raw, /nope$/);
  assert.doesNotMatch(raw, /101 Switching/);
  assert.equal(b.upgrades, 1);
});

test('only websocket is tunnelled: h2c and other upgrades are refused with a JSON 400', async () => {
  const b = await wsBackend('h');
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: hub, pool: p } ]
`);
  cleanups.push(() => h.close());
  const raw = await rawRequest(h.http!.port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\n');
  assert.match(raw, /^HTTP\/1\.1 400/);
  assert.match(raw, /HOMING_ERR_BAD_REQUEST/);
  assert.equal(b.upgrades, 0);
});

test('a client that vanishes after 101 tears down the upstream socket; a reset never crashes homing', async () => {
  const b = await wsBackend('v');
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
pools: { p: { members: ['${b.id}'] } }
routes: [ { name: hub, pool: p } ]
`);
  cleanups.push(() => h.close());
  for (let i = 0; i < 20; i++) {
    const ws = await openWs(`ws://127.0.0.1:${h.http!.port}/x`);
    await roundTrip(ws, 'ping');
    if (i % 2) ws.terminate();
    else (ws as unknown as { _socket: { destroy(): void } })._socket.destroy();
  }
  await until(() => b.open === 0);
  // A raw client that resets right after sending the upgrade.
  for (let i = 0; i < 10; i++) {
    const s = connect(h.http!.port, '127.0.0.1');
    s.on('error', () => {});
    s.write('GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    s.resetAndDestroy();
  }
  await until(() => b.open === 0);
  const ws = await openWs(`ws://127.0.0.1:${h.http!.port}/x`);
  assert.equal(await roundTrip(ws, 'still'), 'v:still');
  ws.close();
});

test('an upgrade answered with a backend redirect is followed to the owner (affinity route), then learned', async () => {
  const a = await wsBackend('a');
  const b = await wsBackend('b');
  // Member a answers every upgrade with a redirect to b (the session lives there).
  a.server.removeAllListeners('upgrade');
  a.server.on('upgrade', (_req, socket) => {
    a.upgrades++;
    socket.end(`HTTP/1.1 200 OK\r\nx-accel-redirect: /internal_redirect/${b.id}/hub\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
  });
  const h = await startTestHoming(`
listen: { http: 127.0.0.1:0 }
admin: 127.0.0.1:0
pools: { p: { members: ['${a.id}', '${b.id}'] } }
routes:
  - name: hub
    pool: p
    affinity: { key: 'header:authorization', redirect: {} }
    hash: { key: 'header:x-guess' }
`);
  cleanups.push(() => h.close());
  // Find a guess key that lands on a, so the first upgrade meets the redirect.
  let guess = '';
  for (let i = 0; i < 50 && !guess; i++) {
    const look = (await (await fetch(`${h.adminUrl}/api/v1/routes/hub/lookup?key=g${i}`)).json()) as { target: string };
    if (look.target === a.id) guess = `g${i}`;
  }
  assert.ok(guess, 'no key hashed to member a');
  const ws = await openWs(`ws://127.0.0.1:${h.http!.port}/x`, { authorization: 'Bearer hubber', 'x-guess': guess });
  assert.equal(await roundTrip(ws, 'hi'), 'b:hi');
  ws.close();
  assert.equal(a.upgrades, 1);
  const owner = (await (await fetch(`${h.adminUrl}/api/v1/affinity/hub/${encodeURIComponent('Bearer hubber')}`)).json()) as { owner: string };
  assert.equal(owner.owner, b.id);
  // The next upgrade goes straight to the owner.
  const ws2 = await openWs(`ws://127.0.0.1:${h.http!.port}/x`, { authorization: 'Bearer hubber', 'x-guess': guess });
  assert.equal(await roundTrip(ws2, 'again'), 'b:again');
  ws2.close();
  assert.equal(a.upgrades, 1);
});
