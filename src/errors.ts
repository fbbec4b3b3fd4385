/**
 * The one error catalogue. Every error homing answers itself (HTTP proxy, admin API) carries one of
 * these codes in a JSON body `{ "error": { "code", "message" } }` with the status given here.
 * The README lists the same codes; test/errors.test.ts fails when one is missing from either.
 */
export interface ErrorSpec {
  /** HTTP status homing answers with. */
  readonly status: number;
  /** One line for the README table: when homing answers this. */
  readonly when: string;
  /** Whether the request may be retried on another member (nothing was sent upstream). */
  readonly retryable: boolean;
}

export const ERRORS = {
  HOMING_ERR_BAD_REQUEST: { status: 400, when: 'The request is malformed (bad framing, ambiguous Host, bad URL, invalid header).', retryable: false },
  HOMING_ERR_NO_ROUTE: { status: 404, when: 'No route matches the request (host, path, method).', retryable: false },
  HOMING_ERR_BODY_TOO_LARGE: { status: 413, when: 'The request body is larger than the route allows.', retryable: false },
  HOMING_ERR_HEADERS_TOO_LARGE: { status: 431, when: 'The request head is larger than 16 KiB or has too many headers.', retryable: false },
  HOMING_ERR_CLIENT_TIMEOUT: { status: 408, when: 'The client sent nothing of its request body for `timeouts.clientBody` (60 s by default).', retryable: false },
  HOMING_ERR_EXPECTATION_FAILED: { status: 417, when: 'The request has an `Expect` value other than `100-continue`.', retryable: false },
  HOMING_ERR_NO_LIVE_MEMBER: { status: 503, when: 'The route’s pool has no live member (all down, ejected or empty).', retryable: false },
  HOMING_ERR_UPSTREAM_CONNECT: { status: 502, when: 'No member could be connected to (every candidate refused or failed before anything was sent).', retryable: true },
  HOMING_ERR_UPSTREAM_RESET: { status: 502, when: 'The member closed or reset the connection before a complete response head.', retryable: false },
  HOMING_ERR_UPSTREAM_BAD_RESPONSE: { status: 502, when: 'The member sent an invalid or oversized response head.', retryable: false },
  HOMING_ERR_UPSTREAM_TIMEOUT: { status: 504, when: 'The member did not answer within the route’s timeouts.', retryable: false },
  HOMING_ERR_REDIRECT_TARGET: { status: 502, when: 'A backend redirect named a target outside the route’s pool, or an unparseable target.', retryable: false },
  HOMING_ERR_REDIRECT_LOOP: { status: 508, when: 'Backend redirects looped, or exceeded `maxHops`.', retryable: false },
  HOMING_ERR_REDIRECT_BODY_TOO_LARGE: { status: 502, when: 'A backend redirect asked to re-send a body larger than `maxReplayBody`.', retryable: false },
  HOMING_ERR_DIRECTORY_UNKNOWN_KEY: { status: 404, when: 'The directory says it knows no such key (cached for `negativeTtl`).', retryable: false },
  HOMING_ERR_DIRECTORY_UNAVAILABLE: { status: 503, when: 'The directory is down or timed out and nothing is cached for the key.', retryable: false },
  HOMING_ERR_DIRECTORY_BAD_ANSWER: { status: 502, when: 'The directory answered a target that is not a known pool or member.', retryable: false },
  HOMING_ERR_NOT_REVALIDATED: { status: 504, when: 'The cache holds an answer it may serve only once a backend confirms it (`must-revalidate`, `proxy-revalidate`, `s-maxage`, `no-cache`), and no backend could be reached to confirm it.', retryable: false },
  HOMING_ERR_NOT_CACHED: { status: 504, when: 'The request said `Cache-Control: only-if-cached` and the cache holds nothing that answers it without asking a backend.', retryable: false },
  HOMING_ERR_SERVICE_UNAVAILABLE: { status: 503, when: 'homing is shutting down or not ready.', retryable: false },
  HOMING_ERR_INTERNAL: { status: 500, when: 'An unexpected error inside homing (a bug: please report it).', retryable: false },
  HOMING_ERR_ADMIN_UNAUTHORIZED: { status: 401, when: 'The admin API needs a bearer token and the request had none or a wrong one.', retryable: false },
  HOMING_ERR_ADMIN_NOT_FOUND: { status: 404, when: 'The admin API has no such route, pool, key or endpoint.', retryable: false },
  HOMING_ERR_CONFIG_INVALID: { status: 422, when: 'A reload found the config file invalid: every problem is listed, as `homing check` prints them, and the running config is unchanged.', retryable: false },
  HOMING_ERR_RELOAD_FAILED: { status: 500, when: 'A valid config could not be applied (a listener could not bind, a member source could not start, a worker did not switch); what did not switch keeps its previous config.', retryable: false },
  HOMING_ERR_ADMIN_BAD_REQUEST: { status: 400, when: 'An admin API call is missing a parameter or has a bad one (a target that is no URL, a name or key that is not valid percent-encoded UTF-8).', retryable: false },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** An error homing answers itself; `code` picks status and retryability from the catalogue. */
export class HomingError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HomingError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryable = ERRORS[code].retryable;
  }
}

/** The JSON body of an error answer. */
export function errorBody(code: ErrorCode, message: string): string {
  return JSON.stringify({ error: { code, message } });
}
