// Section "bounded": consistent hashing with bounded loads under skewed keys, homing against
// HAProxy in the same run:
//   homing   `hash: { key: path, algorithm: ring, boundedLoad: 1.25 }`
//   HAProxy  `balance uri` + `hash-type consistent` + `hash-balance-factor 125`
// and, for reference, both without the bound (every request on its key's home member).
//
// Same members (bench/peers/zipf-members.mjs: 5 node:http servers in one process, each request
// answered after a fixed delay so requests overlap), same keys in the same order (wrk -s
// bench/peers/zipf-keys.lua: /z/key-<r>, r drawn from Zipf(1.1) over 10 k keys from a fixed seed;
// the path is the key both hash), same concurrency. Each proxy counts its own requests in flight
// per member and caps a member at its share of them, so the load is real concurrent load.
//
// A key's home is the member its proxy's ring gives it without the bound: learned by sending
// every key once through the unbounded route of each proxy (their rings differ: homing hashes
// with MurmurHash3, HAProxy with its own hash over server ids). Figures per pass, from what the
// members saw:
//   sticky keys     a key's requests served by its home member, averaged over keys (goal ≥ 95%)
//   sticky          share of requests served by their key's home member (at most "sticky at best")
//   served max/mean requests of the busiest member ÷ the mean over members
//   load max/mean   time-averaged requests in flight of the busiest member ÷ the mean (goal ≤ 1.25)
//   peak            most requests one member had in flight at once
// Peers run interleaved in rounds, each pass after a warm-up pass; medians over rounds.
import path from 'node:path';
import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'undici';
import { freePort, sleep, start, startNode, stop } from './proc.mjs';
import { PEERS_DIR, readyPort, startHoming, tail } from './peers.mjs';
import { wrk } from './wrk.mjs';
import { fmtInt, fmtNum, median, table } from './format.mjs';

const SECTION = 'bounded';
/**
 * 5 members taking 20 ms a request, keys r ~ Zipf(1.1) over 10 k from a fixed seed, factor 1.25.
 * The members' ports when free: homing's ring (over host:port) is then the same in every run.
 */
const { MEMBERS, KEYS, ZIPF_S, FACTOR, DELAY_MS, SEED, PORTS } = { MEMBERS: 5, KEYS: 10_000, ZIPF_S: 1.1, FACTOR: 1.25, DELAY_MS: 20, SEED: 4242, PORTS: [29101, 29102, 29103, 29104, 29105] };
const LUA = path.join(PEERS_DIR, 'zipf-keys.lua');
const [BOUNDED_HOST, PLAIN_HOST] = ['bounded.test', 'plain.test'];

