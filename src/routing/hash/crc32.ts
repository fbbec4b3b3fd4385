/**
 * CRC-32 (IEEE 802.3: reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF),
 * the checksum of zlib's `crc32` and of nginx's `ngx_crc32_long`: the hash of a ring that must
 * agree with nginx's `hash … consistent` (see nginx.ts).
 *
 * Like `hash32`, a string is hashed as its **UTF-8 bytes** (a lone surrogate counts as U+FFFD),
 * computed from the UTF-16 code units without encoding to a buffer: runs of four ASCII code units
 * go through the slicing-by-4 tables, anything else is encoded to UTF-8 on the fly. No allocation
 * per call.
 *
 * The running form (`crc32Start`, `crc32Update`, `crc32UpdateWord`, `crc32End`) is nginx's
 * `ngx_crc32_init` / `ngx_crc32_update` / `ngx_crc32_final`, which the ring build needs to hash
 * a server's name once and continue from that state for each of its points.
 */

import { asciiBlock, utf8At, utf8Count } from './hash.js';

/** Four 256-entry tables in one array: table k at offset 256·k (slicing-by-4). */
const T = buildTables();

function buildTables(): Int32Array {
  const t = new Int32Array(1024);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    for (let k = 1; k < 4; k++) {
      const prev = t[(k - 1) * 256 + i]!;
      t[k * 256 + i] = (prev >>> 8) ^ t[prev & 0xff]!;
    }
  }
  return t;
}

/** The register before any byte (`ngx_crc32_init`). */
export const CRC32_START = -1;

/** The register after the four bytes of `word`, least significant first (a little-endian uint32). */
export function crc32UpdateWord(crc: number, word: number): number {
  const c = crc ^ word;
  return T[768 + (c & 0xff)]! ^ T[512 + ((c >>> 8) & 0xff)]! ^ T[256 + ((c >>> 16) & 0xff)]! ^ T[c >>> 24]!;
}

/** The register after one byte. */
function crc32UpdateByte(crc: number, byte: number): number {
  return T[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
}

/** The checksum of a register (`ngx_crc32_final`), unsigned. */
export function crc32End(crc: number): number {
  return ~crc >>> 0;
}

/** The register after the UTF-8 bytes of `s` (`ngx_crc32_update`). */
export function crc32Update(crc: number, s: string): number {
  let c = crc | 0;
  const n = s.length;
  let i = 0;
  while (i + 4 <= n) {
    const block = asciiBlock(s, i);
    if (block < 0) return crc32UpdateUtf8(c, s, i);
    c = crc32UpdateWord(c, block);
    i += 4;
  }
  for (; i < n; i++) {
    const ch = s.charCodeAt(i);
    if (ch >= 0x80) return crc32UpdateUtf8(c, s, i);
    c = crc32UpdateByte(c, ch);
  }
  return c;
}

/** `crc32Update` from code unit `i` on, encoding to UTF-8 as it goes. */
function crc32UpdateUtf8(crc: number, s: string, i: number): number {
  let c = crc;
  for (; i < s.length; i++) {
    let bytes = utf8At(s, i);
    const count = utf8Count(bytes);
    if (count === 4) i++; // a surrogate pair: two code units
    for (let j = 0; j < count; j++, bytes >>>= 8) c = crc32UpdateByte(c, bytes & 0xff);
  }
  return c;
}

/**
 * CRC-32 of the UTF-8 encoding of `key` as a signed int32 (the same 32 bits as `crc32`): what the
 * pickers use, for the reason `hash32s` gives. Kept small so V8 inlines it into `pick`.
 */
export function crc32s(key: string): number {
  return ~crc32Update(CRC32_START, key);
}

/** CRC-32 of the UTF-8 encoding of `key`, unsigned: zlib's `crc32(key)`, nginx's `ngx_crc32_long`. */
export function crc32(key: string): number {
  return crc32s(key) >>> 0;
}
