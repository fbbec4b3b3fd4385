// Two peers put under load AT THE SAME TIME (one `wrk` each), round after round, and the ratio of
// their CPU per request (user+sys of each peer's processes ÷ its requests) taken in every round.
// On a shared box a pass moves by ±10–15% from one to the next; two peers measured in the same
// seconds share that noise, so the ratio shows differences of a few percent that passes measured
// one after the other hide. The absolute figures are not a lone peer's: the two share the box.
import { readFileSync } from 'node:fs';
import { CLK_TCK, groupTicks } from './proc.mjs';
import { median } from './format.mjs';
import { wrk } from './wrk.mjs';

/**
 * Measure `pair` ([a, b], peers with `url` and `pgids`) side by side: a warm-up of both, then
 * `rounds` rounds of `seconds` at `conns` connections each (`wrkOptions`, e.g. a Lua script, go to
 * every wrk). `onRound(i, round)` hears each round. Returns the rounds and the medians of the
 * per-round ratios b ÷ a: CPU per request (below 1: b is cheaper), user CPU, and req/s.
 */
export async function sideBySide(pair, { conns, seconds, rounds, warmupS = 3, wrkOptions = {}, onRound = () => {} }) {
  await Promise.all(pair.map((p) => wrk(p.url, { ...wrkOptions, conns, seconds: warmupS })));
  const out = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = pair.map((p) => groupTicks(p.pgids).ticks);
    const u0 = pair.map((p) => userTicks(p.pgids));
    const runs = await Promise.all(pair.map((p) => wrk(p.url, { ...wrkOptions, conns, seconds })));
    const t1 = pair.map((p) => groupTicks(p.pgids).ticks);
    const u1 = pair.map((p) => userTicks(p.pgids));
    const perReq = (ticks, i) => (ticks / CLK_TCK / runs[i].requests) * 1e6;
    const round = {
      rps: runs.map((x) => x.rps),
      cpuUsPerReq: pair.map((_, i) => perReq(t1[i] - t0[i], i)),
      userUsPerReq: pair.map((_, i) => perReq(u1[i] - u0[i], i)),
      errors: runs.map((x) => x.errors),
    };
    round.cpuRatio = round.cpuUsPerReq[1] / round.cpuUsPerReq[0];
    round.userRatio = round.userUsPerReq[1] / round.userUsPerReq[0];
    round.rpsRatio = round.rps[1] / round.rps[0];
    out.push(round);
    onRound(r, round);
  }
  return { rounds: out, cpuRatio: median(out.map((x) => x.cpuRatio)), userRatio: median(out.map((x) => x.userRatio)), rpsRatio: median(out.map((x) => x.rpsRatio)) };
}

/**
 * A bench section's side-by-side measure of the two peers named `names` (when both run): half the
 * section's connections each, its seconds and warm-up, `rounds` rounds, each round logged with
 * `describe(round)`; errors and failures become the section's problems, under `label`. Returns
 * sideBySide's result with `conns`, or undefined (a peer missing, or the measure failed).
 */
export async function measureTogether(h, section, peers, names, { rounds, label, describe, wrkOptions }) {
  const pair = names.map((n) => peers.find((p) => p.name === n));
  if (!pair[0] || !pair[1]) return undefined;
  const o = h.opts;
  const conns = Math.max(1, Math.round(o.conns / 2));
  try {
    const r = await sideBySide(pair, { conns, seconds: o.seconds, rounds, warmupS: o.warmupS, wrkOptions, onRound: (i, x) => h.log(`${label} ${i + 1}/${rounds}: c${conns} each, ${describe(x)}`) });
    r.conns = conns;
    for (const x of r.rounds) for (const e of x.errors) if (e.total > 0) h.problem(section, `${label}: ${JSON.stringify(e)} errors`);
    return r;
  } catch (e) {
    h.problem(section, `${label}: ${e.message}`);
    return undefined;
  }
}

/** User-mode clock ticks of every process in `pgids`' groups. */
function userTicks(pgids) {
  let n = 0;
  for (const pid of groupTicks(pgids).pids) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      n += Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[11]);
    } catch {
      // gone meanwhile
    }
  }
  return n;
}
