// Process bookkeeping for the bench: every process the bench starts is spawned in its own
// process group (detached), tracked here, and killed (the whole group, by id) on exit,
// Ctrl-C, SIGTERM or an uncaught error. Also: CPU time of a process group from /proc.
import { spawn, fork, execFileSync } from 'node:child_process';
import { createWriteStream, readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

/** @type {Set<import('node:child_process').ChildProcess>} */
const live = new Set();
let cleanupHooks = [];
let installed = false;
let shuttingDown = false;

function refuseWhenStopping(name) {
  if (shuttingDown) throw new Error(`not starting ${name}: the bench is stopping`);
}

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function track(child, name, logFile) {
  child.benchName = name;
  live.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      child.exitInfo = { code, signal };
      resolve(child.exitInfo);
    });
    child.once('error', (err) => {
      child.spawnError = err;
      if (child.pid === undefined) {
        // never started (ENOENT…): no 'exit' will follow
        live.delete(child);
        child.exitInfo = { code: -1, signal: null, error: err };
        resolve(child.exitInfo);
      }
    });
  });
  if (logFile) {
    const out = createWriteStream(logFile, { flags: 'a' });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    child.logFile = logFile;
  }
  return child;
}

/** Spawns `cmd args` in its own process group; stdout+stderr go to `logFile` unless `capture`. */
export function start(name, cmd, args, { logFile, capture = false, env, cwd } = {}) {
  refuseWhenStopping(name);
  const child = spawn(cmd, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: env ?? process.env,
    cwd,
  });
  track(child, name, capture ? undefined : logFile);
  if (capture) {
    child.out = '';
    child.err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (child.out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (child.err += d));
  }
  return child;
}

/** Forks a Node script with an IPC channel, in its own process group. */
export function startNode(name, script, args, { logFile, env, execArgv = [] } = {}) {
  refuseWhenStopping(name);
  const child = fork(script, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: env ?? process.env,
    execArgv,
  });
  return track(child, name, logFile);
}

/** Runs a command to completion (tracked, so Ctrl-C kills it); resolves {code, out, err}. */
export async function run(name, cmd, args, opts = {}) {
  const child = start(name, cmd, args, { ...opts, capture: true });
  const info = await child.exited;
  return { code: info.code, signal: info.signal, out: child.out, err: child.err + (info.error ? String(info.error) : '') };
}

function killGroup(child, signal) {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* gone */
    }
  }
}

/** Stops one tracked process group: `signal`, then SIGKILL after `graceMs`. */
export async function stop(child, { signal = 'SIGTERM', graceMs = 2000 } = {}) {
  if (!child || !live.has(child)) {
    if (child?.pid !== undefined) killGroup(child, 'SIGKILL'); // stray group members
    return;
  }
  killGroup(child, signal);
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(timer);
  killGroup(child, 'SIGKILL'); // workers left behind in the group, if any
}

export async function stopAll() {
  shuttingDown = true;
  await Promise.all([...live].map((c) => stop(c)));
  for (const hook of cleanupHooks.splice(0)) {
    try {
      await hook();
    } catch {
      /* best effort */
    }
  }
}

/** Registers an extra cleanup step (temp dirs…), run by stopAll. */
export function onCleanup(fn) {
  cleanupHooks.push(fn);
}

/**
 * Installs the exit handlers once: SIGINT/SIGTERM/SIGHUP and uncaught errors stop everything
 * and exit non-zero; a plain process exit SIGKILLs whatever is still alive.
 */
export function installExitHandlers(onFatal) {
  if (installed) return;
  installed = true;
  let stopping = false;
  const fatal = async (why, code) => {
    if (stopping) return;
    stopping = true;
    console.error(`\nbench: ${why}; stopping every process it started…`);
    try {
      await onFatal?.(why);
    } catch {
      /* ignore */
    }
    await stopAll();
    process.exit(code);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => fatal(`received ${sig}`, 130));
  process.on('uncaughtException', (err) => fatal(`uncaught error: ${err?.stack ?? err}`, 1));
  process.on('unhandledRejection', (err) => fatal(`unhandled rejection: ${err?.stack ?? err}`, 1));
  process.on('exit', () => {
    for (const c of live) killGroup(c, 'SIGKILL');
  });
  return fatal;
}

/** A free TCP port on 127.0.0.1 (bind port 0, read, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc

function readStat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    return {
      pid: Number(pid),
      ppid: Number(f[1]),
      pgrp: Number(f[2]),
      // utime + stime + cutime + cstime: a child reaped during the run moves into its parent's c*time.
      ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]),
    };
  } catch {
    return undefined;
  }
}

/** Clock ticks used so far by every live process in the given process groups. */
export function groupTicks(pgids) {
  const want = new Set(pgids.filter((p) => p !== undefined));
  let ticks = 0;
  const pids = [];
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    const st = readStat(name);
    if (st && want.has(st.pgrp)) {
      ticks += st.ticks;
      pids.push(st.pid);
    }
  }
  return { ticks, pids };
}

/** Busy and total jiffies of the whole box (all CPUs) from /proc/stat. */
export function boxTicks() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3] + (v[4] ?? 0); // idle + iowait
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal (guest is inside user)
  return { busy: total - idle, total };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** One GET answering JSON; resolves {status, body} (body undefined when not JSON). */
export function getJson(url, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let body;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode, body });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}
