/**
 * What every directory source accepts as an answer, and which keys it will ask for.
 *
 * An answer is at most 4 KiB of UTF-8 text, trimmed, in one of three forms:
 * - bare: a pool name (`pod1`: letters, digits, `_ . -`, as the config's pool names) or a
 *   `host:port` (`10.0.0.5:8080`, `[fd00::5]:8080`);
 * - `{ "pool": "pod1" }` or `{ "target": "10.0.0.5:8080" }` (other fields are ignored; both at
 *   once is ambiguous and refused).
 * Anything else — empty, HTML, invalid JSON that starts with `{`, a JSON string or list, a value
 * with spaces or control characters — is a bad answer (DirectoryKeyError `bad-answer`). Whether
 * the pool or member exists is not checked here: that is the table's `validate`.
 */
import { parseHostPort } from '../config/units.js';
import { DirectoryKeyError } from '../routing/directory/table.js';

/** Largest answer accepted, bytes: a pool name or an address is tiny; more is garbage. */
export const MAX_ANSWER_BYTES = 4096;

/** Default bound on a key's UTF-8 length, bytes (a Host header is at most 255 characters). */
export const MAX_KEY_BYTES = 1024;

/** Same rule as the config's pool names. */
const POOL_NAME = /^[A-Za-z0-9_.-]+$/;

function bad(message: string, text: string): DirectoryKeyError {
  return new DirectoryKeyError('bad-answer', `bad directory answer: ${message}`, text.length > 200 ? `${text.slice(0, 200)}…` : text);
}

/** A pool name or `host:port`, as given (trimmed); throws a `bad-answer` error otherwise. */
export function parseBareAnswer(text: string): string {
  const s = text.trim();
  if (s === '') throw bad('empty', text);
  if (POOL_NAME.test(s)) return s;
  try {
    parseHostPort(s);
    return s;
  } catch {
    throw bad('neither a pool name nor host:port', s);
  }
}

/** The error for an answer over MAX_ANSWER_BYTES. */
export function answerTooLarge(): DirectoryKeyError {
  return new DirectoryKeyError('bad-answer', `bad directory answer: larger than ${MAX_ANSWER_BYTES} bytes`);
}

/** The holder an answer names (see the module comment for the forms); throws a `bad-answer` error. */
export function parseAnswer(text: string): string {
  if (text.length > MAX_ANSWER_BYTES || Buffer.byteLength(text, 'utf8') > MAX_ANSWER_BYTES) throw answerTooLarge();
  const s = text.trim();
  if (!s.startsWith('{')) return parseBareAnswer(s);
  let raw: unknown;
  try {
    raw = JSON.parse(s);
  } catch (e) {
    throw bad(`invalid JSON (${(e as Error).message})`, s);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('expected a JSON object', s);
  const { pool, target } = raw as { pool?: unknown; target?: unknown };
  if (pool !== undefined && target !== undefined) throw bad('both "pool" and "target"', s);
  if (typeof pool === 'string' && POOL_NAME.test(pool)) return pool;
  if (typeof target === 'string' && target !== '' && target.trim() === target) {
    try {
      parseHostPort(target);
      return target;
    } catch {
      /* reported below */
    }
  }
  throw bad('expected { "pool": "<pool name>" } or { "target": "<host:port>" }', s);
}

/**
 * Refuses keys no source should ask for (DirectoryKeyError `bad-key`): empty, longer than
 * `maxBytes` of UTF-8, or not well-formed UTF-16 (a lone surrogate has no UTF-8 form, so two
 * different keys would reach the directory as one).
 */
export function checkKey(key: string, maxBytes: number): void {
  if (key === '') throw new DirectoryKeyError('bad-key', 'empty directory key');
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > maxBytes) throw new DirectoryKeyError('bad-key', `directory key of ${bytes} bytes (at most ${maxBytes})`);
  if (!WELL_FORMED(key)) throw new DirectoryKeyError('bad-key', 'directory key is not well-formed Unicode (lone surrogate)');
}

/** String.prototype.isWellFormed (ES2024, in Node 20 but not in this project's ES2022 lib). */
const WELL_FORMED = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();
