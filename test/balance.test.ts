/**
 * Balancers: one shared suite (hono's `common.case.test.ts` habit) run against every balancer,
 * then what is particular to each: round-robin's exact weighted sequence, least-connections
 * following the load, power-of-two-choices with an injected random source.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BalanceName } from '../src/config/schema.js';
import { Member, MemberSet } from '../src/members/member.js';
import { createBalancerFactory, type BalancePicker } from '../src/routing/balance.js';

/** Seeded PRNG (mulberry32). */
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

/** A random source answering the given values in turn (then repeating them). */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

const names = ['a', 'b', 'c', 'd', 'e'];
function members(weights: readonly number[] = [1, 1, 1, 1, 1]): Member[] {
  return weights.map((w, i) => new Member(`10.3.0.${i + 1}`, 9000 + i, w));
}
/** Short name of a member: a, b, c… by port. */
const nameOf = (m: Member | undefined) => (m ? names[m.port - 9000]! : '-');

const ALL: BalanceName[] = ['round-robin', 'random', 'least-connections', 'power-of-two-choices'];

for (const name of ALL) {
  describe(`balancer conformance: ${name}`, () => {
    const factory = createBalancerFactory(name, prng(42));

    test('an empty member set answers undefined', () => {
      const p = factory(MemberSet.EMPTY);
      assert.equal(p.pick(undefined, 0), undefined);
      assert.equal(p.pick('key', 2, new Set()), undefined);
    });

    test('a single member answers every pick, even when excluded (there is no other)', () => {
      const [only] = members([3]);
      const p = factory(new MemberSet([only!]));
      for (let i = 0; i < 50; i++) assert.equal(p.pick(undefined, i % 3), only);
      assert.equal(p.pick(undefined, 1, new Set([only!])), only);
    });

    test('every member is used and, while idle, in proportion to its weight', () => {
      const weights = [1, 2, 1, 4, 2];
      const p = factory(new MemberSet(members(weights)));
      const counts = new Map<string, number>();
      const total = 100_000;
      for (let i = 0; i < total; i++) {
        const m = nameOf(p.pick(undefined, 0));
        counts.set(m, (counts.get(m) ?? 0) + 1);
      }
      weights.forEach((w, i) => {
        const share = (counts.get(names[i]!) ?? 0) / total;
        const expected = w / 10;
        assert.ok(Math.abs(share - expected) < 0.05 * expected, `${names[i]}: ${share}, expected ${expected}`);
      });
    });

    test('retries with the earlier choices excluded get a different member each time, then any member', () => {
      const ms = members([1, 3, 1, 1, 2]);
      const p = factory(new MemberSet(ms));
      for (let round = 0; round < 200; round++) {
        const tried = new Set<Member>();
        for (let attempt = 0; attempt < 5; attempt++) {
          const m = p.pick(undefined, attempt, tried)!;
          assert.ok(!tried.has(m), `attempt ${attempt} repeated ${m.id}`);
          tried.add(m);
        }
        assert.equal(tried.size, 5);
        assert.ok(ms.includes(p.pick(undefined, 5, tried)!));
      }
    });

    test('an excluded member is never chosen while others remain', () => {
      const ms = members();
      const p = factory(new MemberSet(ms));
      const exclude = new Set([ms[0]!, ms[3]!]);
      for (let i = 0; i < 2000; i++) {
        const m = p.pick(undefined, 1, exclude)!;
        assert.ok(m !== ms[0] && m !== ms[3], m.id);
      }
    });

    test('the key does not matter', () => {
      const a = createBalancerFactory(name, prng(1))(new MemberSet(members()));
      const b = createBalancerFactory(name, prng(1))(new MemberSet(members()));
      for (let i = 0; i < 500; i++) assert.equal(nameOf(a.pick(`key-${i}`, 0)), nameOf(b.pick(undefined, 0)));
    });

    test('peek tells the next pick and moves nothing, however often it is asked', () => {
      const ms = members([1, 2, 1, 3, 1]);
      ms[1]!.inflight = 2;
      const peeking = createBalancerFactory(name, prng(7))(new MemberSet(ms));
      const plain = createBalancerFactory(name, prng(7))(new MemberSet(ms));
      for (let i = 0; i < 500; i++) {
        const told = peeking.peek();
        for (let j = 0; j < i % 3; j++) assert.equal(peeking.peek(), told, 'peek is stable');
        const got = peeking.pick(undefined, 0);
        assert.equal(got, told, `pick ${i} differs from what peek told`);
        // Peeking draws ahead but never shifts the sequence a balancer without look-ups follows.
        if (name === 'round-robin' || name === 'least-connections') assert.equal(plain.pick(undefined, 0), got);
      }
      assert.equal(factory(MemberSet.EMPTY).peek(), undefined);
    });

    test('answers the Member objects of the snapshot', () => {
      const ms = members();
      const p = factory(new MemberSet(ms));
      for (let i = 0; i < 100; i++) assert.ok(ms.includes(p.pick(undefined, 0)!));
    });
  });
}

