/**
 * Consistent hashing: one conformance suite (hono's `common.case.test.ts` habit) run against
 * every algorithm, with and without bounded loads, then what is particular to each one, the hash
 * function itself and the factory's validation.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';
import { Member, MemberSet } from '../src/members/member.js';
import { BoundedLoadPicker } from '../src/routing/hash/bounded.js';
import { crc32 } from '../src/routing/hash/crc32.js';
import { combine32, hash32, hash32Bytes, mix32 } from '../src/routing/hash/hash.js';
import { createHashPickerFactory, type HashPickerOptions } from '../src/routing/hash/index.js';
import { isPrime, MaglevPicker } from '../src/routing/hash/maglev.js';
import type { HashPicker } from '../src/routing/hash/picker.js';
import { RendezvousPicker } from '../src/routing/hash/rendezvous.js';
import { RingPicker } from '../src/routing/hash/ring.js';

/** Seeded PRNG (mulberry32): tests are reproducible. */
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

const KEY_COUNT = 100_000;
/** Realistic keys: tenant/document paths, session tokens, a few non-ASCII. */
const KEYS: readonly string[] = Array.from({ length: KEY_COUNT }, (_, i) => {
  if (i % 3 === 0) return `tenant-${i % 997}/documents/doc-${i}`;
  if (i % 3 === 1) return `Bearer ${(Math.imul(i, 0x9e3779b1) >>> 0).toString(36)}.${i}`;
  return i % 100 === 2 ? `café-ünïcode-${i}-😀` : `session:${i}`;
});

function member(id: string, weight = 1): Member {
  const colon = id.lastIndexOf(':');
  return new Member(id.slice(0, colon), Number(id.slice(colon + 1)), weight);
}

const IDS = ['10.1.0.11:7000', '10.1.0.12:7000', '10.1.0.13:7000', '10.1.0.14:7000', '10.1.0.15:7000'];
const fresh = (ids: readonly string[] = IDS, weights?: readonly number[]) => ids.map((id, i) => member(id, weights?.[i] ?? 1));

function owners(p: HashPicker, keys: readonly string[] = KEYS): string[] {
  return keys.map((k) => p.pick(k, 0)!.id);
}

function countBy(list: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of list) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

interface Case {
  name: string;
  cfg: HashPickerOptions;
  /** Share of the keys not owned by a leaver that may move anyway (0: strictly minimal). */
  collateral: number;
  /**
   * How far key shares may stray from the weights (default 0.10): max/mean ≤ 1 + spread, keys moved
   * by a leaver ≤ (1.05 + spread) × 1/5, a weight-w member's keys within w × (1 ± spread).
   */
  spread?: number;
}

const BASE: Case[] = [
  { name: 'ring (160 vnodes)', cfg: { algorithm: 'ring', vnodes: 160 }, collateral: 0 },
  // Maglev moves a few slots of the members that stay when the table is rebuilt (the paper's
  // "minimal disruption" is approximate): about 0.1% of keys for 5 members and M = 65537.
  { name: 'maglev (65537)', cfg: { algorithm: 'maglev', tableSize: 65537 }, collateral: 0.005 },
  { name: 'rendezvous', cfg: { algorithm: 'rendezvous' }, collateral: 0 },
  // nginx's ring is classic ketama (one probe): shares stray up to about 1.15 × for 5 members.
  { name: 'ring, compat nginx', cfg: { algorithm: 'ring', compat: 'nginx' }, collateral: 0, spread: 0.2 },
];
const CASES: Case[] = [...BASE, ...BASE.map((c) => ({ ...c, name: `${c.name} + bounded 1.25`, cfg: { ...c.cfg, boundedLoad: 1.25 } }))];

