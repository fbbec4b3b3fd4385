// Section "http": a 1 KiB GET under wrk through homing (1 worker and auto; 1 worker again with the
// access log on, JSON to a file, for its CPU per request — measured again side by side with
// homing-1, both under load at once, for its target; 1 worker on each engine, node and fast)
// against direct to the backend, nginx proxy_pass with upstream keep-alive, the `http-proxy`
// package, and two floors (what the least a Node process costs here as a TCP relay, and as an
// HTTP proxy on llhttp with no routing: bench/peers/node-relay.mjs, node-llhttp.mjs); peers are
// started once and measured in interleaved rounds; then one c256 pass per proxy peer to check
// upstream connection churn, and checks the targets in TARGETS (FAST_TARGETS for the fast engine).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { directPeer, httpGet, startHoming, startHttpProxy, startNginx, startNodeFloor } from './peers.mjs';
import { fmtInt, fmtNum, median, table } from './format.mjs';
import { measureSafe, peerSummary, startPeers, stripRaw, summaryCells } from './harness.mjs';
import { measureTogether } from './side-by-side.mjs';

const TARGETS = {
  vsHttpProxy: 1.5, // homing 1 worker ≥ 1.5 × http-proxy req/s
  vsNginx: 0.5, // ≥ 0.5 × nginx 1 worker
  cpuUsPerReq: 40, // aim: under 40 µs of CPU per request
  churnPerReq: 0.001, // "no churn": backend connections opened mid-pass (steady window) at c256 < 0.1% of requests
  accessLogCpu: 1.1, // the access log on (JSON to a file): ≤ 1.1 × the CPU per request without it
};

/** Targets for homing-fast-1 (engine: fast, 1 worker). */
const FAST_TARGETS = {
  cpuVsNginx: 1.5, // CPU per request ≤ 1.5 × nginx's (1 worker)
  vsNginx: 0.9, // req/s ≥ 0.9 × nginx at c64
};

export async function httpSection(h) {
  const o = h.opts;
  // The order of passes in a round: each pair a target compares (nginx and homing-fast-1,
  // homing-1 and homing-1-log) measured back to back, so the two share the box's conditions.
  const starters = [
    ['direct', async () => directPeer(h)],
    ['nginx', () => startNginx(h, { keepalive: 512 })],
    ['homing-fast-1', () => startHoming(h, { name: 'homing-fast-1', label: 'homing, engine: fast, workers: 1, hash ring', workers: 1, engine: 'fast' })],
    ['node-llhttp', () => startNodeFloor(h, 'node-llhttp', 'floor: HTTP/1.1 on Node\'s llhttp, no routing, no header rules (not a usable proxy)')],
    ['node-relay', () => startNodeFloor(h, 'node-relay', 'floor: TCP relay on Node\'s net, no HTTP (not a usable proxy)')],
    ['homing-1', () => startHoming(h, { name: 'homing-1', label: 'homing, engine: node, workers: 1, hash ring', workers: 1, engine: 'node' })],
    [
      'homing-1-log',
      () => startHoming(h, { name: 'homing-1-log', label: 'homing-1 with the access log on (JSON to a file)', workers: 1, engine: 'node', extra: { accessLog: { to: accessLogFile(h) } } }),
    ],
    ['http-proxy', () => startHttpProxy(h)],
    ['homing-auto', () => startHoming(h, { name: 'homing-auto', label: `homing, engine: node, workers: auto, hash ring`, workers: 'auto', engine: 'node' })],
  ];
  const { peers, skipped } = await startPeers(h, 'http', starters);

  try {
    // Preflight: one GET each; a non-200 or a wrong body length is reported, and the peer is still measured.
    const preflight = {};
    for (const p of peers) {
      try {
        const r = await httpGet(p.url);
        preflight[p.name] = { status: r.status, length: r.length, headers: r.headers };
        if (r.status !== 200 || r.length !== 1024) h.problem('http', `${p.name} preflight GET ${p.url} → ${r.status}, ${r.length} bytes (want 200, 1024)`);
      } catch (e) {
        preflight[p.name] = { error: e.message };
        h.problem('http', `${p.name} preflight GET ${p.url} failed: ${e.message}`);
      }
    }

    // Interleaved rounds at c64; the starting peer rotates from round to round.
    const rounds = [];
    const nRounds = o.httpRounds ?? o.rounds;
    for (let r = 0; r < nRounds; r++) {
      const order = peers.map((_, i) => peers[(i + r) % peers.length]);
      const runs = {};
      for (const p of order) {
        h.log(`round ${r + 1}/${nRounds}: ${p.name} c${o.conns} ${o.seconds}s`);
        runs[p.name] = await measureSafe(h, 'http', p, { conns: o.conns, seconds: o.seconds, warmupS: o.warmupS });
      }
      rounds.push(runs);
    }

    // The access log's cost, homing-1 and homing-1-log under load at the same time (half the
    // connections each), so both see the same noise: the figure the target is checked on.
    const accessLog = await measureTogether(h, 'http', peers, ['homing-1', 'homing-1-log'], {
      rounds: nRounds,
      label: 'access log side by side',
      describe: (x) => `CPU/request ${x.cpuUsPerReq.map((v) => v.toFixed(1)).join(' → ')} µs (${x.cpuRatio.toFixed(3)} ×)`,
    });

    // One high-concurrency pass per proxy peer: upstream connection churn.
    const high = {};
    for (const p of peers.filter((x) => x.kind === 'proxy')) {
      h.log(`churn check: ${p.name} c${o.connsHigh} ${o.seconds}s`);
      high[p.name] = await measureSafe(h, 'http', p, { conns: o.connsHigh, seconds: o.seconds, warmupS: o.warmupS });
    }

    const summary = summarize(peers, rounds);
    const result = {
      method: { tool: 'wrk', threads: 1, conns: o.conns, connsHigh: o.connsHigh, rounds: nRounds, seconds: o.seconds, warmupS: o.warmupS, body: 1024 },
      peers: peers.map((p) => ({ name: p.name, label: p.label, url: p.url, config: p.config })),
      skipped,
      preflight,
      rounds: rounds.map((runs) => Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, stripRaw(v)]))),
      high: Object.fromEntries(Object.entries(high).map(([k, v]) => [k, stripRaw(v)])),
      summary,
      accessLog,
    };
    result.accessLogLines = countLines(accessLogFile(h));
    result.targets = checkTargets(result);
    for (const [name, run] of [...rounds.flatMap((x) => Object.entries(x)), ...Object.entries(high)]) {
      if (run.error) continue;
      if (run.errors.total > 0) h.problem('http', `${name} c${run.conns}: ${run.errors.total} errors (${JSON.stringify(run.errors)})\n${run.wrkOutput}`);
    }
    print(h, result);
    return result;
  } finally {
    for (const p of peers) await p.stop();
  }
}

