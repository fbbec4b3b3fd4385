/**
 * What the RESP router asks of homing. The runtime implements it over the same resolver the HTTP
 * proxy uses (`Route.resolve`), so the two faces can never disagree; protocol tests use a small
 * deterministic implementation.
 */
export interface RespBackend {
  /** Route names in SELECT order (resp.routes, or [resp.route]). */
  readonly routes: readonly string[];
  /**
   * host:port for key on the named route, or null when no live member / nothing known. Answers
   * synchronously whenever it can (ring, warm table): the server then replies without a promise.
   * May return a promise (directory routes). Throws Error for an unknown route; the message is
   * sent to the client as `-ERR <message>`.
   */
  lookup(route: string, key: string): string | null | Promise<string | null>;
  /** Member ids (host:port) of a pool, or of all pools when omitted; undefined for an unknown pool. */
  members(pool?: string): readonly string[] | undefined;
  /** Extra lines for INFO (section name → key/value). */
  info?(): Record<string, Record<string, string | number>>;
}
