#!/usr/bin/env node
// `npm run bench`: starts a backend, homing and its peers,
// drives them with wrk in interleaved rounds, prints tables of ratios, writes JSON to
// bench/results/<ISO timestamp>.json and bench/results/latest.json.
//
//   node --import tsx bench/run.mjs [--quick] [--only http,upload,resp,hash,affinity,lookup,bounded,directory,cache]
//        [--skip …] [--rounds N] [--seconds S] [--warmup S] [--conns N] [--conns-high N]
//        [--resp-requests N] [--hash-keys N] [--max-time S] [--no-install] [--keep-tmp]
//   node --import tsx bench/run.mjs --soak [--soak-minutes N] [--soak-engine fast|node|fast,node] [--conns-high N]
//
// Defaults: 3 rounds × 5 s at c64 (+1 s warm-up per pass), one c256 pass per proxy peer, RESP
// 3 rounds; --quick: 1 round × 2 s. `upload` measures POSTs (4 KiB and 256 KiB bodies) with and
// without homing's request buffering; `directory` measures a directory route with a warm cache
// against a plain balance route (Host rotating over 100 tenant hosts); `cache` measures cache hits
// of a route with `cache: true` against the same answer proxied, and against nginx proxy_cache.
// `--soak` runs only the soak section (never part of the default run): homing under steady mixed
// load at c256 for 10 minutes (`--soak-minutes`), checking RSS, requests in flight and member
// connections once the load stops.
// Every process started is killed on exit, Ctrl-C and errors.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installExitHandlers, stopAll } from './lib/proc.mjs';
import { createHarness } from './lib/harness.mjs';
import { httpSection } from './lib/section-http.mjs';
import { uploadSection } from './lib/section-upload.mjs';
import { respSection } from './lib/section-resp.mjs';
import { hashSection } from './lib/section-hash.mjs';
import { affinitySection } from './lib/section-affinity.mjs';
import { lookupSection } from './lib/section-lookup.mjs';
import { boundedSection } from './lib/section-bounded.mjs';
import { directorySection } from './lib/section-directory.mjs';
import { cacheSection } from './lib/section-cache.mjs';
import { soakSection } from './lib/section-soak.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(BENCH_DIR, '..');
const RESULTS_DIR = path.join(BENCH_DIR, 'results');

/** Sections in run order; each is `async (h) => JSON-able result`. */
const SECTIONS = {
  http: httpSection,
  upload: uploadSection,
  resp: respSection,
  affinity: affinitySection,
  lookup: lookupSection,
  bounded: boundedSection,
  directory: directorySection,
  cache: cacheSection,
  hash: hashSection, // last: runs in this process, with every peer stopped
  soak: soakSection, // only when asked for (--soak or --only soak)
};
/** Sections a run without --only leaves out. */
const ON_REQUEST = new Set(['soak']);

function parseArgs(argv) {
  const quick = argv.includes('--quick');
  const o = {
    quick,
    rounds: quick ? 1 : 3,
    // The http section's ratios carry its targets: 5 rounds by default, for a steadier median.
    httpRounds: quick ? 1 : 5,
    seconds: quick ? 2 : 5,
    warmupS: 1, // wrk takes whole seconds
    conns: 64,
    connsHigh: 256,
    respRounds: quick ? 1 : 3,
    respRequests: 200_000,
    respPipelinedFactor: 10, // -P 16 runs -n 10× as many requests so its CPU figure has enough clock ticks
    hashKeys: undefined,
    maxTimeS: quick ? 290 : 1100, // the whole run (about 800 s on a 2-core box); the upload section adds about 30 s (--quick) or 150 s, the directory section about 10 s or 50 s, the bounded section about 25 s or 90 s, the cache section about 30 s or 160 s
    install: true,
    keepTmp: false,
    only: undefined,
    skip: [],
    soakMinutes: 10,
    soakEngines: ['fast'],
  };
  let maxTimeGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const num = () => {
      const n = Number(val());
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${a} needs a positive number`);
      return n;
    };
    switch (a) {
      case '--quick':
        break;
      case '--rounds':
        o.rounds = o.respRounds = o.httpRounds = Math.round(num());
        break;
      case '--seconds':
        o.seconds = num();
        break;
      case '--warmup':
        o.warmupS = Number(val());
        break;
      case '--conns':
        o.conns = Math.round(num());
        break;
      case '--conns-high':
        o.connsHigh = Math.round(num());
        break;
      case '--resp-requests':
        o.respRequests = Math.round(num());
        break;
      case '--hash-keys':
        o.hashKeys = Math.round(num());
        break;
      case '--max-time':
        o.maxTimeS = num();
        maxTimeGiven = true;
        break;
      case '--soak':
        o.soak = true;
        break;
      case '--soak-minutes':
        o.soakMinutes = num();
        break;
      case '--soak-engine':
        o.soakEngines = val().split(',');
        for (const e of o.soakEngines) if (e !== 'fast' && e !== 'node') throw new Error(`--soak-engine takes fast, node or fast,node (not "${e}")`);
        break;
      case '--no-install':
        o.install = false;
        break;
      case '--keep-tmp':
        o.keepTmp = true;
        break;
      case '--only':
        o.only = val().split(',');
        break;
      case '--skip':
        o.skip = val().split(',');
        break;
      case '-h':
      case '--help':
        console.log(readHelp());
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${a} (see --help)`);
    }
  }
  if (o.soak) o.only = [...new Set([...(o.only ?? []), 'soak'])];
  // The soak's own duration per engine, plus start-up and settling.
  if (o.only?.includes('soak') && !maxTimeGiven) o.maxTimeS += o.soakMinutes * 60 * o.soakEngines.length + 120;
  for (const s of [...(o.only ?? []), ...o.skip]) if (!SECTIONS[s]) throw new Error(`unknown section "${s}" (have: ${Object.keys(SECTIONS).join(', ')})`);
  return o;
}

