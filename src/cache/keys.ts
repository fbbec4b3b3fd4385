/**
 * Cache keys. A key is a hash of a structured, length-prefixed encoding of its parts, so no header
 * value (a comma, a separator, an empty string) can make one variant's key equal another's:
 * `len:value` per part, and a bare `-` for a header the request did not carry (absent is its own
 * variant, distinct from empty).
 */
import { hash } from 'node:crypto';

function encode(parts: readonly (string | undefined)[]): string {
  let s = '';
  for (const p of parts) s += p === undefined ? '-;' : `${p.length}:${p};`;
  return s;
}

function digest(s: string): string {
  // The one-shot form: no Hash object per key (a third of the cost).
  return hash('sha256', s, 'base64url');
}

/** The resource: scheme, authority and request target (GET and HEAD share it). */
export function primaryKey(proto: string, authority: string, uri: string): string {
  return digest(encode(['url', proto, authority, uri]));
}

/**
 * An authority (host and port) as a key holds it: lower-case, the scheme's default port dropped
 * (`a.example:80` over http is `a.example`); any other port stays, for it names another origin.
 */
export function keyAuthority(proto: string, authority: string): string {
  const a = authority.trim().toLowerCase();
  const port = proto === 'https' ? ':443' : ':80';
  return a.endsWith(port) ? a.slice(0, -port.length) : a;
}

/** One variant of a resource: the names its response varies on and this request's values for them. */
export function variantKey(primary: string, names: readonly string[], values: readonly (string | undefined)[]): string {
  return digest(encode(['variant', primary, String(names.length), ...names, ...values]));
}

/**
 * A request header's value as it selects a variant: repeated lines joined, whitespace around
 * commas and at the ends dropped (RFC 9111 §4.1 allows no more: case and order stay significant).
 */
export function normaliseValue(v: string): string {
  return v.replace(/[ \t]*,[ \t]*/g, ',').trim();
}

/**
 * The header names a `Vary` value lists: lower-case, trimmed, each once, sorted (so
 * `Accept-Language, accept` and `Accept,accept-language` select the same way). `['*']` for `*`.
 */
export function varyNames(vary: string | undefined): string[] {
  if (vary === undefined) return [];
  const names = new Set<string>();
  for (const part of vary.split(',')) {
    const n = part.trim().toLowerCase();
    if (n === '*') return ['*'];
    if (n !== '') names.add(n);
  }
  return [...names].sort();
}

/** A principal's key as it is stored: a hash, so tables and Redis never hold a caller's token. */
export function principalId(value: string): string {
  return digest(encode(['principal', value])).slice(0, 32);
}
