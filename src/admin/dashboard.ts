/**
 * The admin dashboard at `/`: one self-contained page (no external assets) that polls /status,
 * /metrics and /api/v1/routes/<r>/share and shows members, ring shares, traffic per member,
 * affinity and directory hit ratios and redirect rate.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>homing</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;background:#fff;min-width:480px} td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f0f0f0} .up{color:#080} .down{color:#c00;font-weight:bold} .bar{display:inline-block;height:10px;background:#4a7}
.muted{color:#777}
</style></head><body>
<h1>homing</h1><div class="muted" id="meta">loading…</div>
<h2>Routes</h2><table id="routes"></table>
<h2>Members</h2><table id="members"></table>
<h2>Errors</h2><table id="errors"></table>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function parseProm(text) {
  const out = [];
  for (const line of text.split('\\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][\\w:]*)(?:\\{(.*)\\})? (\\S+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) for (const p of m[2].matchAll(/(\\w+)="((?:[^"\\\\]|\\\\.)*)"/g)) labels[p[1]] = p[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}
let prev = null;
async function tick() {
  try {
    const [status, metricsText] = await Promise.all([fetch('status').then((r) => r.json()), fetch('metrics').then((r) => r.text())]);
    const metrics = parseProm(metricsText);
    const now = Date.now();
    const sum = (name, pred) => metrics.filter((m) => m.name === name && pred(m.labels)).reduce((s, m) => s + m.value, 0);
    $('meta').textContent = 'version ' + status.version + ' · pid ' + status.pid + ' · up ' + status.uptimeSeconds + ' s · ' + (status.ready ? 'ready' : 'not ready');
    let rows = '<tr><th>route</th><th>pool</th><th>strategy</th><th>requests</th><th>req/s</th><th>affinity hit ratio</th><th>directory hit ratio</th><th>redirects/s</th></tr>';
    const cur = {};
    for (const r of status.routes) {
      const reqs = sum('homing_requests_total', (l) => l.route === r.name);
      const hits = sum('homing_affinity_hits_total', (l) => l.route === r.name);
      const misses = sum('homing_affinity_misses_total', (l) => l.route === r.name);
      const redirects = sum('homing_redirects_total', (l) => l.route === r.name);
      const dirHits = sum('homing_directory_lookups_total', (l) => l.route === r.name && l.outcome === 'hit');
      const dirAll = sum('homing_directory_lookups_total', (l) => l.route === r.name && (l.outcome === 'hit' || l.outcome === 'miss' || l.outcome === 'coalesced' || l.outcome === 'backoff'));
      cur[r.name] = { reqs, redirects };
      const dt = prev ? (now - prev.t) / 1000 : 0;
      const rate = (k) => (prev && prev.routes[r.name] && dt > 0 ? ((cur[r.name][k] - prev.routes[r.name][k]) / dt).toFixed(1) : '–');
      rows += '<tr><td>' + esc(r.name) + '</td><td>' + esc(r.pool) + '</td><td>' + esc(r.strategy) + (r.affinity ? ' + affinity' : '') + '</td><td>' + reqs + '</td><td>' + rate('reqs') + '</td><td>' + (hits + misses ? ((100 * hits) / (hits + misses)).toFixed(1) + '%' : '–') + '</td><td>' + (dirAll ? ((100 * dirHits) / dirAll).toFixed(1) + '%' : '–') + '</td><td>' + rate('redirects') + '</td></tr>';
    }
    $('routes').innerHTML = rows;
    const shares = {};
    await Promise.all(status.routes.filter((r) => r.strategy.startsWith('hash')).map(async (r) => {
      shares[r.name] = await fetch('api/v1/routes/' + encodeURIComponent(r.name) + '/share').then((x) => x.json()).catch(() => null);
    }));
    rows = '<tr><th>pool</th><th>member</th><th>weight</th><th>health</th><th>in flight</th><th>requests</th><th>key share (hash routes)</th></tr>';
    for (const p of status.pools) for (const m of p.members) {
      const reqs = sum('homing_requests_total', (l) => l.member === m.id);
      const share = Object.entries(shares).map(([rn, s]) => s && s.share && s.share[m.id] !== undefined ? esc(rn) + ' ' + (100 * s.share[m.id]).toFixed(1) + '% <span class="bar" style="width:' + Math.round(200 * s.share[m.id]) + 'px"></span>' : '').filter(Boolean).join('<br>');
      rows += '<tr><td>' + esc(p.name) + '</td><td>' + esc(m.id) + '</td><td>' + m.weight + '</td><td class="' + (m.up ? 'up">up' : 'down">down') + '</td><td>' + m.inflight + '</td><td>' + reqs + '</td><td>' + share + '</td></tr>';
    }
    $('members').innerHTML = rows;
    rows = '<tr><th>route</th><th>code</th><th>count</th></tr>';
    for (const m of metrics.filter((x) => x.name === 'homing_errors_total' && x.value > 0)) rows += '<tr><td>' + esc(m.labels.route) + '</td><td>' + esc(m.labels.code) + '</td><td>' + m.value + '</td></tr>';
    $('errors').innerHTML = rows;
    prev = { t: now, routes: cur };
  } catch (e) {
    $('meta').textContent = 'cannot reach the admin API: ' + e;
  }
}
tick();
setInterval(tick, 2000);
</script></body></html>`;
