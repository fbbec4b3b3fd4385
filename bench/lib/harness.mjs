// The harness every bench section receives: options, a temp dir, the shared backend, a logger,
// `problem()` to report something that went wrong without stopping the run, and `measure()`
// (one wrk pass against a peer with the peer's CPU, the backend's new connections and the
// box's load around it).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLK_TCK, boxTicks, groupTicks, onCleanup } from './proc.mjs';
import { startBackend } from './peers.mjs';
import { wrk } from './wrk.mjs';
import { fmtInt, fmtK, fmtNum, median } from './format.mjs';

export async function createHarness(opts) {
  const t0 = Date.now();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'homing-bench-'));
  onCleanup(() => {
    if (opts.keepTmp) console.error(`bench: temp files kept in ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  });
  const ncpu = os.availableParallelism?.() ?? os.cpus().length;
  const bins = new Map();

  const h = {
    opts,
    tmp,
    ncpu,
    /** Everything that went wrong but did not stop the run; printed at the end and kept in the JSON. */
    problems: [],
    log(msg) {
      console.error(`[bench ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}`);
    },
    problem(section, msg) {
      h.problems.push({ section, message: msg });
      h.log(`PROBLEM (${section}): ${msg}`);
    },
    bin(cmd) {
      if (!bins.has(cmd)) {
        let p;
        try {
          p = execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || undefined;
        } catch {
          p = undefined;
        }
        bins.set(cmd, p);
      }
      return bins.get(cmd);
    },
    have(cmd) {
      return h.bin(cmd) !== undefined;
    },
    backend: undefined,

    /**
     * One measured wrk pass against `peer` ({url, pgids}), preceded by an unmeasured warm-up
     * pass at the same concurrency. Returns the wrk figures plus:
     *   proxyCpuUsPerReq   CPU (user+sys, all processes of the peer's groups) ÷ requests
     *   upstreamOpened     backend connections opened during the measured pass
     *   upstreamOpenedWarmup  … during the warm-up pass
     *   backendRequests / backendRequestsWarmup  requests the backend answered during the measured
     *                      pass / the warm-up pass (a cache hit answers none)
     *   steady             {seconds, opened, closed, requests} in a window from 20% to 90% of
     *                      the pass: churn without the connect burst and the end-of-run aborts
     *   boxBusyPct / otherCpuPct  the whole box's busy time and what is left after the proxy,
     *                      backend and wrk (other engineers' work; 100 = one core)
     *   bodies / bodyBytes (with a script only) request bodies the backend read whole during the
     *                      measured pass, and their bytes (a POST pass: bodyBytes ÷ bodies = the size sent)
     * `script`/`scriptArgs` go to wrk (a Lua script: a POST with a body…); without them wrk sends GETs.
     * `headers` ({name: value}) go on every request of both passes.
     */
    async measure(peer, { conns, seconds, warmupS = 0, script, scriptArgs, headers }) {
      const backend = h.backend;
      const s0 = await backend.stats();
      if (warmupS > 0) await wrk(peer.url, { conns, seconds: warmupS, script, scriptArgs, headers });
      const s1 = await backend.stats();
      const p1 = groupTicks(peer.pgids);
      const b1 = groupTicks(backend.pgids);
      const x1 = boxTicks();
      const w1 = Date.now();
      // Steady-state window inside the pass (skips the connect burst at its start and the aborted
      // in-flight requests at its end): backend connections opened ÷ requests served in it.
      const wrkRun = wrk(peer.url, { conns, seconds, script, scriptArgs, headers });
      const secs = Math.max(1, Math.round(seconds));
      const at = (ms) => new Promise((r) => setTimeout(r, Math.max(0, w1 + ms - Date.now())));
      const steady = (async () => {
        await at(Math.max(500, secs * 200));
        const a = await backend.stats();
        const ta = Date.now();
        await at(secs * 900);
        const b = await backend.stats();
        return { seconds: (Date.now() - ta) / 1000, opened: b.connections - a.connections, closed: b.closed - a.closed, requests: b.requests - a.requests };
      })().catch(() => undefined);
      const w = await wrkRun;
      const w2 = Date.now();
      const st = await steady;
      const x2 = boxTicks();
      const p2 = groupTicks(peer.pgids);
      const b2 = groupTicks(backend.pgids);
      const s2 = await backend.stats();
      const wallS = (w2 - w1) / 1000;
      const proxyCpuS = peer.pgids.length ? (p2.ticks - p1.ticks) / CLK_TCK : undefined;
      const backendCpuS = (b2.ticks - b1.ticks) / CLK_TCK;
      const boxBusyS = ((x2.busy - x1.busy) / (x2.total - x1.total || 1)) * ncpu * wallS;
      const pct = (s) => (s === undefined ? undefined : (100 * s) / wallS);
      return {
        peer: peer.name,
        conns,
        seconds,
        rps: w.rps,
        requests: w.requests,
        latencyMs: w.latencyMs,
        errors: w.errors,
        proxyCpuUsPerReq: proxyCpuS === undefined ? undefined : (proxyCpuS * 1e6) / w.requests,
        proxyCpuPct: pct(proxyCpuS),
        proxyProcesses: peer.pgids.length ? p2.pids.length : 0,
        backendCpuUsPerReq: (backendCpuS * 1e6) / w.requests,
        backendCpuPct: pct(backendCpuS),
        wrkCpuPct: pct(w.clientCpuS),
        boxBusyPct: pct(boxBusyS),
        otherCpuPct: pct(boxBusyS - (proxyCpuS ?? 0) - backendCpuS - (w.clientCpuS ?? 0)),
        upstreamOpenedWarmup: s1.connections - s0.connections,
        upstreamOpened: s2.connections - s1.connections,
        upstreamClosed: s2.closed - s1.closed,
        /** Mid-pass window: backend connections opened/closed and requests served in it. */
        steady: st,
        backendRequests: s2.requests - s1.requests,
        backendRequestsWarmup: s1.requests - s0.requests,
        ...(script ? { bodies: s2.bodies - s1.bodies, bodyBytes: s2.bodyBytes - s1.bodyBytes } : {}),
        backendOpenConnections: s2.open,
        wrkOutput: w.raw,
      };
    },
  };

  h.log(`temp dir ${tmp}; starting the backend`);
  h.backend = await startBackend(h);
  h.log(`backend on 127.0.0.1:${h.backend.port}`);
  return h;
}

/**
 * Start a section's peers: `starters` is [[name, async () => peer], …]. A peer that says
 * `skipped`, or fails to start, is left out and reported; the others are returned in order.
 */
export async function startPeers(h, section, starters) {
  const peers = [];
  const skipped = {};
  for (const [name, fn] of starters) {
    try {
      const p = await fn();
      if (p.skipped) {
        skipped[name] = p.skipped;
        h.log(`skip ${name}: ${p.skipped}`);
      } else {
        peers.push(p);
        h.log(`${name} up at ${p.url}${p.pgids.length ? ` (pid ${p.pgids.join(',')})` : ''}`);
      }
    } catch (e) {
      skipped[name] = `failed to start: ${e.message}`;
      h.problem(section, `${name} failed to start: ${e.message}`);
    }
  }
  return { peers, skipped };
}

/** One measured pass; a failure is reported as a problem of `section` (`what` names the pass) and returned as `{ error }`. */
export async function measureSafe(h, section, p, opts, what = `c${opts.conns}`) {
  try {
    return await h.measure(p, opts);
  } catch (e) {
    h.problem(section, `${p.name} ${what}: ${e.message}`);
    return { peer: p.name, conns: opts.conns, error: e.message };
  }
}

/** A pass for the results file: wrk's own output kept only when the pass had errors. */
export function stripRaw(run) {
  if (!run || run.error) return run;
  const { wrkOutput, ...rest } = run;
  return rest.errors?.total ? { ...rest, wrkOutput } : rest;
}

/**
 * A peer's passes over the rounds (`rounds`: [{ peer name → pass }]) and their medians: req/s,
 * latency, errors, CPU of the proxy and the backend, upstream connections opened mid-pass.
 */
export function peerSummary(p, rounds) {
  const ok = (r) => r && !r.error;
  const mine = rounds.map((runs) => runs[p.name]).filter(ok);
  return {
    mine,
    summary: {
      label: p.label,
        rps: median(mine.map((r) => r.rps)),
        rpsByRound: rounds.map((runs) => (ok(runs[p.name]) ? runs[p.name].rps : null)),
        p50Ms: median(mine.map((r) => r.latencyMs.p50)),
        p99Ms: median(mine.map((r) => r.latencyMs.p99)),
        errors: mine.reduce((a, r) => a + r.errors.total, 0),
        proxyCpuUsPerReq: median(mine.map((r) => r.proxyCpuUsPerReq)),
        proxyCpuPct: median(mine.map((r) => r.proxyCpuPct)),
        backendCpuUsPerReq: median(mine.map((r) => r.backendCpuUsPerReq)),
        otherCpuPct: median(mine.map((r) => r.otherCpuPct)),
        steadyOpenedPer1k: median(mine.map((r) => (r.steady?.requests ? (1000 * r.steady.opened) / r.steady.requests : undefined))),
      },
  };
}

/** The leading cells of a peer's row in a section's table: name, req/s (median and by round), p50, p99, errors, proxy CPU. */
export function summaryCells(name, x) {
  return [
    name,
    fmtInt(x.rps),
    x.rpsByRound.map((v) => fmtK(v ?? NaN)).join(' / '),
    fmtNum(x.p50Ms),
    fmtNum(x.p99Ms),
    fmtInt(x.errors),
    fmtNum(x.proxyCpuUsPerReq, 1),
    fmtNum(x.proxyCpuPct, 0),
  ];
}