for (const c of CASES) {
  describe(`hash conformance: ${c.name}`, () => {
    const factory = createHashPickerFactory(c.cfg);
    const spread = c.spread ?? 0.1;
    const movedBound = +(1.05 + spread).toFixed(2);

    test('the same members listed in another order give the same answer for 100k keys, on every attempt', () => {
      const a = factory(new MemberSet(fresh()));
      const b = factory(new MemberSet(fresh([...IDS].reverse())));
      const shuffled = [...IDS];
      const r = prng(7);
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const d = factory(new MemberSet(fresh(shuffled)));
      assert.deepEqual(owners(b), owners(a));
      assert.deepEqual(owners(d), owners(a));
      for (let i = 0; i < 2000; i++) {
        for (let attempt = 1; attempt < 5; attempt++) {
          assert.equal(b.pick(KEYS[i], attempt)!.id, a.pick(KEYS[i], attempt)!.id, `key ${KEYS[i]} attempt ${attempt}`);
        }
      }
    });

    for (let leave = 0; leave < IDS.length; leave++) {
      test(`when ${IDS[leave]} leaves only its keys move (≤ ${movedBound} × 1/5), and they all return when it comes back`, () => {
        const before = owners(factory(new MemberSet(fresh())));
        const during = owners(factory(new MemberSet(fresh(IDS.filter((_, i) => i !== leave)))));
        const after = owners(factory(new MemberSet(fresh())));
        const leaver = IDS[leave]!;
        let moved = 0;
        let others = 0;
        let othersMoved = 0;
        for (let i = 0; i < KEY_COUNT; i++) {
          if (during[i] !== before[i]) moved++;
          if (before[i] !== leaver) {
            others++;
            if (during[i] !== before[i]) othersMoved++;
          }
          assert.notEqual(during[i], leaver);
        }
        assert.ok(moved / KEY_COUNT <= movedBound * (1 / 5), `moved ${moved / KEY_COUNT} of the keys`);
        assert.ok(moved > 0);
        assert.ok(othersMoved / others <= c.collateral, `${othersMoved} keys of other members moved`);
        assert.deepEqual(after, before);
      });
    }

    test('a member that joins takes only keys for itself', () => {
      const four = owners(factory(new MemberSet(fresh(IDS.slice(0, 4)))));
      const five = owners(factory(new MemberSet(fresh())));
      let stolen = 0;
      let changed = 0;
      for (let i = 0; i < KEY_COUNT; i++) {
        if (five[i] === four[i]) continue;
        changed++;
        if (five[i] !== IDS[4]) stolen++;
      }
      assert.ok(changed > 0.15 * KEY_COUNT && changed < 0.23 * KEY_COUNT, `${changed} keys changed`);
      assert.ok(stolen <= c.collateral * KEY_COUNT, `${stolen} keys moved between old members`);
    });

    test(`100k keys spread over 5 equal members with max/mean ≤ ${(1 + spread).toFixed(2)}`, () => {
      const counts = countBy(owners(factory(new MemberSet(fresh()))));
      assert.equal(counts.size, 5);
      const max = Math.max(...counts.values());
      assert.ok(max / (KEY_COUNT / 5) <= 1 + spread, `max/mean ${max / (KEY_COUNT / 5)}`);
    });

    test('a member with weight 2 gets about twice the keys of a member with weight 1', () => {
      const counts = countBy(owners(factory(new MemberSet(fresh(IDS, [1, 1, 2, 1, 1])))));
      const heavy = counts.get(IDS[2]!)!;
      const light = (KEY_COUNT - heavy) / 4;
      assert.ok(heavy / light > 2 * (1 - spread) && heavy / light < 2 * (1 + spread), `weight 2 got ${heavy / light}× the keys`);
      const counts3 = countBy(owners(factory(new MemberSet(fresh(IDS, [3, 1, 1, 1, 1])))));
      const ratio3 = counts3.get(IDS[0]!)! / ((KEY_COUNT - counts3.get(IDS[0]!)!) / 4);
      assert.ok(ratio3 > 3 * (1 - spread) && ratio3 < 3 * (1 + spread), `weight 3 got ${ratio3}× the keys`);
    });

    test('attempts 0..n−1 give n distinct members, the owner first, then wrap around', () => {
      const p = factory(new MemberSet(fresh()));
      for (let i = 0; i < 3000; i++) {
        const key = KEYS[i]!;
        const seen = new Set<string>();
        for (let attempt = 0; attempt < 5; attempt++) seen.add(p.pick(key, attempt)!.id);
        assert.equal(seen.size, 5, `key ${key}`);
        assert.equal(p.pick(key, 5)!.id, p.pick(key, 0)!.id);
        assert.equal(p.pick(key, 7)!.id, p.pick(key, 2)!.id);
      }
    });

    test('the first fallback is spread over the other members, not always the same one', () => {
      const p = factory(new MemberSet(fresh()));
      const byOwner = new Map<string, Set<string>>();
      for (let i = 0; i < 5000; i++) {
        const o = p.pick(KEYS[i], 0)!.id;
        let s = byOwner.get(o);
        if (!s) byOwner.set(o, (s = new Set()));
        s.add(p.pick(KEYS[i], 1)!.id);
      }
      for (const [o, s] of byOwner) assert.ok(s.size >= 3, `keys of ${o} fall back to only ${[...s].join(', ')}`);
    });

    test('an empty member set answers undefined; an undefined key answers undefined', () => {
      const empty = factory(MemberSet.EMPTY);
      assert.equal(empty.pick('anything', 0), undefined);
      assert.equal(empty.pick('anything', 3), undefined);
      const p = factory(new MemberSet(fresh()));
      assert.equal(p.pick(undefined, 0), undefined);
      assert.ok(p.pick('', 0), 'the empty string is a key');
    });

    test('a single member answers every key and every attempt', () => {
      const only = member('10.9.9.9:1');
      const p = factory(new MemberSet([only]));
      for (let i = 0; i < 200; i++) for (let a = 0; a < 3; a++) assert.equal(p.pick(KEYS[i], a), only);
    });

    test('answers the Member objects of the snapshot', () => {
      const ms = fresh();
      const p = factory(new MemberSet(ms));
      for (let i = 0; i < 100; i++) assert.ok(ms.includes(p.pick(KEYS[i], i % 5)!));
    });
  });
}