/** Where homing-1-log writes its access log. */
function accessLogFile(h) {
  return path.join(h.tmp, 'homing-1-log', 'access.log');
}

function countLines(file) {
  try {
    const s = readFileSync(file);
    let n = 0;
    for (let i = s.indexOf(10); i >= 0; i = s.indexOf(10, i + 1)) n++;
    return n;
  } catch {
    return undefined;
  }
}

function summarize(peers, rounds) {
  const ok = (r) => r && !r.error;
  const ratio = (runs, a, b) => (ok(runs[a]) && ok(runs[b]) && runs[b].rps ? runs[a].rps / runs[b].rps : undefined);
  const cpuRatio = (runs, a, b) => (ok(runs[a]) && ok(runs[b]) && runs[b].proxyCpuUsPerReq ? runs[a].proxyCpuUsPerReq / runs[b].proxyCpuUsPerReq : undefined);
  const out = {};
  for (const p of peers) {
    const { mine, summary } = peerSummary(p, rounds);
    out[p.name] = {
      ...summary,
      otherCpuPctMax: Math.max(...mine.map((r) => r.otherCpuPct ?? 0)),
      upstreamOpened: median(mine.map((r) => r.upstreamOpened)),
      steadyOpenedPer1k: median(mine.map((r) => (r.steady?.requests ? (1000 * r.steady.opened) / r.steady.requests : undefined))),
      vsDirect: median(rounds.map((runs) => ratio(runs, p.name, 'direct'))),
      vsNginx: median(rounds.map((runs) => ratio(runs, p.name, 'nginx'))),
      vsHttpProxy: median(rounds.map((runs) => ratio(runs, p.name, 'http-proxy'))),
      cpuVsHoming1: median(rounds.map((runs) => cpuRatio(runs, p.name, 'homing-1'))),
      cpuVsNginx: median(rounds.map((runs) => cpuRatio(runs, p.name, 'nginx'))),
      cpuVsLlhttp: median(rounds.map((runs) => cpuRatio(runs, p.name, 'node-llhttp'))),
      cpuVsRelay: median(rounds.map((runs) => cpuRatio(runs, p.name, 'node-relay'))),
      vsHoming1: median(rounds.map((runs) => ratio(runs, p.name, 'homing-1'))),
    };
  }
  return out;
}

