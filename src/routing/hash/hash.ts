/**
 * The hash every hash strategy uses, so that every homing instance (and anything else that wants
 * to agree with it, such as a Lua script in an nginx tier) computes the same value for a key.
 *
 * `hash32` is MurmurHash3 x86_32 (Austin Appleby's reference `MurmurHash3_x86_32`) over the
 * **UTF-8 bytes** of the string, exactly the bytes `Buffer.from(key, 'utf8')` or `TextEncoder`
 * produce (a lone surrogate counts as U+FFFD, EF BF BD). It is computed from the UTF-16 code units
 * directly, without encoding to a buffer: runs of four ASCII code units are one block (the usual
 * case for paths, tokens and host names), and anything else is encoded to UTF-8 on the fly. The
 * result is identical on every platform (only 32-bit integer arithmetic via `Math.imul`), equals
 * the reference implementation's output, and `hash32Bytes` gives the same value for the encoded
 * bytes (the RESP router can hash a key straight from its input buffer).
 *
 * No allocation per call.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** MurmurHash3's finaliser (`fmix32`): a bijective avalanche of a 32-bit integer. Unsigned result. */
export function mix32(x: number): number {
  return fmix(x | 0) >>> 0;
}

/**
 * Mixes two 32-bit values into one (unsigned). Two rounds, because `mix32(a ^ b)` alone would
 * give every pair with the same XOR the same output (the pairs `(k, m1)` and `(k ^ m1 ^ m2, m2)`
 * would always tie), which skews rendezvous hashing. Not symmetric: `combine32(a, b)` differs
 * from `combine32(b, a)`.
 */
export function combine32(a: number, b: number): number {
  const x = fmix(((a ^ b) + 0x9e3779b9) | 0);
  return fmix((x + Math.imul(b | 0, 0x85ebca77)) | 0) >>> 0;
}

/** MurmurHash3 x86_32 of the UTF-8 encoding of `key`. Unsigned 32-bit result. */
export function hash32(key: string, seed = 0): number {
  return hash32s(key, seed) >>> 0;
}

/**
 * `hash32` as a signed int32 (the same 32 bits): what the pickers use, because V8 passes an
 * int32 between functions as a small integer, while an unsigned value ≥ 2^31 is boxed into a
 * heap number whenever it crosses a call that is not inlined.
 *
 * Kept small so V8 inlines it: an all-ASCII key is hashed here, four code units a block;
 * anything else goes to `hash32Utf8`, which encodes to UTF-8 on the fly.
 */
export function hash32s(key: string, seed = 0): number {
  let h = seed | 0;
  const n = key.length;
  const blocks = n & ~3;
  for (let i = 0; i < blocks; i += 4) {
    const c0 = key.charCodeAt(i);
    const c1 = key.charCodeAt(i + 1);
    const c2 = key.charCodeAt(i + 2);
    const c3 = key.charCodeAt(i + 3);
    if ((c0 | c1 | c2 | c3) >= 0x80) return hash32Utf8(key, seed);
    h ^= mixK(c0 | (c1 << 8) | (c2 << 16) | (c3 << 24));
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (blocks < n) {
    let k = 0;
    for (let i = n - 1; i >= blocks; i--) {
      const c = key.charCodeAt(i);
      if (c >= 0x80) return hash32Utf8(key, seed);
      k = (k << 8) | c;
    }
    h ^= mixK(k);
  }
  return fmix(h ^ n);
}

/** MurmurHash3's `fmix32`, signed result. */
function fmix(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** MurmurHash3's per-block scramble of k. */
function mixK(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

/** `hash32s` for keys with non-ASCII code units: the same function, slower path. */
function hash32Utf8(key: string, seed: number): number {
  let h = seed | 0;
  const n = key.length;
  let i = 0;
  // Leading ASCII: four code units are four UTF-8 bytes, one little-endian block.
  while (i + 4 <= n) {
    const block = asciiBlock(key, i);
    if (block < 0) break;
    h ^= mixK(block);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
    i += 4;
  }
  let len = i; // bytes hashed so far
  let k = 0; // pending bytes, little-endian
  let kn = 0; // how many (0..3)
  // General path: encode each code point to UTF-8 and feed its bytes one at a time.
  for (; i < n; i++) {
    let bytes = utf8At(key, i);
    const count = utf8Count(bytes);
    if (count === 4) i++; // a surrogate pair: two code units
    len += count;
    for (let j = 0; j < count; j++) {
      k |= (bytes & 0xff) << (kn << 3);
      bytes >>>= 8;
      if (++kn === 4) {
        h ^= mixK(k);
        h = (h << 13) | (h >>> 19);
        h = (Math.imul(h, 5) + 0xe6546b64) | 0;
        k = 0;
        kn = 0;
      }
    }
  }
  if (kn > 0) {
    h ^= mixK(k);
  }
  return fmix(h ^ len);
}

/**
 * Code units i..i+3 of `s` as one little-endian block of their UTF-8 bytes when all four are
 * ASCII, else −1. The caller makes sure i + 4 ≤ s.length.
 */
export function asciiBlock(s: string, i: number): number {
  const c0 = s.charCodeAt(i);
  const c1 = s.charCodeAt(i + 1);
  const c2 = s.charCodeAt(i + 2);
  const c3 = s.charCodeAt(i + 3);
  return (c0 | c1 | c2 | c3) >= 0x80 ? -1 : c0 | (c1 << 8) | (c2 << 16) | (c3 << 24);
}

/**
 * The UTF-8 bytes of the code point at code unit `i` of `s`, first byte lowest (a lone surrogate
 * is U+FFFD, EF BF BD); `utf8Count` says how many. Four bytes mean a surrogate pair: the code
 * point took two code units.
 */
export function utf8At(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c < 0x80) return c;
  if (c < 0x800) return (0xc0 | (c >>> 6)) | ((0x80 | (c & 0x3f)) << 8);
  if (c < 0xd800 || c > 0xdfff) return (0xe0 | (c >>> 12)) | ((0x80 | ((c >>> 6) & 0x3f)) << 8) | ((0x80 | (c & 0x3f)) << 16);
  const d = c <= 0xdbff && i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
  if (d < 0xdc00 || d > 0xdfff) return 0xef | (0xbf << 8) | (0xbd << 16); // lone surrogate → U+FFFD
  const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
  return (0xf0 | (cp >>> 18)) | ((0x80 | ((cp >>> 12) & 0x3f)) << 8) | ((0x80 | ((cp >>> 6) & 0x3f)) << 16) | ((0x80 | (cp & 0x3f)) << 24);
}

/** How many bytes `utf8At` answered (read from the first byte). */
export function utf8Count(bytes: number): number {
  const lead = bytes & 0xff;
  return lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}

/** MurmurHash3 x86_32 of `bytes[start, end)`; equals `hash32(s)` when the bytes are `s` in UTF-8. */
export function hash32Bytes(bytes: Uint8Array, seed = 0, start = 0, end = bytes.length): number {
  let h = seed | 0;
  let i = start;
  const blocksEnd = start + ((end - start) & ~3);
  for (; i < blocksEnd; i += 4) {
    h ^= mixK(bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = end - i;
  if (rest > 0) {
    let k = bytes[i]!;
    if (rest > 1) k |= bytes[i + 1]! << 8;
    if (rest > 2) k |= bytes[i + 2]! << 16;
    h ^= mixK(k);
  }
  return fmix(h ^ (end - start)) >>> 0;
}
