// Section "cache": a route's response cache answering hits, against the same route proxied without
// a cache and against nginx proxy_cache serving the same hit. One backend (the shared bench backend)
// answers 1 KiB with `Cache-Control: public, max-age=3600` under …/public, the same with
// `Vary: Accept-Language` under …/vary, and `Cache-Control: no-store` under …/no-store. Every
// request (wrk and the checks) carries `Accept-Language: en`, so the vary variant is one variant.
// Three processes, each measured through several URLs (a "view": its own row, the same process):
//   nginx-cache        nginx, 1 worker, upstream keep-alive; `proxy_cache` (disk cache in its temp
//                      dir, default key, lifetimes from the backend) under /cached/, plain
//                      proxy_pass elsewhere (bench/lib/peers.mjs, NGINX_CACHE)
//     nginx-hit          /cached/public     nginx-hit-vary  /cached/vary
//     nginx-proxied      /plain/public      (proxied, not cached)
//   homing-cache-1     homing, workers: 1; route `cached` (/cached/, `cache: true`) and route
//                      `plain` (/plain/, no cache), one pool holding the backend
//     homing-hit         /cached/public     homing-hit-vary /cached/vary
//     homing-proxied     /plain/public      (the miss path: the same answer, proxied, no cache)
//     homing-no-store    /cached/no-store   (through the cache route, never stored: a miss every time)
//   homing-cache-auto  the same config, workers: auto (each worker holds its own cache)
//     homing-auto-hit    /cached/public
// Before measuring, every view is checked: a hit view must answer 4 GETs without the backend seeing
// any (after 4 GETs that warm it, on fresh connections, so every worker of homing-auto has had a
// chance to fill), a proxied view must pass each GET to the backend. Every pass (its wrk warm-up
// warms the cache too) counts the backend's requests: a hit view's measured passes must make none.
// Views are measured in interleaved rounds (the starting view rotates); ratios are medians of
// per-round ratios: ÷ nginx against nginx's view of the same kind, ÷ proxied against the same
// server's proxied view (hit ÷ miss).
import { httpGet, startHoming, startNginx } from './peers.mjs';
import { fmtInt, fmtNum, median, table } from './format.mjs';
import { measureSafe, peerSummary, startPeers, stripRaw, summaryCells } from './harness.mjs';

const SECTION = 'cache';
const HEADERS = { 'Accept-Language': 'en' };
const CHECK_GETS = 4;
const ROUTES = [
  { name: 'cached', match: { path: '/cached/' }, pool: 'bench', cache: true },
  { name: 'plain', match: { path: '/plain/' }, pool: 'bench' },
];
const CACHE_CONFIG = { memory: '64MiB', maxObject: '1MiB' };

/** The views of each process: [process name, view name, path, kind, server's proxied view, nginx's view of the same kind]. */
const VIEWS = [
  ['nginx-cache', 'nginx-hit', '/cached/public', 'hit', 'nginx-proxied', 'nginx-hit'],
  ['nginx-cache', 'nginx-hit-vary', '/cached/vary', 'hit', 'nginx-proxied', 'nginx-hit-vary'],
  ['nginx-cache', 'nginx-proxied', '/plain/public', 'proxied', 'nginx-proxied', 'nginx-proxied'],
  ['homing-cache-1', 'homing-hit', '/cached/public', 'hit', 'homing-proxied', 'nginx-hit'],
  ['homing-cache-1', 'homing-hit-vary', '/cached/vary', 'hit', 'homing-proxied', 'nginx-hit-vary'],
  ['homing-cache-1', 'homing-proxied', '/plain/public', 'proxied', 'homing-proxied', 'nginx-proxied'],
  ['homing-cache-1', 'homing-no-store', '/cached/no-store', 'proxied', 'homing-proxied', 'nginx-proxied'],
  ['homing-cache-auto', 'homing-auto-hit', '/cached/public', 'hit', undefined, 'nginx-hit'],
];

const LABELS = {
  'nginx-hit': 'nginx, 1 worker, proxy_cache hit',
  'nginx-hit-vary': 'nginx, 1 worker, proxy_cache hit, Vary: Accept-Language',
  'nginx-proxied': 'nginx, 1 worker, proxied (no cache)',
  'homing-hit': 'homing, workers: 1, cache hit',
  'homing-hit-vary': 'homing, workers: 1, cache hit, Vary: Accept-Language',
  'homing-proxied': 'homing, workers: 1, proxied (route without cache)',
  'homing-no-store': 'homing, workers: 1, cache route, no-store answers (a miss each time)',
  'homing-auto-hit': 'homing, workers: auto, cache hit',
};

