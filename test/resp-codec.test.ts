/**
 * The RESP2 request parser and reply encoders on their own (no sockets): any split of the input
 * gives the same commands or the same error, Redis' error words, limits that bound memory, and no
 * aliasing of the caller's read buffer (splits at every byte, hostile lengths, no aliasing).
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  RespParser,
  RespProtocolError,
  bulkReply,
  bulkArrayReply,
  bytesOf,
  decodeReply,
  encodeCommand,
  errorReply,
  integerReply,
  RespError,
  resolveRespLimits,
  simpleReply,
  splitArgs,
  textOf,
  type RespLimits,
} from '../src/resp/codec.js';

type Outcome = { commands: string[][]; error: string | null };

/** Feeds `chunks` one by one, draining after each, as the server does. */
function feed(chunks: Buffer[], limits?: Partial<RespLimits>): Outcome {
  const p = new RespParser(limits);
  const commands: string[][] = [];
  try {
    for (const c of chunks) {
      p.push(c);
      for (let cmd = p.next(); cmd !== null; cmd = p.next()) commands.push(cmd.map(textOf));
    }
  } catch (err) {
    if (!(err instanceof RespProtocolError)) throw err;
    return { commands, error: err.message };
  }
  return { commands, error: null };
}

/** Every two-piece split, plus byte-by-byte; each must give `expected`. */
function assertEverySplit(input: Buffer, expected: Outcome, limits?: Partial<RespLimits>): void {
  for (let i = 0; i <= input.length; i++) {
    const got = feed([input.subarray(0, i), input.subarray(i)], limits);
    assert.deepEqual(got, expected, `split at byte ${i} of ${JSON.stringify(input.toString('latin1').slice(0, 80))}`);
  }
  const bytes: Buffer[] = [];
  for (let i = 0; i < input.length; i++) bytes.push(input.subarray(i, i + 1));
  assert.deepEqual(feed(bytes, limits), expected, 'byte by byte');
}