function checkTargets(result) {
  const s = result.summary['homing-1'];
  if (!s) return { skipped: result.skipped['homing-1'] ?? 'homing-1 not measured' };
  const hp = result.summary['http-proxy'];
  const hi = result.high['homing-1'];
  const churn = hi?.steady?.requests ? hi.steady.opened / hi.steady.requests : undefined;
  const t = [
    { target: `req/s ≥ ${TARGETS.vsHttpProxy} × http-proxy`, value: s.vsHttpProxy, pass: s.vsHttpProxy >= TARGETS.vsHttpProxy },
    { target: `req/s ≥ ${TARGETS.vsNginx} × nginx (1 worker)`, value: s.vsNginx, pass: s.vsNginx >= TARGETS.vsNginx },
    { target: 'p99 ≤ http-proxy p99', value: hp ? `${fmtNum(s.p99Ms)} vs ${fmtNum(hp.p99Ms)} ms` : undefined, pass: hp ? s.p99Ms <= hp.p99Ms : undefined },
    { target: `CPU < ${TARGETS.cpuUsPerReq} µs/request (aim)`, value: s.proxyCpuUsPerReq, pass: s.proxyCpuUsPerReq < TARGETS.cpuUsPerReq },
    {
      target: `no upstream churn at c${result.method.connsHigh} (opened < ${TARGETS.churnPerReq * 100}% of requests)`,
      value: hi?.steady ? `${hi.steady.opened} opened / ${hi.steady.requests} req mid-pass` : hi?.error,
      pass: churn === undefined ? undefined : churn < TARGETS.churnPerReq,
    },
    { target: 'no errors (c64 rounds and c256)', value: s.errors + (hi?.errors?.total ?? 0), pass: s.errors + (hi?.errors?.total ?? 0) === 0 },
  ];
  const f = result.summary['homing-fast-1'];
  if (f) {
    const fh = result.high['homing-fast-1'];
    const fchurn = fh?.steady?.requests ? fh.steady.opened / fh.steady.requests : undefined;
    t.push(
      { target: `homing-fast-1: CPU/request ≤ ${FAST_TARGETS.cpuVsNginx} × nginx's`, value: f.cpuVsNginx, pass: f.cpuVsNginx === undefined ? undefined : f.cpuVsNginx <= FAST_TARGETS.cpuVsNginx },
      { target: `homing-fast-1: req/s ≥ ${FAST_TARGETS.vsNginx} × nginx (1 worker)`, value: f.vsNginx, pass: f.vsNginx === undefined ? undefined : f.vsNginx >= FAST_TARGETS.vsNginx },
      {
        target: `homing-fast-1: no upstream churn at c${result.method.connsHigh}`,
        value: fh?.steady ? `${fh.steady.opened} opened / ${fh.steady.requests} req mid-pass` : fh?.error,
        pass: fchurn === undefined ? undefined : fchurn < TARGETS.churnPerReq,
      },
      { target: 'homing-fast-1: no errors (c64 rounds and c256)', value: f.errors + (fh?.errors?.total ?? 0), pass: f.errors + (fh?.errors?.total ?? 0) === 0 },
    );
  }
  const lg = result.accessLog;
  if (result.summary['homing-1-log']) {
    t.push({
      target: `access log on: CPU/request ≤ ${TARGETS.accessLogCpu} × without (side by side, median of per-round ratios)`,
      value: lg?.cpuRatio,
      pass: lg?.cpuRatio === undefined ? undefined : lg.cpuRatio <= TARGETS.accessLogCpu,
    });
  }
  return t;
}

