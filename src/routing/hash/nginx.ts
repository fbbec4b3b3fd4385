/**
 * `hash: { algorithm: ring, compat: nginx }`: the ring of nginx's `hash <key> consistent`
 * (ngx_http_upstream_hash_module, `ngx_http_upstream_init_chash`), so that homing and an nginx
 * tier send every key to the same member.
 *
 * nginx's ring, which `RingPicker` builds when given `compat: 'nginx'`:
 * - each server gets 160 × weight points. The server's name as written in the upstream block
 *   (`host:port`) is split at its last colon when only digits follow; the running CRC-32 of
 *   `host`, one NUL byte and `port` is the server's base. Point j is that base continued with the
 *   four bytes (little-endian) of point j − 1 (0 for the first point), then finalised: a chain,
 *   so a server's points depend on its name alone;
 * - the points are sorted, and of equal points only one is kept: nginx keeps the first after
 *   its (stable) sort, that of the server listed first in the upstream block; homing keeps that
 *   of the member whose id sorts first. Two servers sharing a point is rare (about 6 lists in
 *   100,000 of five servers); list the upstream's servers sorted to agree even then;
 * - a key is looked up once (no second probe): its CRC-32 (`crc32`), then the first point ≥ it,
 *   wrapping past the top. Fallback attempt n is the n-th distinct member met walking on from
 *   there, as nginx walks point by point past servers that are down or already tried.
 *
 * nginx keeps a server that is down (or failing) on its ring and walks past its points; homing
 * rebuilds the ring without a member that is not live. As points never depend on other
 * servers, both send a key to the same member, the owner of the next point clockwise that
 * belongs to a live member.
 *
 * For the two to agree the member list must be nginx's server list: the same `host:port`
 * strings (the same host spelling, no default port, no leading zeros in the port: nginx hashes
 * the text as written), the same weights, and no `backup` servers (nginx keeps them off the
 * ring). The key must be the same string; README's Pattern 2 lists which key expression matches
 * which nginx variable.
 */
import { CRC32_START, crc32End, crc32Update, crc32UpdateWord } from './crc32.js';

/** Points per unit of weight on nginx's ring (fixed: `peer->weight * 160`). */
export const NGINX_POINTS_PER_WEIGHT = 160;

/** The CRC-32 register after a server's name: `host`, a NUL byte, `port`, as nginx splits them. */
function serverBase(server: string): number {
  let host = server;
  let port = '';
  if (server.length >= 5 && server.slice(0, 5).toLowerCase() === 'unix:') {
    host = server.slice(5);
  } else {
    let j = server.length - 1;
    while (j >= 0 && server.charCodeAt(j) >= 0x30 && server.charCodeAt(j) <= 0x39) j--;
    if (j >= 0 && server.charCodeAt(j) === 0x3a /* : */) {
      host = server.slice(0, j);
      port = server.slice(j + 1);
    }
  }
  return crc32Update(crc32Update(crc32Update(CRC32_START, host), '\0'), port);
}

/**
 * The `count` points (unsigned) of the server named `server` (`host:port`) on nginx's ring, in
 * the order nginx makes them; `count` is 160 × its weight.
 */
export function nginxPoints(server: string, count: number): Uint32Array {
  const base = serverBase(server);
  const out = new Uint32Array(count);
  let prev = 0;
  for (let j = 0; j < count; j++) {
    prev = crc32End(crc32UpdateWord(base, prev));
    out[j] = prev;
  }
  return out;
}
