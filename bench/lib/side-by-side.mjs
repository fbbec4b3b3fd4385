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
