// `npm run bench:ab -- [--base <git rev>] [--engine fast|node] [--rounds N] [--seconds S] [--conns N]`
//
// Before/after for a change on the hot path: homing built from `--base` (HEAD by default: the last
// commit, against the working tree) and homing built from the working tree, both with the bench's
// hash route in front of one backend, put under load AT THE SAME TIME (one `wrk` each, --conns
// each), round after round. On a shared box a pass moves by ±10–15% from one to the next; two
// builds measured in the same seconds share that noise, so the ratio of their CPU per request
// (user+sys of each process ÷ its requests) shows differences of a few percent that interleaved
// passes hide. Prints each round and the medians of the per-round ratios (working tree ÷ base; below
// 1 is cheaper). The absolute figures are not the bench's: two proxies share the box here.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHarness } from './lib/harness.mjs';
import { REPO, startHoming } from './lib/peers.mjs';
import { installExitHandlers, onCleanup, stopAll } from './lib/proc.mjs';
import { sideBySide } from './lib/side-by-side.mjs';

function parseArgs(argv) {
  const o = { base: 'HEAD', engine: 'fast', rounds: 9, seconds: 5, conns: 32 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--base') o.base = v;
    else if (a === '--engine') {
      if (v !== 'fast' && v !== 'node') throw new Error('--engine is fast or node');
      o.engine = v;
    } else if (a === '--rounds' || a === '--seconds' || a === '--conns') {
      const n = Number(v);
      if (!(Number.isInteger(n) && n > 0)) throw new Error(`${a} needs a positive whole number`);
      o[a.slice(2)] = n;
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

/** A worktree of `rev`, built: its CLI. */
function buildBase(rev) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'homing-ab-'));
  execFileSync('git', ['worktree', 'add', '--detach', dir, rev], { cwd: REPO, stdio: 'ignore' });
  onCleanup(() => {
    execFileSync('git', ['worktree', 'remove', '--force', dir], { cwd: REPO, stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });
  symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'));
  execFileSync(process.execPath, [path.join(REPO, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' });
  return path.join(dir, 'dist/cli/main.js');
}

const o = parseArgs(process.argv.slice(2));
installExitHandlers();
try {
  const rev = execFileSync('git', ['rev-parse', '--short', o.base], { cwd: REPO, encoding: 'utf8' }).trim();
  console.error(`bench:ab: building ${o.base} (${rev}) and the working tree`);
  const baseCli = buildBase(o.base);
  execFileSync(process.execPath, [path.join(REPO, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: REPO, stdio: 'inherit' });
  const h = await createHarness({ rounds: o.rounds, seconds: o.seconds, warmupS: 1, conns: o.conns });
  const base = await startHoming(h, { name: 'base', label: `homing ${rev}`, engine: o.engine, cli: baseCli });
  const work = await startHoming(h, { name: 'work', label: 'homing, working tree', engine: o.engine });
  for (const p of [base, work]) if (p.skipped) throw new Error(`${p.name}: ${p.skipped}`);
  const pair = [base, work];
  console.log(`== A/B, engine: ${o.engine}: ${rev} (base) and the working tree, wrk -t1 -c${o.conns} on each at once, ${o.rounds} round(s) × ${o.seconds}s`);
  const ab = await sideBySide(pair, {
    conns: o.conns,
    seconds: o.seconds,
    rounds: o.rounds,
    onRound: (r, x) => {
      console.log(
        `round ${r + 1}: base ${Math.round(x.rps[0])} req/s ${x.cpuUsPerReq[0].toFixed(1)} µs/req (user ${x.userUsPerReq[0].toFixed(1)}) | ` +
          `working tree ${Math.round(x.rps[1])} req/s ${x.cpuUsPerReq[1].toFixed(1)} µs/req (user ${x.userUsPerReq[1].toFixed(1)}) | ratio ${x.cpuRatio.toFixed(3)}`,
      );
      for (const e of x.errors) if (e.total > 0) console.log(`  errors: ${JSON.stringify(e)}`);
    },
  });
  console.log(`working tree ÷ base, median of ${o.rounds}: CPU per request ${ab.cpuRatio.toFixed(3)}, user CPU per request ${ab.userRatio.toFixed(3)}`);
} finally {
  await stopAll();
}
process.exit(0);

