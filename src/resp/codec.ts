/**
 * RESP2 wire format: an incremental request parser and reply encoders.
 *
 * The parser follows Redis' own (networking.c: processMultibulkBuffer / processInlineBuffer) in
 * what it accepts and in the words of its errors, so clients and tests written against Redis see
 * the same thing here. It differs where Redis is lax to the point of being unsafe:
 *   - `*-2` and below is an error (Redis ignores any `*n` with n <= 0; `*0` and `*-1` are still
 *     skipped here as Redis does);
 *   - the two bytes after a bulk payload must be CRLF (Redis skips them unchecked, which lets a
 *     client desync the stream);
 *   - an inline line longer than the limit is an error even when its LF arrived in the same read.
 *
 * Safety properties (what Redis clients and servers have got wrong):
 *   - any split of the input across `push()` calls gives the same commands as one push;
 *   - nothing is allocated from a length the client announced: a bulk is decoded only once all
 *     of its bytes have arrived, and the buffer grows only by bytes actually received;
 *   - arguments are returned as byte strings (see below), so nothing returned aliases the caller's read buffer,
 *     and unparsed bytes are copied into the parser's own storage before `next()` reports that it
 *     needs more input (or on `retain()`), so the caller may reuse its read buffer;
 *   - every partial state is bounded by the limits below.
 */

/*
 * Byte strings. Inside the RESP layer every argument and every encoded reply is a *byte string*:
 * a JS string with one char (0-255) per byte, i.e. latin1. That keeps the protocol binary-safe
 * (ECHO of arbitrary bytes, as `redis-cli --pipe` sends, comes back byte for byte) and lets the
 * server write a whole batch with one latin1 write. Text crosses the boundary in two places:
 * `textOf()` turns an argument into a UTF-8-decoded JS string (keys, route and pool names handed
 * to the backend), and `bytesOf()` turns JS text (backend answers, messages) into a byte string.
 * Both are the identity for ASCII, the usual case, after a scan.
 */

/** True when every char is ASCII (so byte string and text are the same). */
export function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return false;
  }
  return true;
}

/** A byte string (an argument) as text, decoding its bytes as UTF-8. */
export function textOf(bytes: string): string {
  return isAscii(bytes) ? bytes : Buffer.from(bytes, 'latin1').toString('utf8');
}

/** Text as a byte string of its UTF-8 encoding. */
export function bytesOf(text: string): string {
  return isAscii(text) ? text : Buffer.from(text, 'utf8').toString('latin1');
}

/** Limits on what one client may send. Defaults are far below Redis' (which guard a database). */
export interface RespLimits {
  /** Largest bulk string (one argument), bytes. Default 512 KiB (Redis: 512 MB). */
  readonly maxBulkLength: number;
  /** Most arguments in one multibulk command, including the command name. Default 1024 (Redis: 1M). */
  readonly maxMultibulkItems: number;
  /** Longest inline command line, and longest `*n` / `$n` header line, bytes. Default 64 KiB (as Redis). */
  readonly maxInlineLength: number;
  /**
   * Most bytes one command may occupy in total (all its arguments and framing), which bounds what
   * the parser holds for one client. Default 1 MiB (Redis' client-query-buffer-limit: 1 GB).
   */
  readonly maxQueryBuffer: number;
}

export const DEFAULT_RESP_LIMITS: RespLimits = Object.freeze({
  maxBulkLength: 512 * 1024,
  maxMultibulkItems: 1024,
  maxInlineLength: 64 * 1024,
  maxQueryBuffer: 1024 * 1024,
});

/** Validates limits eagerly and names the bad one (a wrong option fails at start, not under load). */
export function resolveRespLimits(partial?: Partial<RespLimits>): RespLimits {
  const limits = { ...DEFAULT_RESP_LIMITS, ...partial };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`resp limits: ${name} must be a positive integer, got ${String(value)}`);
  }
  if (limits.maxMultibulkItems > 1024 * 1024) throw new RangeError('resp limits: maxMultibulkItems must be at most 1048576');
  return limits;
}

/** The client broke the protocol. `message` is what follows `-ERR ` in the reply (as Redis words it). */
export class RespProtocolError extends Error {
  /**
   * @param tooBig the request passed a size limit (maxBulkLength, maxInlineLength, maxQueryBuffer)
   *   rather than breaking the syntax: the server counts those as closes for memory.
   */
  constructor(
    detail: string,
    readonly tooBig = false,
  ) {
    super(`Protocol error: ${detail}`);
    this.name = 'RespProtocolError';
  }
}

