/**
 * `discovery: { file }`: a JSON or YAML file holding the member list, watched so edits apply
 * without a restart. The directory holding the file is watched (see shared/watched-file.ts for
 * why), events are debounced, and a slow poll catches what a watcher misses. Re-reading an
 * unchanged file is cheap and emits nothing (the parsed list is compared with the last one).
 */
import { resolve } from 'node:path';
import type { MemberSpec } from '../members/pool.js';
import { checkWatchPeriods, DirectoryWatch, readDataFile } from '../shared/watched-file.js';
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
  private readonly dirWatch: DirectoryWatch;
  private readonly useWatch: boolean;

  constructor(file: string, opts: FileSourceOptions = {}) {
    const pollMs = opts.pollMs ?? 2000;
    const debounceMs = opts.debounceMs ?? 100;
    checkWatchPeriods('FileSource', pollMs, debounceMs);
    super(pollMs);
    this.file = resolve(file);
    this.useWatch = opts.watch ?? true;
    this.dirWatch = new DirectoryWatch(this.file, debounceMs, () => void this.refresh());
  }

  protected async load(): Promise<MemberSpec[]> {
    this.dirWatch.ensure();
    const where = `member file ${this.file}`;
    // `[]` says "no members" on purpose; an empty file is refused rather than empty the pool.
    return parseMemberList(await readDataFile(this.file, where, 'write [] for a pool with no members'), where);
  }

  protected override afterStart(): void {
    if (this.useWatch) this.dirWatch.start();
  }

  protected override async beforeStop(): Promise<void> {
    this.dirWatch.stop();
  }
}