export async function cacheSection(h) {
  const o = h.opts;
  const starters = [
    ['nginx-cache', () => startNginx(h, { name: 'nginx-cache', keepalive: 512, cache: true })],
    ['homing-cache-1', () => startHoming(h, { name: 'homing-cache-1', label: 'homing, workers: 1, cache route', workers: 1, routes: ROUTES, extra: { cache: CACHE_CONFIG } })],
    [
      'homing-cache-auto',
      () => startHoming(h, { name: 'homing-cache-auto', label: 'homing, workers: auto, cache route', workers: 'auto', routes: ROUTES, extra: { cache: CACHE_CONFIG } }),
    ],
  ];
  const { peers: procs, skipped } = await startPeers(h, SECTION, starters);
  try {
    // One row per view; a view shares its process (and so its CPU) with the process's other views.
    const peers = [];
    for (const [proc, name, pathname, kind, proxied, nginxTwin] of VIEWS) {
      const p = procs.find((x) => x.name === proc);
      if (!p) {
        skipped[name] = `${proc} not running`;
        continue;
      }
      peers.push({ ...p, name, label: LABELS[name], process: proc, url: `http://127.0.0.1:${p.port}${pathname}`, kind, proxied, nginxTwin });
    }

    const checks = {};
    for (const p of peers) checks[p.name] = await checkView(h, p);

    // Interleaved rounds at c64; the starting view rotates from round to round.
    const rounds = [];
    for (let r = 0; r < o.rounds; r++) {
      const order = peers.map((_, i) => peers[(i + r) % peers.length]);
      const runs = {};
      for (const p of order) {
        h.log(`cache round ${r + 1}/${o.rounds}: ${p.name} c${o.conns} ${o.seconds}s`);
        runs[p.name] = await measureSafe(h, SECTION, p, { conns: o.conns, seconds: o.seconds, warmupS: o.warmupS, headers: HEADERS });
      }
      rounds.push(runs);
    }
    for (const [i, runs] of rounds.entries()) {
      for (const p of peers) {
        const run = runs[p.name];
        if (!run || run.error) continue;
        const where = `${p.name} round ${i + 1}`;
        if (run.errors.total > 0) h.problem(SECTION, `${where}: ${run.errors.total} errors (${JSON.stringify(run.errors)})\n${run.wrkOutput}`);
        if (p.kind === 'hit' && run.backendRequests > 0) h.problem(SECTION, `${where}: the backend answered ${run.backendRequests} requests during a hit pass of ${run.requests} (want 0: the setup does not measure hits)`);
        if (p.kind === 'proxied' && Math.abs(run.backendRequests / run.requests - 1) > 0.01) {
          h.problem(SECTION, `${where}: the backend answered ${run.backendRequests} requests for ${run.requests} proxied (want one each)`);
        }
      }
    }

    const summary = summarize(peers, rounds);
    const result = {
      method: { tool: 'wrk', threads: 1, conns: o.conns, rounds: o.rounds, seconds: o.seconds, warmupS: o.warmupS, body: 1024, headers: HEADERS, cacheControl: 'public, max-age=3600' },
      peers: peers.map((p) => ({ name: p.name, label: p.label, process: p.process, url: p.url, kind: p.kind, config: p.config })),
      skipped,
      checks,
      rounds: rounds.map((runs) => Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, stripRaw(v)]))),
      summary,
    };
    result.targets = checkTargets(result, peers);
    print(h, result);
    return result;
  } finally {
    for (const p of procs) await p.stop();
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Before measuring: a hit view warms with CHECK_GETS GETs, then must answer CHECK_GETS more with
 * the backend seeing none (nginx says HIT, homing sends an Age); a proxied view must pass each of
 * CHECK_GETS GETs to the backend. Every answer must be 200 with 1 KiB.
 */
async function checkView(h, p) {
  const bad = [];
  const get = async () => {
    try {
      const r = await httpGet(p.url, 3000, HEADERS);
      if (r.status !== 200 || r.length !== 1024) bad.push(`${r.status}, ${r.length} bytes`);
      return r;
    } catch (e) {
      bad.push(e.message);
      return undefined;
    }
  };
  if (p.kind === 'hit') for (let i = 0; i < CHECK_GETS; i++) await get();
  const before = (await h.backend.stats()).requests;
  const answers = [];
  for (let i = 0; i < CHECK_GETS; i++) answers.push(await get());
  const backend = (await h.backend.stats()).requests - before;
  const out = { gets: CHECK_GETS, backendRequests: backend, failed: bad.length };
  if (bad.length) h.problem(SECTION, `${p.name} check: ${bad.length} GETs of ${p.url} failed (want 200, 1024 bytes), e.g. ${bad.slice(0, 3).join('; ')}`);
  if (p.kind === 'hit') {
    out.hitHeaders = answers.filter((r) => r && (p.process.startsWith('nginx') ? r.headers['x-cache-status'] === 'HIT' : r.headers.age !== undefined)).length;
    if (backend !== 0 || out.hitHeaders !== CHECK_GETS) {
      h.problem(SECTION, `${p.name} check: after warming, ${CHECK_GETS} GETs reached the backend ${backend} times and ${out.hitHeaders} answers said hit (want 0 and ${CHECK_GETS})`);
    }
  } else if (backend !== CHECK_GETS) h.problem(SECTION, `${p.name} check: ${CHECK_GETS} GETs reached the backend ${backend} times (want each)`);
  h.log(`cache check ${p.name}: ${JSON.stringify(out)}`);
  return out;
}

function summarize(peers, rounds) {
  const ok = (r) => r && !r.error;
  const ratio = (runs, a, b, f) => (b !== undefined && ok(runs[a]) && ok(runs[b]) ? f(runs[a], runs[b]) : undefined);
  const rps = (a, b) => (b.rps ? a.rps / b.rps : undefined);
  const cpu = (a, b) => (b.proxyCpuUsPerReq ? a.proxyCpuUsPerReq / b.proxyCpuUsPerReq : undefined);
  const out = {};
  for (const p of peers) {
    const { mine, summary } = peerSummary(p, rounds);
    const requests = mine.reduce((a, r) => a + r.requests, 0);
    const backendRequests = mine.reduce((a, r) => a + r.backendRequests, 0);
    out[p.name] = {
      ...summary,
      kind: p.kind,
      requests,
      backendRequests,
      backendRequestsWarmup: mine.reduce((a, r) => a + r.backendRequestsWarmup, 0),
      backendPer10k: requests ? (1e4 * backendRequests) / requests : undefined,
      vsNginx: median(rounds.map((runs) => ratio(runs, p.name, p.nginxTwin, rps))),
      vsProxied: median(rounds.map((runs) => ratio(runs, p.name, p.proxied, rps))),
      cpuVsProxied: median(rounds.map((runs) => ratio(runs, p.name, p.proxied, cpu))),
    };
  }
  return out;
}

function checkTargets(r, peers) {
  const s = r.summary;
  const hit = s['homing-hit'];
  const proxied = s['homing-proxied'];
  if (!hit || !proxied) return { skipped: r.skipped['homing-hit'] ?? r.skipped['homing-proxied'] ?? 'homing was not measured' };
  const t = [];
  for (const p of peers.filter((x) => x.kind === 'hit')) {
    const x = s[p.name];
    t.push({
      target: `${p.name}: no backend request in the measured passes`,
      value: `${fmtInt(x.backendRequests)} in ${fmtInt(x.requests)} requests (warm-up passes: ${fmtInt(x.backendRequestsWarmup)})`,
      pass: x.requests > 0 && x.backendRequests === 0,
    });
  }
  t.push({ target: 'homing hit: less CPU per request than proxied', value: `${fmtNum(hit.proxyCpuUsPerReq, 1)} vs ${fmtNum(proxied.proxyCpuUsPerReq, 1)} µs`, pass: hit.cpuVsProxied < 1 });
  t.push({ target: 'homing hit: more req/s than proxied', value: hit.vsProxied, pass: hit.vsProxied > 1 });
  const errors = Object.values(s).reduce((a, x) => a + x.errors, 0);
  t.push({ target: 'no errors (every view)', value: fmtInt(errors), pass: errors === 0 });
  return t;
}

function print(h, r) {
  const o = h.opts;
  console.log(
    `\n== Cache: 1 KiB GET (Cache-Control: public, max-age=3600), wrk -t1 -c${o.conns}, ${o.rounds} round(s) × ${o.seconds}s (+${o.warmupS}s warm-up each), views interleaved; medians; ratios = median of per-round ratios`,
  );
  const rows = Object.entries(r.summary).map(([name, x]) => [
    ...summaryCells(name, x),
    fmtNum(x.vsNginx),
    fmtNum(x.vsProxied),
    fmtNum(x.cpuVsProxied),
    fmtNum(x.backendPer10k, 1),
    fmtNum(x.otherCpuPct, 0),
  ]);
  console.log(table(['view', 'req/s', 'by round', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/req', 'CPU %', '÷ nginx', '÷ proxied', 'CPU ÷ proxied', 'backend req/10k', 'other %'], rows));
  for (const [name, why] of Object.entries(r.skipped)) console.log(`  (skipped ${name}: ${why.split('\n')[0]})`);
  console.log('  Views of one process share it: nginx-* one nginx (proxy_cache under /cached/), homing-* one homing with a');
  console.log('  cache route and a route without cache, homing-auto-hit a homing with workers: auto. Every request carries');
  console.log('  Accept-Language: en. ÷ nginx = against nginx\'s view of the same kind (hit, hit with Vary, proxied);');
  console.log('  ÷ proxied and CPU ÷ proxied = against the same server\'s proxied view (hit ÷ miss); backend req/10k = requests');
  console.log('  the backend answered during the measured passes per 10 000 (0 for a hit; 10 000 for a miss).');
  console.log("  CPU % = the proxy's processes (100 = one core); other % = box busy minus proxy, backend and wrk.");
  if (Array.isArray(r.targets)) {
    console.log('\n== Checks for the cache section');
    console.log(
      table(
        ['check', 'value', 'result'],
        r.targets.map((t) => [t.target, typeof t.value === 'number' ? fmtNum(t.value) : t.value, t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : 'FAIL']),
        'lrl',
      ),
    );
  } else console.log(`\n== Cache checks: not checked — ${r.targets.skipped}`);
}
