// Soak load generator: `conns` client connections on raw `net` sockets against one proxy
// (`node soak-load.mjs <port> <conns>`), in its own process so its CPU is not the proxy's.
// About 98% of the connections are plain keep-alive clients sending GET /soak/plain one after
// the other; about 1% (at least one) are disconnecting clients: each opens a connection, sends a
// POST with `Content-Length: 65536` and only part of the body, waits 0–30 ms and destroys the
// socket, then starts again (alternating /soak/buffered/… and /soak/streamed/…, the section's
// route with `requestBuffering: false`); about 1% (at least one) are slow readers: keep-alive
// GETs of /soak/big (the backend's 1 MiB answer) read at about 256 KiB/s by pausing the socket
// after each chunk for as long as the chunk took at that rate.
// IPC: sends {type:'ready', port:0} once started; {type:'stats', id} → {type:'stats', id, …counts};
// {type:'stop'} → no new exchange starts, exchanges in progress finish (at most 15 s, then their
// sockets are destroyed and counted as `cut at stop`), every socket is closed, then
// {type:'stopped', …counts}. Counts: requests (plain GETs answered whole), slowDone (slow reads
// finished whole), aborts (deliberate disconnects), statuses {code: n}, errors {kind: n}.
import net from 'node:net';

const port = Number(process.argv[2]);
const conns = Number(process.argv[3] ?? 256);
const HOST = '127.0.0.1';
const BIG_BYTES = 1024 * 1024;
const SLOW_RATE = 256; // bytes per ms (256 KiB/s)
const POST_LENGTH = 65536;
const REQUEST_TIMEOUT_MS = 30_000;

const stats = { requests: 0, slowDone: 0, aborts: 0, earlyAnswers: 0, statuses: {}, errors: {} };
const err = (kind) => (stats.errors[kind] = (stats.errors[kind] ?? 0) + 1);
let stopping = false;
const clients = [];

const GET_PLAIN = Buffer.from(`GET /soak/plain HTTP/1.1\r\nHost: soak\r\n\r\n`);
const GET_BIG = Buffer.from(`GET /soak/big HTTP/1.1\r\nHost: soak\r\n\r\n`);
const PART = Buffer.alloc(POST_LENGTH, 'p');

/** Reads one HTTP/1.1 answer with a Content-Length (the backend's and homing's answers all have one). */
class Answer {
  reset() {
    this.head = undefined;
    this.buf = undefined;
    this.status = 0;
    this.remaining = 0;
    this.close = false;
    this.done = false;
    this.bytes = 0;
  }
  constructor() {
    this.reset();
  }
  /** Feeds a chunk; returns an error kind, or undefined. `done` is set once the body is whole. */
  feed(chunk) {
    if (this.head === undefined) {
      this.buf = this.buf ? Buffer.concat([this.buf, chunk]) : chunk;
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return this.buf.length > 65536 ? 'answer head too large' : undefined;
      this.head = this.buf.subarray(0, end).toString('latin1');
      const rest = this.buf.subarray(end + 4);
      this.buf = undefined;
      this.status = Number(this.head.slice(9, 12));
      const lines = this.head.toLowerCase().split('\r\n');
      let length;
      for (const l of lines) {
        if (l.startsWith('content-length:')) length = Number(l.slice(15).trim());
        else if (l.startsWith('transfer-encoding:')) return 'answer without Content-Length (chunked)';
        else if (l.startsWith('connection:') && l.includes('close')) this.close = true;
      }
      if (length === undefined || !Number.isFinite(length)) return 'answer without Content-Length';
      this.remaining = length;
      chunk = rest;
    }
    if (chunk.length > this.remaining) return 'bytes after the answer';
    this.remaining -= chunk.length;
    this.bytes += chunk.length;
    if (this.remaining === 0) this.done = true;
    return undefined;
  }
}