/**
 * Recorded answers: an instance of a new homing version must agree with the instances it
 * replaces during a rolling upgrade, so the algorithms may not change silently.
 */
describe('recorded answers stay the same across versions', () => {
  const keys = ['tenant-1/documents/doc-1', 'Bearer abc.def', 'session:42', 'café-😀', ''];
  const expected: Record<string, string[]> = {
    ring: ['10.1.0.11:7000', '10.1.0.12:7000', '10.1.0.13:7000', '10.1.0.14:7000', '10.1.0.13:7000'],
    maglev: ['10.1.0.14:7000', '10.1.0.12:7000', '10.1.0.11:7000', '10.1.0.12:7000', '10.1.0.12:7000'],
    rendezvous: ['10.1.0.13:7000', '10.1.0.12:7000', '10.1.0.13:7000', '10.1.0.15:7000', '10.1.0.12:7000'],
  };
  /** hash32 of the owners and first fallbacks of 1000 keys over weighted members, joined by commas. */
  const fingerprint: Record<string, number> = { ring: 0x4c609332, maglev: 0xcb8c7d59, rendezvous: 0xe6cc16ab };
  for (const algorithm of ['ring', 'maglev', 'rendezvous'] as const) {
    test(algorithm, () => {
      const p = createHashPickerFactory({ algorithm })(new MemberSet(fresh()));
      assert.deepEqual(keys.map((k) => p.pick(k, 0)!.id), expected[algorithm]);
      const w = createHashPickerFactory({ algorithm })(new MemberSet(fresh(IDS, [1, 2, 1, 2, 1])));
      const answers: string[] = [];
      for (let i = 0; i < 1000; i++) answers.push(w.pick(`golden-${i}`, 0)!.id, w.pick(`golden-${i}`, 1)!.id);
      assert.equal(hash32(answers.join(',')), fingerprint[algorithm]);
    });
  }
});

/** Strings of every UTF-8 length, surrogate pairs and lone surrogates: a few fixed, 20k random. */
function mixedStrings(seed: number): string[] {
  const r = prng(seed);
  const strings = ['π', 'ünïcödé', '日本語のキー', '😀', 'a😀b', '\ud800', 'x\udc00y', '\ud83d', 'abc\u07ff\u0800\uffff'];
  for (let t = 0; t < 20_000; t++) {
    let s = '';
    const len = Math.floor(r() * 24);
    for (let j = 0; j < len; j++) {
      const x = r();
      s += String.fromCharCode(x < 0.6 ? Math.floor(r() * 0x80) : x < 0.8 ? Math.floor(r() * 0x800) : Math.floor(r() * 0x10000));
    }
    strings.push(s);
  }
  return strings;
}

describe('hash32 (MurmurHash3 x86_32 over UTF-8)', () => {
  test('matches the reference test vectors', () => {
    assert.equal(hash32(''), 0);
    assert.equal(hash32('', 1), 0x514e28b7);
    assert.equal(hash32('', 0xffffffff), 0x81f16f39);
    assert.equal(hash32('a', 0x9747b28c), 0x7fa09ea6);
    assert.equal(hash32('aaaa', 0x9747b28c), 0x5a97808a);
    assert.equal(hash32('Hello, world!', 0x9747b28c), 0x24884cba);
    assert.equal(hash32('Hello, world!', 1234), 0xfaf6cdb3);
    assert.equal(hash32('The quick brown fox jumps over the lazy dog'), 0x2e4ff723);
  });

  test('hashes a string exactly as its UTF-8 bytes, surrogate pairs and lone surrogates included', () => {
    for (const [i, s] of mixedStrings(11).entries()) {
      const bytes = Buffer.from(s, 'utf8');
      assert.equal(hash32(s, i), hash32Bytes(bytes, i), JSON.stringify(s));
    }
    const padded = Buffer.from('xxHello, world!yy');
    assert.equal(hash32Bytes(padded, 0x9747b28c, 2, 15), 0x24884cba);
  });

  test('spreads near-identical keys over the whole range', () => {
    const buckets = new Array<number>(16).fill(0);
    for (let i = 0; i < 160_000; i++) buckets[hash32(`key-${i}`) >>> 28]!++;
    for (const b of buckets) assert.ok(b > 9_500 && b < 10_500, `bucket ${b}`);
  });

  test('mix32 is the MurmurHash3 finaliser and combine32 depends on the order of its inputs', () => {
    assert.equal(mix32(0), 0);
    assert.equal(mix32(1), 0x514e28b7); // = hash32('', 1): fmix32(1 ^ 0)
    assert.notEqual(combine32(1, 2), combine32(2, 1));
    // Pairs with the same XOR must not collide (the flaw of mix32(a ^ b)).
    assert.notEqual(combine32(0x1234, 0x0f0f), combine32(0x1234 ^ 0x0f0f ^ 0xf0f0, 0xf0f0));
  });
});

