// Section "directory": throughput of a directory route with a warm cache against a plain balance
// route, same backend. wrk -t1 -c64 sends GETs whose Host rotates round-robin over 100 tenant
// hosts, t0.example.com … t99.example.com (bench/peers/directory-hosts.lua), to both peers:
//   homing-balance    one pool `bench` holding the bench backend, `balance: round-robin`; the
//                     Host plays no part in routing
//   homing-directory  three pools pool0, pool1, pool2, each holding the same bench backend;
//                     `directory: { key: host, lookup: { url: …/backend/{key}, timeout: 500ms },
//                     ttl: 5m }`, `balance: round-robin` within the answered pool
// The directory is bench/peers/directory.mjs, a node:http server in its own process: it answers
// t<N>.example.com with pool<N mod 3> (so the hosts spread over the three pools) and counts the
// look-ups it answers (GET /count). Before any measured pass every host is asked once through the
// directory peer: the directory must see exactly one look-up per host, and homing's admin API
// (GET /api/v1/directory/<route>/<key>) must hold each host's pool. The ttl (5 min) outlasts the
// section, so every measured pass must make no directory call at all: the count is read around
// each pass (its unmeasured wrk warm-up included) and reported per 10 k measured requests.
// Both peers run with workers: 1 (one process: the cache the admin API shows is the one that
// routes), are started once and measured in interleaved rounds; ratio = median of per-round
// ratios. Then both are put under load at the same time (half the connections each, as many
// rounds): the target is checked on that req/s ratio, which both peers' share of the box's noise
// keeps steady. The directory's own CPU is not counted as proxy CPU (it should answer nothing
// while measured anyway).
import http from 'node:http';
import path from 'node:path';
import { getJson, startNode, stop } from './proc.mjs';
import { PEERS_DIR, readyPort, startHoming } from './peers.mjs';
import { fmtInt, fmtNum, median, table } from './format.mjs';
import { measureSafe, peerSummary, startPeers, stripRaw, summaryCells } from './harness.mjs';
import { measureTogether } from './side-by-side.mjs';

const SECTION = 'directory';
const HOSTS = 100;
const DOMAIN = 'example.com';
const POOLS = 3;
const ROUTE = 'tenants';
const LUA = path.join(PEERS_DIR, 'directory-hosts.lua');
const TARGETS = {
  ratio: 0.9, // directory (warm) req/s ≥ 0.90 × balance req/s
  callsPer10k: 0, // no directory call while measured: every answer is cached for the ttl
};

const hostOf = (i) => `t${i}.${DOMAIN}`;
const poolOf = (i) => `pool${i % POOLS}`;

