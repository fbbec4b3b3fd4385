/**
 * What every hash algorithm shares: "which key" is turned into a 32-bit hash here, "where it
 * lands" is the algorithm's (as Envoy's `chooseHost(hash, attempt)`).
 *
 * An algorithm answers two questions about a hash, both in member indices of its frozen snapshot
 * (`members`, ordered by id, so the same on every instance):
 * - `ownerIndex(h)`: the owner, on the hot path (must be allocation-free and O(log n) or better);
 * - `order(h, out, limit)`: the first `limit` distinct members in fallback order (owner first),
 *   used only for retries and by the bounded-load decorator.
 */
import type { Member, MemberSet } from '../../members/member.js';
import type { Picker } from '../strategy.js';
import { crc32s } from './crc32.js';
import { hash32s } from './hash.js';

/**
 * How `pick` turns a key into a hash: `murmur3` is homing's own (`hash32`, MurmurHash3 over
 * UTF-8); `crc32` is nginx's (a ring that must agree with nginx's `hash … consistent`).
 */
export type KeyHash = 'murmur3' | 'crc32';

export abstract class HashPicker implements Picker {
  /** The snapshot's members, by id; every index this picker answers refers to this array. */
  readonly members: readonly Member[];
  /** How keys are hashed (`keyHash` below); a decorator takes the wrapped algorithm's. */
  readonly keyHash: KeyHash;
  /** keyHash === 'crc32', as a field the hot path reads. */
  private readonly crcKeys: boolean;
  /** Scratch for `pickHash` with attempt > 0 (pickers are used from one thread, never re-entered). */
  private readonly scratch: Int32Array;

  constructor(members: MemberSet | readonly Member[], keyHash: KeyHash = 'murmur3') {
    this.members = 'members' in members ? members.members : members;
    this.keyHash = keyHash;
    this.crcKeys = keyHash === 'crc32';
    this.scratch = new Int32Array(Math.max(1, this.members.length));
  }

  /** The hash `pick` looks `key` up with (signed int32): `hash32s`, or `crc32s` for keyHash 'crc32'. */
  hashKey(key: string): number {
    return this.crcKeys ? crc32s(key) : hash32s(key);
  }

  /**
   * The owner of hash `h` (0 ≤ index < members.length). `h` may come signed or unsigned: only its
   * 32 bits count. Only called with at least one member.
   */
  abstract ownerIndex(h: number): number;

  /**
   * Writes into `out` the indices of the first `min(limit, members.length)` distinct members in
   * this algorithm's fallback order for `h` (the owner first) and answers how many it wrote.
   * Only called with at least one member; `out` has room for `limit`.
   */
  abstract order(h: number, out: Int32Array, limit: number): number;

  /** See `Picker.pick`: hashes the key (`hashKey`) and answers `pickHash`. */
  pick(key: string | undefined, attempt: number): Member | undefined {
    if (key === undefined || this.members.length === 0) return undefined;
    const h = this.crcKeys ? crc32s(key) : hash32s(key);
    // The first attempt goes straight to the owner, so V8 inlines hash, owner look-up and all
    // into the caller and the hash is never boxed into a heap number.
    if (attempt === 0) return this.members[this.ownerIndex(h)];
    return this.pickHash(h, attempt);
  }

  /**
   * The member for a key's hash (`hashKey(key)`, signed or unsigned: only its 32 bits matter).
   * Attempt 0 is the owner; attempt n is the n-th distinct member in
   * fallback order. Once every member has been given (attempt ≥ members), it wraps around
   * (attempt mod members), so a caller that retries more than there are members still gets one.
   */
  pickHash(h: number, attempt: number): Member | undefined {
    const n = this.members.length;
    if (n === 0) return undefined;
    if (!(attempt > 0) || n === 1) return this.members[this.ownerIndex(h)];
    const a = Math.floor(attempt) % n;
    if (a === 0) return this.members[this.ownerIndex(h)];
    const got = this.order(h, this.scratch, a + 1);
    return this.members[this.scratch[Math.min(a, got - 1)]!];
  }
}

/**
 * A member's weight as the hash algorithms use it: a whole number ≥ 1 (the config schema already
 * asks for an integer 1..1000; this only keeps a stray 0, fraction or NaN from emptying a member).
 */
export function weightOf(m: Member): number {
  const w = Math.floor(m.weight);
  return w >= 1 ? w : 1;
}

/** Sum of `weightOf` over the members. */
export function totalWeight(members: readonly Member[]): number {
  let w = 0;
  for (const m of members) w += weightOf(m);
  return w;
}