describe('ring', () => {
  /** Owner by a linear scan of the ring's entries, with the same probes: the reference. */
  function naiveOwner(entries: Array<{ point: number; member: string }>, h: number, probes: number): string {
    let best = '';
    let bestDistance = Infinity;
    for (let k = 0; k < probes; k++) {
      const p = k === 0 ? h : combine32(h, k);
      const e = entries.find((x) => x.point >= p) ?? entries[0]!;
      const d = (e.point - p + 2 ** 32) % 2 ** 32;
      if (d < bestDistance) {
        bestDistance = d;
        best = e.member;
      }
    }
    return best;
  }

  for (const probes of [1, 2, 3]) {
    test(`bucketed search agrees with a linear scan (${probes} probe${probes > 1 ? 's' : ''})`, () => {
      const ring = new RingPicker(new MemberSet(fresh()), 20, probes);
      const entries = [...ring.entries()];
      assert.equal(entries.length, 100);
      for (let i = 1; i < entries.length; i++) assert.ok(entries[i]!.point >= entries[i - 1]!.point);
      const edge = [0, 1, 0xffffffff, 0x80000000, 0x7fffffff, entries[0]!.point, entries[0]!.point + 1, entries.at(-1)!.point, entries.at(-1)!.point + 1];
      const r = prng(3);
      const hashes = [...edge, ...Array.from({ length: 5000 }, () => Math.floor(r() * 2 ** 32))];
      for (const h of hashes) assert.equal(ring.pickHash(h >>> 0, 0)!.id, naiveOwner(entries, h >>> 0, probes), `hash ${h}`);
    });
  }

  test('one probe is classic ketama: the owner of the first point clockwise, attempt n the n-th distinct member after it', () => {
    const ring = new RingPicker(new MemberSet(fresh()), 160, 1);
    const entries = [...ring.entries()];
    for (const key of KEYS.slice(0, 500)) {
      const h = hash32(key);
      let pos = entries.findIndex((e) => e.point >= h);
      if (pos < 0) pos = 0;
      const walk: string[] = [];
      for (let s = 0; s < entries.length && walk.length < 5; s++) {
        const id = entries[(pos + s) % entries.length]!.member;
        if (!walk.includes(id)) walk.push(id);
      }
      for (let a = 0; a < 5; a++) assert.equal(ring.pick(key, a)!.id, walk[a]);
    }
  });

  test('each member has vnodes × weight points', () => {
    const ring = new RingPicker(new MemberSet(fresh(IDS, [1, 2, 1, 1, 3])), 40);
    const counts = countBy([...ring.entries()].map((e) => e.member));
    assert.deepEqual(IDS.map((id) => counts.get(id)), [40, 80, 40, 40, 120]);
  });

  test('raising a weight only moves keys to that member', () => {
    const f = createHashPickerFactory({ algorithm: 'ring' });
    const before = owners(f(new MemberSet(fresh())));
    const after = owners(f(new MemberSet(fresh(IDS, [1, 2, 1, 1, 1]))));
    for (let i = 0; i < KEY_COUNT; i++) if (after[i] !== before[i]) assert.equal(after[i], IDS[1]);
  });

  test('over many member lists the busiest member stays under 1.10 × mean with 2 probes, where classic ketama (1 probe) does not', () => {
    const worst = [0, 0, 0];
    for (let t = 0; t < 12; t++) {
      const ids = Array.from({ length: 5 }, (_, i) => `10.${t}.${i}.${(t * 31 + i * 7) % 250}:${8000 + t}`);
      for (const probes of [1, 2]) {
        const counts = countBy(owners(new RingPicker(new MemberSet(fresh(ids)), 160, probes), KEYS.slice(0, 50_000)));
        worst[probes] = Math.max(worst[probes]!, Math.max(...counts.values()) / 10_000);
      }
    }
    assert.ok(worst[2]! <= 1.1, `2 probes: worst max/mean ${worst[2]}`);
    assert.ok(worst[1]! > 1.1, `1 probe: worst max/mean ${worst[1]}`);
  });

  test('rejects bad vnodes and probes, and rings too large, naming the option', () => {
    assert.throws(() => new RingPicker(new MemberSet(fresh()), 0), /hash\.vnodes/);
    assert.throws(() => new RingPicker(new MemberSet(fresh()), 1.5), /hash\.vnodes/);
    assert.throws(() => new RingPicker(new MemberSet(fresh()), 160, 0), /hash\.probes/);
    assert.throws(() => new RingPicker(new MemberSet(fresh(IDS, [1000, 1000, 1000, 1000, 1000])), 10_000), /hash\.vnodes × total weight/);
  });
});