function readHelp() {
  return `usage: node --import tsx bench/run.mjs [--quick] [--only ${Object.keys(SECTIONS).join(',')}] [--skip …]
       [--rounds N] [--seconds S] [--warmup S] [--conns N] [--conns-high N] [--resp-requests N]
       [--hash-keys N] [--max-time S] [--no-install] [--keep-tmp]
       --soak [--soak-minutes N (10)] [--soak-engine fast|node|fast,node] [--conns-high N (256)]`;
}

function version(cmd, args) {
  try {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
    return (r.stdout + r.stderr).split('\n').find((l) => l.trim())?.trim();
  } catch {
    return undefined;
  }
}

function machine() {
  let commit;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    /* not a git checkout */
  }
  return {
    host: os.hostname(),
    cpus: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    node: process.version,
    loadavgAtStart: os.loadavg(),
    commit,
    versions: {
      wrk: version('wrk', ['-v']),
      nginx: version('nginx', ['-v']),
      redis: version('redis-server', ['--version']),
    },
  };
}

function installDeps(h) {
  const script = path.join(REPO, 'scripts/install-system-deps.sh');
  h.log('checking system packages (scripts/install-system-deps.sh)');
  const r = spawnSync('bash', [script], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
  if (r.status !== 0) h.problem('setup', `scripts/install-system-deps.sh exited ${r.status ?? r.signal}; continuing with what is installed`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const out = { startedAt: startedAt.toISOString(), options: opts, machine: machine(), sections: {}, problems: [] };
  let h;
  let written = false;
  const write = (status) => {
    if (written) return;
    written = true;
    out.finishedAt = new Date().toISOString();
    out.status = status;
    out.machine.loadavgAtEnd = os.loadavg();
    out.problems = h?.problems ?? out.problems;
    mkdirSync(RESULTS_DIR, { recursive: true });
    const file = path.join(RESULTS_DIR, `${startedAt.toISOString().replaceAll(':', '-')}.json`);
    const json = JSON.stringify(out, null, 2) + '\n';
    writeFileSync(file, json);
    writeFileSync(path.join(RESULTS_DIR, 'latest.json'), json);
    console.error(`bench: results written to ${path.relative(process.cwd(), file)} (and bench/results/latest.json)`);
  };
  const fatal = installExitHandlers((why) => write(`aborted: ${why.split('\n')[0]}`));
  const deadline = setTimeout(() => fatal(`time budget of ${opts.maxTimeS}s exceeded (--max-time)`, 1), opts.maxTimeS * 1000);
  deadline.unref();

  const log = (m) => console.error(`[bench] ${m}`);
  if (opts.install) installDeps({ log, problem: (s, m) => (log(`PROBLEM (${s}): ${m}`), out.problems.push({ section: s, message: m })) });
  if (spawnSync('sh', ['-c', 'command -v wrk']).status !== 0) throw new Error('wrk is not installed (scripts/install-system-deps.sh installs it)');

  const earlyProblems = out.problems;
  h = await createHarness(opts);
  h.problems.unshift(...earlyProblems);
  const load = os.loadavg()[0];
  h.log(`${out.machine.cpus} CPUs, load average ${load.toFixed(2)}${load > 0.5 ? ' — the box is busy; expect noisy figures' : ''}`);
  out.backend = { port: h.backend.port };

  for (const [name, fn] of Object.entries(SECTIONS)) {
    if (opts.only && !opts.only.includes(name)) continue;
    if (!opts.only && ON_REQUEST.has(name)) continue;
    if (opts.skip.includes(name)) continue;
    h.log(`section ${name}`);
    try {
      out.sections[name] = await fn(h);
    } catch (e) {
      h.problem(name, `section failed: ${e?.stack ?? e}`);
      out.sections[name] = { error: String(e?.message ?? e) };
    }
  }

  const busy = os.loadavg()[0];
  console.log(`\nbox: ${out.machine.cpus} CPUs, load average ${out.machine.loadavgAtStart[0].toFixed(2)} at start, ${busy.toFixed(2)} at end (other work on the box makes figures noisy; compare ratios)`);
  if (h.problems.length) {
    console.log(`\n${h.problems.length} problem(s):`);
    for (const p of h.problems) console.log(`  - [${p.section}] ${p.message.split('\n')[0]}`);
  }
  await stopAll();
  write(h.problems.length ? 'done with problems' : 'ok');
  clearTimeout(deadline);
}

main().catch(async (e) => {
  console.error(`bench: ${e?.stack ?? e}`);
  await stopAll();
  process.exit(1);
});