/** Small deterministic PRNG (mulberry32) so fuzz failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('RESP parser: splits', () => {
  const pipeline = Buffer.concat([
    encodeCommand(['GET', 'user:1']),
    Buffer.from('*0\r\n'), // empty command: skipped
    Buffer.from('*-1\r\n'), // null array: skipped
    Buffer.from('PING\r\n'), // inline
    Buffer.from('\r\n'), // blank inline line: skipped
    encodeCommand(['MGET', 'a', '', 'ключ-€']), // empty bulk, multi-byte UTF-8 (splits inside a character)
    Buffer.from("echo \"hello world\" 'it\\'s'\n"), // LF-only inline with quotes
    encodeCommand(['SELECT', '1']),
    encodeCommand(['GET', 'x'.repeat(300)]),
  ]);
  const expected: Outcome = {
    commands: [['GET', 'user:1'], ['PING'], ['MGET', 'a', '', 'ключ-€'], ['echo', 'hello world', "it's"], ['SELECT', '1'], ['GET', 'x'.repeat(300)]],
    error: null,
  };

  it('gives the same commands for every split point of a pipelined buffer, and byte by byte', () => {
    assert.deepEqual(feed([pipeline]), expected);
    assertEverySplit(pipeline, expected);
  });

  it('gives the same commands for random multi-piece splits (seeded)', () => {
    const rnd = prng(42);
    for (let round = 0; round < 300; round++) {
      const chunks: Buffer[] = [];
      let pos = 0;
      while (pos < pipeline.length) {
        const n = 1 + Math.floor(rnd() * 40);
        chunks.push(pipeline.subarray(pos, pos + n));
        pos += n;
      }
      assert.deepEqual(feed(chunks), expected, `round ${round}`);
    }
  });

  it('treats `*1\\r\\n*0` | `\\r\\n` (nested array in a request) the same split or not', () => {
    const input = Buffer.from('*1\r\n*0\r\n');
    const whole = feed([input]);
    assert.deepEqual(whole, { commands: [], error: "Protocol error: expected '$', got '*'" });
    assertEverySplit(input, whole);
  });

  it('handles a read that ends just before `$` and one that ends inside CRLF', () => {
    const input = encodeCommand(['GET', 'k']);
    const dollar = input.indexOf('$');
    assert.deepEqual(feed([input.subarray(0, dollar), input.subarray(dollar)]).commands, [['GET', 'k']]);
    const cr = input.lastIndexOf('\r');
    assert.deepEqual(feed([input.subarray(0, cr), input.subarray(cr, cr + 1), input.subarray(cr + 1)]).commands, [['GET', 'k']]);
  });

  it('reads a bulk larger than one TCP read (600 KiB limit, 500 KiB key in 64 KiB pieces)', () => {
    const key = 'k'.repeat(500 * 1024);
    const input = encodeCommand(['GET', key]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < input.length; i += 65536) chunks.push(input.subarray(i, i + 65536));
    const got = feed(chunks, { maxBulkLength: 600 * 1024 });
    assert.equal(got.error, null);
    assert.equal(got.commands.length, 1);
    assert.equal(got.commands[0]![1]!.length, key.length);
  });
});

describe('RESP parser: never aliases the caller’s read buffer', () => {
  it('keeps partial input safe when the caller reuses its buffer (ioredis#2127, node-redis-parser#6)', () => {
    const p = new RespParser();
    const readBuf = Buffer.alloc(64);
    const msg = encodeCommand(['GET', 'abcdef']);
    const cut = msg.length - 5; // inside the bulk payload
    msg.copy(readBuf, 0, 0, cut);
    p.push(readBuf.subarray(0, cut));
    assert.equal(p.next(), null);
    readBuf.fill(0x58); // the caller reuses its buffer for the next read
    msg.copy(readBuf, 0, cut);
    p.push(readBuf.subarray(0, msg.length - cut));
    assert.deepEqual(p.next(), ['GET', 'abcdef']);
  });

  it('returns strings that do not change when the input buffer changes afterwards', () => {
    const p = new RespParser();
    const buf = encodeCommand(['GET', 'stable']);
    p.push(buf);
    const cmd = p.next()!;
    buf.fill(0);
    assert.deepEqual(cmd, ['GET', 'stable']);
  });

  it('copies the unparsed rest on retain() so a paused reader may reuse its buffer', () => {
    const p = new RespParser();
    const buf = Buffer.concat([encodeCommand(['GET', 'a']), encodeCommand(['GET', 'b'])]);
    p.push(buf);
    assert.deepEqual(p.next(), ['GET', 'a']);
    p.retain();
    buf.fill(0x21);
    assert.deepEqual(p.next(), ['GET', 'b']);
    assert.equal(p.next(), null);
  });
});

describe('RESP parser: errors like Redis (tests/unit/protocol.tcl) and limits', () => {
  const cases: [string, string, string][] = [
    ['out of range multibulk length', '*20000000\r\n', 'Protocol error: invalid multibulk length'],
    ['multibulk length beyond 64 bits', '*3000000000000000000000\r\n', 'Protocol error: invalid multibulk length'],
    ['negative multibulk length below -1', '*-10\r\n', 'Protocol error: invalid multibulk length'],
    ['non-number multibulk length', '*blabla\r\n', 'Protocol error: invalid multibulk length'],
    ['multibulk length with a space', '*1 \r\n', 'Protocol error: invalid multibulk length'],
    ['multibulk length with leading zero', '*01\r\n', 'Protocol error: invalid multibulk length'],
    ['wrong multibulk payload header', '*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n', "Protocol error: expected '$', got 'f'"],
    ['negative bulk length', '*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n', 'Protocol error: invalid bulk length'],
    ['null bulk in a request', '*1\r\n$-1\r\n', 'Protocol error: invalid bulk length'],
    ['out of range bulk length', '*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n', 'Protocol error: invalid bulk length'],
    ['non-number bulk length', '*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n', 'Protocol error: invalid bulk length'],
    ['multibulk not followed by bulk arguments', '*1\r\nfoo\r\n', "Protocol error: expected '$', got 'f'"],
    ['bulk payload longer than announced', '*1\r\n$3\r\nPINGX\r\n', 'Protocol error: expected CRLF after bulk string'],
    ['unbalanced double quotes', 'GET "abc\r\n', 'Protocol error: unbalanced quotes in request'],
    ['unbalanced single quotes', "GET 'abc\r\n", 'Protocol error: unbalanced quotes in request'],
    ['closing quote not followed by a space', 'GET "a"b\r\n', 'Protocol error: unbalanced quotes in request'],
  ];
  for (const [name, input, message] of cases) {
    it(`${name}: ${JSON.stringify(input)} → ${message}, at every split`, () => {
      const buf = Buffer.from(input, 'latin1');
      const whole = feed([buf]);
      assert.deepEqual(whole, { commands: [], error: message });
      assertEverySplit(buf, whole);
    });
  }

  it('answers the commands before an error, then the error, and keeps failing', () => {
    const p = new RespParser();
    p.push(Buffer.from('PING\r\n*1\r\n$-5\r\nPING\r\n'));
    assert.deepEqual(p.next(), ['PING']);
    assert.throws(() => p.next(), /invalid bulk length/);
    assert.throws(() => p.next(), /invalid bulk length/);
  });

  it('rejects \\x00 then endless bytes without CRLF once past the inline limit, with bounded buffering', () => {
    const p = new RespParser();
    p.push(Buffer.from([0]));
    assert.equal(p.next(), null);
    const junk = Buffer.alloc(4096, 0x61);
    let error: unknown;
    let maxBuffered = 0;
    for (let i = 0; i < 1000 && error === undefined; i++) {
      p.push(junk);
      try {
        assert.equal(p.next(), null);
      } catch (err) {
        error = err;
      }
      maxBuffered = Math.max(maxBuffered, p.buffered);
    }
    assert.ok(error instanceof RespProtocolError);
    assert.equal(error.message, 'Protocol error: too big inline request');
    assert.ok(maxBuffered <= 64 * 1024 + 4096, `buffered ${maxBuffered}`);
  });

  it('rejects an inline line over 64 KiB even when its LF arrives in the same read', () => {
    assert.equal(feed([Buffer.from(`GET ${'a'.repeat(70 * 1024)}\r\n`)]).error, 'Protocol error: too big inline request');
    assert.deepEqual(feed([Buffer.from(`GET ${'a'.repeat(60 * 1024)}\r\n`)]).commands[0]![1]!.length, 60 * 1024);
  });

  it('rejects endless header lines (`*` / `$` without LF)', () => {
    assert.equal(feed([Buffer.from(`*${'1'.repeat(70 * 1024)}`)]).error, 'Protocol error: too big mbulk count string');
    assert.equal(feed([Buffer.from(`*1\r\n$${'1'.repeat(70 * 1024)}`)]).error, 'Protocol error: too big bulk count string');
  });

  it('does not allocate from an announced length: `$500000` with no payload buffers only what arrived', () => {
    const p = new RespParser();
    p.push(Buffer.from('*2\r\n$3\r\nGET\r\n$500000\r\nab'));
    assert.equal(p.next(), null);
    assert.equal(p.buffered, 2);
    const before = process.memoryUsage().arrayBuffers;
    const parsers: RespParser[] = [];
    for (let i = 0; i < 200; i++) {
      const q = new RespParser();
      q.push(Buffer.from('*1\r\n$524288\r\nx'));
      assert.equal(q.next(), null);
      parsers.push(q);
    }
    // 200 × 512 KiB would be 100 MiB if the announced length were preallocated.
    assert.ok(process.memoryUsage().arrayBuffers - before < 8 * 1024 * 1024);
    assert.equal(parsers.length, 200);
  });

  it('limits bulk length, argument count and the bytes of one command', () => {
    assert.equal(feed([Buffer.from('*1\r\n$11\r\n')], { maxBulkLength: 10 }).error, 'Protocol error: invalid bulk length');
    assert.equal(feed([Buffer.from('*1\r\n$10\r\n0123456789\r\n')], { maxBulkLength: 10 }).error, null);
    assert.equal(feed([Buffer.from('*5\r\n')], { maxMultibulkItems: 4 }).error, 'Protocol error: invalid multibulk length');
    const big = encodeCommand(['MGET', ...Array.from({ length: 20 }, () => 'k'.repeat(100))]);
    assert.equal(feed([big], { maxQueryBuffer: 1000 }).error, 'Protocol error: too big request');
    assert.equal(feed([big], { maxQueryBuffer: 4000 }).error, null);
  });

  it('marks the errors of size limits (tooBig), not those of syntax', () => {
    const errorOf = (input: string, limits?: Partial<RespLimits>): RespProtocolError => {
      const p = new RespParser(limits);
      p.push(Buffer.from(input, 'latin1'));
      try {
        p.next();
      } catch (err) {
        assert.ok(err instanceof RespProtocolError);
        return err;
      }
      throw new Error(`no error for ${JSON.stringify(input.slice(0, 40))}`);
    };
    const tooBig = [
      errorOf('*1\r\n$11\r\n', { maxBulkLength: 10 }),
      errorOf('*2\r\n$600\r\n', { maxQueryBuffer: 512 }),
      errorOf(`GET ${'a'.repeat(70 * 1024)}\r\n`),
      errorOf(`*${'1'.repeat(70 * 1024)}`),
      errorOf(`*1\r\n$${'1'.repeat(70 * 1024)}`),
    ];
    for (const e of tooBig) assert.equal(e.tooBig, true, e.message);
    const syntax = [errorOf('*1\r\n$-5\r\n'), errorOf('*1\r\n$x\r\n'), errorOf('*1\r\n+1\r\n'), errorOf('*1\r\n$1\r\nabc'), errorOf('GET "a\r\n')];
    for (const e of syntax) assert.equal(e.tooBig, false, e.message);
    assert.equal(tooBig[0]!.message, syntax[0]!.message, "Redis' words either way");
  });

  it('reports the memory it holds for a partial command, and does not keep a large store for a few bytes', () => {
    const p = new RespParser();
    assert.equal(p.held, 0);
    p.push(Buffer.from(`*2\r\n$3\r\nGET\r\n$${512 * 1024}\r\n`));
    assert.equal(p.next(), null);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let maxHeld = 0;
    for (let i = 0; i < 4; i++) {
      p.push(chunk);
      assert.equal(p.next(), null);
      assert.ok(p.held >= p.buffered, `held ${p.held} < buffered ${p.buffered}`);
      maxHeld = Math.max(maxHeld, p.held);
    }
    assert.ok(maxHeld > 256 * 1024 && maxHeld <= 2 * p.buffered + 4096, `held ${maxHeld} for ${p.buffered} bytes`);
    // The rest of the bulk, then one byte of the next command.
    p.push(Buffer.concat([chunk, chunk, chunk, chunk, Buffer.from('\r\n*')]));
    const cmd = p.next()!;
    assert.equal(cmd[1]!.length, 512 * 1024);
    assert.equal(p.next(), null);
    assert.equal(p.buffered, 1);
    assert.ok(p.held <= 4096, `held ${p.held} for one byte`);
    p.push(Buffer.from('1\r\n$4\r\nPING\r\n'));
    assert.deepEqual(p.next(), ['PING']);
    assert.equal(p.held, 0);
  });

  it('release() lets go of a partial command at once, and nothing is parsed after it', () => {
    const p = new RespParser();
    p.push(Buffer.concat([Buffer.from(`*2\r\n$3\r\nGET\r\n$${512 * 1024}\r\n`), Buffer.alloc(100 * 1024, 0x61)]));
    assert.equal(p.next(), null);
    assert.ok(p.held >= 100 * 1024);
    p.release();
    assert.equal(p.held, 0);
    assert.equal(p.buffered, 0);
    p.push(Buffer.from('PING\r\n'));
    assert.throws(() => p.next(), /connection closed/);
  });

  it('validates limits eagerly and names the bad one', () => {
    assert.throws(() => resolveRespLimits({ maxBulkLength: 0 }), /maxBulkLength/);
    assert.throws(() => new RespParser({ maxMultibulkItems: 1.5 }), /maxMultibulkItems/);
  });

  it('never throws anything but RespProtocolError on random input (seeded), same result split or whole', () => {
    const rnd = prng(7);
    const alphabet = Buffer.from('*$\r\n0123456789-abcGET "\'\\x\x00');
    for (let round = 0; round < 3000; round++) {
      const len = Math.floor(rnd() * 64);
      const buf = Buffer.alloc(len);
      for (let i = 0; i < len; i++) buf[i] = rnd() < 0.8 ? alphabet[Math.floor(rnd() * alphabet.length)]! : Math.floor(rnd() * 256);
      const whole = feed([buf]);
      const cut = Math.floor(rnd() * (len + 1));
      assert.deepEqual(feed([buf.subarray(0, cut), buf.subarray(cut)]), whole, `round ${round}: ${buf.toString('hex')}`);
    }
  });
});

describe('RESP parser: binary safety', () => {
  it('returns every byte value unchanged as a byte string (redis-cli --pipe ECHOes 20 random bytes)', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const req = Buffer.concat([Buffer.from(`*2\r\n$4\r\nECHO\r\n$256\r\n`), all, Buffer.from('\r\n')]);
    const p = new RespParser();
    p.push(req);
    const [, arg] = p.next()!;
    assert.deepEqual(Buffer.from(arg!, 'latin1'), all);
    assert.equal(Buffer.from(bulkReply(arg!), 'latin1').subarray(6, 6 + 256).compare(all), 0);
  });

  it('converts between byte strings and text only where needed', () => {
    assert.equal(textOf('plain'), 'plain');
    assert.equal(textOf(bytesOf('ключ-€')), 'ключ-€');
    assert.equal(bytesOf('€'), '\xe2\x82\xac');
  });
});

describe('inline splitting (sdssplitargs)', () => {
  const split = (s: string): string[] | null => {
    const b = Buffer.from(s, 'latin1');
    return splitArgs(b, 0, b.length);
  };
  it('splits on blanks and handles quotes and escapes like Redis', () => {
    assert.deepEqual(split('  GET   key  '), ['GET', 'key']);
    assert.deepEqual(split('set "a b" \'c d\''), ['set', 'a b', 'c d']);
    assert.deepEqual(split('echo "\\x41\\n\\t\\"q\\""'), ['echo', 'A\n\t"q"']);
    assert.deepEqual(split('echo "\\xff\\x00"'), ['echo', '\xff\x00']);
    assert.deepEqual(split("echo 'don\\'t'"), ['echo', "don't"]);
    assert.deepEqual(split('echo ""'), ['echo', '']);
    assert.deepEqual(split('a\x00b c'), ['a']); // NUL ends the C string
    assert.deepEqual(split(''), []);
    assert.equal(split('echo "abc'), null);
    assert.equal(split('echo "abc"d'), null);
    assert.equal(split("echo 'abc"), null);
  });
});

describe('reply encoders', () => {
  it('encodes simple, error, integer, bulk (UTF-8 length), nil and arrays', () => {
    assert.equal(simpleReply('OK'), '+OK\r\n');
    assert.equal(errorReply('bad\r\nthing'), '-ERR bad thing\r\n');
    assert.equal(errorReply('unsupported', 'NOPROTO'), '-NOPROTO unsupported\r\n');
    assert.equal(integerReply(42), ':42\r\n');
    assert.equal(bulkReply('10.0.0.1:80'), '$11\r\n10.0.0.1:80\r\n');
    assert.equal(bulkReply(bytesOf('€')), '$3\r\n\xe2\x82\xac\r\n');
    assert.equal(bulkReply(null), '$-1\r\n');
    assert.equal(bulkArrayReply(['a', null]), '*2\r\n$1\r\na\r\n$-1\r\n');
  });

  it('decodes what it encodes', () => {
    const buf = Buffer.from(bulkArrayReply(['x', null, bytesOf('€')]) + integerReply(3) + errorReply('no'), 'latin1');
    const a = decodeReply(buf)!;
    assert.deepEqual(a.value, ['x', null, '€']);
    const b = decodeReply(buf, a.end)!;
    assert.equal(b.value, 3);
    const c = decodeReply(buf, b.end)!;
    assert.ok(c.value instanceof RespError);
    assert.equal(decodeReply(buf.subarray(0, 5)), null);
  });
});
