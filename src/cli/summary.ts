/** The summary `homing check` prints. */
import type { Config } from '../config/schema.js';
import { formatHostPort } from '../config/units.js';

export function summarize(cfg: Config): string {
  const lines: string[] = [];
  if (cfg.listen.http) lines.push(`listen http  ${formatHostPort(cfg.listen.http.host, cfg.listen.http.port)}`);
  if (cfg.listen.https) lines.push(`listen https ${formatHostPort(cfg.listen.https.address.host, cfg.listen.https.address.port)} (cert ${cfg.listen.https.cert})`);
  if (cfg.admin) lines.push(`admin        ${formatHostPort(cfg.admin.address.host, cfg.admin.address.port)}${cfg.admin.token ? ' (token)' : cfg.admin.insecure ? ' (no token: insecure)' : ''}`);
  if (cfg.resp) lines.push(`resp         ${formatHostPort(cfg.resp.address.host, cfg.resp.address.port)} → ${(cfg.resp.routes ?? [cfg.resp.route]).join(', ')}`);
  lines.push(`workers      ${cfg.workers}`);
  lines.push(`engine       ${cfg.engine}`);
  lines.push(`reload       on SIGHUP and POST /api/v1/reload${cfg.reload.watch ? ', and when the file changes' : ''}`);
  for (const [name, p] of Object.entries(cfg.pools)) {
    const src = p.members ? `${p.members.length} static members` : `discovery ${Object.keys(p.discovery ?? {}).filter((k) => (p.discovery as Record<string, unknown>)[k] !== undefined).join(',')}`;
    const health = [p.health?.active ? 'active checks' : '', p.health?.passive ? 'passive ejection' : ''].filter(Boolean).join(' + ') || 'no health checks';
    lines.push(`pool ${name}: ${src}; ${health}`);
  }
  for (const r of cfg.routes) {
    const parts = [r.cache ? 'cache' : '', r.affinity ? `affinity(${r.affinity.key})` : '', r.directory ? `directory(${r.directory.key})` : '', r.hash ? `hash ${r.hash.algorithm}(${r.hash.key})${r.hash.boundedLoad ? ` bounded ${r.hash.boundedLoad}` : ''}` : r.affinity ? `guess rendezvous(${r.affinity.key})` : '', `balance ${r.balance}`].filter(Boolean);
    const m = r.match;
    const match = [m.host ? `host ${m.host}` : '', m.path ? `path ${m.path}` : '', m.pathRegex ? `regex ${m.pathRegex}` : '', m.method ? `method ${[m.method].flat().join('|')}` : ''].filter(Boolean).join(', ');
    lines.push(`route ${r.name}: ${match || 'everything'} → ${r.pool ?? r.pools?.join('|')} via ${parts.join(' → ')}`);
  }
  const c = cfg.cache;
  if (c) lines.push(`cache        ${mib(c.memory)} in memory${c.store === 'redis' ? ' + redis' : ''}${c.principal ? `; principal ${c.principal.key} → ${c.principal.headers.join(', ')}` : ''}`);
  return lines.join('\n');
}

function mib(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;
}
