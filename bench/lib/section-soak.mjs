// Section "soak" (only with `--soak`, never in the default run): homing (1 worker, `engine: fast`
// by default; `--soak-engine node` or `fast,node`) under steady load for `--soak-minutes` (10),
// looking for what leaks slowly. The load is bench/peers/soak-load.mjs in its own process: 256
// connections (`--conns-high`), about 98% plain keep-alive GETs of the 1 KiB answer, about 1%
// clients that send part of a 64 KiB POST body and disconnect (half of them to a route with
// `requestBuffering: false`, so the upstream request has started), about 1% slow readers of a
// 1 MiB answer. Two routes over one pool holding the bench backend (`balance: round-robin`,
// `connections: 256`). Every 5 s: homing's RSS (VmRSS of its processes), the connections the
// backend has open (all of them homing's member connections), homing's requests in flight
// (`GET /api/v1/pools`). At the end the load stops, homing gets 5 s to settle, and three checks:
//   RSS         the last sample under load ≤ 1.10 × the lowest sample from 1 minute to 2 (from
//               1/3 to 2/3 of the run for runs shorter than 3 minutes): at 1 minute RSS can still
//               sit at its warm-up peak, before V8's first full collection brings it down
//   in flight   every member's in-flight count is 0 once the load has stopped
//   members     the backend's open connections ≤ the pool's `connections` (what a pool may keep)
// The deliberate disconnects are counted, not errors; anything else the clients saw is an error.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PEERS_DIR, readyPort, startHoming } from './peers.mjs';
import { getJson, sleep, startNode, stop } from './proc.mjs';
import { fmtInt, fmtNum, table } from './format.mjs';

const SAMPLE_MS = 5000;
const SETTLE_MS = 5000;
const POOL_CONNECTIONS = 256;
const RSS_LIMIT = 1.1;

/** Sum of VmRSS (KiB) of the given pids; undefined when none could be read. */
function rssKiB(pids) {
  let sum;
  for (const pid of pids) {
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) sum = (sum ?? 0) + Number(m[1]);
    } catch {
      /* gone */
    }
  }
  return sum;
}

/** Members' in-flight counts from the admin API: { total, byMember } or { error }. */
async function inflight(adminPort) {
  try {
    const { body: j } = await getJson(`http://127.0.0.1:${adminPort}/api/v1/pools`);
    const byMember = {};
    let total = 0;
    for (const p of j.pools ?? [])
      for (const m of p.members ?? []) {
        byMember[`${p.name}/${m.id}`] = m.inflight;
        total += m.inflight ?? 0;
      }
    return { total, byMember };
  } catch (e) {
    return { error: e.message };
  }
}

/** Starts the load generator; returns { child, stats(), stop() → final counts }. */
async function startLoad(h, port, conns) {
  const child = startNode('soak-load', path.join(PEERS_DIR, 'soak-load.mjs'), [String(port), String(conns)], { logFile: path.join(h.tmp, 'soak-load.log') });
  await readyPort(child, 'soak-load');
  let seq = 0;
  const pending = new Map();
  let stopped;
  const stoppedP = new Promise((r) => (stopped = r));
  child.on('message', (m) => {
    if (m?.type === 'stats' && pending.has(m.id)) {
      pending.get(m.id)(m);
      pending.delete(m.id);
    } else if (m?.type === 'stopped') stopped(m);
  });
  return {
    child,
    stats: () =>
      new Promise((resolve) => {
        const id = ++seq;
        const t = setTimeout(() => {
          pending.delete(id);
          resolve(undefined);
        }, 3000);
        pending.set(id, (m) => {
          clearTimeout(t);
          resolve(m);
        });
        child.send({ type: 'stats', id });
      }),
    stop: async () => {
      child.send({ type: 'stop' });
      const final = await Promise.race([stoppedP, sleep(30_000).then(() => undefined)]);
      await stop(child);
      return final;
    },
  };
}