describe('crc32 (the key hash of compat nginx)', () => {
  test('is zlib\'s CRC-32 of the UTF-8 bytes, surrogate pairs and lone surrogates included', () => {
    assert.equal(crc32(''), 0);
    assert.equal(crc32('123456789'), 0xcbf43926);
    assert.equal(crc32('The quick brown fox jumps over the lazy dog'), 0x414fa339);
    for (const s of [...mixedStrings(13), 'abcd\u07ff\u0800\uffff', ...KEYS.slice(0, 3000)]) assert.equal(crc32(s), zlib.crc32(Buffer.from(s, 'utf8')) >>> 0, JSON.stringify(s));
  });
});

describe('ring, compat nginx', () => {
  const nginx = (ms: Member[]) => new RingPicker(new MemberSet(ms), 160, 2, 'nginx');

  /**
   * nginx's ring written from its description with zlib's crc32 (a second implementation):
   * crc32(host NUL port) continued with the previous point's 4 bytes, 160 × weight points, sorted,
   * equal points kept once (the first server's, in the order given).
   */
  function reference(ms: readonly Member[]): Array<{ point: number; member: string }> {
    const all: Array<{ point: number; member: string }> = [];
    for (const m of ms) {
      const c = m.id.lastIndexOf(':');
      let prev = zlib.crc32(Buffer.concat([Buffer.from(m.id.slice(0, c)), Buffer.from([0]), Buffer.from(m.id.slice(c + 1))]));
      const base = prev;
      const word = Buffer.alloc(4, 0);
      for (let j = 0; j < 160 * m.weight; j++) {
        prev = zlib.crc32(word, base);
        all.push({ point: prev >>> 0, member: m.id });
        word.writeUInt32LE(prev >>> 0);
      }
    }
    all.sort((a, b) => a.point - b.point); // stable: ties stay in the order given
    return all.filter((e, i) => i === 0 || all[i - 1]!.point !== e.point);
  }

  /** The first `n` distinct members from the first point ≥ h, walking on past the top. */
  function walk(entries: ReadonlyArray<{ point: number; member: string }>, h: number, n: number): string[] {
    let pos = entries.findIndex((e) => e.point >= h);
    if (pos < 0) pos = 0;
    const out: string[] = [];
    for (let s = 0; s < entries.length && out.length < n; s++) {
      const id = entries[(pos + s) % entries.length]!.member;
      if (!out.includes(id)) out.push(id);
    }
    return out;
  }

  test('has nginx\'s points and answers every key and attempt as nginx\'s walk, keys hashed with CRC-32', () => {
    const ms = fresh(IDS, [1, 3, 1, 2, 1]);
    const ring = nginx(ms);
    const ref = reference(ms);
    assert.deepEqual([...ring.entries()], ref);
    assert.equal(ring.size, 160 * 8);
    for (const key of KEYS.slice(0, 3000)) {
      const want = walk(ref, crc32(key), 5);
      for (let a = 0; a < 5; a++) assert.equal(ring.pick(key, a)!.id, want[a], `${key} attempt ${a}`);
    }
  });

  test('equal points of two servers are kept once, for the member whose id sorts first', () => {
    // 10.0.0.122:8080 and 10.0.0.218:8080 share the point 0xc745309c.
    const ms = [member('10.0.0.218:8080'), member('10.0.0.122:8080')];
    const ring = nginx(ms);
    assert.equal(ring.size, 319);
    const entries = [...ring.entries()];
    const tie = entries.filter((e) => e.point === 0xc745309c);
    assert.deepEqual(tie, [{ point: 0xc745309c, member: '10.0.0.122:8080' }]);
    assert.deepEqual(entries, reference([...ms].reverse()));
    assert.equal(ring.pickHash(0xc745309c, 0)!.id, '10.0.0.122:8080');
  });

  test('probes do not apply (nginx looks a key up once); vnodes must be 160, and compat needs the ring', () => {
    const one = nginx(fresh());
    const three = new RingPicker(new MemberSet(fresh()), 160, 3, 'nginx');
    assert.equal(three.probes, 1);
    assert.deepEqual(owners(three, KEYS.slice(0, 5000)), owners(one, KEYS.slice(0, 5000)));
    assert.throws(() => createHashPickerFactory({ algorithm: 'ring', compat: 'nginx', vnodes: 100 }), /hash\.vnodes must be 160 with hash\.compat nginx/);
    assert.throws(() => new RingPicker(new MemberSet(fresh()), 40, 1, 'nginx'), /hash\.vnodes/);
    assert.throws(() => createHashPickerFactory({ algorithm: 'maglev', compat: 'nginx' }), /hash\.compat nginx needs hash\.algorithm ring/);
    assert.throws(() => createHashPickerFactory({ algorithm: 'ring', compat: 'envoy' as never }), /hash\.compat must be nginx/);
  });

  test('bounded loads over it hash keys with CRC-32 too', () => {
    const ms = fresh();
    const p = createHashPickerFactory({ algorithm: 'ring', compat: 'nginx', boundedLoad: 1.25 })(new MemberSet(ms));
    assert.ok(p instanceof BoundedLoadPicker && p.keyHash === 'crc32');
    assert.deepEqual(owners(p, KEYS.slice(0, 5000)), owners(nginx(ms), KEYS.slice(0, 5000)));
  });

  test('recorded answers stay the same across versions', () => {
    const keys = ['tenant-1/documents/doc-1', 'Bearer abc.def', 'session:42', 'café-😀', ''];
    const p = createHashPickerFactory({ algorithm: 'ring', compat: 'nginx' })(new MemberSet(fresh()));
    assert.deepEqual(keys.map((k) => p.pick(k, 0)!.id), ['10.1.0.12:7000', '10.1.0.13:7000', '10.1.0.15:7000', '10.1.0.13:7000', '10.1.0.13:7000']);
    const w = createHashPickerFactory({ algorithm: 'ring', compat: 'nginx' })(new MemberSet(fresh(IDS, [1, 2, 1, 2, 1])));
    const answers: string[] = [];
    for (let i = 0; i < 1000; i++) answers.push(w.pick(`golden-${i}`, 0)!.id, w.pick(`golden-${i}`, 1)!.id);
    assert.equal(hash32(answers.join(',')), 0x6c848e01);
  });
});