const CR = 13;
const LF = 10;
const STAR = 42; // *
const DOLLAR = 36; // $
const MINUS = 45; // -
const ZERO = 48;
const NINE = 57;
const SPACE = 32;
const TAB = 9;
const VT = 11;
const FF = 12;
const DQUOTE = 34;
const SQUOTE = 39;
const BACKSLASH = 92;
const NUL = 0;

/** Parsed storage is released back to this size once drained, so one big request does not pin memory. */
const KEEP_STORAGE = 16 * 1024;
/**
 * Storage larger than this that holds a quarter of itself or less is swapped for a small one, so
 * a few bytes left behind a large command do not pin it either; pipelined reads (64 KiB each)
 * stay below it and keep reusing theirs.
 */
const SHRINK_ABOVE = 256 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Incremental RESP2 request parser. Feed reads with `push()`, then call `next()` until it answers
 * null (needs more input). A `RespProtocolError` from `next()` is final: the connection must be
 * closed after replying with it.
 */
export class RespParser {
  private readonly limits: RespLimits;
  /** The bytes being parsed: the caller's chunk (borrowed) or a view of `store` (owned). */
  private buf: Buffer = EMPTY;
  private pos = 0;
  private borrowed = false;
  /** Owned storage for bytes that outlive one `push()`. `buf` views [0, used) of it when owned. */
  private store: Buffer = EMPTY;
  /** How far past `pos` the current header/inline line has been searched for LF already. */
  private scanned = 0;
  /** Arguments of the multibulk command being read, or null between commands. */
  private args: string[] | null = null;
  /** Bulk arguments still to read for `args`. */
  private remaining = 0;
  /** Length of the bulk being read, or -1 while its `$n` header is awaited. */
  private bulkLen = -1;
  /** Bytes the current command has occupied so far. */
  private cmdBytes = 0;
  private failed: RespProtocolError | null = null;

  constructor(limits?: Partial<RespLimits>) {
    this.limits = resolveRespLimits(limits);
  }

  /** Bytes received and not yet turned into arguments. */
  get buffered(): number {
    return this.buf.length - this.pos;
  }

  /**
   * Memory this parser holds for unparsed bytes: the size of its own storage while that holds
   * any (up to about twice the bytes, as it grows geometrically), the bytes themselves while
   * they are still the caller's chunk, and 0 once drained (the small store kept for the next
   * partial read is a fixed cost of a connection, like its socket, not buffered input).
   */
  get held(): number {
    const rest = this.buf.length - this.pos;
    if (rest === 0) return 0;
    return this.borrowed ? rest : this.store.length;
  }