async function soakOne(h, engine, seconds, conns) {
  const name = `homing-soak-${engine}`;
  const routes = [
    { name: 'soak-streamed', match: { path: '/soak/streamed/' }, pool: 'bench', balance: 'round-robin', requestBuffering: false },
    { name: 'soak', match: { path: '/' }, pool: 'bench', balance: 'round-robin' },
  ];
  const pools = { bench: { members: [`127.0.0.1:${h.backend.port}`], connections: POOL_CONNECTIONS } };
  const peer = await startHoming(h, { name, label: `homing, 1 worker, engine: ${engine}`, workers: 1, engine, routes, pools });
  if (peer.skipped) {
    h.log(`skip ${name}: ${peer.skipped}`);
    return { engine, skipped: peer.skipped };
  }
  h.log(`${name} up at ${peer.url} (pid ${peer.child.pid}); ${seconds} s of load at c${conns}`);
  let load;
  try {
    await sleep(1000);
    const idle = { rssKiB: rssKiB([peer.child.pid]), memberConns: (await h.backend.stats()).open };
    const b0 = await h.backend.stats();
    load = await startLoad(h, peer.port, conns);
    const t0 = Date.now();
    const samples = [];
    let nextLog = 60_000;
    for (let at = SAMPLE_MS; ; at += SAMPLE_MS) {
      const wait = t0 + Math.min(at, seconds * 1000) - Date.now();
      if (wait > 0) await sleep(wait);
      const [b, l, f] = await Promise.all([h.backend.stats(), load.stats(), inflight(peer.adminPort)]);
      const s = { t: Math.round((Date.now() - t0) / 1000), rssKiB: rssKiB([peer.child.pid]), memberConns: b.open, inflight: f.total, requests: l?.requests, aborts: l?.aborts, slowDone: l?.slowDone };
      samples.push(s);
      if (peer.child.exitInfo) throw new Error(`homing exited (${peer.child.exitInfo.code ?? peer.child.exitInfo.signal}) under load`);
      if (Date.now() - t0 >= nextLog) {
        nextLog += 60_000;
        h.log(`soak ${engine} ${s.t}s: RSS ${fmtNum(s.rssKiB / 1024, 1)} MiB, member connections ${s.memberConns}, in flight ${s.inflight}, ${fmtInt(s.requests)} requests`);
      }
      if (at >= seconds * 1000) break;
    }
    const loadS = (Date.now() - t0) / 1000;
    const counts = await load.stop();
    load = undefined;
    await sleep(SETTLE_MS);
    const b1 = await h.backend.stats();
    const after = { rssKiB: rssKiB([peer.child.pid]), memberConns: b1.open, inflight: await inflight(peer.adminPort) };

    // Checks.
    const baseAt = seconds >= 180 ? 60 : seconds / 3;
    const window = samples.filter((s) => s.t >= baseAt && s.t <= 2 * baseAt);
    const base = window.length ? window.reduce((a, b) => (b.rssKiB < a.rssKiB ? b : a)) : samples[0];
    const end = samples.at(-1);
    const rssRatio = end.rssKiB / base.rssKiB;
    const errors = counts?.errors ?? {};
    const errorTotal = Object.values(errors).reduce((a, n) => a + n, 0);
    const checks = {
      rss: { ok: rssRatio <= RSS_LIMIT, baseAtS: base.t, baseKiB: base.rssKiB, endKiB: end.rssKiB, ratio: rssRatio, limit: RSS_LIMIT },
      inflight: { ok: after.inflight.total === 0, after: after.inflight },
      members: { ok: after.memberConns <= POOL_CONNECTIONS, after: after.memberConns, idle: idle.memberConns, peakUnderLoad: Math.max(...samples.map((s) => s.memberConns)), limit: POOL_CONNECTIONS },
      errors: { ok: counts !== undefined && errorTotal === 0, total: errorTotal },
    };
    const section = 'soak';
    if (!checks.rss.ok) h.problem(section, `${engine}: RSS grew ${fmtNum(rssRatio)} × from ${fmtNum(base.rssKiB / 1024, 1)} MiB at ${base.t}s to ${fmtNum(end.rssKiB / 1024, 1)} MiB at ${end.t}s (limit ${RSS_LIMIT} ×)`);
    if (!checks.inflight.ok) h.problem(section, `${engine}: requests in flight ${SETTLE_MS / 1000}s after the load stopped: ${JSON.stringify(after.inflight)}`);
    if (!checks.members.ok) h.problem(section, `${engine}: ${after.memberConns} member connections open after the load, more than the pool's ${POOL_CONNECTIONS}`);
    if (counts === undefined) h.problem(section, `${engine}: the load generator did not report its counts`);
    else if (errorTotal) h.problem(section, `${engine}: ${errorTotal} client error(s): ${JSON.stringify(errors)}`);

    return {
      engine,
      label: peer.label,
      seconds: loadS,
      conns,
      clients: counts?.clients,
      requests: counts?.requests,
      rps: counts ? counts.requests / loadS : undefined,
      slowReads: counts?.slowDone,
      aborts: counts?.aborts,
      earlyAnswers: counts?.earlyAnswers,
      statuses: counts?.statuses,
      errors,
      backendRequests: b1.requests - b0.requests,
      backendConnectionsOpened: b1.connections - b0.connections,
      idle,
      after,
      checks,
      ok: Object.values(checks).every((c) => c.ok),
      samples,
    };
  } finally {
    if (load) await load.stop().catch(() => undefined);
    await peer.stop();
  }
}

