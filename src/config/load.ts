/**
 * Load and validate a YAML config: the one validation of `homing check` and `homing serve` (and of
 * a reload: validateConfig takes text and returns every problem without throwing). Every problem
 * is reported at once, each as `file:line:column path: message`, pointing at the offending key or
 * value itself: YAML syntax (with the line and a caret), the schema of each key (schema.ts), and
 * the rules that span keys, build the running parts and read the files the config names (rules.ts).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isAlias, isCollection, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode, type YAMLError } from 'yaml';
import type { z } from 'zod';
import { configSchema, ENGINES, type Config } from './schema.js';
import { ruleProblems, type ConfigPath, type Problem } from './rules.js';

/** One problem of a config, located. `path` is empty for YAML syntax errors, whose `context` shows the line. */
export interface ConfigProblem {
  file: string;
  line: number;
  column: number;
  path: string;
  message: string;
  context?: string;
}

/** `file:line:column path: message`, and the source line with a caret under a syntax error. */
export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.column}${p.path ? ` ${p.path}` : ''}: ${p.message}${p.context ? `\n${p.context}` : ''}`;
}

export class ConfigError extends Error {
  /** Each problem, formatted. */
  readonly problems: string[];

  constructor(
    problems: string[],
    readonly details: readonly ConfigProblem[] = [],
  ) {
    super(`invalid config (${problems.length === 1 ? '1 problem' : `${problems.length} problems`}):\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function formatPath(path: ConfigPath): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${p}` : p;
  return s || '(root)';
}

export interface ValidateOptions {
  /** Resolves the relative file paths of the config (its own directory). Default: the working directory. */
  baseDir?: string;
  /** Names the config in every problem. */
  source?: string;
  /** Read the files the config names (TLS, member files, directory seeds), as starting would. */
  files?: boolean;
}

/** Validate config text: the config when there are no problems, and every problem (sorted by position). */
export function validateConfig(text: string, opts: ValidateOptions = {}): { config: Config | undefined; problems: ConfigProblem[] } {
  const source = opts.source ?? 'config';
  const baseDir = opts.baseDir ?? process.cwd();
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // The tree of a document with syntax errors is a guess: its schema problems would mislead.
    return { config: undefined, problems: doc.errors.map((e) => syntaxProblem(e, text, source)) };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (e) {
    return { config: undefined, problems: [{ file: source, line: 1, column: 1, path: '', message: (e as Error).message }] };
  }
  const engine = process.env.HOMING_ENGINE;
  if (engine) {
    // HOMING_ENGINE names the engine of a config that names none (README: "engine").
    if (!(ENGINES as readonly string[]).includes(engine)) return { config: undefined, problems: [{ file: source, line: 1, column: 1, path: '', message: `HOMING_ENGINE must be ${ENGINES.join(' or ')} (got ${JSON.stringify(engine)})` }] };
    if (raw !== null && typeof raw === 'object' && !Array.isArray(raw) && !('engine' in raw)) (raw as Record<string, unknown>).engine = engine;
  }
  const result = configSchema.safeParse(raw);
  const found: Problem[] = result.success ? [] : result.error.issues.flatMap((i) => fromIssue(i, raw, []));
  found.push(...ruleProblems(raw, baseDir, opts.files ?? false));
  const located = new Map<string, ConfigProblem>();
  for (const p of found) {
    const { line, column } = position(doc, lc, p);
    const problem = { file: source, line, column, path: formatPath(p.path), message: p.message };
    located.set(formatProblem(problem), problem);
  }
  const problems = [...located.values()].sort((a, b) => a.line - b.line || a.column - b.column);
  if (!result.success || problems.length > 0) return { config: undefined, problems };
  const cfg = result.data;
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  for (const pool of Object.values(cfg.pools)) if (pool.discovery?.file) pool.discovery.file = abs(pool.discovery.file);
  for (const t of [...Object.values(cfg.pools).map((p) => p.discovery?.etcd?.tls), cfg.announce?.etcd.tls]) {
    if (typeof t === 'object') for (const k of ['ca', 'cert', 'key'] as const) if (t[k] !== undefined) t[k] = abs(t[k]);
  }
  if (cfg.listen.https) {
    cfg.listen.https.cert = abs(cfg.listen.https.cert);
    cfg.listen.https.key = abs(cfg.listen.https.key);
  }
  for (const r of cfg.routes) if (r.directory?.seed) r.directory.seed = abs(r.directory.seed);
  if (cfg.accessLog && cfg.accessLog.to !== 'stdout' && cfg.accessLog.to !== 'stderr') cfg.accessLog.to = abs(cfg.accessLog.to);
  return { config: cfg, problems: [] };
}

function orThrow(r: { config: Config | undefined; problems: ConfigProblem[] }): Config {
  if (r.config) return r.config;
  throw new ConfigError(r.problems.map(formatProblem), r.problems);
}

/**
 * Parse and validate config text; `baseDir` resolves relative file paths in it. Throws a
 * ConfigError with every problem. The files it names are not read (loadConfigFile reads them).
 */
export function parseConfig(text: string, baseDir = process.cwd(), source = 'config'): Config {
  return orThrow(validateConfig(text, { baseDir, source }));
}

/**
 * A config file as read once: its text, a short hash of the text (what `/status` shows, to tell
 * which file a process runs), and the config, or every problem formatted as `homing check` prints
 * them.
 */
export interface ConfigFile {
  file: string;
  text: string;
  hash: string;
  config: Config | undefined;
  /** Each problem, formatted (`file:line:column path: message`). */
  problems: string[];
  /** The same, located (none for a file that cannot be read). */
  details: ConfigProblem[];
}

/** The first 12 hex digits of the text's SHA-256. */
export function configHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}

/**
 * Validate `text` as the content of `file` (its relative paths resolved against the file's
 * directory, the files it names read): what `check` and `serve` run on the file, and what a
 * worker runs on the text its primary sends it.
 */
export function checkConfigText(text: string, file: string): ConfigFile {
  const r = validateConfig(text, { baseDir: dirname(resolve(file)), source: file, files: true });
  return { file, text, hash: configHash(text), config: r.config, problems: r.problems.map(formatProblem), details: r.problems };
}

/** Read and validate a config file (never throws: an unreadable file is a problem). */
export function readConfigFile(file: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return { file, text: '', hash: '', config: undefined, problems: [`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`], details: [] };
  }
  return checkConfigText(text, file);
}

/** Every problem one a line, then how many there are: what `homing check` prints for an invalid file. */
export function describeProblems(problems: readonly string[], file?: string): string {
  const n = problems.length;
  return `${problems.join('\n')}\n${file ? `${file}: ` : ''}${n === 1 ? '1 problem' : `${n} problems`}`;
}

/** A config file read and validated, or a ConfigError with every problem. */
export function loadConfig(file: string): ConfigFile & { config: Config } {
  const f = readConfigFile(file);
  if (f.config) return f as ConfigFile & { config: Config };
  throw new ConfigError(f.problems, f.details);
}

/** Read, parse and validate a config file, and the files it names: what `check` and `serve` run. */
export function loadConfigFile(file: string): Config {
  return loadConfig(file).config;
}

/** A YAML syntax error, at its line and column, with the line and a caret under the column. */
function syntaxProblem(e: YAMLError, text: string, file: string): ConfigProblem {
  const { line, col: column } = e.linePos?.[0] ?? { line: 1, col: 1 };
  const message = e.message.replace(/ at line \d+, column \d+[\s\S]*$/, '');
  const src = (text.split(/\r?\n/)[line - 1] ?? '').replace(/\s+$/, '');
  const gutter = ' '.repeat(String(line).length);
  // Tabs before the column stay tabs, so the caret lands under the character in any terminal.
  const pad = src.slice(0, column - 1).replace(/[^\t]/g, ' ');
  return { file, line, column, path: '', message, context: `  ${line} | ${src}\n  ${gutter} | ${pad}^` };
}

type Issue = z.core.$ZodIssue;

/** The schema's issue as problems, in the user's words, at the key or value they concern. */
function fromIssue(issue: Issue, raw: unknown, base: ConfigPath): Problem[] {
  const path = [...base, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((k) => ({ path: [...path, k], message: `unknown key "${k}"`, at: 'key' as const }));
    case 'invalid_key':
      return [{ path, message: `invalid name: ${issue.issues.map((i) => i.message).join('; ')}`, at: 'key' }];
    case 'invalid_union': {
      // One alternative that got past the type (a string, a map) says what is wrong with the value.
      const tried = issue.errors.filter((b) => !(b.length === 1 && b[0]!.path.length === 0 && (b[0]!.code === 'invalid_type' || b[0]!.code === 'invalid_value')));
      if (tried.length > 0) return tried.reduce((a, b) => (b.length < a.length ? b : a)).flatMap((i) => fromIssue(i, raw, path));
      const expected = issue.errors.map((b) => expectedOf(b[0]));
      return [{ path, message: `expected ${[...new Set(expected)].join(' or ')}, got ${describe(valueAt(raw, path))}` }];
    }
    case 'invalid_type': {
      const v = valueAt(raw, path);
      return [{ path, message: v === undefined ? 'missing (required)' : `expected ${expectedOf(issue)}, got ${describe(v)}` }];
    }
    case 'invalid_value':
      return [{ path, message: `must be ${expectedOf(issue)} (got ${describe(valueAt(raw, path))})` }];
    case 'too_small':
    case 'too_big': {
      // A message the schema wrote itself says more than the bound does.
      if (!/^Too (small|big)/.test(issue.message)) return [{ path, message: issue.message }];
      const small = issue.code === 'too_small';
      const n = Number(small ? issue.minimum : issue.maximum);
      const word = small ? (issue.inclusive ? 'at least' : 'more than') : issue.inclusive ? 'at most' : 'less than';
      const what = issue.origin === 'array' ? ` ${n === 1 ? 'entry' : 'entries'}` : issue.origin === 'string' ? ` ${n === 1 ? 'character' : 'characters'}` : '';
      return [{ path, message: `${issue.origin === 'array' ? 'needs' : 'must be'} ${word} ${n}${what} (got ${describe(valueAt(raw, path))})` }];
    }
    default:
      return [{ path, message: issue.message }];
  }
}

function expectedOf(issue: Issue | undefined): string {
  if (issue?.code === 'invalid_type') return issue.expected === 'object' ? 'a map' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`;
  if (issue?.code === 'invalid_value') return issue.values.map((v) => (typeof v === 'string' ? v : String(v))).join(', ').replace(/, ([^,]*)$/, issue.values.length > 2 ? ', or $1' : ' or $1');
  return 'something else';
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  return `${typeof v === 'number' ? 'the number' : typeof v} ${String(v)}`;
}

