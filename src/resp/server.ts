/**
 * The RESP2 router's TCP face: nginx, HAProxy or any Redis client asks `GET <key>`
 * and gets the member `host:port` homing would send that key to.
 *
 * Per connection: bytes go through an incremental parser; each command is answered through the
 * session, which keeps replies in request order even when a look-up is asynchronous; the replies
 * of a whole read are written with one `write()`. Limits, each with its reason:
 *   - maxClients: further connections get `-ERR max number of clients reached` and are closed;
 *   - idleTimeout: a connection with no bytes in or out for that long is closed (a sweep, not a
 *     timer per socket, so the hot path does not touch timers);
 *   - maxPipeline: when that many replies are pending (waiting on async look-ups) the server stops
 *     parsing and stops reading the socket until they are answered;
 *   - output: when the socket cannot take more (write() answers false) reading stops until
 *     'drain', so a client that never reads its replies stalls instead of growing memory; and a
 *     connection whose queued output still passes maxOutputBuffer is closed;
 *   - input: one request may not pass maxQueryBuffer bytes (the parser refuses it with a protocol
 *     error as soon as its headers announce more), which bounds what one client's parser holds;
 *   - memory across clients: what the parsers hold for unparsed input plus the sockets' unsent
 *     output is summed per read and write; past maxTotalBuffer the clients holding the most are
 *     closed until the sum is well under it again (see RespServerImpl.overBound);
 *   - protocol errors are answered `-ERR Protocol error: …` and close the connection, as in Redis;
 *     an HTTP request at the port closes it at once without an answer (no SSRF through it).
 */
import net from 'node:net';
import type { RespBackend } from './backend.js';
import { RespParser, RespProtocolError, errorReply, resolveRespLimits, type RespLimits } from './codec.js';
import { messageOf, runCommand, type CommandHost, type ServerStats, type Session } from './commands.js';
import { systemClock, type Clock } from '../clock.js';

export interface RespServerOptions {
  host: string;
  /** 0 picks a free port (see address()). */
  port: number;
  /** Connections served at once; more are refused with `-ERR max number of clients reached`. */
  maxClients: number;
  /** Close a connection after this many ms without traffic; 0 disables. */
  idleTimeout: number;
  /** Replies that may wait for asynchronous look-ups per connection before reading pauses. */
  maxPipeline: number;
  /** Close a connection whose unsent output passes this many bytes. Default 8 MiB. */
  maxOutputBuffer?: number;
  /**
   * Memory all clients together may hold in unparsed input and unsent output; past it the
   * clients holding the most are closed. At least twice limits.maxQueryBuffer (a parser may hold
   * about twice a request while it grows). Default 64 MiB.
   */
  maxTotalBuffer?: number;
  /** Request size limits (see RespLimits for defaults). */
  limits?: Partial<RespLimits>;
  /** Where warnings go (pino-compatible). */
  log?: RespLog;
  /** Time source for idle detection; defaults to the system clock. */
  clock?: Clock;
}

export interface RespLog {
  warn(fields: Record<string, unknown>, msg: string): void;
}

export interface RespServer {
  address(): { host: string; port: number };
  close(): Promise<void>;
  /** Connected clients right now. */
  readonly clients: number;
  /** Counters as INFO shows them. */
  readonly stats: Readonly<ServerStats>;
  /** Memory held for all clients now (unparsed input and unsent output), measured afresh. */
  readonly buffered: number;
}

const DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024;
const DEFAULT_MAX_TOTAL = 64 * 1024 * 1024;
/** Replies are written once they reach this size even mid-read, so one read cannot build a huge string. */
const FLUSH_AT = 64 * 1024;
/** After QUIT or a protocol error, how long the peer has to read the last reply and close. */
const CLOSE_GRACE_MS = 1000;