describe('maglev', () => {
  test('equal members hold table slots differing by at most one', () => {
    const m = new MaglevPicker(new MemberSet(fresh()));
    const counts = m.slotCounts();
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, counts.join(','));
    assert.equal(counts.reduce((a, b) => a + b), 65537);
  });

  test('weights set the share of slots (Envoy weighted population)', () => {
    const m = new MaglevPicker(new MemberSet(fresh(IDS, [1, 2, 1, 4, 1])), 65537);
    const counts = m.slotCounts();
    const unit = 65537 / 9;
    [1, 2, 1, 4, 1].forEach((w, i) => assert.ok(Math.abs(counts[i]! / unit - w) < 0.02 * w, `member ${i}: ${counts[i]! / unit} for weight ${w}`));
  });

  test('a key lands on table[hash mod M]', () => {
    const m = new MaglevPicker(new MemberSet(fresh()), 7919);
    const counts = m.slotCounts();
    assert.equal(counts.reduce((a, b) => a + b), 7919);
    for (const key of KEYS.slice(0, 100)) assert.equal(m.pick(key, 0), m.pickHash(hash32(key) % 7919, 0));
  });

  test('fallbacks stay distinct when one member holds nearly the whole table', () => {
    const p = new MaglevPicker(new MemberSet(fresh(IDS, [1000, 1, 1, 1, 1])), 65537);
    for (const key of KEYS.slice(0, 300)) {
      const got = new Set([0, 1, 2, 3, 4].map((a) => p.pick(key, a)!.id));
      assert.equal(got.size, 5);
    }
  });

  test('tableSize must be prime, within range and above the member count, named in the error', () => {
    assert.equal(isPrime(65537), true);
    assert.equal(isPrime(65535), false);
    assert.equal(isPrime(2), true);
    assert.equal(isPrime(1), false);
    assert.throws(() => createHashPickerFactory({ algorithm: 'maglev', tableSize: 65536 }), /hash\.tableSize/);
    assert.throws(() => createHashPickerFactory({ algorithm: 'maglev', tableSize: 5 }), /hash\.tableSize/);
    assert.throws(() => createHashPickerFactory({ algorithm: 'maglev', tableSize: 16777259 }), /hash\.tableSize/);
    const f = createHashPickerFactory({ algorithm: 'maglev', tableSize: 7 });
    assert.ok(f(new MemberSet(fresh())).pick('k', 0));
    const eight = Array.from({ length: 8 }, (_, i) => member(`10.0.0.${i}:1`));
    assert.throws(() => f(new MemberSet(eight)), /hash\.tableSize \(7\) must be larger than the number of members \(8\)/);
  });
});

describe('rendezvous', () => {
  test('attempt n is the member with the (n+1)-th highest score −w / ln(u)', () => {
    const ms = fresh(IDS, [1, 3, 1, 2, 1]);
    const p = new RendezvousPicker(new MemberSet(ms));
    for (const key of KEYS.slice(0, 500)) {
      const h = hash32(key);
      const ranked = ms
        .map((m) => ({ id: m.id, score: -m.weight / Math.log((combine32(h, hash32(m.id)) + 0.5) / 2 ** 32) }))
        .sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1));
      for (let a = 0; a < 5; a++) assert.equal(p.pick(key, a)!.id, ranked[a]!.id);
    }
  });

  test('with equal weights the integer shortcut ranks exactly as the logarithm would', () => {
    const p = new RendezvousPicker(new MemberSet(fresh()));
    for (const key of KEYS.slice(0, 500)) {
      const h = hash32(key);
      const ranked = IDS.map((id) => ({ id, score: -1 / Math.log((combine32(h, hash32(id)) + 0.5) / 2 ** 32) })).sort((a, b) => b.score - a.score);
      for (let a = 0; a < 5; a++) assert.equal(p.pick(key, a)!.id, ranked[a]!.id);
    }
  });
});