  /**
   * Adds a read. The parser borrows `chunk` until `next()` answers null or `retain()` is called,
   * and copies what it still needs at that point; after that the caller may reuse `chunk`.
   */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.pos >= this.buf.length) {
      this.buf = chunk;
      this.pos = 0;
      this.borrowed = true;
      return;
    }
    this.append(chunk);
  }

  /** Copies any unparsed bytes of a borrowed chunk into owned storage (call before pausing mid-chunk). */
  retain(): void {
    if (!this.borrowed) return;
    const rest = this.buf.length - this.pos;
    this.borrowed = false;
    if (rest === 0) {
      this.buf = EMPTY;
      this.pos = 0;
      return;
    }
    const src = this.buf;
    const from = this.pos;
    this.ensureStore(rest);
    src.copy(this.store, 0, from, from + rest);
    this.buf = this.store.subarray(0, rest);
    this.pos = 0;
  }

  /**
   * The next complete command (its arguments as byte strings; never empty), or null when more
   * input is needed. Throws RespProtocolError on a protocol violation, and again on every later call.
   */
  next(): string[] | null {
    if (this.failed !== null) throw this.failed;
    try {
      return this.parse();
    } catch (err) {
      if (err instanceof RespProtocolError) {
        this.failed = err;
        this.release();
      }
      throw err;
    }
  }

  /** Lets go of every byte held, for a connection being closed: `next()` answers nothing more. */
  release(): void {
    this.failed ??= new RespProtocolError('connection closed');
    this.buf = EMPTY;
    this.store = EMPTY;
    this.pos = 0;
    this.borrowed = false;
    this.args = null;
  }

  private parse(): string[] | null {
    const limits = this.limits;
    for (;;) {
      const buf = this.buf;
      const end = buf.length;
      let pos = this.pos;
      if (this.args === null) {
        if (pos >= end) return this.needMore();
        if (buf[pos] !== STAR) {
          const inline = this.parseInline();
          if (inline === null) return this.needMore();
          if (inline.length === 0) continue; // empty line: ignored, as Redis does
          return inline;
        }
        const nl = this.findLF(pos + 1);
        if (nl < 0) {
          if (end - pos > limits.maxInlineLength) throw new RespProtocolError('too big mbulk count string', true);
          return this.needMore();
        }
        const n = parseLength(buf, pos + 1, nl);
        if (n === INVALID || n < -1 || n > limits.maxMultibulkItems) throw new RespProtocolError('invalid multibulk length');
        this.cmdBytes = nl + 1 - pos;
        pos = nl + 1;
        this.pos = pos;
        this.scanned = 0;
        if (n <= 0) continue; // `*0`, `*-1`: an empty command, skipped
        this.args = [];
        this.remaining = n;
        this.bulkLen = -1;
      }

      const args = this.args;
      while (this.remaining > 0) {
        let len = this.bulkLen;
        if (len < 0) {
          if (pos >= end) return this.needMore();
          const c = buf[pos]!;
          if (c !== DOLLAR) throw new RespProtocolError(`expected '$', got '${String.fromCharCode(c)}'`);
          const nl = this.findLF(pos + 1);
          if (nl < 0) {
            if (end - pos > limits.maxInlineLength) throw new RespProtocolError('too big bulk count string', true);
            return this.needMore();
          }
          len = parseLength(buf, pos + 1, nl);
          if (len === INVALID || len < 0) throw new RespProtocolError('invalid bulk length');
          if (len > limits.maxBulkLength) throw new RespProtocolError('invalid bulk length', true);
          this.cmdBytes += nl + 1 - pos + len + 2;
          if (this.cmdBytes > limits.maxQueryBuffer) throw new RespProtocolError('too big request', true);
          pos = nl + 1;
          this.pos = pos;
          this.scanned = 0;
          this.bulkLen = len;
        }
        if (end - pos < len + 2) return this.needMore();
        if (buf[pos + len] !== CR || buf[pos + len + 1] !== LF) throw new RespProtocolError('expected CRLF after bulk string');
        args.push(len === 0 ? '' : buf.toString('latin1', pos, pos + len));
        pos += len + 2;
        this.pos = pos;
        this.bulkLen = -1;
        this.remaining--;
      }
      this.args = null;
      return args;
    }
  }

  /** Index of the LF ending the line that starts at `this.pos`, searching from `from`; -1 if none yet. */
  private findLF(from: number): number {
    const buf = this.buf;
    const end = buf.length;
    let i = Math.max(from, this.pos + this.scanned);
    for (; i < end; i++) {
      if (buf[i] === LF) return i;
    }
    this.scanned = end - this.pos;
    return -1;
  }

  /** One inline command: its arguments ([] for a blank line), or null when its LF has not arrived. */
  private parseInline(): string[] | null {
    const buf = this.buf;
    const start = this.pos;
    const max = this.limits.maxInlineLength;
    const nl = this.findLF(start);
    if (nl < 0) {
      if (buf.length - start > max) throw new RespProtocolError('too big inline request', true);
      return null;
    }
    let lineEnd = nl;
    if (lineEnd > start && buf[lineEnd - 1] === CR) lineEnd--;
    if (lineEnd - start > max) throw new RespProtocolError('too big inline request', true);
    const args = splitArgs(buf, start, lineEnd);
    if (args === null) throw new RespProtocolError('unbalanced quotes in request');
    this.pos = nl + 1;
    this.scanned = 0;
    return args;
  }

  /** Keeps what is left (owned) and answers null: the caller must push more input. */
  private needMore(): null {
    const rest = this.buf.length - this.pos;
    if (rest === 0) {
      // Drained: drop the borrowed chunk, keep a modest owned store for the next partial read.
      this.buf = EMPTY;
      this.pos = 0;
      this.borrowed = false;
      if (this.store.length > KEEP_STORAGE) this.store = EMPTY;
    } else if (this.borrowed) {
      this.retain();
    } else if (this.store.length > SHRINK_ABOVE && rest <= this.store.length >>> 2) {
      const small = Buffer.allocUnsafe(Math.max(4096, rest * 2));
      this.buf.copy(small, 0, this.pos);
      this.store = small;
      this.buf = small.subarray(0, rest);
      this.pos = 0;
    }
    return null;
  }

  /** Appends `chunk` after the unparsed bytes, in owned storage that grows geometrically. */
  private append(chunk: Buffer): void {
    const used = this.buf.length;
    const rest = used - this.pos;
    const total = rest + chunk.length;
    if (!this.borrowed) {
      // buf views store[0, used).
      if (used + chunk.length <= this.store.length) {
        chunk.copy(this.store, used);
        this.buf = this.store.subarray(0, used + chunk.length);
        return;
      }
      if (total <= this.store.length) {
        this.store.copyWithin(0, this.pos, used);
        chunk.copy(this.store, rest);
        this.buf = this.store.subarray(0, total);
        this.pos = 0;
        return;
      }
    }
    const next = Buffer.allocUnsafe(Math.max(4096, total * 2));
    this.buf.copy(next, 0, this.pos, used);
    chunk.copy(next, rest);
    this.store = next;
    this.buf = next.subarray(0, total);
    this.pos = 0;
    this.borrowed = false;
  }

  private ensureStore(size: number): void {
    if (this.store.length < size) this.store = Buffer.allocUnsafe(Math.max(4096, size * 2));
  }
}