function print(h, r) {
  const o = h.opts;
  const s = r.summary;
  console.log(`\n== HTTP: 1 KiB GET, wrk -t1 -c${o.conns}, ${r.method.rounds} round(s) × ${o.seconds}s (+${o.warmupS}s warm-up each), peers interleaved; medians; ratios = median of per-round ratios`);
  const rows = Object.entries(s).map(([name, x]) => [
    ...summaryCells(name, x),
    fmtNum(x.vsDirect),
    fmtNum(x.vsNginx),
    name.startsWith('homing') ? fmtNum(x.vsHttpProxy) : '–',
    name.startsWith('homing') ? fmtNum(x.vsHoming1) : '–',
    fmtNum(x.cpuVsNginx),
    name.startsWith('homing') ? fmtNum(x.cpuVsHoming1) : '–',
    fmtNum(x.steadyOpenedPer1k, 2),
    fmtNum(x.otherCpuPct, 0),
  ]);
  console.log(
    table(
      ['peer', 'req/s', 'by round', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/req', 'CPU %', '÷ direct', '÷ nginx', '÷ http-proxy', '÷ homing-1', 'CPU ÷ nginx', 'CPU ÷ homing-1', 'new upstream/1k', 'other %'],
      rows,
    ),
  );
  for (const [name, why] of Object.entries(r.skipped)) console.log(`  (skipped ${name}: ${why.split('\n')[0]})`);
  console.log('  CPU % = the proxy\'s processes (100 = one core); new upstream/1k = backend connections opened per 1000 requests mid-pass;');
  console.log('  homing-1 is engine: node, homing-fast-1 engine: fast (same config otherwise); ÷ homing-1 compares req/s, CPU ÷ … CPU per request;');
  console.log('  other % = box busy minus proxy, backend and wrk (other work on the box: noise).');
  if (s['node-llhttp'] && s['node-relay']) {
    console.log('  node-llhttp and node-relay are floors, not proxies: what the least a Node process costs here as an HTTP proxy on llhttp');
    console.log(`  (${fmtNum(s['node-llhttp'].cpuVsNginx)} × nginx's CPU per request) and as a TCP relay (${fmtNum(s['node-relay'].cpuVsNginx)} ×).`);
    const f = s['homing-fast-1'];
    if (f) console.log(`  homing-fast-1: CPU per request ${fmtNum(f.cpuVsLlhttp)} × node-llhttp's, ${fmtNum(f.cpuVsRelay)} × node-relay's.`);
  }
  if (s['homing-1-log']) console.log(`  homing-1-log: CPU/request ${fmtNum(s['homing-1-log'].cpuVsHoming1)} × homing-1's in the rounds above; its access log has ${fmtInt(r.accessLogLines ?? NaN)} lines.`);
  if (r.accessLog) {
    const a = r.accessLog;
    console.log(`\n== The access log's cost, side by side: homing-1 and homing-1-log under load at the same time (wrk -t1 -c${a.conns} on each), ${a.rounds.length} round(s) × ${o.seconds}s`);
    console.log(
      table(
        ['round', 'homing-1 req/s', 'CPU µs/req', 'homing-1-log req/s', 'CPU µs/req', 'CPU ratio', 'user CPU ratio'],
        a.rounds.map((x, i) => [String(i + 1), fmtInt(x.rps[0]), fmtNum(x.cpuUsPerReq[0], 1), fmtInt(x.rps[1]), fmtNum(x.cpuUsPerReq[1], 1), fmtNum(x.cpuRatio), fmtNum(x.userRatio)]),
      ),
    );
    console.log(`  median: CPU per request ${fmtNum(a.cpuRatio)} × with the access log on (user CPU ${fmtNum(a.userRatio)} ×); both share the box, so the absolute figures are not a lone peer's.`);
  }

  if (Object.keys(r.high).length) {
    console.log(`\n== Upstream churn check: wrk -t1 -c${o.connsHigh}, ${o.seconds}s, one pass per proxy peer (after a ${o.warmupS}s warm-up at c${o.connsHigh})`);
    console.log('  opened = new backend connections (warm-up pass / measured pass); mid-pass = the window from 20% to 90% of the pass;');
    console.log('  "closed" counts every peer\'s backend connections (an idle pool of a peer measured earlier timing out shows here).');
    const hrows = Object.entries(r.high).map(([name, x]) =>
      x.error
        ? [name, `error: ${x.error.split('\n')[0]}`]
        : [
            name,
            fmtInt(x.rps),
            fmtNum(x.latencyMs.p99),
            fmtInt(x.errors.total),
            fmtNum(x.proxyCpuUsPerReq, 1),
            fmtInt(x.upstreamOpenedWarmup),
            fmtInt(x.upstreamOpened),
            x.steady ? `${x.steady.opened} / ${x.steady.closed}` : '–',
            x.steady?.requests ? fmtNum((1000 * x.steady.opened) / x.steady.requests, 2) : '–',
          ],
    );
    console.log(table(['peer', 'req/s', 'p99 ms', 'errors', 'CPU µs/req', 'opened warm-up', 'opened pass', 'mid-pass opened / closed', 'opened per 1k req mid-pass'], hrows));
  }

  if (Array.isArray(r.targets)) {
    console.log('\n== Targets for homing, workers: 1 (engine: node unless named homing-fast-1)');
    console.log(
      table(
        ['target', 'value', 'result'],
        r.targets.map((t) => [t.target, typeof t.value === 'number' ? fmtNum(t.value) : t.value, t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : 'FAIL']),
        'lrl',
      ),
    );
  } else console.log(`\n== Targets: not checked — ${r.targets.skipped}`);
}