export async function boundedSection(h) {
  const o = h.opts;
  const plan = { members: MEMBERS, keys: KEYS, zipfS: ZIPF_S, factor: FACTOR, delayMs: DELAY_MS, conns: o.conns, rounds: o.rounds, seconds: o.seconds, warmupS: o.warmupS };
  const why = !h.have('wrk') ? 'wrk not installed' : !h.have('haproxy') ? 'haproxy not installed (scripts/install-system-deps.sh)' : undefined;
  if (why) {
    console.log(`\n== Bounded loads: skipped — ${why}`);
    return { skipped: why };
  }
  const t0 = Date.now();
  const stopList = [];
  try {
    const members = await startMembers(h);
    stopList.push(members);
    const homing = await startHoming(h, {
      name: 'homing-bounded',
      label: 'homing, workers: 1',
      workers: 1,
      pools: { z: { members: members.ids } },
      routes: [
        { name: 'bounded', match: { host: BOUNDED_HOST }, pool: 'z', hash: { key: 'path', algorithm: 'ring', boundedLoad: FACTOR } },
        { name: 'plain', match: { host: PLAIN_HOST }, pool: 'z', hash: { key: 'path', algorithm: 'ring' } },
      ],
    });
    if (homing.skipped) {
      console.log(`\n== Bounded loads: skipped — ${homing.skipped}`);
      return { skipped: homing.skipped };
    }
    stopList.push(homing);
    const haproxy = await startHaproxy(h, members.ids);
    stopList.push(haproxy);
    const base = (port) => `http://127.0.0.1:${port}/`;
    const peers = [
      { name: 'homing', label: `homing, boundedLoad ${FACTOR}`, url: base(homing.port), host: BOUNDED_HOST, proxy: 'homing' },
      { name: 'haproxy', label: `HAProxy, hash-balance-factor ${FACTOR * 100}`, url: base(haproxy.port), host: BOUNDED_HOST, proxy: 'haproxy' },
      { name: 'homing-unbounded', label: 'homing, no bound', url: base(homing.port), host: PLAIN_HOST, proxy: 'homing' },
      { name: 'haproxy-unbounded', label: 'HAProxy, no bound', url: base(haproxy.port), host: PLAIN_HOST, proxy: 'haproxy' },
    ];

    const homes = {
      homing: await learnHomes(h, members, homing.port),
      haproxy: await learnHomes(h, members, haproxy.port),
    };

    const rounds = [];
    for (let r = 0; r < plan.rounds; r++) {
      const runs = {};
      for (let i = 0; i < peers.length; i++) {
        const p = peers[(i + r) % peers.length];
        h.log(`bounded round ${r + 1}/${plan.rounds}: ${p.name} c${plan.conns} ${plan.seconds}s`);
        try {
          runs[p.name] = await pass(members, p, homes[p.proxy], plan);
        } catch (e) {
          h.problem(SECTION, `${p.name}: ${e.message}`);
          runs[p.name] = { error: e.message };
        }
      }
      rounds.push(runs);
    }

    const summary = {};
    for (const p of peers) {
      const mine = rounds.map((x) => x[p.name]).filter((x) => x && !x.error);
      summary[p.name] = {
        label: p.label,
        rps: median(mine.map((x) => x.rps)),
        sticky: median(mine.map((x) => x.sticky)),
        stickyKeys: median(mine.map((x) => x.stickyKeys)),
        stickyByRound: rounds.map((x) => x[p.name]?.sticky ?? null),
        servedMaxOverMean: median(mine.map((x) => x.servedMaxOverMean)),
        loadMaxOverMean: median(mine.map((x) => x.loadMaxOverMean)),
        loadByRound: rounds.map((x) => x[p.name]?.loadMaxOverMean ?? null),
        meanInflight: median(mine.map((x) => x.meanInflight)),
        peakInflight: Math.max(...mine.map((x) => x.peakInflight)),
        hottestKeyShare: median(mine.map((x) => x.hottestKeyShare)),
        errors: mine.reduce((a, x) => a + x.errors, 0),
      };
      if (summary[p.name].errors) h.problem(SECTION, `${p.name}: ${summary[p.name].errors} wrk errors in the measured passes`);
    }
    // The most a bound can leave at home: all but what the unbounded shares have above c × mean.
    for (const [name, plain] of [['homing', 'homing-unbounded'], ['haproxy', 'haproxy-unbounded']]) {
      const ideal = rounds.map((x) => (x[plain]?.served ? 1 - overflow(x[plain].served, FACTOR) : undefined));
      summary[name].stickyCeiling = median(ideal);
    }
    for (const name of ['homing-unbounded', 'haproxy-unbounded']) {
      const s = summary[name].sticky;
      if (s !== undefined && s < 0.999) h.problem(SECTION, `${name}: only ${fmtNum(s * 100, 2)}% of requests on the learned home without a bound (the homes are wrong)`);
    }
    const fixedPorts = members.ids.every((id, i) => id.endsWith(`:${PORTS[i]}`));
    if (!fixedPorts) h.log(`bounded: some of ports ${PORTS.join(', ')} were taken; homing's ring differs from other runs`);
    const result = { method: plan, fixedPorts, members: members.ids, peers: peers.map(({ name, label, host }) => ({ name, label, host })), rounds, summary, seconds: (Date.now() - t0) / 1000 };
    print(result);
    return result;
  } finally {
    for (const p of stopList.reverse()) await p.stop().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

async function startMembers(h) {
  const child = startNode('zipf-members', path.join(PEERS_DIR, 'zipf-members.mjs'), ['--members', String(MEMBERS), '--delay-ms', String(DELAY_MS), '--ports', PORTS.join(',')], {
    logFile: path.join(h.tmp, 'zipf-members.log'),
  });
  const control = await readyPort(child, 'zipf-members');
  const ctl = async (method, p) => {
    const r = await request(`http://127.0.0.1:${control}${p}`, { method, headersTimeout: 5000, bodyTimeout: 5000 });
    if (r.statusCode !== 200) throw new Error(`${method} ${p} → ${r.statusCode}`);
    return r.body.json();
  };
  const ids = (await ctl('GET', '/stats')).members.map((m) => m.id);
  return {
    ids,
    pgids: [child.pid],
    stats: () => ctl('GET', '/stats'),
    reset: () => ctl('POST', '/reset'),
    delay: (ms) => ctl('POST', `/delay?ms=${ms}`),
    stop: () => stop(child),
  };
}

/** HAProxy, 1 thread: Host plain.test → the backend without the bound, anything else → with it. */
async function startHaproxy(h, ids) {
  const dir = path.join(h.tmp, 'haproxy-bounded');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  // Explicit server ids: both backends get the same ring.
  const servers = ids.map((id, i) => `  server m${i} ${id} id ${i + 1}`).join('\n');
  const cfg = `global
  maxconn 8192
  nbthread 1

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s

frontend fe
  bind 127.0.0.1:${port}
  use_backend plain if { hdr(host) -i ${PLAIN_HOST} }
  default_backend bounded

backend bounded
  balance uri
  hash-type consistent
  hash-balance-factor ${Math.round(FACTOR * 100)}
${servers}

backend plain
  balance uri
  hash-type consistent
${servers}
`;
  const cfgFile = path.join(dir, 'haproxy.cfg');
  writeFileSync(cfgFile, cfg);
  const child = start('haproxy-bounded', h.bin('haproxy'), ['-db', '-f', cfgFile], { logFile: path.join(dir, 'haproxy.log') });
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitInfo) throw new Error(`haproxy exited (${child.exitInfo.code ?? child.exitInfo.signal}) at start; log:\n${tail(path.join(dir, 'haproxy.log'))}`);
    const ok = await get(port, '/z/key-1', PLAIN_HOST).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > until) {
      await stop(child);
      throw new Error(`haproxy did not answer within 10 s; log:\n${tail(path.join(dir, 'haproxy.log'))}`);
    }
    await sleep(100);
  }
  return { port, pgids: [child.pid], stop: () => stop(child) };
}

