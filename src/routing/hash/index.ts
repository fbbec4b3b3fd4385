/**
 * Consistent hashing for a route's `hash:` block: picks the algorithm and wraps it in
 * bounded loads when `boundedLoad` is set. The factory validates its options at once, naming them;
 * each call builds a frozen picker for one snapshot of live members (off the hot path: requests read a
 * frozen snapshot).
 *
 * A hash picker answers undefined when the key is undefined or the snapshot is empty, and is
 * otherwise deterministic: the same members (in any insertion order) give the same answer for a
 * key on every instance.
 */
import type { MemberSet } from '../../members/member.js';
import type { HashConfig } from '../../config/schema.js';
import { BoundedLoadPicker } from './bounded.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, MaglevPicker, validateTableSize } from './maglev.js';
import type { HashPicker } from './picker.js';
import { RendezvousPicker } from './rendezvous.js';
import { DEFAULT_RING_PROBES, DEFAULT_VNODES, MAX_RING_PROBES, RingPicker } from './ring.js';
import { NGINX_POINTS_PER_WEIGHT } from './nginx.js';

export { BoundedLoadPicker } from './bounded.js';
export { crc32, crc32s } from './crc32.js';
export { combine32, hash32, hash32Bytes, hash32s, mix32 } from './hash.js';
export { DEFAULT_MAGLEV_TABLE_SIZE, isPrime, MaglevPicker } from './maglev.js';
export { HashPicker, type KeyHash } from './picker.js';
export { RendezvousPicker } from './rendezvous.js';
export { DEFAULT_RING_PROBES, DEFAULT_VNODES, RingPicker, type RingCompat } from './ring.js';

/**
 * The options the pickers read; a whole `HashConfig` fits (its `key` is the route's business).
 * `probes` is ring only (1..8, default 2; 1 = classic ketama); `compat: 'nginx'` (ring only) is
 * nginx's `hash … consistent` ring, keys hashed with CRC-32.
 */
export type HashPickerOptions = Pick<HashConfig, 'algorithm'> & Partial<Pick<HashConfig, 'vnodes' | 'tableSize' | 'boundedLoad' | 'probes' | 'compat'>>;

export type HashPickerFactory = (live: MemberSet) => HashPicker;

/**
 * A factory of hash pickers for `cfg`. Throws a RangeError naming the option (`hash.vnodes`,
 * `hash.tableSize`, `hash.boundedLoad`, `hash.algorithm`, `hash.compat`) when one is invalid. Building a Maglev
 * picker also throws when the live set has as many members as `tableSize` or more.
 */
export function createHashPickerFactory(cfg: HashPickerOptions): HashPickerFactory {
  const vnodes = cfg.vnodes ?? DEFAULT_VNODES;
  const tableSize = cfg.tableSize ?? DEFAULT_MAGLEV_TABLE_SIZE;
  const probes = cfg.probes ?? DEFAULT_RING_PROBES;
  const c = cfg.boundedLoad;
  if (c !== undefined && (!(c >= 1) || !Number.isFinite(c))) {
    throw new RangeError(`hash.boundedLoad must be a number ≥ 1 (got ${c})`);
  }
  const compat = cfg.compat;
  if (compat !== undefined) {
    if (compat !== 'nginx') throw new RangeError(`hash.compat must be nginx (got ${String(compat)})`);
    if (cfg.algorithm !== 'ring') throw new RangeError(`hash.compat nginx needs hash.algorithm ring (got ${String(cfg.algorithm)})`);
    if (vnodes !== NGINX_POINTS_PER_WEIGHT) {
      throw new RangeError(`hash.vnodes must be ${NGINX_POINTS_PER_WEIGHT} with hash.compat nginx, nginx's fixed points per unit of weight (got ${vnodes})`);
    }
  }
  let build: (live: MemberSet) => HashPicker;
  switch (cfg.algorithm) {
    case 'ring':
      if (!Number.isInteger(vnodes) || vnodes < 1) throw new RangeError(`hash.vnodes must be an integer ≥ 1 (got ${vnodes})`);
      if (!Number.isInteger(probes) || probes < 1 || probes > MAX_RING_PROBES) {
        throw new RangeError(`hash.probes must be an integer from 1 to ${MAX_RING_PROBES} (got ${probes})`);
      }
      build = (live) => new RingPicker(live, vnodes, probes, compat);
      break;
    case 'maglev':
      validateTableSize(tableSize);
      build = (live) => new MaglevPicker(live, tableSize);
      break;
    case 'rendezvous':
      build = (live) => new RendezvousPicker(live);
      break;
    default:
      throw new RangeError(`hash.algorithm must be ring, maglev or rendezvous (got ${String(cfg.algorithm)})`);
  }
  if (c === undefined) return build;
  return (live) => new BoundedLoadPicker(build(live), c);
}
