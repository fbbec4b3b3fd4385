// wrk and redis-benchmark drivers: run one pass, parse what they print. Each is wrapped in
// `sh -c '…; cat /proc/$$/stat'` so the shell's cutime/cstime (wrk's own CPU, reaped by the
// shell) tell how much of the box the load generator itself used.
import { run, CLK_TCK } from './proc.mjs';

const WRAP = 'cmd="$1"; shift; "$cmd" "$@"; rc=$?; echo "BENCH_WRAPSTAT $(cat /proc/$$/stat)"; exit $rc';

function clientTicks(out) {
  const m = /BENCH_WRAPSTAT (.*)$/m.exec(out);
  if (!m) return undefined;
  const f = m[1].slice(m[1].lastIndexOf(')') + 2).split(' ');
  return Number(f[13]) + Number(f[14]); // cutime + cstime of the shell = the client's CPU
}

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function toMs(v) {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(v.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]] : NaN;
}

/** Parses wrk's output (with --latency). */
export function parseWrk(out) {
  const num = (re) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : undefined;
  };
  const pct = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out);
    return m ? toMs(m[1]) : undefined;
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = {
    connect: sock ? Number(sock[1]) : 0,
    read: sock ? Number(sock[2]) : 0,
    write: sock ? Number(sock[3]) : 0,
    timeout: sock ? Number(sock[4]) : 0,
    non2xx3xx: num(/Non-2xx or 3xx responses: (\d+)/) ?? 0,
  };
  errors.total = errors.connect + errors.read + errors.write + errors.timeout + errors.non2xx3xx;
  return {
    requests: num(/^\s*(\d+) requests in/m),
    seconds: (() => {
      const m = /requests in ([\d.]+\w+),/.exec(out);
      return m ? toMs(m[1]) / 1000 : undefined;
    })(),
    rps: num(/^Requests\/sec:\s+([\d.]+)/m),
    latencyMs: { p50: pct(50), p75: pct(75), p90: pct(90), p99: pct(99) },
    errors,
  };
}

/**
 * One wrk pass: `wrk -t1 -c<conns> -d<seconds>s --latency [-H <header>…] [-s <script>] <url> [-- <scriptArgs…>]`.
 * `script` is a Lua file (a POST with a body, rotating headers…); without it wrk sends GETs.
 * `headers` ({name: value}) go on every request.
 */
export async function wrk(url, { conns = 64, seconds = 5, threads = 1, timeoutS, script, scriptArgs = [], headers = {} } = {}) {
  // wrk takes whole seconds only.
  const args = [`-t${threads}`, `-c${conns}`, `-d${Math.max(1, Math.round(seconds))}s`, '--latency'];
  if (timeoutS) args.push(`--timeout`, `${timeoutS}s`);
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  if (script) args.push('-s', script);
  args.push(url);
  if (script && scriptArgs.length) args.push('--', ...scriptArgs.map(String));
  const r = await run('wrk', 'sh', ['-c', WRAP, 'sh', 'wrk', ...args]);
  if (r.code !== 0) throw new Error(`wrk exited ${r.code ?? r.signal}: ${(r.err.trim() || r.out.replace(/^BENCH_WRAPSTAT.*$/m, '').trim()).slice(0, 800)}`);
  const parsed = parseWrk(r.out);
  if (parsed.rps === undefined || parsed.requests === undefined) throw new Error(`cannot parse wrk output:\n${r.out}\n${r.err}`);
  const ticks = clientTicks(r.out);
  return {
    ...parsed,
    clientCpuS: ticks === undefined ? undefined : ticks / CLK_TCK,
    raw: r.out.replace(/^BENCH_WRAPSTAT.*\n?/m, ''),
  };
}

/** One redis-benchmark pass (-q); returns {rps, p50Ms, clientCpuS, raw}. */
export async function redisBenchmark(port, { test = 'get', clients = 50, requests = 200_000, pipeline = 1 } = {}) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-t', test, '-c', String(clients), '-n', String(requests), '-q'];
  if (pipeline > 1) args.push('-P', String(pipeline));
  const r = await run('redis-benchmark', 'sh', ['-c', WRAP, 'sh', 'redis-benchmark', ...args]);
  const lines = (r.out + '\n' + r.err).split(/[\r\n]+/);
  const line = lines.filter((l) => new RegExp(`^${test.toUpperCase()}: [\\d.]+ requests per second`).test(l)).pop();
  if (r.code !== 0 || !line) throw new Error(`redis-benchmark exited ${r.code ?? r.signal}: ${(r.err + r.out).replace(/^BENCH_WRAPSTAT.*$/m, '').trim().slice(-800)}`);
  const ticks = clientTicks(r.out);
  return {
    rps: Number(/: ([\d.]+) requests per second/.exec(line)[1]),
    p50Ms: (() => {
      const m = /p50=([\d.]+) msec/.exec(line);
      return m ? Number(m[1]) : undefined;
    })(),
    requests,
    clientCpuS: ticks === undefined ? undefined : ticks / CLK_TCK,
    raw: line,
  };
}