// ---------------------------------------------------------------------------------------------
// Homes and passes

/** Every key once through the proxy's unbounded route (members answering at once): key → home id. */
async function learnHomes(h, members, port) {
  await members.delay(0);
  await members.reset();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  let next = 1;
  const worker = async () => {
    while (next <= KEYS) {
      const r = await get(port, `/z/key-${next++}`, PLAIN_HOST, agent);
      if (r.status !== 200) throw new Error(`calibration request answered ${r.status}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: 16 }, worker));
  } finally {
    agent.destroy();
    await members.delay(DELAY_MS);
  }
  const s = await members.stats();
  const homes = new Map();
  for (const [key, row] of Object.entries(s.keys)) homes.set(key, s.members[row.findIndex((n) => n > 0)].id);
  if (homes.size !== KEYS) h.problem(SECTION, `calibration through port ${port} saw ${homes.size} keys, not ${KEYS}`);
  return homes;
}

async function pass(members, peer, homes, plan) {
  const args = [KEYS, ZIPF_S, peer.host, SEED];
  if (plan.warmupS > 0) await wrk(peer.url, { conns: plan.conns, seconds: plan.warmupS, script: LUA, scriptArgs: args });
  await members.reset();
  const w = await wrk(peer.url, { conns: plan.conns, seconds: plan.seconds, script: LUA, scriptArgs: args });
  const s = await members.stats();
  let total = 0;
  let sticky = 0;
  let hottest = 0;
  // Per key: the share of its requests its home served, averaged over the keys seen.
  let keyShares = 0;
  let keysSeen = 0;
  for (const [key, row] of Object.entries(s.keys)) {
    const home = s.members.findIndex((m) => m.id === homes.get(key));
    const n = row.reduce((a, b) => a + b, 0);
    total += n;
    if (home >= 0) sticky += row[home];
    if (n > 0) {
      keysSeen++;
      keyShares += home >= 0 ? row[home] / n : 0;
    }
    hottest = Math.max(hottest, n);
  }
  const served = s.members.map((m) => m.requests);
  const load = s.members.map((m) => m.meanInflight);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    rps: w.rps,
    requests: total,
    served,
    errors: w.errors.total,
    sticky: total ? sticky / total : undefined,
    stickyKeys: keysSeen ? keyShares / keysSeen : undefined,
    servedMaxOverMean: Math.max(...served) / mean(served),
    loadMaxOverMean: Math.max(...load) / mean(load),
    meanInflight: load.reduce((a, b) => a + b, 0),
    peakInflight: Math.max(...s.members.map((m) => m.peakInflight)),
    hottestKeyShare: total ? hottest / total : undefined,
    perMember: s.members.map((m) => ({ id: m.id, requests: m.requests, meanInflight: +m.meanInflight.toFixed(2), peakInflight: m.peakInflight })),
  };
}

/** Share of all requests above c × the mean share, summed over members: what a bound must move. */
function overflow(served, c) {
  const total = served.reduce((a, b) => a + b, 0);
  const limit = (c * total) / served.length;
  return served.reduce((a, n) => a + Math.max(0, n - limit), 0) / total;
}

function get(port, p, host, agent = false) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, headers: { host }, agent, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, servedBy: res.headers['x-served-by'] }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------

function print(r) {
  const p = r.method;
  console.log(
    `\n== Bounded loads, factor ${p.factor}: ${p.members} members (each request takes ${p.delayMs} ms), wrk -t1 -c${p.conns}, keys /z/key-<r> with r ~ Zipf(${p.zipfS}) over ${fmtInt(p.keys)},` +
      `\n   ${p.rounds} round(s) × ${p.seconds}s (+${p.warmupS}s warm-up each), interleaved; medians`,
  );
  const pct = (x) => (x === undefined || x === null ? '–' : `${fmtNum(x * 100, 1)}%`);
  const columns = [
    ['req/s', (x) => fmtInt(x.rps)],
    ['sticky keys', (x) => pct(x.stickyKeys)],
    ['sticky', (x) => pct(x.sticky)],
    ['by round', (x) => x.stickyByRound.map(pct).join(' / ')],
    ['sticky at best', (x) => pct(x.stickyCeiling)],
    ['served max/mean', (x) => fmtNum(x.servedMaxOverMean)],
    ['load max/mean', (x) => fmtNum(x.loadMaxOverMean)],
    ['by round', (x) => x.loadByRound.map((v) => fmtNum(v ?? NaN)).join(' / ')],
    ['in flight', (x) => fmtNum(x.meanInflight, 1)],
    ['peak/member', (x) => fmtInt(x.peakInflight)],
    ['hottest key', (x) => pct(x.hottestKeyShare)],
    ['errors', (x) => fmtInt(x.errors)],
  ];
  const rows = Object.entries(r.summary).map(([name, x]) => [name, ...columns.map(([, f]) => f(x))]);
  console.log(table(['peer', ...columns.map(([title]) => title)], rows));
  console.log(`  sticky keys = the share of a key's requests its home member served (the member without the bound), averaged over keys; goal ≥ 95%.`);
  console.log(`  sticky = the same over requests: hot keys weigh by their traffic, so it can never pass "sticky at best".`);
  console.log(`  sticky at best = 1 − the share of requests the unbounded pass put above ${p.factor} × the mean on a member: the most any bound can leave home.`);
  console.log(`  load = time-averaged requests in flight per member, as the members count them; goal max/mean ≤ ${p.factor}.`);
  console.log(`  (section took ${fmtNum(r.seconds, 1)} s)`);
}
