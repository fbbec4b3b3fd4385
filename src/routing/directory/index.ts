/** The directory look-up tier: a cache in front of an external directory (sources in src/directory/). */
export {
  DirectoryKeyError,
  DirectoryTable,
  type DirectoryAnswer,
  type DirectoryEntryInfo,
  type DirectoryEntrySource,
  type DirectoryFailure,
  type DirectoryObserver,
  type DirectoryResult,
  type DirectorySource,
  type DirectoryTableOptions,
  type UnavailableReason,
} from './table.js';
