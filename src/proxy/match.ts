/** Route-match phase: the first route whose host, path and method take the request, with its regex match. */
import type { Route } from '../routing/route.js';

export interface Matched {
  route: Route;
  /** The route's `pathRegex` match on the path (capture groups feed `path:<n>` keys), or null. */
  match: RegExpExecArray | null;
}

export class Router {
  constructor(readonly routes: readonly Route[]) {}

  match(method: string, host: string, path: string): Matched | undefined {
    for (const route of this.routes) {
      const m = route.matches(method, host, path);
      if (m !== false) return { route, match: m };
    }
    return undefined;
  }
}