describe('bounded loads', () => {
  const C = 1.25;

  /** Requests arrive and finish at random, most of them for a few hot keys. */
  function simulate(picker: HashPicker, ms: readonly Member[], seed: number, onPick: (m: Member, total: number) => void): void {
    const r = prng(seed);
    const inflight: Member[] = [];
    for (let step = 0; step < 60_000; step++) {
      // Load swings between ~0 and ~400 requests in flight.
      const target = 200 + 200 * Math.sin(step / 3000);
      if (inflight.length === 0 || (r() < 0.5 + (target - inflight.length) / 400 && inflight.length < 1000)) {
        const key = r() < 0.8 ? `hot-${Math.floor(r() * 3)}` : `cold-${Math.floor(r() * 50_000)}`;
        const m = picker.pick(key, 0)!;
        m.inflight++;
        inflight.push(m);
        let total = 0;
        for (const x of ms) total += x.inflight;
        onPick(m, total);
      } else {
        const i = Math.floor(r() * inflight.length);
        inflight[i]!.inflight--;
        inflight[i] = inflight[inflight.length - 1]!;
        inflight.pop();
      }
    }
    for (const m of inflight) m.inflight--;
  }

  for (const algorithm of ['ring', 'maglev', 'rendezvous'] as const) {
    test(`${algorithm}: no member ever goes above ceil(c × total × weight / Σweight) as requests come and go`, () => {
      for (const weights of [[1, 1, 1, 1, 1], [1, 2, 1, 3, 1]]) {
        const ms = fresh(IDS, weights);
        const sumW = weights.reduce((a, b) => a + b);
        const bounded = createHashPickerFactory({ algorithm, boundedLoad: C })(new MemberSet(ms));
        let picks = 0;
        simulate(bounded, ms, 5, (m, total) => {
          picks++;
          const cap = Math.ceil((C * total * m.weight) / sumW);
          assert.ok(m.inflight <= cap, `${m.id} has ${m.inflight} in flight, cap ${cap} at total ${total}`);
        });
        assert.ok(picks > 20_000);
        for (const m of ms) assert.equal(m.inflight, 0);
      }
    });

    test(`${algorithm}: the same hot-key load without the bound does overload its owner (so the check above can fail)`, () => {
      const ms = fresh();
      const plain = createHashPickerFactory({ algorithm })(new MemberSet(ms));
      let worst = 0;
      simulate(plain, ms, 5, (m, total) => {
        worst = Math.max(worst, m.inflight / Math.ceil((C * total) / 5));
      });
      assert.ok(worst > 1.5, `worst load over cap ${worst}`);
    });
  }

  test('while the load grows, every member stays within its cap at every moment', () => {
    const ms = fresh();
    const p = createHashPickerFactory({ algorithm: 'ring', boundedLoad: C })(new MemberSet(ms));
    for (let i = 0; i < 5000; i++) {
      p.pick(i % 2 ? 'hot' : `k${i}`, 0)!.inflight++;
      const cap = Math.ceil((C * (i + 1)) / 5);
      for (const m of ms) assert.ok(m.inflight <= cap, `${m.id}: ${m.inflight} > ${cap}`);
    }
  });

  test('a full owner hands the key to the next member of its fallback order that has room', () => {
    const ms = fresh();
    const inner = new RingPicker(new MemberSet(ms));
    const p = new BoundedLoadPicker(inner, C);
    const key = 'tenant-7';
    const order = [0, 1, 2, 3, 4].map((a) => inner.pick(key, a)!);
    assert.equal(p.pick(key, 0), order[0]);
    // total 10 → cap ceil(1.25 × 11 / 5) = 3: the owner (4 in flight) and the first fallback (3) are full.
    order[0]!.inflight = 4;
    order[1]!.inflight = 3;
    order[2]!.inflight = 2;
    order[3]!.inflight = 1;
    assert.equal(p.capOf(0), 3);
    assert.equal(p.pick(key, 0), order[2]);
    // attempt n skips n members with room, then goes on with the full ones in order.
    assert.deepEqual([1, 2, 3, 4].map((a) => p.pick(key, a)), [order[3], order[4], order[0], order[1]]);
  });

  test('the cap counts the request being placed: ceil(c × (total + 1) / n)', () => {
    const ms = fresh();
    const inner = new MaglevPicker(new MemberSet(ms));
    const p = new BoundedLoadPicker(inner, C);
    const key = 'tenant-9';
    const order = [0, 1, 2, 3, 4].map((a) => inner.pick(key, a)!);
    // total 8 → cap ceil(1.25 × 9 / 5) = 3, so the owner may go from 2 to 3 (ceil(1.25 × 8 / 5) would be 2).
    for (const [i, n] of [2, 2, 2, 2, 0].entries()) order[i]!.inflight = n;
    assert.equal(p.capOf(0), 3);
    assert.equal(p.pick(key, 0), order[0]);
    order[0]!.inflight = 3; // total 9 → cap ceil(1.25 × 10 / 5) = 3: now full
    assert.equal(p.pick(key, 0), order[1]);
  });

  test('the walk goes as far as it must: with the first 7 of 10 members full, the 8th takes the key', () => {
    const ids = Array.from({ length: 10 }, (_, i) => `10.2.0.${i}:80`);
    const ms = fresh(ids);
    const inner = new RingPicker(new MemberSet(ms));
    const p = new BoundedLoadPicker(inner, 1);
    const key = 'deep';
    const order = Array.from({ length: 10 }, (_, a) => inner.pick(key, a)!);
    // total 14 → cap ceil(15 / 10) = 2: members with 2 in flight are full, those with 0 are not.
    for (let i = 0; i < 7; i++) order[i]!.inflight = 2;
    assert.equal(p.pick(key, 0), order[7]);
    assert.equal(p.pick(key, 1), order[8]);
    assert.equal(p.pick(key, 2), order[9]);
    assert.equal(p.pick(key, 3), order[0]);
  });

  test('a hot key leaves a member above its even share first, for the least loaded member; cold keys stay home up to the cap', () => {
    const ms = fresh();
    const inner = new RingPicker(new MemberSet(ms));
    const p = new BoundedLoadPicker(inner, C);
    // 'hot' is half of what the picker places.
    for (let i = 0; i < 400; i++) {
      p.pick('hot', 0);
      p.pick(`warm-up-${i}`, 0);
    }
    const home = inner.pick('hot', 0)!;
    const others = ms.filter((m) => m !== home);
    // 22 in flight: even share ceil(23 / 5) = 5, cap ceil(1.25 × 23 / 5) = 6; home at 4 may take one more.
    home.inflight = 4;
    for (const [i, m] of others.entries()) m.inflight = i === 2 ? 3 : 5;
    assert.equal(p.pick('hot', 0), home);
    // 23 in flight: even share 5, cap 6. Home at 5 is above its even share: the hot key goes to the least loaded…
    home.inflight = 5;
    assert.equal(p.pick('hot', 0), others[2]);
    // …while a cold key homed there still goes home (5 + 1 ≤ the cap of 6).
    const cold = Array.from({ length: 5000 }, (_, i) => `cold-${i}`).find((k) => inner.pick(k, 0) === home)!;
    assert.equal(p.pick(cold, 0), home);
  });

  test('with nobody over the cap, every key stays on its owner', () => {
    const ms = fresh();
    const inner = new RendezvousPicker(new MemberSet(ms));
    const p = new BoundedLoadPicker(inner, 1);
    for (const m of ms) m.inflight = 10;
    for (const key of KEYS.slice(0, 2000)) assert.equal(p.pick(key, 0), inner.pick(key, 0));
  });

  test('boundedLoad must be ≥ 1, named in the error', () => {
    assert.throws(() => createHashPickerFactory({ algorithm: 'ring', boundedLoad: 0.9 }), /hash\.boundedLoad/);
    assert.throws(() => new BoundedLoadPicker(new RingPicker(new MemberSet(fresh())), Number.NaN), /hash\.boundedLoad/);
  });
});