export async function directorySection(h) {
  const o = h.opts;
  const plan = { hosts: HOSTS, pools: POOLS, conns: o.conns, rounds: o.rounds, seconds: o.seconds, warmupS: o.warmupS, ttl: '5m', lookupTimeout: '500ms' };
  let dir;
  try {
    dir = await startDirectory(h);
    h.log(`directory: look-up server on 127.0.0.1:${dir.port} (pid ${dir.child.pid})`);
  } catch (e) {
    h.problem(SECTION, `directory server failed to start: ${e.message}`);
    console.log('\n== Directory: skipped — the directory server failed to start');
    return { error: e.message };
  }
  try {
    const member = `127.0.0.1:${h.backend.port}`;
    const poolNames = Array.from({ length: POOLS }, (_, i) => `pool${i}`);
    const starters = [
      [
        'homing-balance',
        () =>
          startHoming(h, {
            name: 'homing-balance',
            label: 'homing, workers: 1, balance route (one pool)',
            workers: 1,
            routes: [{ name: 'bench', match: { path: '/' }, pool: 'bench', balance: 'round-robin' }],
          }),
      ],
      [
        'homing-directory',
        () =>
          startHoming(h, {
            name: 'homing-directory',
            label: `homing, workers: 1, directory route (${POOLS} pools, cache warm)`,
            workers: 1,
            pools: Object.fromEntries(poolNames.map((p) => [p, { members: [member] }])),
            routes: [
              {
                name: ROUTE,
                match: { path: '/' },
                pools: poolNames,
                directory: { key: 'host', lookup: { url: `http://127.0.0.1:${dir.port}/backend/{key}`, timeout: plan.lookupTimeout }, ttl: plan.ttl },
                balance: 'round-robin',
              },
            ],
          }),
      ],
    ];
    const { peers, skipped } = await startPeers(h, SECTION, starters);
    try {
      // Preflight and warm-up in one: every host once through each peer, the balance peer first.
      // The directory must be asked once per host by the directory peer, and never by the other.
      const warm = {};
      for (const p of peers) {
        const before = await dir.count();
        const bad = [];
        for (let i = 0; i < HOSTS; i++) {
          try {
            const r = await getWithHost(p.url, hostOf(i));
            if (r.status !== 200 || r.length !== 1024) bad.push(`${hostOf(i)} → ${r.status}, ${r.length} bytes`);
          } catch (e) {
            bad.push(`${hostOf(i)} → ${e.message}`);
          }
        }
        const after = await dir.count();
        warm[p.name] = { requests: HOSTS, failed: bad.length, directoryCalls: after.calls - before.calls };
        if (bad.length) h.problem(SECTION, `${p.name} warm-up: ${bad.length} of ${HOSTS} GETs failed (want 200, 1024 bytes), e.g. ${bad.slice(0, 3).join('; ')}`);
        const want = p.name === 'homing-directory' ? HOSTS : 0;
        if (warm[p.name].directoryCalls !== want) h.problem(SECTION, `${p.name} warm-up: the directory answered ${warm[p.name].directoryCalls} look-ups (want ${want})`);
      }
      const dp = peers.find((p) => p.name === 'homing-directory');
      if (dp) {
        warm[dp.name].cached = await checkCached(h, dp);
        h.log(`directory: warm-up ${JSON.stringify(warm[dp.name])}`);
      }

      // Interleaved rounds at c64; the starting peer rotates from round to round.
      const rounds = [];
      for (let r = 0; r < o.rounds; r++) {
        const order = peers.map((_, i) => peers[(i + r) % peers.length]);
        const runs = {};
        for (const p of order) {
          h.log(`directory round ${r + 1}/${o.rounds}: ${p.name} c${o.conns} ${o.seconds}s`);
          const before = await dir.count();
          const run = await measureSafe(h, SECTION, p, { conns: o.conns, seconds: o.seconds, warmupS: o.warmupS, script: LUA, scriptArgs: [HOSTS, DOMAIN] }, `GET ${HOSTS} hosts c${o.conns}`);
          const after = await dir.count();
          if (!run.error) run.directoryCalls = after.calls - before.calls;
          runs[p.name] = run;
        }
        rounds.push(runs);
      }
      for (const [i, runs] of rounds.entries()) {
        for (const [name, run] of Object.entries(runs)) {
          if (run.error) continue;
          const where = `${name} round ${i + 1}`;
          if (run.errors.total > 0) h.problem(SECTION, `${where}: ${run.errors.total} errors (${JSON.stringify(run.errors)})\n${run.wrkOutput}`);
          if (run.directoryCalls > 0) h.problem(SECTION, `${where}: ${run.directoryCalls} directory look-ups during the pass (want 0: every host is cached for ${plan.ttl})`);
        }
      }

      // The target's figure: both peers under load at the same time (half the connections each),
      // so both see the same noise (passes one after the other moved by ±15% on a shared box).
      const before = await dir.count();
      const together = await measureTogether(h, SECTION, peers, ['homing-balance', 'homing-directory'], {
        rounds: o.rounds,
        label: 'directory side by side',
        describe: (x) => `req/s ${x.rps.map((v) => Math.round(v)).join(' / ')} (${x.rpsRatio.toFixed(3)} ×)`,
        wrkOptions: { script: LUA, scriptArgs: [HOSTS, DOMAIN] },
      });
      if (together) {
        together.directoryCalls = (await dir.count()).calls - before.calls;
        if (together.directoryCalls > 0) h.problem(SECTION, `side by side: ${together.directoryCalls} directory look-ups (want 0: every host is cached for ${plan.ttl})`);
      }

      const summary = summarize(peers, rounds);
      const result = {
        method: { tool: 'wrk', threads: 1, script: path.relative(path.resolve(PEERS_DIR, '../..'), LUA), ...plan },
        peers: peers.map((p) => ({ name: p.name, label: p.label, url: p.url, config: p.config })),
        skipped,
        directory: { port: dir.port, answers: `t<N>.${DOMAIN} → pool<N mod ${POOLS}>`, calls: (await dir.count()).calls },
        warm,
        rounds: rounds.map((runs) => Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, stripRaw(v)]))),
        summary,
        sideBySide: together,
      };
      result.targets = checkTargets(result);
      print(h, result);
      return result;
    } finally {
      for (const p of peers) await p.stop();
    }
  } finally {
    await dir.stop();
  }
}

