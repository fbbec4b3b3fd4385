/**
 * Cache-Control (and the targeted fields that stand in for it) parsed as RFC 9111 §5.2 writes it:
 * comma-separated directives, names case-insensitive, arguments a token or a quoted-string (commas
 * inside quotes do not split). What the rules say about bad input is applied here, once, so the
 * policy never meets it:
 *
 * - a directive present in any form counts as present: `private=""` and `private, private="x"`
 *   are `private` (a shared cache must never store them);
 * - a numeric argument (`max-age`, `s-maxage`, …) that is not all digits, or one given twice with
 *   different values, is invalid: for the response's own lifetime (`max-age`, `s-maxage`) that
 *   makes the response stale (§4.2.1, §1.2.2), elsewhere the directive is ignored;
 * - numbers past 2^31 are 2^31 (§1.2.2).
 */

/** Largest delta-seconds a cache must represent (RFC 9111 §1.2.2). */
export const MAX_DELTA = 2147483648;

const NUMERIC = new Set(['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error', 'min-fresh', 'max-stale']);

export class Directives {
  /** Directive → its argument (`true` when given without one). Numeric ones are numbers; invalid ones absent. */
  private readonly map = new Map<string, string | number | true>();
  /** Numeric directives that were present but invalid (not digits, or conflicting duplicates). */
  readonly invalid = new Set<string>();

  static readonly EMPTY = new Directives();

  /** Parse one or more field values (repeated header lines are one comma-separated list). */
  static parse(value: string | readonly string[] | undefined): Directives {
    const d = new Directives();
    if (value === undefined) return d;
    for (const v of typeof value === 'string' ? [value] : value) d.add(v);
    return d;
  }

  private add(s: string): void {
    let i = 0;
    const n = s.length;
    while (i < n) {
      // name
      while (i < n && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
      const start = i;
      while (i < n && s[i] !== '=' && s[i] !== ',') i++;
      const name = s.slice(start, i).trim().toLowerCase();
      let arg: string | true = true;
      if (i < n && s[i] === '=') {
        i++;
        while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
        if (s[i] === '"') {
          i++;
          let out = '';
          while (i < n && s[i] !== '"') {
            if (s[i] === '\\' && i + 1 < n) i++;
            out += s[i];
            i++;
          }
          i++; // closing quote (or end)
          arg = out;
          while (i < n && s[i] !== ',') i++;
        } else {
          const a = i;
          while (i < n && s[i] !== ',') i++;
          arg = s.slice(a, i).trim();
        }
      }
      if (name !== '') this.set(name, arg);
    }
  }

  private set(name: string, arg: string | true): void {
    if (!NUMERIC.has(name)) {
      // Presence is what counts (qualified `private="x"` / `no-cache="f"` act as the bare form).
      if (!this.map.has(name)) this.map.set(name, arg);
      return;
    }
    if (name === 'max-stale' && arg === true) {
      if (!this.invalid.has(name)) this.map.set(name, true);
      return;
    }
    const v = arg === true || !/^[0-9]+$/.test(arg) ? NaN : Math.min(Number(arg), MAX_DELTA);
    const prev = this.map.get(name);
    if (Number.isNaN(v) || this.invalid.has(name) || (prev !== undefined && prev !== v)) {
      this.invalid.add(name);
      this.map.delete(name);
      return;
    }
    this.map.set(name, v);
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  /** A valid numeric directive's value, else undefined. */
  seconds(name: string): number | undefined {
    const v = this.map.get(name);
    return typeof v === 'number' ? v : undefined;
  }

  /** Present in any form, valid or not. */
  mentions(name: string): boolean {
    return this.map.has(name) || this.invalid.has(name);
  }

  /**
   * The same directives in the one canonical form http-cache-semantics reads right: bare flags,
   * plain numbers, and an invalid lifetime written as `=0` (stale).
   */
  canonical(): string {
    const parts: string[] = [];
    for (const [k, v] of this.map) parts.push(typeof v === 'number' ? `${k}=${v}` : k);
    for (const k of this.invalid) if (k === 'max-age' || k === 's-maxage') parts.push(`${k}=0`);
    return parts.join(', ');
  }
}