/** A keep-alive client: sends `request` again after each whole answer (plain GETs or slow big GETs). */
function keepAliveClient(kind) {
  const c = { kind, sock: undefined, busy: false, started: 0, idle: true, answer: new Answer() };
  const slow = kind === 'slow';
  const request = slow ? GET_BIG : GET_PLAIN;
  const send = () => {
    if (stopping) {
      c.idle = true;
      c.sock?.end();
      return;
    }
    c.answer.reset();
    c.busy = true;
    c.idle = false;
    c.started = Date.now();
    c.sock.write(request);
  };
  const connect = () => {
    if (stopping) {
      c.idle = true;
      return;
    }
    c.idle = false;
    const sock = net.connect(port, HOST);
    c.sock = sock;
    sock.setNoDelay(true);
    sock.on('connect', send);
    sock.on('error', (e) => (sock.lastError = e.code ?? e.message));
    sock.on('data', (chunk) => {
      if (!c.busy) return err('bytes with no request out');
      const bad = c.answer.feed(chunk);
      if (bad) {
        err(bad);
        c.busy = false;
        sock.destroy();
        return;
      }
      if (slow && !c.answer.done) {
        sock.pause();
        setTimeout(() => sock.resume(), Math.max(1, Math.round(chunk.length / SLOW_RATE)));
        return;
      }
      if (!c.answer.done) return;
      c.busy = false;
      const st = c.answer.status;
      stats.statuses[st] = (stats.statuses[st] ?? 0) + 1;
      if (st !== 200) err(`status ${st}`);
      else if (slow && c.answer.bytes !== BIG_BYTES) err('slow read: wrong length');
      else if (slow) stats.slowDone++;
      else stats.requests++;
      if (c.answer.close) sock.end();
      else if (slow) setTimeout(send, 100);
      else send();
    });
    sock.on('close', () => {
      if (c.busy) {
        c.busy = false;
        if (sock.cutAtStop) err('cut at stop');
        else if (sock.timedOut) err('no answer within 30 s');
        else err(`closed mid-answer${sock.lastError ? ` (${sock.lastError})` : ''}${slow ? ', slow reader' : ''}`);
      } else if (sock.lastError) err(`socket error ${sock.lastError}`);
      if (c.sock === sock) c.sock = undefined;
      if (stopping) c.idle = true;
      else setTimeout(connect, 10);
    });
  };
  c.start = connect;
  c.cut = () => {
    if (c.sock) {
      c.sock.cutAtStop = true;
      c.sock.destroy();
    }
    c.idle = true;
  };
  return c;
}

/** A client that sends part of a 64 KiB POST body and disconnects, over and over. */
function disconnectingClient() {
  const c = { kind: 'disconnect', sock: undefined, busy: false, started: 0, idle: true, n: 0 };
  const round = () => {
    if (stopping) {
      c.idle = true;
      return;
    }
    c.idle = false;
    const route = c.n++ % 2 ? 'streamed' : 'buffered';
    const sock = net.connect(port, HOST);
    c.sock = sock;
    sock.setNoDelay(true);
    sock.on('error', () => {});
    sock.on('data', () => (sock.answered = true));
    sock.on('connect', () => {
      const part = 1024 + Math.floor(Math.random() * (POST_LENGTH - 2048));
      sock.write(`POST /soak/${route}/upload HTTP/1.1\r\nHost: soak\r\nContent-Type: application/octet-stream\r\nContent-Length: ${POST_LENGTH}\r\n\r\n`);
      sock.write(PART.subarray(0, part));
      setTimeout(() => {
        if (sock.answered) stats.earlyAnswers++;
        stats.aborts++;
        sock.destroy();
      }, Math.floor(Math.random() * 30));
    });
    sock.on('close', () => {
      if (c.sock === sock) c.sock = undefined;
      setTimeout(round, 5);
    });
  };
  c.start = round;
  c.cut = () => {
    c.sock?.destroy();
    c.idle = true;
  };
  return c;
}

const nEach = Math.max(1, Math.round(conns * 0.01));
for (let i = 0; i < nEach; i++) clients.push(disconnectingClient(), keepAliveClient('slow'));
while (clients.length < conns) clients.push(keepAliveClient('plain'));
for (const c of clients) c.start();

// One sweep a second instead of a timer per request: an answer not complete within 30 s is an error.
const sweep = setInterval(() => {
  const now = Date.now();
  for (const c of clients) {
    if (c.busy && c.kind !== 'disconnect' && now - c.started > REQUEST_TIMEOUT_MS && c.sock) {
      c.sock.timedOut = true;
      c.sock.destroy();
    }
  }
}, 1000);

const snapshot = () => ({ ...stats, statuses: { ...stats.statuses }, errors: { ...stats.errors }, clients: { plain: clients.filter((c) => c.kind === 'plain').length, slow: nEach, disconnect: nEach } });

async function stopLoad() {
  stopping = true;
  const until = Date.now() + 15_000;
  while (Date.now() < until && clients.some((c) => !c.idle || c.sock)) await new Promise((r) => setTimeout(r, 50));
  for (const c of clients) if (!c.idle || c.sock) c.cut();
  clearInterval(sweep);
  await new Promise((r) => setTimeout(r, 200));
  process.send?.({ type: 'stopped', ...snapshot() });
}

process.on('message', (m) => {
  if (m?.type === 'stats') process.send({ type: 'stats', id: m.id, ...snapshot() });
  else if (m?.type === 'stop') void stopLoad();
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready', port: 0 });
