/**
 * `discovery: { file }`: a JSON or YAML file holding the member list, watched so edits apply
 * without a restart. The directory holding the file is watched (see src/state/watched-file.ts for
 * why), events are debounced, and a slow poll catches what a watcher misses. Re-reading an
 * unchanged file is cheap and emits nothing (the parsed list is compared with the last one).
 */
import type { MemberSpec } from '../members/pool.js';
import { WatchedFile, type WatchedFileOptions } from '../state/watched-file.js';
import { parseMemberList, specsKey, type MemberSource } from './source.js';

export type FileSourceOptions = WatchedFileOptions;

export class FileSource extends WatchedFile<MemberSpec[]> implements MemberSource {
  constructor(file: string, opts: FileSourceOptions = {}) {
    // `[]` says "no members" on purpose; an empty file is refused rather than empty the pool.
    super(file, opts, { owner: 'FileSource', what: 'member file', started: 'member source', emptyHint: 'write [] for a pool with no members' });
  }

  protected parse(raw: unknown, where: string): MemberSpec[] {
    return parseMemberList(raw, where);
  }

  protected fingerprint(specs: MemberSpec[]): string {
    return specsKey(specs);
  }
}
