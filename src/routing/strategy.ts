/**
 * Where a request lands, apart from which key it has (the key is the route's business). A Picker is built
 * from one frozen snapshot of live members and never mutated; a route builds a new one when the
 * pool's live set changes.
 */
import type { ErrorCode } from '../errors.js';
import type { Member, MemberSet } from '../members/member.js';
import type { Pool } from '../members/pool.js';

export interface Picker {
  /**
   * The member for this request. `key` is the routing key (hash strategies need one; balancers
   * ignore it). `attempt` 0 is the first choice; attempt n > 0 is the n-th fallback, a different
   * member from earlier attempts while there are any (used to retry after a connect failure).
   * Answers undefined only when the snapshot is empty (or a hash picker gets no key).
   * `exclude` holds members already tried for this request: balancers (which have no key to
   * tell attempts apart) skip them; hash pickers' attempts are distinct already.
   */
  pick(key: string | undefined, attempt: number, exclude?: ReadonlySet<Member>): Member | undefined;
}

export type PickerFactory = (live: MemberSet) => Picker;

/** How a target was chosen, as shown in `X-Homing` and the admin look-up. */
export type By = 'affinity' | 'directory' | 'hash' | 'balance';

/** Where a request or key goes: the member, the pool of the route it was taken from, and how. */
export interface Resolution {
  readonly member: Member;
  readonly pool: Pool;
  readonly by: By;
}

/** Why a route has no target: a code of the error catalogue and a message for the client. */
export interface Unresolved {
  readonly error: ErrorCode;
  readonly message: string;
}

export type ResolveResult = Resolution | Unresolved;
