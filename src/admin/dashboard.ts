/**
 * The admin dashboard at `/`: one self-contained page (no external assets). The page itself holds
 * no data and loads without the admin token; everything it shows comes from the event stream
 * `GET /api/v1/events` (see events.ts), read with fetch so that the token goes as a bearer header.
 * With `admin.token` set the page asks for the token (a field at the top), keeps it in the tab's
 * sessionStorage (gone when the tab closes) and sends it on every fetch; a 401 asks again.
 *
 * Shown: routes (requests, req/s, errors/s, p50/p99 latency, in flight, a 15-minute sparkline of
 * req/s and errors/s), members (health in green or red, weight, in flight, requests, rates,
 * latency, key share on hash routes, sparkline), affinity (hits, misses, hit ratio, redirects,
 * redirects/s, entries), directory (look-ups by outcome, hit ratio, entries, errors) and cache
 * (look-ups by outcome, hit ratio) panels
 * when a route has them, and homing's own errors by route and code. Cells carry `data-k` names
 * (rows `data-route`, `data-member` and `data-pool`) for tests and scripts.
 */
export const DASHBOARD_HTML = String.raw`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>homing</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
[hidden]{display:none!important}
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 8px 0 0;display:inline} h2{font-size:16px;margin:24px 0 8px}
header{display:flex;flex-wrap:wrap;align-items:center;gap:8px}
table{border-collapse:collapse;background:#fff;min-width:480px} td,th{border:1px solid #ddd;padding:4px 10px;text-align:left;white-space:nowrap}
th{background:#f0f0f0} td.n{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#080} .down{color:#fff;background:#c00;font-weight:bold} .bar{display:inline-block;height:10px;background:#4a7}
.muted{color:#777} .live{color:#080} .bad{color:#c00} #tokenForm{display:flex;gap:6px;align-items:center;padding:6px 10px;background:#fff3cd;border:1px solid #e0c97a}
svg.spark{display:block} .spark .r{fill:none;stroke:#36c;stroke-width:1.2} .spark .e{fill:none;stroke:#c00;stroke-width:1.2}
</style></head><body>
<header><h1>homing</h1><span class="muted" id="meta"></span><span id="conn" class="muted">connecting…</span>
<form id="tokenForm" hidden><label for="token">Admin token</label><input id="token" type="password" autocomplete="off" size="32"><button type="submit">Connect</button><span id="tokenMsg" class="bad"></span></form>
<button id="forget" type="button" hidden>Forget token</button></header>
<h2>Routes</h2><table id="routes"></table>
<h2>Members</h2><table id="members"></table>
<section id="affinitySec" hidden><h2>Affinity</h2><table id="affinity"></table></section>
<section id="directorySec" hidden><h2>Directory</h2><table id="directory"></table></section>
<section id="cacheSec" hidden><h2>Cache</h2><table id="cache"></table></section>
<h2>Errors</h2><table id="errors"></table>
<p class="muted">Rates and latencies are per second, sampled every second; sparklines cover the last 15 minutes (blue: requests/s, red: errors/s).</p>
<script>
'use strict';
const KEY = 'homing.adminToken';
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const FIELDS = ['rps', 'eps', 'p50', 'p99', 'inflight'];
let token = sessionStorage.getItem(KEY) || '';
let current = null;
let retryTimer = null;
const st = { status: null, shares: {}, hist: null, last: null, prev: null };

function setConn(text, cls) {
  $('conn').textContent = text;
  $('conn').className = cls || 'muted';
}
function askToken(msg) {
  $('tokenForm').hidden = false;
  $('tokenMsg').textContent = msg;
  $('forget').hidden = !token;
  $('token').focus();
  setConn('token needed', 'bad');
}
$('tokenForm').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('token').value.trim();
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
  $('token').value = '';
  connect();
});
$('forget').addEventListener('click', () => {
  token = '';
  sessionStorage.removeItem(KEY);
  if (current) current.abort();
  askToken('');
});

/** Every request of the page goes through here: the token, when there is one, as a bearer. */
function api(path, init) {
  const headers = Object.assign({}, (init && init.headers) || {});
  if (token) headers.authorization = 'Bearer ' + token;
  return fetch(path, Object.assign({ cache: 'no-store' }, init || {}, { headers }));
}

async function connect() {
  clearTimeout(retryTimer);
  if (current) current.abort();
  const ac = new AbortController();
  current = ac;
  setConn('connecting…');
  let res;
  try {
    res = await api('api/v1/events', { signal: ac.signal });
  } catch (e) {
    if (!ac.signal.aborted) retry('cannot reach the admin API');
    return;
  }
  if (res.status === 401) {
    ac.abort();
    askToken(token ? 'that token was refused' : 'this admin API needs its token');
    return;
  }
  if (!res.ok || !res.body) {
    retry('admin API answered ' + res.status);
    return;
  }
  $('tokenForm').hidden = true;
  $('forget').hidden = !token;
  setConn('live', 'live');
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (data.length) onEvent(event, JSON.parse(data.join('\n')));
      }
    }
  } catch (e) {
    if (ac.signal.aborted) return;
  }
  if (!ac.signal.aborted) retry('stream ended');
}
function retry(why) {
  setConn(why + '; reconnecting…', 'bad');
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, 2000);
}

function onEvent(event, d) {
  if (event === 'snapshot') {
    st.status = d.status;
    st.shares = d.shares || {};
    st.hist = d.history;
    st.last = d.last;
    st.prev = null;
  } else if (event === 'tick') {
    st.status = d.status;
    pushHistory(d);
    st.prev = st.last;
    st.last = d;
  } else if (event === 'pools') {
    if (st.status) st.status.pools = d.pools;
    st.shares = d.shares || {};
  }
  render();
}

function pushHistory(tick) {
  const h = st.hist;
  if (!h) return;
  const cap = h.capacity;
  const push = (arr, v) => {
    arr.push(v);
    if (arr.length > cap) arr.splice(0, arr.length - cap);
  };
  const n = h.times.length;
  push(h.times, tick.t);
  for (const kind of ['routes', 'members']) {
    const series = h[kind];
    for (const [name, vals] of Object.entries(tick[kind])) {
      let s = series[name];
      if (!s) {
        s = series[name] = {};
        for (const f of FIELDS) s[f] = new Array(n).fill(null);
      }
      FIELDS.forEach((f, i) => push(s[f], vals[i]));
    }
    for (const name of Object.keys(series)) if (!(name in tick[kind])) delete series[name];
  }
}

const num = (v) => (v === null || v === undefined ? '–' : String(v));
const rate = (v) => (v === null || v === undefined ? '–' : v.toFixed(1));
const ms = (v) => (v === null || v === undefined ? '–' : (v * 1000).toFixed(1) + ' ms');
const pct = (a, b) => (b > 0 ? ((100 * a) / b).toFixed(1) + '%' : '–');
const cell = (k, v, cls) => '<td data-k="' + k + '"' + (cls ? ' class="' + cls + '"' : '') + '>' + v + '</td>';
const ncell = (k, v) => cell(k, v, 'n');

function spark(s) {
  if (!s) return '';
  const w = 160;
  const ht = 28;
  const cap = (st.hist && st.hist.capacity) || s.rps.length;
  let max = 0;
  for (const v of s.rps.concat(s.eps)) if (v !== null && v > max) max = v;
  const line = (arr) => {
    const pts = [];
    const off = cap - arr.length;
    arr.forEach((v, i) => {
      if (v === null) return;
      const x = ((off + i) / Math.max(1, cap - 1)) * w;
      const y = ht - 1 - (max > 0 ? (v / max) * (ht - 2) : 0);
      pts.push(x.toFixed(1) + ',' + y.toFixed(1));
    });
    return pts.join(' ');
  };
  return '<svg class="spark" width="' + w + '" height="' + ht + '" viewBox="0 0 ' + w + ' ' + ht + '"><title>last 15 min, max ' + max.toFixed(1) + '/s</title>' +
    '<polyline class="r" points="' + line(s.rps) + '"/><polyline class="e" points="' + line(s.eps) + '"/></svg>';
}

/** Change of a total per second between the last two ticks. */
function perSecond(get) {
  if (!st.prev || !st.last) return null;
  const dt = (st.last.t - st.prev.t) / 1000;
  if (!(dt > 0)) return null;
  const a = get(st.prev.totals);
  const b = get(st.last.totals);
  return a === undefined || b === undefined ? null : Math.max(0, b - a) / dt;
}

function render() {
  const s = st.status;
  if (!s) return;
  const tick = st.last;
  const totals = (tick && tick.totals) || { routes: {}, members: {}, errors: [], affinity: {}, directory: {}, sharedRedisUp: null };
  $('meta').textContent = 'version ' + s.version + ' · pid ' + s.pid + ' · up ' + s.uptimeSeconds + ' s · ' + (s.ready ? 'ready' : 'not ready') +
    (s.workers ? ' · ' + s.workers.length + ' workers' : '') + (!s.sharedRedis || totals.sharedRedisUp === null ? '' : ' · redis ' + (totals.sharedRedisUp ? 'up' : 'DOWN'));

  let rows = '<tr><th>route</th><th>pools</th><th>strategy</th><th>requests</th><th>req/s</th><th>errors/s</th><th>p50</th><th>p99</th><th>in flight</th><th>last 15 min</th></tr>';
  for (const r of s.routes) {
    const v = (tick && tick.routes[r.name]) || [null, null, null, null, null];
    const t = totals.routes[r.name] || { requests: 0 };
    rows += '<tr data-route="' + esc(r.name) + '">' + cell('name', esc(r.name)) + cell('pools', esc(r.pools.join(', '))) +
      cell('strategy', esc(r.strategy) + (r.affinity ? ' + affinity' : '')) + ncell('requests', num(t.requests)) + ncell('rps', rate(v[0])) +
      ncell('eps', rate(v[1])) + ncell('p50', ms(v[2])) + ncell('p99', ms(v[3])) + ncell('inflight', num(v[4])) +
      cell('spark', spark(st.hist && st.hist.routes[r.name])) + '</tr>';
  }
  $('routes').innerHTML = rows;

  rows = '<tr><th>pool</th><th>member</th><th>health</th><th>weight</th><th>in flight</th><th>requests</th><th>req/s</th><th>errors/s</th><th>p50</th><th>p99</th><th>key share</th><th>last 15 min</th></tr>';
  for (const p of s.pools) for (const m of p.members) {
    const v = (tick && tick.members[m.id]) || [null, null, null, null, null];
    // Shares of the hash routes over this pool (a member may be in pools of other routes too).
    const share = Object.entries(st.shares).filter(([rn]) => s.routes.some((r) => r.name === rn && r.pools.includes(p.name))).map(([rn, sh]) => sh[m.id] !== undefined
      ? esc(rn) + ' ' + (100 * sh[m.id]).toFixed(1) + '% <span class="bar" style="width:' + Math.round(100 * sh[m.id]) + 'px"></span>' : '').filter(Boolean).join('<br>');
    rows += '<tr data-pool="' + esc(p.name) + '" data-member="' + esc(m.id) + '">' + cell('pool', esc(p.name)) + cell('member', esc(m.id)) +
      cell('health', m.up ? 'up' : 'down', m.up ? 'up' : 'down') + ncell('weight', m.weight) + ncell('inflight', num(v[4] === null ? m.inflight : v[4])) +
      ncell('requests', num((totals.members[m.id] || { requests: 0 }).requests)) + ncell('rps', rate(v[0])) + ncell('eps', rate(v[1])) +
      ncell('p50', ms(v[2])) + ncell('p99', ms(v[3])) + cell('share', share) + cell('spark', spark(st.hist && st.hist.members[m.id])) + '</tr>';
  }
  $('members').innerHTML = rows;

  const aff = s.routes.filter((r) => r.affinity);
  $('affinitySec').hidden = aff.length === 0;
  rows = '<tr><th>route</th><th>hits</th><th>misses</th><th>hit ratio</th><th>redirects</th><th>redirects/s</th><th>entries</th></tr>';
  for (const r of aff) {
    const a = totals.affinity[r.name] || { hits: 0, misses: 0, redirects: 0, entries: 0 };
    rows += '<tr data-route="' + esc(r.name) + '">' + cell('name', esc(r.name)) + ncell('hits', a.hits) + ncell('misses', a.misses) +
      ncell('ratio', pct(a.hits, a.hits + a.misses)) + ncell('redirects', a.redirects) +
      ncell('redirectRate', rate(perSecond((x) => x.affinity[r.name] && x.affinity[r.name].redirects))) + ncell('entries', a.entries) + '</tr>';
  }
  $('affinity').innerHTML = rows;

  const dir = s.routes.filter((r) => r.strategy.startsWith('directory'));
  $('directorySec').hidden = dir.length === 0;
  const outcomes = ['hit', 'miss', 'coalesced', 'backoff', 'negative', 'stale', 'unavailable'];
  rows = '<tr><th>route</th>' + outcomes.map((o) => '<th>' + o + '</th>').join('') + '<th>hit ratio</th><th>look-ups/s</th><th>entries</th><th>errors</th></tr>';
  for (const r of dir) {
    const d = totals.directory[r.name] || { hit: 0, miss: 0, coalesced: 0, backoff: 0, negative: 0, stale: 0, unavailable: 0, entries: 0, errors: 0 };
    const asked = (x) => x.hit + x.miss + x.coalesced + x.backoff;
    rows += '<tr data-route="' + esc(r.name) + '">' + cell('name', esc(r.name)) + outcomes.map((o) => ncell(o, d[o])).join('') +
      ncell('ratio', pct(d.hit, asked(d))) + ncell('lookupRate', rate(perSecond((x) => x.directory[r.name] && asked(x.directory[r.name])))) +
      ncell('entries', d.entries) + ncell('errors', d.errors) + '</tr>';
  }
  $('directory').innerHTML = rows;

  const cached = s.routes.filter((r) => r.cache);
  $('cacheSec').hidden = cached.length === 0;
  const kinds = ['hit', 'stale', 'revalidated', 'miss', 'bypass'];
  rows = '<tr><th>route</th>' + kinds.map((o) => '<th>' + o + '</th>').join('') + '<th>hit ratio</th><th>look-ups/s</th></tr>';
  for (const r of cached) {
    const c = totals.cache[r.name] || { hit: 0, miss: 0, stale: 0, revalidated: 0, bypass: 0 };
    const served = (x) => x.hit + x.stale + x.revalidated;
    const asked = (x) => served(x) + x.miss;
    rows += '<tr data-route="' + esc(r.name) + '">' + cell('name', esc(r.name)) + kinds.map((o) => ncell(o, c[o])).join('') +
      ncell('ratio', pct(served(c), asked(c))) + ncell('lookupRate', rate(perSecond((x) => x.cache[r.name] && asked(x.cache[r.name])))) + '</tr>';
  }
  $('cache').innerHTML = rows;

  rows = '<tr><th>route</th><th>code</th><th>count</th></tr>';
  for (const e of totals.errors) rows += '<tr data-route="' + esc(e.route) + '" data-code="' + esc(e.code) + '">' + cell('route', esc(e.route)) + cell('code', esc(e.code)) + ncell('count', e.count) + '</tr>';
  $('errors').innerHTML = rows;
}

connect();
</script></body></html>`;