const INVALID = Number.MIN_SAFE_INTEGER;

/**
 * The integer in buf[from, lf - 1) where buf[lf - 1] must be CR: strict like Redis' string2ll
 * (optional '-', digits, no '+', no spaces, no leading zeros). Answers INVALID otherwise, and for
 * more than 15 digits (every limit is far below that).
 */
function parseLength(buf: Buffer, from: number, lf: number): number {
  const end = lf - 1;
  if (end < from || buf[end] !== CR) return INVALID;
  let i = from;
  let neg = false;
  if (buf[i] === MINUS) {
    neg = true;
    i++;
  }
  const digits = end - i;
  if (digits < 1 || digits > 15) return INVALID;
  if (buf[i] === ZERO && digits > 1) return INVALID;
  let n = 0;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c < ZERO || c > NINE) return INVALID;
    n = n * 10 + (c - ZERO);
  }
  if (neg) return n === 0 ? INVALID : -n;
  return n;
}

function isSpace(c: number): boolean {
  return c === SPACE || c === TAB || c === LF || c === CR || c === VT || c === FF;
}

function hexValue(c: number): number {
  if (c >= ZERO && c <= NINE) return c - ZERO;
  if (c >= 97 && c <= 102) return c - 87; // a-f
  if (c >= 65 && c <= 70) return c - 55; // A-F
  return -1;
}

/**
 * Splits an inline command line like Redis' sdssplitargs: blanks separate arguments; "double
 * quotes" take \n \r \t \b \a \xHH and \<any> escapes; 'single quotes' take only \'; a closing
 * quote must be followed by a blank or the end. A NUL byte ends the line (sdssplitargs works on a
 * C string). Arguments are byte strings. Answers null for unbalanced quotes.
 */
export function splitArgs(buf: Buffer, start: number, end: number): string[] | null {
  const out: string[] = [];
  let p = start;
  const at = (i: number): number => (i < end ? buf[i]! : NUL);
  for (;;) {
    while (p < end && isSpace(buf[p]!)) p++;
    if (p >= end || buf[p] === NUL) return out;
    // Fast path: an unquoted, unescaped word.
    const wordStart = p;
    while (p < end) {
      const c = buf[p]!;
      if (c === SPACE || c === LF || c === CR || c === TAB || c === NUL || c === DQUOTE || c === SQUOTE) break;
      p++;
    }
    const c = at(p);
    if (c !== DQUOTE && c !== SQUOTE) {
      out.push(buf.toString('latin1', wordStart, p));
      continue;
    }
    // Slow path: the word has quotes; build it byte by byte.
    const bytes: number[] = [];
    for (let i = wordStart; i < p; i++) bytes.push(buf[i]!);
    let inDouble = false;
    let inSingle = false;
    let done = false;
    while (!done) {
      const ch = at(p);
      if (inDouble) {
        if (ch === BACKSLASH && at(p + 1) === 120 /* x */ && hexValue(at(p + 2)) >= 0 && hexValue(at(p + 3)) >= 0) {
          bytes.push(hexValue(at(p + 2)) * 16 + hexValue(at(p + 3)));
          p += 3;
        } else if (ch === BACKSLASH && p + 1 < end && at(p + 1) !== NUL) {
          p++;
          const e = at(p);
          bytes.push(e === 110 ? LF : e === 114 ? CR : e === 116 ? TAB : e === 98 ? 8 : e === 97 ? 7 : e);
        } else if (ch === DQUOTE) {
          // The closing quote must be followed by a space or nothing at all.
          if (p + 1 < end && at(p + 1) !== NUL && !isSpace(at(p + 1))) return null;
          done = true;
        } else if (ch === NUL) {
          return null; // unterminated quotes
        } else {
          bytes.push(ch);
        }
      } else if (inSingle) {
        if (ch === BACKSLASH && at(p + 1) === SQUOTE) {
          p++;
          bytes.push(SQUOTE);
        } else if (ch === SQUOTE) {
          if (p + 1 < end && at(p + 1) !== NUL && !isSpace(at(p + 1))) return null;
          done = true;
        } else if (ch === NUL) {
          return null;
        } else {
          bytes.push(ch);
        }
      } else if (ch === SPACE || ch === LF || ch === CR || ch === TAB || ch === NUL) {
        done = true;
      } else if (ch === DQUOTE) {
        inDouble = true;
      } else if (ch === SQUOTE) {
        inSingle = true;
      } else {
        bytes.push(ch);
      }
      if (p < end) p++;
    }
    out.push(Buffer.from(bytes).toString('latin1'));
  }
}