describe('createHashPickerFactory', () => {
  test('builds the configured algorithm, wrapped in bounded loads when asked', () => {
    const set = new MemberSet(fresh());
    assert.ok(createHashPickerFactory({ algorithm: 'ring' })(set) instanceof RingPicker);
    assert.ok(createHashPickerFactory({ algorithm: 'maglev' })(set) instanceof MaglevPicker);
    assert.ok(createHashPickerFactory({ algorithm: 'rendezvous' })(set) instanceof RendezvousPicker);
    const b = createHashPickerFactory({ algorithm: 'maglev', boundedLoad: 2 })(set);
    assert.ok(b instanceof BoundedLoadPicker && b.inner instanceof MaglevPicker && b.balanceFactor === 2);
  });

  test('accepts a whole HashConfig and rejects an unknown algorithm', () => {
    const cfg = { key: 'path:1', algorithm: 'ring', vnodes: 40, tableSize: 65537 } as const;
    const p = createHashPickerFactory(cfg)(new MemberSet(fresh()));
    assert.ok(p instanceof RingPicker && p.vnodes === 40 && p.size === 200);
    assert.throws(() => createHashPickerFactory({ algorithm: 'jump' as never }), /hash\.algorithm/);
    assert.throws(() => createHashPickerFactory({ algorithm: 'ring', vnodes: 0 }), /hash\.vnodes/);
  });
});
