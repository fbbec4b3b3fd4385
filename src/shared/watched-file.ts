/**
 * Reading and watching a JSON or YAML file that is edited while homing runs (member lists, the
 * directory's seed).
 *
 * Why the directory is watched and not the file: editors and config tools (vim, `sed -i`,
 * Kubernetes ConfigMap volumes, `mv tmp members.yaml`) replace the file by renaming another one
 * over it, and a watch on the old inode then goes silent. A watch on the directory sees every
 * replacement. Events are coalesced (`debounceMs`) so a truncate-then-write lands as one reload;
 * the owner also polls slowly to catch what a watcher can miss (network file systems, a directory
 * that was itself replaced, platforms without recursive inotify).
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import { parse as parseYaml } from 'yaml';

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
    throw new Error(`${where}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
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

/** Checks the debounce and poll periods of a watched file (ms, >= 0). */
export function checkWatchPeriods(owner: string, pollMs: number, debounceMs: number): void {
  if (!Number.isFinite(pollMs) || pollMs < 0) throw new Error(`${owner}: pollMs must be >= 0, got ${pollMs}`);
  if (!Number.isFinite(debounceMs) || debounceMs < 0) throw new Error(`${owner}: debounceMs must be >= 0, got ${debounceMs}`);
}
