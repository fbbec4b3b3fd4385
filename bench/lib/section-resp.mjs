// Section "resp": `redis-benchmark -t get -c 50` against redis-server and against
// homing's RESP side (`resp: { address, route: bench }`), with and without -P 16, interleaved in
// rounds; ops/s and the server's CPU per op. homing's RESP side is detected by PING on its port;
// when it does not answer, only redis-server is measured.
// Targets: homing ≥ 0.6 × redis-server unpipelined, ≥ 0.25 × with -P 16.
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { CLK_TCK, freePort, groupTicks, start, stop } from './proc.mjs';
import { startHoming, tail, waitRespPing } from './peers.mjs';
import { redisBenchmark } from './wrk.mjs';
import { fmtInt, fmtNum, median, table } from './format.mjs';

const TARGETS = { 1: 0.6, 16: 0.25 };

async function startRedis(h) {
  if (!h.have('redis-server')) return { skipped: 'redis-server not installed' };
  const dir = path.join(h.tmp, 'redis');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const child = start('redis-server', h.bin('redis-server'), [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--protected-mode', 'no', '--dir', dir, '--logfile', path.join(dir, 'redis.log'),
  ], { logFile: path.join(dir, 'stdout.log') });
  if (!(await waitRespPing(port, 5000))) {
    await stop(child);
    throw new Error(`redis-server did not answer PING on ${port}: ${tail(path.join(dir, 'redis.log'))}`);
  }
  return { name: 'redis-server', port, pgids: [child.pid], child, stop: () => stop(child) };
}

async function startHomingResp(h) {
  const respPort = await freePort();
  let p;
  try {
    p = await startHoming(h, { name: 'homing-resp', label: 'homing RESP, workers: 1', workers: 1, extra: { resp: { address: `127.0.0.1:${respPort}`, route: 'bench' } } });
  } catch (e) {
    return { skipped: `homing with a resp: section did not start: ${e.message.split('\n')[0]}` };
  }
  if (p.skipped) return p;
  if (!(await waitRespPing(respPort, 3000))) {
    await p.stop();
    return { skipped: `homing's RESP side is absent (no +PONG on 127.0.0.1:${respPort})` };
  }
  return { ...p, name: 'homing', port: respPort };
}

export async function respSection(h) {
  const o = h.opts;
  if (!h.have('redis-benchmark')) {
    console.log('\n== RESP: skipped — redis-benchmark not installed');
    return { skipped: 'redis-benchmark not installed' };
  }
  const targets = [];
  const skipped = {};
  for (const [name, fn] of [['redis-server', startRedis], ['homing', startHomingResp]]) {
    try {
      const t = await fn(h);
      if (t.skipped) {
        skipped[name] = t.skipped;
        h.log(`resp: skip ${name}: ${t.skipped}`);
      } else targets.push(t);
    } catch (e) {
      skipped[name] = e.message;
      h.problem('resp', `${name}: ${e.message}`);
    }
  }
  try {
    const rounds = [];
    for (let r = 0; r < o.respRounds; r++) {
      const runs = {};
      for (const P of [1, 16]) {
        for (const t of r % 2 ? [...targets].reverse() : targets) {
          const n = P === 1 ? o.respRequests : o.respRequests * o.respPipelinedFactor;
          h.log(`resp round ${r + 1}/${o.respRounds}: ${t.name} -P ${P} -n ${n}`);
          try {
            const c0 = groupTicks(t.pgids);
            const b = await redisBenchmark(t.port, { test: 'get', clients: 50, requests: n, pipeline: P });
            const c1 = groupTicks(t.pgids);
            runs[`${t.name} P${P}`] = {
              target: t.name,
              pipeline: P,
              requests: n,
              rps: b.rps,
              p50Ms: b.p50Ms,
              serverCpuUsPerOp: (((c1.ticks - c0.ticks) / CLK_TCK) * 1e6) / n,
              clientCpuS: b.clientCpuS,
            };
          } catch (e) {
            h.problem('resp', `${t.name} -P ${P}: ${e.message}`);
            runs[`${t.name} P${P}`] = { target: t.name, pipeline: P, error: e.message };
          }
        }
      }
      rounds.push(runs);
    }
    const summary = {};
    for (const t of targets) {
      for (const P of [1, 16]) {
        const k = `${t.name} P${P}`;
        const mine = rounds.map((x) => x[k]).filter((x) => x && !x.error);
        summary[k] = {
          target: t.name,
          pipeline: P,
          rps: median(mine.map((x) => x.rps)),
          p50Ms: median(mine.map((x) => x.p50Ms)),
          serverCpuUsPerOp: median(mine.map((x) => x.serverCpuUsPerOp)),
          vsRedis:
            t.name === 'redis-server'
              ? 1
              : median(rounds.map((x) => (x[k]?.rps && x[`redis-server P${P}`]?.rps ? x[k].rps / x[`redis-server P${P}`].rps : undefined))),
          goal: t.name === 'homing' ? TARGETS[P] : undefined,
        };
      }
    }
    const result = { method: { tool: 'redis-benchmark', test: 'get', clients: 50, requestsP1: o.respRequests, requestsP16: o.respRequests * o.respPipelinedFactor, rounds: o.respRounds }, skipped, rounds, summary };
    console.log(`\n== RESP: redis-benchmark -t get -c 50 (-n ${o.respRequests} unpipelined, ${o.respRequests * o.respPipelinedFactor} with -P 16), ${o.respRounds} round(s), medians`);
    console.log(
      table(
        ['server', 'pipeline', 'ops/s', 'p50 ms', 'server CPU µs/op', '÷ redis-server', 'target'],
        Object.values(summary).map((x) => [
          x.target,
          x.pipeline === 1 ? '-P 1' : `-P ${x.pipeline}`,
          fmtInt(x.rps),
          fmtNum(x.p50Ms, 3),
          fmtNum(x.serverCpuUsPerOp, 2),
          fmtNum(x.vsRedis),
          x.goal === undefined ? '' : `≥ ${x.goal} ${x.vsRedis >= x.goal ? 'PASS' : 'FAIL'}`,
        ]),
      ),
    );
    for (const [name, why] of Object.entries(skipped)) console.log(`  (skipped ${name}: ${why.split('\n')[0]})`);
    return result;
  } finally {
    for (const t of targets) await t.stop();
  }
}