// ---------------------------------------------------------------------------------------------

async function startDirectory(h) {
  const child = startNode('directory', path.join(PEERS_DIR, 'directory.mjs'), ['--pools', String(POOLS)], { logFile: path.join(h.tmp, 'directory.log') });
  let port;
  try {
    port = await readyPort(child, 'directory');
  } catch (e) {
    await stop(child);
    throw e;
  }
  return {
    port,
    child,
    /** {calls, keys}: look-ups answered since start, distinct keys asked. */
    count: async () => {
      const r = await getJson(`http://127.0.0.1:${port}/count`);
      if (r.status !== 200) throw new Error(`directory GET /count → ${r.status}`);
      return r.body;
    },
    stop: () => stop(child),
  };
}

/** One GET of `url` with `Host: host`; resolves {status, length}. */
function getWithHost(url, host, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs, headers: { host } }, (res) => {
      let length = 0;
      res.on('data', (d) => (length += d.length));
      res.on('end', () => resolve({ status: res.statusCode, length }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Asks homing's admin API what it holds for every host: each must be its pool, from the directory. */
async function checkCached(h, peer) {
  const wrong = [];
  for (let i = 0; i < HOSTS; i++) {
    const r = await getJson(`http://127.0.0.1:${peer.adminPort}/api/v1/directory/${ROUTE}/${encodeURIComponent(hostOf(i))}`).catch((e) => ({ status: 0, error: e.message }));
    if (r.status !== 200 || r.body?.value !== poolOf(i) || r.body?.stale) wrong.push(`${hostOf(i)}: ${r.status} ${r.error ?? JSON.stringify(r.body)}`);
  }
  if (wrong.length) h.problem(SECTION, `after the warm-up homing's cache holds the wrong thing for ${wrong.length} of ${HOSTS} hosts (want pool<N mod ${POOLS}>), e.g. ${wrong.slice(0, 3).join('; ')}`);
  return { hosts: HOSTS, right: HOSTS - wrong.length };
}

function summarize(peers, rounds) {
  const ok = (r) => r && !r.error;
  const ratio = (runs, a, b, f) => (ok(runs[a]) && ok(runs[b]) ? f(runs[a], runs[b]) : undefined);
  const out = {};
  for (const p of peers) {
    const { mine, summary } = peerSummary(p, rounds);
    const requests = mine.reduce((a, r) => a + r.requests, 0);
    const calls = mine.reduce((a, r) => a + (r.directoryCalls ?? 0), 0);
    out[p.name] = {
      ...summary,
      requests,
      directoryCalls: calls,
      directoryCallsPer10k: requests ? (1e4 * calls) / requests : undefined,
      vsBalance: median(rounds.map((runs) => ratio(runs, p.name, 'homing-balance', (a, b) => (b.rps ? a.rps / b.rps : undefined)))),
      cpuVsBalance: median(rounds.map((runs) => ratio(runs, p.name, 'homing-balance', (a, b) => (b.proxyCpuUsPerReq ? a.proxyCpuUsPerReq / b.proxyCpuUsPerReq : undefined)))),
    };
  }
  return out;
}

function checkTargets(r) {
  const d = r.summary['homing-directory'];
  const b = r.summary['homing-balance'];
  if (!d || !b) return { skipped: r.skipped['homing-directory'] ?? r.skipped['homing-balance'] ?? 'a homing peer was not measured' };
  const s = r.sideBySide;
  const byRound = s?.rounds.map((x) => x.rpsRatio) ?? [];
  const calls = d.directoryCalls + (s?.directoryCalls ?? 0);
  const w = r.warm['homing-directory'];
  return [
    {
      target: `directory (warm) req/s ≥ ${TARGETS.ratio} × balance (side by side, median of per-round ratios)`,
      value: s ? `${fmtNum(s.rpsRatio)}${byRound.length > 1 ? ` (by round ${byRound.map((v) => fmtNum(v)).join(' / ')})` : ''}` : undefined,
      pass: s?.rpsRatio === undefined ? undefined : s.rpsRatio >= TARGETS.ratio,
    },
    {
      target: `directory calls per 10k requests while measured = ${TARGETS.callsPer10k} (ttl ${r.method.ttl})`,
      value: `${fmtNum(d.directoryCallsPer10k)} (${calls} calls / ${fmtInt(d.requests)} req interleaved, side by side too)`,
      pass: d.directoryCallsPer10k === undefined ? undefined : d.directoryCallsPer10k <= TARGETS.callsPer10k && calls === 0,
    },
    {
      target: `warm-up: one look-up per host, each cached with its pool`,
      value: `${w.directoryCalls} calls for ${HOSTS} hosts, ${w.cached?.right ?? '–'}/${HOSTS} cached right`,
      pass: w.directoryCalls === HOSTS && w.cached?.right === HOSTS && w.failed === 0,
    },
    { target: 'no errors (both peers)', value: fmtInt(d.errors + b.errors), pass: d.errors + b.errors === 0 },
  ];
}

function print(h, r) {
  const o = h.opts;
  console.log(
    `\n== Directory: 1 KiB GET, Host rotating over ${HOSTS} tenant hosts, wrk -t1 -c${o.conns} (Lua request()), ${o.rounds} round(s) × ${o.seconds}s (+${o.warmupS}s warm-up each), peers interleaved; medians; ratios = median of per-round ratios`,
  );
  const rows = Object.entries(r.summary).map(([name, x]) => [
    ...summaryCells(name, x),
    fmtNum(x.vsBalance),
    fmtNum(x.cpuVsBalance),
    fmtNum(x.directoryCallsPer10k),
    fmtNum(x.steadyOpenedPer1k, 2),
    fmtNum(x.otherCpuPct, 0),
  ]);
  console.log(table(['peer', 'req/s', 'by round', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/req', 'CPU %', '÷ balance', 'CPU ÷ balance', 'dir calls/10k', 'new upstream/1k', 'other %'], rows));
  for (const [name, why] of Object.entries(r.skipped)) console.log(`  (skipped ${name}: ${why.split('\n')[0]})`);
  console.log(`  homing-balance = one pool holding the bench backend, balance: round-robin (the Host is ignored);`);
  console.log(`  homing-directory = pools pool0..pool${POOLS - 1}, each holding the same bench backend; a directory server in its own`);
  console.log(`  process answers t<N>.${DOMAIN} → pool<N mod ${POOLS}>; ttl ${r.method.ttl}; balance: round-robin within the answered pool.`);
  console.log(`  The cache was warmed before measuring (each of the ${HOSTS} hosts asked once). dir calls/10k = directory look-ups`);
  console.log('  during the passes (their wrk warm-ups included) per 10 000 measured requests.');
  console.log('  Both peers get the same wrk Lua script: its request() function hands out pre-formatted requests, one call into Lua');
  console.log('  per request on the load generator (wrk cannot reuse one prepared request); both peers pay it equally.');
  console.log("  CPU % = the proxy's processes (100 = one core; the directory's CPU not included); new upstream/1k = backend");
  console.log('  connections opened per 1000 requests mid-pass; other % = box busy minus proxy, backend and wrk.');
  if (r.sideBySide) {
    const a = r.sideBySide;
    console.log(`\n== Directory side by side: homing-balance and homing-directory under load at the same time (wrk -t1 -c${a.conns} on each, the same Lua script), ${a.rounds.length} round(s) × ${o.seconds}s`);
    console.log(
      table(
        ['round', 'balance req/s', 'CPU µs/req', 'directory req/s', 'CPU µs/req', 'req/s ratio', 'CPU ratio'],
        a.rounds.map((x, i) => [String(i + 1), fmtInt(x.rps[0]), fmtNum(x.cpuUsPerReq[0], 1), fmtInt(x.rps[1]), fmtNum(x.cpuUsPerReq[1], 1), fmtNum(x.rpsRatio), fmtNum(x.cpuRatio)]),
      ),
    );
    console.log(`  median: directory ÷ balance req/s ${fmtNum(a.rpsRatio)}, CPU per request ${fmtNum(a.cpuRatio)}; ${a.directoryCalls} directory look-ups meanwhile; both share the box.`);
  }
  if (Array.isArray(r.targets)) {
    console.log('\n== Targets for the directory route, workers: 1');
    console.log(
      table(
        ['target', 'value', 'result'],
        r.targets.map((t) => [t.target, typeof t.value === 'number' ? fmtNum(t.value) : t.value, t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : 'FAIL']),
        'lrl',
      ),
    );
  } else console.log(`\n== Directory targets: not checked — ${r.targets.skipped}`);
}