// ---------------------------------------------------------------------------------------------
// Replies. Each encoder takes and returns byte strings (convert text with bytesOf()); the server
// concatenates the replies of a whole read into one byte string and writes it once, as latin1.

export const REPLY_OK = '+OK\r\n';
export const REPLY_PONG = '+PONG\r\n';
export const REPLY_NIL = '$-1\r\n';
export const REPLY_EMPTY_ARRAY = '*0\r\n';

/** CR and LF would end a simple/error line early; Redis replaces them with spaces too. */
function oneLine(s: string): string {
  return s.indexOf('\r') < 0 && s.indexOf('\n') < 0 ? s : s.replace(/[\r\n]+/g, ' ');
}

/** `+s` (CR/LF in s are replaced by spaces). */
export function simpleReply(s: string): string {
  return `+${oneLine(s)}\r\n`;
}

/** `-ERR message` by default; pass a message that starts with its own code (e.g. `NOPROTO ...`) with `code: ''`. */
export function errorReply(message: string, code = 'ERR'): string {
  return code === '' ? `-${oneLine(message)}\r\n` : `-${code} ${oneLine(message)}\r\n`;
}

export function integerReply(n: number): string {
  return `:${Math.trunc(n)}\r\n`;
}

/** `$len\r\ns\r\n` for a byte string, or nil for null. */
export function bulkReply(s: string | null): string {
  if (s === null) return REPLY_NIL;
  return `$${s.length}\r\n${s}\r\n`;
}

/** An array of already-encoded replies. */
export function arrayReply(encoded: readonly string[]): string {
  return `*${encoded.length}\r\n${encoded.join('')}`;
}

/** An array of bulk byte strings (null → nil element). */
export function bulkArrayReply(items: readonly (string | null)[]): string {
  let out = `*${items.length}\r\n`;
  for (const s of items) out += bulkReply(s);
  return out;
}

/** A RESP value for tests and tools (decodeReply). */
export type RespValue = string | number | null | RespError | RespValue[];

export class RespError {
  constructor(readonly message: string) {}
}

/**
 * Decodes one reply from `buf` at `offset` (for tests and tools, not the hot path). Answers the
 * value and the offset after it, or null when the reply is incomplete. Simple strings and bulk
 * strings both decode to strings.
 */
export function decodeReply(buf: Buffer, offset = 0): { value: RespValue; end: number } | null {
  if (offset >= buf.length) return null;
  const lf = buf.indexOf(LF, offset);
  if (lf < 0) return null;
  const type = buf[offset];
  const line = buf.toString('utf8', offset + 1, lf - 1);
  const after = lf + 1;
  switch (type) {
    case 43: // +
      return { value: line, end: after };
    case 45: // -
      return { value: new RespError(line), end: after };
    case 58: // :
      return { value: Number(line), end: after };
    case DOLLAR: {
      const n = Number(line);
      if (n < 0) return { value: null, end: after };
      if (buf.length < after + n + 2) return null;
      return { value: buf.toString('utf8', after, after + n), end: after + n + 2 };
    }
    case STAR: {
      const n = Number(line);
      if (n < 0) return { value: null, end: after };
      const items: RespValue[] = [];
      let pos = after;
      for (let i = 0; i < n; i++) {
        const item = decodeReply(buf, pos);
        if (item === null) return null;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`decodeReply: unexpected type byte ${String(type)} at ${offset}`);
  }
}

/** Encodes a command (text arguments, sent as UTF-8) as a multibulk request (for tests and tools). */
export function encodeCommand(args: readonly string[]): Buffer {
  let s = `*${args.length}\r\n`;
  for (const a of args) {
    const b = bytesOf(a);
    s += `$${b.length}\r\n${b}\r\n`;
  }
  return Buffer.from(s, 'latin1');
}
