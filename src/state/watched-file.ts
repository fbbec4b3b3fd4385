/**
 * Reading and watching a JSON or YAML file that is edited while homing runs (member lists, the
 * directory's seed).
 *
 * Why the directory is watched and not the file: editors and config tools (vim, `sed -i`,
 * Kubernetes ConfigMap volumes, `mv tmp members.yaml`) replace the file by renaming another one
 * over it, and a watch on the old inode then goes silent. A watch on the directory sees every
 * replacement. Events are coalesced (`debounceMs`) so a truncate-then-write lands as one reload,
 * and a slow poll (`pollMs`) catches what a watcher can miss (network file systems, a directory
 * that was itself replaced, platforms without recursive inotify). Re-reading an unchanged file is
 * cheap and delivers nothing (the Reloader compares fingerprints).
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { Reloader } from './reloader.js';

/**
 * The parsed content of `file`: JSON when it ends in `.json`, YAML otherwise (duplicate keys
 * refused). Rejects with a message starting with `where`. An empty file is refused: it is almost
 * always a write caught half-way (truncate, then write); `emptyHint` says how to write an empty
 * value on purpose (e.g. "write [] for a pool with no members").
 */
export async function readDataFile(file: string, where: string, emptyHint: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw cannotRead(e, where);
  }
  return parseData(text, file, where, emptyHint);
}

/** readDataFile, synchronously (config validation reads each file once, before anything starts). */
function readDataFileSync(file: string, where: string, emptyHint: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw cannotRead(e, where);
  }
  return parseData(text, file, where, emptyHint);
}

function cannotRead(e: unknown, where: string): Error {
  return new Error(`${where}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
}

function parseData(text: string, file: string, where: string, emptyHint: string): unknown {
  if (text.trim() === '') throw new Error(`${where}: file is empty (${emptyHint})`);
  const json = extname(file).toLowerCase() === '.json';
  try {
    return json ? JSON.parse(text) : parseYaml(text, { uniqueKeys: true });
  } catch (e) {
    throw new Error(`${where}: invalid ${json ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`, { cause: e });
  }
}

/**
 * Watches the directory of a file and calls `onChange` once per burst of events, `debounceMs`
 * after the first. A watcher that fails is dropped and `onChange` called (the owner re-reads,
 * and calls `ensure()` on each read to watch again).
 */
export class DirectoryWatch {
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private watching = false;

  constructor(
    readonly file: string,
    private readonly debounceMs: number,
    private readonly onChange: () => void,
  ) {}

  start(): void {
    this.watching = true;
    this.watch();
  }

  /** Watch again if the watcher failed since (a no-op before start and after stop). */
  ensure(): void {
    if (this.watching && !this.watcher) this.watch();
  }

  stop(): void {
    this.watching = false;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = undefined;
  }

  /** On failure the owner's poll keeps the value fresh and retries the watch. */
  private watch(): void {
    if (!this.watching) return;
    try {
      // persistent: false — the watcher alone must not keep the process alive.
      const w = watch(dirname(this.file), { persistent: false }, () => this.schedule());
      w.on('error', () => {
        w.close();
        if (this.watcher === w) this.watcher = undefined;
        this.schedule();
      });
      this.watcher = w;
    } catch {
      this.watcher = undefined;
    }
  }

  private schedule(): void {
    if (!this.watching || this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.onChange();
    }, this.debounceMs);
    this.debounce.unref();
  }
}

export interface WatchedFileOptions {
  /** Quiet period after a change event before the file is read, in ms. Default 100. */
  debounceMs?: number;
  /** Fallback re-read period in ms (0 = off). Default 2000. */
  pollMs?: number;
  /** Watch the directory (default true); false leaves only the poll, e.g. where inotify is unavailable. */
  watch?: boolean;
}

/** How a watched file names itself in messages. */
export interface WatchedFileLabels {
  /** Class name, for option errors ("FileSource"). */
  owner: string;
  /** Prefix of load errors, followed by the path ("member file"). */
  what: string;
  /** For "already started" ("member source"). */
  started: string;
  /** How to write an empty value on purpose ("write [] for a pool with no members"). */
  emptyHint: string;
}

/**
 * A Reloader of one file: read at start, re-read on directory events (debounced) and on the poll;
 * `read` gives the value.
 */
abstract class WatchedPath<T> extends Reloader<T> {
  readonly file: string;
  private readonly dirWatch: DirectoryWatch;
  private readonly useWatch: boolean;

  constructor(file: string, opts: WatchedFileOptions, labels: Pick<WatchedFileLabels, 'owner' | 'started'>) {
    const pollMs = opts.pollMs ?? 2000;
    const debounceMs = opts.debounceMs ?? 100;
    if (!Number.isFinite(pollMs) || pollMs < 0) throw new Error(`${labels.owner}: pollMs must be >= 0, got ${pollMs}`);
    if (!Number.isFinite(debounceMs) || debounceMs < 0) throw new Error(`${labels.owner}: debounceMs must be >= 0, got ${debounceMs}`);
    super(pollMs, labels.started);
    this.file = resolve(file);
    this.useWatch = opts.watch ?? true;
    this.dirWatch = new DirectoryWatch(this.file, debounceMs, () => void this.refresh());
  }

  /** The file's value now; rejects with a message naming the file. */
  protected abstract read(): Promise<T>;

  protected async load(): Promise<T> {
    this.dirWatch.ensure();
    return this.read();
  }

  protected override afterStart(): void {
    if (this.useWatch) this.dirWatch.start();
  }

  protected override async beforeStop(): Promise<void> {
    this.dirWatch.stop();
  }
}

/** A watched JSON or YAML file; `parse` turns the file's content into the value (throwing with `where`). */
export abstract class WatchedFile<T> extends WatchedPath<T> {
  private readonly where: string;

  constructor(
    file: string,
    opts: WatchedFileOptions,
    private readonly labels: WatchedFileLabels,
  ) {
    super(file, opts, labels);
    this.where = `${labels.what} ${this.file}`;
  }

  /** The value of the file's parsed content; throws an Error starting with `where`. */
  protected abstract parse(raw: unknown, where: string): T;

  protected async read(): Promise<T> {
    return this.parse(await readDataFile(this.file, this.where, this.labels.emptyHint), this.where);
  }

  /**
   * The value the first load would give, read now and synchronously, watching nothing: how config
   * validation tells that `start` would fail (the file missing, empty or invalid).
   */
  check(): T {
    return this.parse(readDataFileSync(this.file, this.where, this.labels.emptyHint), this.where);
  }
}

/**
 * A watched file's text, delivered when it changes (homing's own config, with `reload.watch`). An
 * empty file is not delivered: it is a write caught half-way (truncate, then write).
 */
export class WatchedText extends WatchedPath<string> {
  constructor(
    file: string,
    private readonly label: string,
    opts: WatchedFileOptions = {},
  ) {
    super(file, opts, { owner: 'WatchedText', started: label });
  }

  protected async read(): Promise<string> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      throw cannotRead(e, `${this.label} ${this.file}`);
    }
    if (text.trim() === '') throw new Error(`${this.label} ${this.file}: file is empty`);
    return text;
  }

  protected fingerprint(text: string): string {
    return text;
  }
}