describe('round-robin', () => {
  const seq = (p: BalancePicker, n: number, exclude?: ReadonlySet<Member>) => Array.from({ length: n }, () => nameOf(p.pick(undefined, 0, exclude))).join('');

  test('equal weights take turns in id order', () => {
    const p = createBalancerFactory('round-robin')(new MemberSet(members([1, 1, 1])));
    assert.equal(seq(p, 9), 'abcabcabc');
  });

  test('weights 5, 1, 1 give nginx’s smooth sequence a a b a c a a', () => {
    const p = createBalancerFactory('round-robin')(new MemberSet(members([5, 1, 1])));
    assert.equal(seq(p, 21), 'aabacaa'.repeat(3));
  });

  test('weights 2, 1 give a b a, and 3, 2 give a b a b a', () => {
    assert.equal(seq(createBalancerFactory('round-robin')(new MemberSet(members([2, 1]))), 6), 'abaaba');
    assert.equal(seq(createBalancerFactory('round-robin')(new MemberSet(members([3, 2]))), 5), 'ababa');
  });

  test('excluded members sit the rotation out', () => {
    const ms = members([1, 1, 1]);
    const p = createBalancerFactory('round-robin')(new MemberSet(ms));
    assert.equal(seq(p, 4, new Set([ms[1]!])), 'acac');
  });

  test('ignores in-flight counts', () => {
    const ms = members([1, 1]);
    ms[0]!.inflight = 100;
    assert.equal(seq(createBalancerFactory('round-robin')(new MemberSet(ms)), 4), 'abab');
  });
});

describe('random', () => {
  test('maps the random number onto the members by weight', () => {
    const p = createBalancerFactory('random', sequence(0, 0.24, 0.25, 0.74, 0.75, 0.999999))(new MemberSet(members([1, 2, 1])));
    assert.deepEqual(Array.from({ length: 6 }, () => nameOf(p.pick(undefined, 0))), ['a', 'a', 'b', 'b', 'c', 'c']);
  });

  test('with exclusions maps it onto the remaining members by weight', () => {
    const ms = members([1, 2, 1]);
    const p = createBalancerFactory('random', sequence(0.49, 0.5))(new MemberSet(ms));
    const without = new Set([ms[1]!]);
    assert.equal(nameOf(p.pick(undefined, 1, without)), 'a');
    assert.equal(nameOf(p.pick(undefined, 1, without)), 'c');
  });
});

describe('least-connections', () => {
  test('picks the member with the fewest requests in flight', () => {
    const ms = members([1, 1, 1, 1]);
    const p = createBalancerFactory('least-connections')(new MemberSet(ms));
    [5, 3, 4, 6].forEach((n, i) => (ms[i]!.inflight = n));
    assert.equal(nameOf(p.pick(undefined, 0)), 'b');
    ms[1]!.inflight = 7;
    assert.equal(nameOf(p.pick(undefined, 0)), 'c');
  });

  test('compares in-flight per unit of weight', () => {
    const ms = members([3, 1]);
    const p = createBalancerFactory('least-connections')(new MemberSet(ms));
    ms[0]!.inflight = 5; // 5 / 3 < 2 / 1
    ms[1]!.inflight = 2;
    assert.equal(nameOf(p.pick(undefined, 0)), 'a');
    ms[0]!.inflight = 7; // 7 / 3 > 2 / 1
    assert.equal(nameOf(p.pick(undefined, 0)), 'b');
  });

  test('ties take turns (round-robin among the least loaded, weighted)', () => {
    const ms = members([1, 1, 1]);
    const p = createBalancerFactory('least-connections')(new MemberSet(ms));
    assert.equal(Array.from({ length: 6 }, () => nameOf(p.pick(undefined, 0))).join(''), 'abcabc');
    ms[0]!.inflight = 1; // only b and c tie now
    assert.equal(Array.from({ length: 4 }, () => nameOf(p.pick(undefined, 0))).join(''), 'bcbc');
    const w = createBalancerFactory('least-connections')(new MemberSet(members([2, 1])));
    assert.equal(Array.from({ length: 6 }, () => nameOf(w.pick(undefined, 0))).join(''), 'abaaba');
  });

  test('keeps the load level when requests finish at different speeds', () => {
    const ms = members([1, 1, 1]);
    const p = createBalancerFactory('least-connections')(new MemberSet(ms));
    const r = prng(9);
    const open: Member[] = [];
    for (let step = 0; step < 20_000; step++) {
      if (open.length < 30) {
        const m = p.pick(undefined, 0)!;
        m.inflight++;
        open.push(m);
        const loads = ms.map((x) => x.inflight);
        assert.ok(Math.max(...loads) - Math.min(...loads) <= 1, loads.join(','));
      } else {
        // member a's requests are slow: they finish a quarter as often
        const i = Math.floor(r() * open.length);
        if (open[i] === ms[0] && r() < 0.75) continue;
        open[i]!.inflight--;
        open.splice(i, 1);
      }
    }
  });
});

