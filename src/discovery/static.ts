/** The config's own `members` list: loaded once, never changes (a config reload builds a new source). */
import type { MemberSpec } from '../members/pool.js';
import type { MemberSource } from './source.js';

export class StaticSource implements MemberSource {
  private readonly specs: readonly MemberSpec[];

  constructor(specs: readonly MemberSpec[]) {
    this.specs = specs.map((s) => ({ host: s.host, port: s.port, weight: s.weight }));
  }

  async start(onMembers: (specs: MemberSpec[]) => void): Promise<void> {
    onMembers(this.specs.map((s) => ({ ...s })));
  }

  async stop(): Promise<void> {}
}
