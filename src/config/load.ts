/** Load and validate a YAML config; every error names its YAML path and, where known, its line. */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isCollection, isMap, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid config:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || '(root)';
}

/** Line (1-based) of the deepest YAML node along `path`, if the document has it. */
function lineOf(doc: ReturnType<typeof parseDocument>, lc: LineCounter, path: readonly PropertyKey[]): number | undefined {
  let node: unknown = doc.contents;
  let found: YamlNode | undefined;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === key);
      if (!pair) break;
      found = (pair.key as YamlNode) ?? found;
      node = pair.value;
      // A scalar value's line is the value's; a map or list is named by its key's line (a block
      // collection starts on the line below its key).
      if (node && (node as YamlNode).range && !isCollection(node)) found = node as YamlNode;
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key];
      if (node && (node as YamlNode).range) found = node as YamlNode;
      else break;
    } else break;
  }
  const off = found?.range?.[0];
  return off === undefined ? undefined : lc.linePos(off).line;
}

/** Parse and validate config text; `baseDir` resolves relative file paths in it. */
export function parseConfig(text: string, baseDir = process.cwd(), source = 'config'): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${source}: ${e.message.split('\n')[0]}`));
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((i) => {
        const line = lineOf(doc, lc, i.path);
        return `${formatPath(i.path)}: ${i.message}${line ? ` (${source}:${line})` : ''}`;
      }),
    );
  }
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
  return cfg;
}

/** Read, parse, validate; also checks that files it names (TLS cert/key) exist and load. */
export function loadConfigFile(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError([`${file}: cannot read: ${(e as Error).message}`]);
  }
  const cfg = parseConfig(text, dirname(resolve(file)), file);
  checkSupported(cfg);
  checkFiles(cfg);
  return cfg;
}

/**
 * Keys the documented config reserves that this version does not act on yet: refused with a
 * clear message rather than silently ignored.
 */
export function checkSupported(cfg: Config): void {
  const problems: string[] = [];
  cfg.routes.forEach((r, i) => {
    if (r.cache) problems.push(`routes[${i}].cache: the response cache is not implemented in this version of homing (cache.principal.headers are already stripped from client requests)`);
  });
  if (problems.length) throw new ConfigError(problems);
}

/** Checks the files a config names, so a bad certificate fails `homing check`, not the first request. */
export function checkFiles(cfg: Config): void {
  const problems: string[] = [];
  if (cfg.listen.https) {
    const { cert, key } = cfg.listen.https;
    let certPem: Buffer | undefined;
    let keyPem: Buffer | undefined;
    try {
      certPem = readFileSync(cert);
    } catch (e) {
      problems.push(`listen.https.cert: cannot read ${cert}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      keyPem = readFileSync(key);
    } catch (e) {
      problems.push(`listen.https.key: cannot read ${key}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (certPem && keyPem) {
      try {
        createSecureContext({ cert: certPem, key: keyPem });
      } catch (e) {
        problems.push(`listen.https: certificate ${cert} or key ${key} is not valid PEM or they do not match: ${(e as Error).message}`);
      }
    }
  }
  if (problems.length) throw new ConfigError(problems);
}
