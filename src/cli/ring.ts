/**
 * `homing ring`: which member a key maps to, and what moves when members come and go, for a
 * member list (or a pool of a config file) and an algorithm. Pure computation, no I/O but stdout.
 */
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import { parseHostPort } from '../config/units.js';
import { Member, MemberSet } from '../members/member.js';
import { createHashPickerFactory, type HashPickerOptions } from '../routing/hash/index.js';
import type { HashConfig } from '../config/schema.js';

function parseMembers(list: string): Member[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const [addr, w] = s.split('*');
      const hp = parseHostPort(addr!);
      return new Member(hp.host, hp.port, w ? Number(w) : 1);
    });
}

export interface RingStats {
  label: string;
  members: number;
  moved: number;
  maxOverMean: number;
}

/** Owners of `keys` under `set`. */
function owners(opts: HashPickerOptions, set: MemberSet, keys: number): string[] {
  const picker = createHashPickerFactory(opts)(set);
  const out: string[] = new Array(keys);
  for (let i = 0; i < keys; i++) out[i] = picker.pick(`key-${i}`, 0)?.id ?? '';
  return out;
}

function loadStats(owner: readonly string[], n: number): number {
  const count = new Map<string, number>();
  for (const o of owner) count.set(o, (count.get(o) ?? 0) + 1);
  const mean = owner.length / n;
  return Math.max(...count.values()) / mean;
}

function parseRingArgs(args: string[]) {
  return parseArgs({
    args,
    options: {
      members: { type: 'string', short: 'm' },
      config: { type: 'string', short: 'c' },
      pool: { type: 'string', short: 'p' },
      algorithm: { type: 'string', short: 'a', default: 'ring' },
      vnodes: { type: 'string', default: '160' },
      compat: { type: 'string' },
      key: { type: 'string', short: 'k', multiple: true },
      add: { type: 'string', multiple: true },
      remove: { type: 'string', multiple: true },
      keys: { type: 'string', default: '100000' },
    },
  });
}

/** Runs `homing ring`; 2 when the arguments are wrong (the caller prints the usage). */
export function ringCommand(args: string[]): number {
  let parsed;
  try {
    parsed = parseRingArgs(args);
  } catch (e) {
    process.stderr.write(`homing ring: ${(e as Error).message}\n`);
    return 2;
  }
  const { values } = parsed;
  const algo = values.algorithm as HashConfig['algorithm'];
  if (!['ring', 'maglev', 'rendezvous'].includes(algo)) {
    process.stderr.write(`homing ring: unknown algorithm "${algo}" (ring, maglev, rendezvous)\n`);
    return 2;
  }
  const compat = values.compat as HashConfig['compat'];
  if (compat !== undefined && (compat !== 'nginx' || algo !== 'ring')) {
    process.stderr.write(`homing ring: --compat takes nginx, with --algorithm ring (got ${compat}, ${algo})\n`);
    return 2;
  }
  let members: Member[];
  if (values.members) members = parseMembers(values.members);
  else if (values.config) {
    const cfg = loadConfigFile(values.config);
    const name = values.pool ?? Object.keys(cfg.pools)[0]!;
    const p = cfg.pools[name];
    if (!p?.members) {
      process.stderr.write(`homing ring: pool "${name}" has no static members in ${values.config}\n`);
      return 2;
    }
    members = p.members.map((m) => new Member(m.host, m.port, m.weight));
  } else {
    process.stderr.write('homing ring: give --members host:port,host:port… or -c config.yaml [--pool name]\n');
    return 2;
  }
  const opts: HashPickerOptions = { algorithm: algo, vnodes: Number(values.vnodes), compat };
  const base = new MemberSet(members);
  if (values.key?.length) {
    const picker = createHashPickerFactory(opts)(base);
    for (const k of values.key) process.stdout.write(`${k}\t${picker.pick(k, 0)?.id ?? '(none)'}\n`);
    if (!values.add && !values.remove) return 0;
  }
  const n = Number(values.keys);
  const before = owners(opts, base, n);
  const rows: RingStats[] = [{ label: `${base.size} members`, members: base.size, moved: 0, maxOverMean: loadStats(before, base.size) }];
  let set = base;
  const steps: [string, Member[]][] = [];
  for (const r of values.remove ?? []) steps.push([`remove ${r}`, set.members.filter((m) => m.id !== r && m.id !== parseHostPortId(r))]);
  let cur = before;
  for (const [label, list] of steps) {
    set = new MemberSet(list);
    const next = owners(opts, set, n);
    rows.push({ label, members: set.size, moved: next.filter((o, i) => o !== cur[i]).length / n, maxOverMean: loadStats(next, set.size) });
    cur = next;
  }
  for (const a of values.add ?? []) {
    set = new MemberSet([...set.members, ...parseMembers(a)]);
    const next = owners(opts, set, n);
    rows.push({ label: `add ${a}`, members: set.size, moved: next.filter((o, i) => o !== cur[i]).length / n, maxOverMean: loadStats(next, set.size) });
    cur = next;
  }
  process.stdout.write(`algorithm ${algo}${algo === 'ring' ? ` (${opts.vnodes} vnodes${compat ? `, compat ${compat}` : ''})` : ''}, ${n} keys\n`);
  process.stdout.write(`${'step'.padEnd(28)} ${'members'.padStart(7)} ${'moved'.padStart(8)} ${'ideal'.padStart(8)} ${'max/mean'.padStart(9)}\n`);
  let prevSize = base.size;
  for (const r of rows) {
    const ideal = r === rows[0] ? 0 : Math.abs(r.members - prevSize) / Math.max(r.members, prevSize);
    prevSize = r.members;
    process.stdout.write(`${r.label.padEnd(28)} ${String(r.members).padStart(7)} ${(r.moved * 100).toFixed(2).padStart(7)}% ${(ideal * 100).toFixed(2).padStart(7)}% ${r.maxOverMean.toFixed(3).padStart(9)}\n`);
  }
  return 0;
}

function parseHostPortId(s: string): string {
  try {
    const hp = parseHostPort(s);
    return new Member(hp.host, hp.port).id;
  } catch {
    return s;
  }
}
