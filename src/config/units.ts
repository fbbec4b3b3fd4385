/** Parsing of the duration (`500ms`, `2s`, `5m`, `1h`, `1d`) and size (`64KiB`, `256MiB`) strings of the config. */

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Milliseconds for a duration string; throws with a readable message. A bare number is refused:
 * `connect: 5` would be 5 ms to one reader and 5 s to another, so the unit is written.
 */
export function parseDuration(v: string | number): number {
  if (typeof v === 'number') throw new Error(`a duration needs a unit: write "${v}ms" or "${v}s"`);
  const m = DURATION.exec(v.trim());
  if (!m) throw new Error(`invalid duration "${v}" (use e.g. 500ms, 2s, 5m, 1h)`);
  return Math.round(Number(m[1]) * DURATION_MS[m[2]!]!);
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?$/;
const SIZE_BYTES: Record<string, number> = {
  B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1000, MB: 1000 ** 2, GB: 1000 ** 3,
  k: 1024, K: 1024, M: 1024 ** 2, G: 1024 ** 3,
};

/** Bytes for a size string (a string of digits alone is bytes); a bare YAML number is refused, like a bare duration. */
export function parseSize(v: string | number): number {
  if (typeof v === 'number') throw new Error(`a size needs a unit: write "${v}B" or "${v}KiB"`);
  const m = SIZE.exec(v.trim());
  if (!m) throw new Error(`invalid size "${v}" (use e.g. 64KiB, 256MiB)`);
  return Math.floor(Number(m[1]) * SIZE_BYTES[m[2] ?? 'B']!);
}

export interface HostPort {
  host: string;
  port: number;
}

/** `host:port`, `[v6]:port`; port required, 1..65535. No CR/LF/space or path allowed. */
export function parseHostPort(v: string, allowZeroPort = false): HostPort {
  const s = v.trim();
  let host: string;
  let portStr: string;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0 || s[end + 1] !== ':') throw new Error(`invalid address "${v}" (use [v6]:port)`);
    host = s.slice(1, end);
    portStr = s.slice(end + 2);
  } else {
    const i = s.lastIndexOf(':');
    if (i < 0) throw new Error(`invalid address "${v}": no port (use host:port)`);
    if (i === 0) throw new Error(`invalid address "${v}" (use host:port)`);
    host = s.slice(0, i);
    portStr = s.slice(i + 1);
    if (host.includes(':')) throw new Error(`invalid address "${v}" (write IPv6 as [addr]:port)`);
  }
  if (!/^\d{1,5}$/.test(portStr)) throw new Error(`invalid port in "${v}"`);
  const port = Number(portStr);
  if (port < (allowZeroPort ? 0 : 1) || port > 65535) throw new Error(`port out of range in "${v}"`);
  if (!/^[A-Za-z0-9._\-:%]+$/.test(host)) throw new Error(`invalid host in "${v}"`);
  return { host, port };
}

/** Canonical `host:port` form (IPv6 in brackets), used as member id everywhere. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
