/**
 * W3C Trace Context (`traceparent`, `tracestate`) for the hygiene phase: parsing the client's
 * traceparent, and random trace and span ids. Ids come from a pool of random bytes refilled in
 * bulk, so a request costs a slice of hex, not a call into the crypto module.
 */
import { randomFillSync } from 'node:crypto';

const POOL = Buffer.allocUnsafe(4096);
let taken = POOL.length;

function randomHex(bytes: number): string {
  if (taken + bytes > POOL.length) {
    randomFillSync(POOL);
    taken = 0;
  }
  const s = POOL.toString('hex', taken, taken + bytes);
  taken += bytes;
  return s;
}

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** A random trace id: 32 lower-case hex digits, never all zero (an invalid id). */
export function newTraceId(): string {
  let id = randomHex(16);
  while (id === ZERO_TRACE) id = randomHex(16);
  return id;
}

/** A random span id: 16 lower-case hex digits, never all zero. */
export function newSpanId(): string {
  let id = randomHex(8);
  while (id === ZERO_SPAN) id = randomHex(8);
  return id;
}

/** Lower-case hex digits only, in v[from, to). */
function isHex(v: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = v.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

function allZero(v: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (v.charCodeAt(i) !== 48) return false;
  return true;
}

/**
 * Whether `v` is a traceparent homing can continue: `version-traceid-parentid-flags`, lower-case
 * hex, version not `ff`, trace and parent ids not all zero. Version 00 is exactly 55 characters; a
 * later version may carry more after a `-` (its first four fields are read as version 00's).
 * The trace id is `v.slice(3, 35)`, the parent id `v.slice(36, 52)`, the flags `v.slice(53, 55)`.
 */
export function validTraceparent(v: string): boolean {
  if (v.length < 55) return false;
  if (v.charCodeAt(2) !== 45 || v.charCodeAt(35) !== 45 || v.charCodeAt(52) !== 45) return false;
  if (!isHex(v, 0, 2) || !isHex(v, 3, 35) || !isHex(v, 36, 52) || !isHex(v, 53, 55)) return false;
  if (v.charCodeAt(0) === 102 && v.charCodeAt(1) === 102) return false; // ff: forbidden
  if (v.charCodeAt(0) === 48 && v.charCodeAt(1) === 48) {
    if (v.length !== 55) return false;
  } else if (v.length > 55 && v.charCodeAt(55) !== 45) return false;
  return !allZero(v, 3, 35) && !allZero(v, 36, 52);
}

/** The sampled bit of a valid traceparent's flags. */
export function sampledFlag(v: string): boolean {
  const c = v.charCodeAt(54);
  // Low hex digit of the flags byte: odd means bit 0 (sampled) is set.
  return ((c <= 57 ? c - 48 : c - 87) & 1) === 1;
}