function positiveInt(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new RangeError(`resp: ${name} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

/** A reply waiting for an asynchronous look-up (or queued behind one). */
interface Slot {
  reply: string | null;
}

class Client implements Session {
  readonly id: number;
  db = 0;
  name: string | null = null;
  readonly parser: RespParser;
  /** Replies ready to write, in order (everything before the first pending slot). */
  private out = '';
  /** Replies behind the first unanswered asynchronous one; `head` is the first not yet moved to `out`. */
  private slots: Slot[] = [];
  private head = 0;
  private flushQueued = false;
  /** Reading stopped: too many pending replies, or the socket's output is full. */
  private pipelineFull = false;
  private outputFull = false;
  private paused = false;
  /** QUIT or protocol error: no more commands; close once the replies are out. */
  closing = false;
  /** Set once the socket was ended; the sweep destroys it after the grace period. */
  endedAt = 0;
  lastActive: number;
  /** This client's share of the server's `heldTotal`, as last measured. */
  held = 0;
  private readonly connectedAt: number;

  constructor(
    private readonly server: RespServerImpl,
    readonly socket: net.Socket,
    id: number,
  ) {
    this.id = id;
    this.parser = new RespParser(server.limits);
    this.lastActive = server.clock.now();
    this.connectedAt = this.lastActive;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', () => {
      /* ECONNRESET and friends: 'close' follows. */
    });
    socket.on('close', () => this.server.forget(this));
  }

  private onData(chunk: Buffer): void {
    this.lastActive = this.server.clock.now();
    if (this.closing) return; // after QUIT / a protocol error: read and discard until closed
    this.parser.push(chunk);
    this.run();
  }

  /** Parses and answers commands until input runs out or a limit says stop. */
  private run(): void {
    const parser = this.parser;
    const server = this.server;
    const maxPipeline = server.maxPipeline;
    while (!this.closing) {
      if (this.slots.length - this.head >= maxPipeline) {
        this.pipelineFull = true;
        break;
      }
      if (this.out.length >= FLUSH_AT && !this.flush()) break;
      let args: string[] | null;
      try {
        args = parser.next();
      } catch (err) {
        if (err instanceof RespProtocolError) {
          server.stats.protocolErrors++;
          if (err.tooBig) server.stats.queryLimitCloses++;
          this.reply(errorReply(err.message));
        } else {
          // A parser bug: never let it take the process down; this connection cannot go on.
          server.log?.warn({ err }, 'resp: parser failed');
          this.reply(errorReply('internal error'));
        }
        this.closeAfterReplies();
        break;
      }
      if (args === null) break;
      try {
        runCommand(server, this, args);
      } catch (err) {
        // A bug in a command: answer it like Redis answers an internal error, keep serving.
        server.log?.warn({ err, command: args[0] }, 'resp: command failed');
        this.reply(errorReply('internal error'));
      }
    }
    this.flush();
    this.updateReading();
    this.account();
  }

  /** Memory held for this client now: the parser's, for unparsed input, and the socket's unsent output. */
  measure(): number {
    return this.socket.destroyed ? 0 : this.parser.held + this.socket.writableLength;
  }

  /** Brings this client's share of the server's total up to date (once per read, write or drain). */
  private account(): void {
    const held = this.measure();
    const grew = held - this.held;
    if (grew === 0) return;
    const server = this.server;
    server.heldTotal += grew;
    this.held = held;
    if (grew > 0 && server.heldTotal > server.maxTotalBuffer) server.overBound();
  }

  reply(encoded: string): void {
    if (this.head === this.slots.length) this.out += encoded;
    else this.slots.push({ reply: encoded });
  }

  replyLater(pending: Promise<string>): void {
    const slot: Slot = { reply: null };
    this.slots.push(slot);
    pending.then(
      (r) => {
        slot.reply = r;
        this.slotSettled();
      },
      (err: unknown) => {
        slot.reply = errorReply(messageOf(err));
        this.slotSettled();
      },
    );
  }

  private slotSettled(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.afterSettled());
  }

  /** Moves answered replies to the output in order, writes them, and resumes reading if it waited. */
  private afterSettled(): void {
    this.flushQueued = false;
    if (this.socket.destroyed) return;
    const slots = this.slots;
    let head = this.head;
    while (head < slots.length) {
      const r = slots[head]!.reply;
      if (r === null) break;
      this.out += r;
      head++;
    }
    if (head === slots.length) {
      this.slots = [];
      this.head = 0;
    } else {
      this.head = head;
    }
    this.lastActive = this.server.clock.now();
    if (this.closing) {
      this.flush();
      if (this.head === this.slots.length) this.end();
      this.account();
      return;
    }
    if (this.pipelineFull && this.slots.length - this.head < this.server.maxPipeline) {
      this.pipelineFull = false;
      this.run();
    } else {
      this.flush();
      this.updateReading();
      this.account();
    }
  }

  /** Writes what is ready. Answers false when the socket's buffer is full (reading must pause). */
  private flush(): boolean {
    if (this.out === '') return !this.outputFull;
    const out = this.out;
    this.out = '';
    const socket = this.socket;
    if (socket.destroyed) return false;
    const ok = socket.write(out, 'latin1');
    if (socket.writableLength > this.server.maxOutputBuffer) {
      this.server.log?.warn({ client: this.describe(), queued: socket.writableLength }, 'resp: output buffer limit reached, closing client');
      this.server.stats.outputLimitCloses++;
      this.closing = true;
      socket.destroy();
      return false;
    }
    if (!ok) this.outputFull = true;
    return ok;
  }

  private onDrain(): void {
    this.outputFull = false;
    this.lastActive = this.server.clock.now();
    if (!this.closing) this.run();
    else this.account();
  }

  private updateReading(): void {
    const stop = (this.pipelineFull || this.outputFull) && !this.closing;
    if (stop && !this.paused) {
      this.parser.retain();
      this.socket.pause();
      this.paused = true;
    } else if (!stop && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  closeAfterReplies(): void {
    this.closing = true;
    if (this.head === this.slots.length) {
      this.flush();
      this.end();
    }
  }

  /** Ends our side once written; input is read and discarded until the peer closes or the grace ends. */
  private end(): void {
    if (this.endedAt !== 0) return;
    this.endedAt = this.server.clock.now();
    this.socket.end();
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Closes this client at once to bring the total under maxTotalBuffer (no reply: see overBound). */
  evict(): void {
    this.server.heldTotal -= this.held;
    this.held = 0;
    this.closing = true;
    this.out = '';
    this.socket.destroy();
    // The socket lets go of this client only at 'close', a turn or more later: free its input now.
    this.parser.release();
  }

  drop(reason: string): void {
    this.server.log?.warn({ client: this.describe(), reason }, 'resp: possible security attack (HTTP sent to the RESP port), connection closed');
    this.closing = true;
    this.out = '';
    this.socket.destroy();
  }

  describe(): string {
    const now = this.server.clock.now();
    const s = this.socket;
    return (
      `id=${this.id} addr=${s.remoteAddress ?? '?'}:${s.remotePort ?? 0} laddr=${s.localAddress ?? '?'}:${s.localPort ?? 0} ` +
      `name=${this.name ?? ''} age=${Math.floor((now - this.connectedAt) / 1000)} idle=${Math.floor((now - this.lastActive) / 1000)} ` +
      `db=${this.db} qbuf=${this.parser.buffered} multi=-1 omem=${s.writableLength} tot-mem=${this.measure()} cmd=NULL resp=2`
    );
  }
}

class RespServerImpl implements RespServer, CommandHost {
  readonly limits: RespLimits;
  readonly maxPipeline: number;
  readonly maxOutputBuffer: number;
  readonly maxTotalBuffer: number;
  /** Running sum of the clients' `held`: exact for input, possibly high for output (see overBound). */
  heldTotal = 0;
  readonly clock: Clock;
  readonly log: RespLog | undefined;
  readonly stats: ServerStats;
  private readonly net: net.Server;
  private readonly live = new Set<Client>();
  /** Refused connections still being told why. */
  private readonly refused = new Set<net.Socket>();
  private nextId = 1;
  private sweep: NodeJS.Timeout | undefined;
  private bound: { host: string; port: number } = { host: '', port: 0 };

  constructor(
    readonly backend: RespBackend,
    private readonly opts: RespServerOptions,
  ) {
    this.limits = resolveRespLimits(opts.limits);
    this.maxPipeline = positiveInt('maxPipeline', opts.maxPipeline, 1);
    this.maxOutputBuffer = positiveInt('maxOutputBuffer', opts.maxOutputBuffer ?? DEFAULT_MAX_OUTPUT, 1024);
    this.maxTotalBuffer = positiveInt('maxTotalBuffer', opts.maxTotalBuffer ?? DEFAULT_MAX_TOTAL, 1024);
    if (this.maxTotalBuffer < 2 * this.limits.maxQueryBuffer) {
      throw new RangeError(`resp: maxTotalBuffer (${this.maxTotalBuffer}) must be at least twice maxQueryBuffer (${this.limits.maxQueryBuffer}): one client may hold that much`);
    }
    positiveInt('maxClients', opts.maxClients, 1);
    positiveInt('idleTimeout', opts.idleTimeout, 0);
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log;
    this.stats = {
      connectedClients: 0,
      totalConnections: 0,
      rejectedConnections: 0,
      totalCommands: 0,
      protocolErrors: 0,
      outputLimitCloses: 0,
      queryLimitCloses: 0,
      evictedClients: 0,
      idleCloses: 0,
      startedAt: Date.now(),
      port: 0,
      maxClients: opts.maxClients,
      idleTimeout: opts.idleTimeout,
    };
    // noDelay: replies are written once per read already, so Nagle would only add latency.
    this.net = net.createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 }, (socket) => this.accept(socket));
  }

  get clients(): number {
    return this.live.size;
  }

  get buffered(): number {
    return this.remeasure();
  }

  sessions(): Iterable<Session> {
    return this.live;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.net.once('error', onError);
      this.net.listen(this.opts.port, this.opts.host, () => {
        this.net.off('error', onError);
        this.net.on('error', (err) => this.log?.warn({ err }, 'resp: server error'));
        const a = this.net.address() as net.AddressInfo;
        this.bound = { host: a.address, port: a.port };
        this.stats.port = a.port;
        const idle = this.opts.idleTimeout;
        const every = idle > 0 ? Math.min(1000, Math.max(25, Math.floor(idle / 4))) : 250;
        this.sweep = setInterval(() => this.sweepClients(), every);
        this.sweep.unref();
        resolve();
      });
    });
  }

  private accept(socket: net.Socket): void {
    this.stats.totalConnections++;
    if (this.live.size >= this.opts.maxClients) {
      this.stats.rejectedConnections++;
      this.refused.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => this.refused.delete(socket));
      socket.end('-ERR max number of clients reached\r\n');
      socket.resume();
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
      return;
    }
    const client = new Client(this, socket, this.nextId++);
    this.live.add(client);
    this.stats.connectedClients = this.live.size;
  }

  forget(client: Client): void {
    this.live.delete(client);
    this.stats.connectedClients = this.live.size;
    this.heldTotal -= client.held;
    client.held = 0;
  }

  /** Measures every client afresh and answers the total (also corrects the running sum). */
  private remeasure(): number {
    let total = 0;
    for (const c of this.live) {
      const held = c.measure();
      c.held = held;
      total += held;
    }
    this.heldTotal = total;
    return total;
  }

  /**
   * The running sum passed maxTotalBuffer. It may overstate output (the kernel takes queued bytes
   * without an event unless the queue was full), so measure every client first; if still over,
   * close the clients holding the most until the sum is under seven eighths of the bound. The
   * margin makes the next round wait for an eighth of the bound in new bytes rather than one more
   * read, since a round walks every client.
   *
   * Largest first rather than oldest partial command first: it closes the fewest clients to get
   * under the bound, and it picks whoever costs the memory, whatever they hold it in (a partial
   * request or unread replies), while a well-behaved client holds next to nothing between its
   * commands and is never picked. Among equal holders the earliest connected goes first (the sort
   * is stable over connection order). Evicted clients get no reply, as with maxOutputBuffer (and
   * Redis' client eviction): writing more to them would only add to the memory being reclaimed.
   */
  overBound(): void {
    const max = this.maxTotalBuffer;
    if (this.remeasure() <= max) return;
    const target = max - (max >>> 3);
    const holders: Client[] = [];
    for (const c of this.live) if (c.held > 0) holders.push(c);
    holders.sort((a, b) => b.held - a.held);
    const before = this.heldTotal;
    let closed = 0;
    for (const c of holders) {
      if (this.heldTotal <= target) break;
      c.evict();
      closed++;
    }
    this.stats.evictedClients += closed;
    this.log?.warn({ closed, before, after: this.heldTotal, maxTotalBuffer: max }, 'resp: client buffers over maxTotalBuffer, closed the clients holding the most');
  }

  private sweepClients(): void {
    const now = this.clock.now();
    const idle = this.opts.idleTimeout;
    for (const c of this.live) {
      if (c.endedAt !== 0) {
        if (now - c.endedAt >= CLOSE_GRACE_MS) c.socket.destroy();
      } else if (idle > 0 && now - c.lastActive >= idle) {
        this.stats.idleCloses++;
        c.closing = true;
        c.socket.destroy();
      }
    }
  }

  address(): { host: string; port: number } {
    return { ...this.bound };
  }

  close(): Promise<void> {
    if (this.sweep) clearInterval(this.sweep);
    return new Promise((resolve) => {
      this.net.close(() => resolve());
      for (const c of this.live) c.socket.destroy();
      for (const s of this.refused) s.destroy();
    });
  }
}

/** Starts the RESP router on host:port and answers from `backend`. */
export async function startRespServer(opts: RespServerOptions, backend: RespBackend): Promise<RespServer> {
  const server = new RespServerImpl(backend, opts);
  await server.listen();
  return server;
}