describe('power-of-two-choices', () => {
  test('draws two different members by weight and takes the less loaded one', () => {
    const ms = members([1, 1, 1, 1]);
    // 0.1 → a; second draw over b, c, d: 0.9 → d
    const p = createBalancerFactory('power-of-two-choices', sequence(0.1, 0.9))(new MemberSet(ms));
    ms[0]!.inflight = 3;
    ms[3]!.inflight = 1;
    assert.equal(nameOf(p.pick(undefined, 0)), 'd');
    ms[3]!.inflight = 4;
    assert.equal(nameOf(p.pick(undefined, 0)), 'a');
  });

  test('on a tie keeps the first draw; the second draw never repeats the first', () => {
    const ms = members([1, 1, 1, 1]);
    // 0.3 → b; second draw over a, c, d: 0.3 → a (0.3 × 3 = 0.9 falls in a's stretch)
    const p = createBalancerFactory('power-of-two-choices', sequence(0.3, 0.3))(new MemberSet(ms));
    assert.equal(nameOf(p.pick(undefined, 0)), 'b');
    ms[1]!.inflight = 1;
    assert.equal(nameOf(p.pick(undefined, 0)), 'a');
    const same = createBalancerFactory('power-of-two-choices', sequence(0.6, 0.6))(new MemberSet(ms));
    ms[1]!.inflight = 0;
    ms[2]!.inflight = 5;
    // 0.6 → c (loaded); second draw over a, b, d: 0.6 × 3 = 1.8 → b
    assert.equal(nameOf(same.pick(undefined, 0)), 'b');
  });

  test('weighs the load per unit of weight', () => {
    const ms = members([4, 1]);
    const p = createBalancerFactory('power-of-two-choices', sequence(0, 0))(new MemberSet(ms));
    ms[0]!.inflight = 6; // 6 / 4 < 2 / 1
    ms[1]!.inflight = 2;
    assert.equal(nameOf(p.pick(undefined, 0)), 'a');
    ms[0]!.inflight = 9; // 9 / 4 > 2 / 1
    assert.equal(nameOf(p.pick(undefined, 0)), 'b');
  });

  test('the second draw is spread over the other members by weight', () => {
    // weights a1 b2 c1 d3 (prefix 1, 3, 4, 7): the first draw is always b (0.3 × 7 = 2.1), and b
    // is loaded, so the answer is the second draw: a, c, d in the ratio 1 : 1 : 3.
    const ms = members([1, 2, 1, 3]);
    ms[1]!.inflight = 1000;
    const r = prng(5);
    let calls = 0;
    const random = () => (calls++ % 2 === 0 ? 0.3 : r());
    const p = createBalancerFactory('power-of-two-choices', random)(new MemberSet(ms));
    const counts = new Map<string, number>();
    const total = 50_000;
    for (let i = 0; i < total; i++) {
      const m = nameOf(p.pick(undefined, 0));
      counts.set(m, (counts.get(m) ?? 0) + 1);
    }
    assert.equal(counts.get('b'), undefined);
    for (const [m, share] of [['a', 0.2], ['c', 0.2], ['d', 0.6]] as const) {
      assert.ok(Math.abs(counts.get(m)! / total - share) < 0.015, `${m}: ${counts.get(m)! / total}, expected ${share}`);
    }
  });

  test('with exclusions both draws come from the remaining members, by weight', () => {
    // a excluded, b loaded: the answer is c or d, each half the time (b first → the other of
    // c, d; c or d first → it wins over b, or ties with the other and stays).
    const ms = members([1, 1, 1, 1]);
    ms[1]!.inflight = 100;
    const p = createBalancerFactory('power-of-two-choices', prng(8))(new MemberSet(ms));
    const exclude = new Set([ms[0]!]);
    let c = 0;
    const total = 40_000;
    for (let i = 0; i < total; i++) {
      const m = nameOf(p.pick(undefined, 1, exclude));
      assert.ok(m === 'c' || m === 'd', m);
      if (m === 'c') c++;
    }
    assert.ok(Math.abs(c / total - 0.5) < 0.015, `c: ${c / total}`);
  });

  test('steers away from a loaded member far more than random does', () => {
    const ms = members([1, 1, 1, 1, 1]);
    ms[0]!.inflight = 50;
    const p2c = createBalancerFactory('power-of-two-choices', prng(3))(new MemberSet(ms));
    const rnd = createBalancerFactory('random', prng(3))(new MemberSet(ms));
    let p2cHits = 0;
    let rndHits = 0;
    for (let i = 0; i < 10_000; i++) {
      if (p2c.pick(undefined, 0) === ms[0]) p2cHits++;
      if (rnd.pick(undefined, 0) === ms[0]) rndHits++;
    }
    assert.equal(p2cHits, 0);
    assert.ok(rndHits > 1500, `${rndHits}`);
  });
});

describe('createBalancerFactory', () => {
  test('rejects an unknown balancer name', () => {
    assert.throws(() => createBalancerFactory('fastest' as BalanceName), /balance must be/);
  });
});
