/**
 * `discovery: { file }`: a JSON or YAML file holding the member list, watched so edits apply
 * without a restart.
 *
 * Why the directory is watched and not the file: editors and config tools (vim, `sed -i`,
 * Kubernetes ConfigMap volumes, `mv tmp members.yaml`) replace the file by renaming another one
 * over it, and a watch on the old inode then goes silent. A watch on the directory sees every
 * replacement. Events are coalesced (`debounceMs`) so a truncate-then-write lands as one reload,
 * and a slow poll (`pollMs`) catches what a watcher can miss (network file systems, a directory
 * that was itself replaced, platforms without recursive inotify). Re-reading an unchanged file is
 * cheap and emits nothing (the parsed list is compared with the last one).
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { MemberSpec } from '../members/pool.js';
import { parseMemberList, ReloadingSource } from './source.js';

export interface FileSourceOptions {
  /** Quiet period after a change event before the file is read, in ms. Default 100. */
  debounceMs?: number;
  /** Fallback re-read period in ms (0 = off). Default 2000. */
  pollMs?: number;
  /** Watch the directory (default true); false leaves only the poll, e.g. where inotify is unavailable. */
  watch?: boolean;
}

export class FileSource extends ReloadingSource {
  readonly file: string;
  private readonly debounceMs: number;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private watching = false;
  private readonly useWatch: boolean;

  constructor(file: string, opts: FileSourceOptions = {}) {
    const pollMs = opts.pollMs ?? 2000;
    const debounceMs = opts.debounceMs ?? 100;
    if (!Number.isFinite(pollMs) || pollMs < 0) throw new Error(`FileSource: pollMs must be >= 0, got ${pollMs}`);
    if (!Number.isFinite(debounceMs) || debounceMs < 0) throw new Error(`FileSource: debounceMs must be >= 0, got ${debounceMs}`);
    super(pollMs);
    this.file = resolve(file);
    this.debounceMs = debounceMs;
    this.useWatch = opts.watch ?? true;
  }

  protected async load(): Promise<MemberSpec[]> {
    if (this.watching && !this.watcher) this.watch();
    const where = `member file ${this.file}`;
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      throw new Error(`${where}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
    // An empty file is almost always a write caught half-way (truncate, then write): refuse it
    // rather than empty the pool. `[]` says "no members" on purpose.
    if (text.trim() === '') throw new Error(`${where}: file is empty (write [] for a pool with no members)`);
    let raw: unknown;
    try {
      raw = extname(this.file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text, { uniqueKeys: true });
    } catch (e) {
      const kind = extname(this.file).toLowerCase() === '.json' ? 'JSON' : 'YAML';
      throw new Error(`${where}: invalid ${kind}: ${(e as Error).message.split('\n')[0]}`, { cause: e });
    }
    return parseMemberList(raw, where);
  }

  protected override afterStart(): void {
    if (!this.useWatch) return;
    this.watching = true;
    this.watch();
  }

  /** Watch the directory; on failure the poll keeps the list fresh and retries the watch. */
  private watch(): void {
    if (this.stopped) return;
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
    if (this.stopped || this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.refresh();
    }, this.debounceMs);
    this.debounce.unref();
  }

  protected override async beforeStop(): Promise<void> {
    this.watching = false;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = undefined;
  }
}