export async function soakSection(h) {
  const o = h.opts;
  const seconds = Math.max(10, Math.round(o.soakMinutes * 60));
  const conns = o.connsHigh;
  const runs = {};
  for (const engine of o.soakEngines) {
    try {
      runs[engine] = await soakOne(h, engine, seconds, conns);
    } catch (e) {
      h.problem('soak', `${engine}: ${e?.stack ?? e}`);
      runs[engine] = { engine, error: String(e?.message ?? e) };
    }
  }
  const done = Object.values(runs).filter((r) => !r.error && !r.skipped);
  console.log(`\n== Soak: ${fmtNum(seconds / 60, 1)} min at c${conns} per engine (≈98% GETs, ≈1% 64 KiB POSTs cut mid-body, ≈1% slow 1 MiB reads); checks after ${SETTLE_MS / 1000} s without load`);
  const mib = (k) => fmtNum(k / 1024, 1);
  const yes = (c) => (c.ok ? 'ok' : 'FAIL');
  console.log(
    table(
      ['engine', 'min', 'requests', 'req/s', 'slow reads', 'cut POSTs', 'errors', 'RSS base MiB', 'RSS end MiB', 'end ÷ base', 'in flight after', 'member conns idle / peak / after'],
      done.map((r) => [
        r.engine,
        fmtNum(r.seconds / 60, 1),
        fmtInt(r.requests),
        fmtInt(r.rps),
        fmtInt(r.slowReads),
        fmtInt(r.aborts),
        fmtInt(r.checks.errors.total),
        `${mib(r.checks.rss.baseKiB)} (${r.checks.rss.baseAtS}s)`,
        mib(r.checks.rss.endKiB),
        `${fmtNum(r.checks.rss.ratio)} ${yes(r.checks.rss)}`,
        `${r.after.inflight.total ?? r.after.inflight.error} ${yes(r.checks.inflight)}`,
        `${r.idle.memberConns} / ${r.checks.members.peakUnderLoad} / ${r.after.memberConns} ${yes(r.checks.members)}`,
      ]),
    ),
  );
  for (const r of done) if (r.checks.errors.total) console.log(`${r.engine} errors: ${JSON.stringify(r.errors)}`);
  return { seconds, conns, runs };
}
