// Small helpers: medians, number formatting, plain-text tables.

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function fmtInt(x) {
  return typeof x === 'number' && Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–';
}

export function fmtNum(x, digits = 2) {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '–';
}

export function fmtK(x) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return '–';
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return String(Math.round(x));
}

/**
 * Renders rows (arrays of cells) under headers. `align` is a string of 'l'/'r' per column
 * (default: first column left, the rest right).
 */
export function table(headers, rows, align) {
  const cells = [headers, ...rows].map((r) => r.map((c) => (c === undefined || c === null ? '–' : String(c))));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => [...(r[i] ?? '')].length)));
  const al = align ?? 'l' + 'r'.repeat(headers.length - 1);
  const line = (r) =>
    r
      .map((c, i) => {
        const pad = ' '.repeat(widths[i] - [...c].length);
        return al[i] === 'l' ? c + pad : pad + c;
      })
      .join('  ')
      .trimEnd();
  const out = [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of cells.slice(1)) out.push(line(r));
  return out.join('\n');
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function cell(v) {
  if (typeof v === 'number') return Number.isInteger(v) ? v.toLocaleString('en-US') : Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toPrecision(4);
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (isPlainObject(v) || Array.isArray(v)) return JSON.stringify(v);
  return v;
}

/**
 * Prints a result of unknown shape as readably as possible: arrays of objects and objects of
 * objects become tables, scalars become `key: value` lines.
 */
export function renderGeneric(value, title) {
  const out = [];
  const walk = (v, name) => {
    if (Array.isArray(v) && v.length && v.every(isPlainObject)) {
      const cols = [...new Set(v.flatMap((o) => Object.keys(o)))];
      out.push(`${name}:`, table(cols, v.map((o) => cols.map((c) => cell(o[c])))), '');
    } else if (isPlainObject(v) && Object.keys(v).length && Object.values(v).every(isPlainObject) && Object.values(v).every((o) => Object.values(o).every((x) => !isPlainObject(x) && !Array.isArray(x)))) {
      const cols = [...new Set(Object.values(v).flatMap((o) => Object.keys(o)))];
      out.push(`${name}:`, table(['', ...cols], Object.entries(v).map(([k, o]) => [k, ...cols.map((c) => cell(o[c]))])), '');
    } else if (isPlainObject(v)) {
      const scalars = Object.entries(v).filter(([, x]) => !isPlainObject(x) && !Array.isArray(x));
      if (scalars.length) out.push(`${name}: ${scalars.map(([k, x]) => `${k}=${cell(x)}`).join(', ')}`);
      for (const [k, x] of Object.entries(v)) if (isPlainObject(x) || Array.isArray(x)) walk(x, name ? `${name}.${k}` : k);
    } else out.push(`${name}: ${cell(v)}`);
  };
  walk(value, title);
  return out.join('\n').trimEnd();
}