/** The raw value at `path`, or undefined when a step is missing. */
function valueAt(raw: unknown, path: ConfigPath): unknown {
  let v = raw;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[p];
  }
  return v;
}

/**
 * Line and column (1-based) a problem points at: the key itself for an unknown key; the value for
 * a bad scalar; the key of a map or list that is wrong as a whole (a block one starts on the line
 * below its key); the deepest node present when the path goes on past the document (a missing key:
 * its map's key).
 */
function position(doc: Document, lc: LineCounter, p: Problem): { line: number; column: number } {
  let node: unknown = doc.contents;
  let key: YamlNode | undefined;
  let value: YamlNode | undefined = (node as YamlNode | null) ?? undefined;
  let complete = true;
  for (const step of p.path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((i) => isScalar(i.key) && String(i.key.value) === String(step));
      if (!pair) {
        complete = false;
        break;
      }
      key = pair.key as YamlNode;
      value = (pair.value as YamlNode | null) ?? undefined;
      node = pair.value;
    } else if (isSeq(node) && typeof step === 'number' && node.items[step]) {
      key = undefined;
      value = node.items[step] as YamlNode;
      node = value;
    } else {
      complete = false;
      break;
    }
  }
  const pointAtValue = complete && p.at !== 'key' && value?.range && !(key && isCollection(value));
  const at = (pointAtValue ? value : (key ?? value))?.range?.[0];
  if (at === undefined) return { line: 1, column: 1 };
  const { line, col } = lc.linePos(at);
  return { line, column: col };
}
