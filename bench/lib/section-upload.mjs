// Section "upload": POST requests with a body under wrk (a Lua script written to the temp dir sets
// the method and the body) through homing with its default request buffering (a body up to 64 KiB
// is read whole before a member connection is taken) and with `requestBuffering: false` (every
// body streams), against direct to the backend and nginx proxy_pass (which reads the whole body
// before it connects upstream: proxy_request_buffering on, its default). Two body sizes: 4 KiB
// (homing buffers it) and 256 KiB (over the 64 KiB buffer: homing streams it either way, so the
// two homing peers should match there). Peers are started once and measured in interleaved rounds.
// The backend reads every body to its end before it answers, and counts the bodies and bytes it
// read: each pass checks that every body arrived whole.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { directPeer, httpPost, startHoming, startNginx } from './peers.mjs';
import { fmtInt, fmtK, fmtNum, median, table } from './format.mjs';
import { measureSafe, peerSummary, startPeers, stripRaw } from './harness.mjs';

const SIZES = [
  { name: '4k', label: '4 KiB', bytes: 4 * 1024 },
  { name: '256k', label: '256 KiB', bytes: 256 * 1024 },
];

/** A wrk script sending POSTs with a `bytes`-long body: static (formatted once by wrk, cheap). */
function writeScript(h, bytes) {
  const file = path.join(h.tmp, `upload-${bytes}.lua`);
  writeFileSync(
    file,
    [
      `-- POST with a ${bytes}-byte body (wrk sets Content-Length from wrk.body).`,
      'wrk.method = "POST"',
      'wrk.headers["Content-Type"] = "application/octet-stream"',
      `wrk.body = string.rep("x", ${bytes})`,
      '',
    ].join('\n'),
  );
  return file;
}

export async function uploadSection(h) {
  const o = h.opts;
  const route = { name: 'bench', match: { path: '/' }, pool: 'bench', hash: { key: 'path', algorithm: 'ring' } };
  const starters = [
    ['direct', async () => directPeer(h)],
    // A body over client_body_buffer_size goes to a temp file with a warning per request: logged at
    // `error` so nginx does not also write a log line per 256 KiB request.
    ['nginx', () => startNginx(h, { keepalive: 512, errorLogLevel: 'error' })],
    [
      'homing-buffered',
      () => startHoming(h, { name: 'homing-buffered', label: 'homing, workers: 1, requestBuffering default (memory: 64KiB)', workers: 1, routes: [route] }),
    ],
    [
      'homing-streamed',
      () => startHoming(h, { name: 'homing-streamed', label: 'homing, workers: 1, requestBuffering: false', workers: 1, routes: [{ ...route, requestBuffering: false }] }),
    ],
  ];
  const { peers, skipped } = await startPeers(h, 'upload', starters);

  try {
    const scripts = Object.fromEntries(SIZES.map((s) => [s.name, writeScript(h, s.bytes)]));

    // Preflight: one POST per peer and size; the backend answers the number of body bytes it read.
    const preflight = {};
    for (const p of peers) {
      preflight[p.name] = {};
      for (const s of SIZES) {
        try {
          const r = await httpPost(p.url, Buffer.alloc(s.bytes, 'x'));
          preflight[p.name][s.name] = { status: r.status, answer: r.text.trim() };
          if (r.status !== 200 || r.text.trim() !== String(s.bytes))
            h.problem('upload', `${p.name} preflight POST ${s.label} ${p.url} → ${r.status}, "${r.text.trim().slice(0, 200)}" (want 200, "${s.bytes}")`);
        } catch (e) {
          preflight[p.name][s.name] = { error: e.message };
          h.problem('upload', `${p.name} preflight POST ${s.label} ${p.url} failed: ${e.message}`);
        }
      }
    }

    // Interleaved rounds at c64: each round measures every size, the starting peer rotating.
    const rounds = [];
    for (let r = 0; r < o.rounds; r++) {
      const bySize = {};
      for (const s of SIZES) {
        const order = peers.map((_, i) => peers[(i + r) % peers.length]);
        const runs = {};
        for (const p of order) {
          h.log(`round ${r + 1}/${o.rounds}: POST ${s.label} ${p.name} c${o.conns} ${o.seconds}s`);
          runs[p.name] = await measureSafe(h, 'upload', p, { conns: o.conns, seconds: o.seconds, warmupS: o.warmupS, script: scripts[s.name] }, `POST ${s.label} c${o.conns}`);
        }
        bySize[s.name] = runs;
      }
      rounds.push(bySize);
    }

    for (const [i, bySize] of rounds.entries()) {
      for (const s of SIZES) {
        for (const [name, run] of Object.entries(bySize[s.name])) {
          if (run.error) continue;
          const where = `${name} POST ${s.label} round ${i + 1}`;
          if (run.errors.total > 0) h.problem('upload', `${where}: ${run.errors.total} errors (${JSON.stringify(run.errors)})\n${run.wrkOutput}`);
          if (!run.bodies) h.problem('upload', `${where}: the backend read no request body to its end`);
          else if (run.bodyBytes !== run.bodies * s.bytes) h.problem('upload', `${where}: the backend read ${run.bodyBytes} bytes in ${run.bodies} bodies (want ${s.bytes} each)`);
        }
      }
    }

    const result = {
      method: { tool: 'wrk', threads: 1, conns: o.conns, rounds: o.rounds, seconds: o.seconds, warmupS: o.warmupS, request: 'POST', bodies: SIZES.map((s) => s.bytes) },
      peers: peers.map((p) => ({ name: p.name, label: p.label, url: p.url, config: p.config })),
      skipped,
      preflight,
      rounds: rounds.map((bySize) => Object.fromEntries(Object.entries(bySize).map(([size, runs]) => [size, Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, stripRaw(v)]))]))),
      summary: Object.fromEntries(SIZES.map((s) => [s.name, summarize(peers, rounds.map((bySize) => bySize[s.name]), s.bytes)])),
    };
    print(h, result);
    return result;
  } finally {
    for (const p of peers) await p.stop();
  }
}



function summarize(peers, rounds, bytes) {
  const ok = (r) => r && !r.error;
  const ratio = (runs, a, b) => (ok(runs[a]) && ok(runs[b]) && runs[b].rps ? runs[a].rps / runs[b].rps : undefined);
  const out = {};
  for (const p of peers) {
    const { summary } = peerSummary(p, rounds);
    out[p.name] = {
      ...summary,
      mibPerS: summary.rps === undefined ? undefined : (summary.rps * bytes) / 2 ** 20,
      vsStreamed: p.homing ? median(rounds.map((runs) => ratio(runs, p.name, 'homing-streamed'))) : undefined,
      vsDirect: median(rounds.map((runs) => ratio(runs, p.name, 'direct'))),
      vsNginx: median(rounds.map((runs) => ratio(runs, p.name, 'nginx'))),
    };
  }
  return out;
}

function print(h, r) {
  const o = h.opts;
  for (const s of SIZES) {
    const sum = r.summary[s.name];
    console.log(
      `\n== Upload: POST with a ${s.label} body (answer: a few bytes), wrk -t1 -c${o.conns}, ${o.rounds} round(s) × ${o.seconds}s (+${o.warmupS}s warm-up each), peers interleaved; medians; ratios = median of per-round ratios`,
    );
    const rows = Object.entries(sum).map(([name, x]) => [
      name,
      fmtInt(x.rps),
      x.rpsByRound.map((v) => fmtK(v ?? NaN)).join(' / '),
      fmtNum(x.mibPerS, 0),
      fmtNum(x.p50Ms),
      fmtNum(x.p99Ms),
      fmtInt(x.errors),
      fmtNum(x.proxyCpuUsPerReq, 1),
      fmtNum(x.proxyCpuPct, 0),
      fmtNum(x.vsStreamed),
      fmtNum(x.vsDirect),
      fmtNum(x.vsNginx),
      fmtNum(x.steadyOpenedPer1k, 2),
      fmtNum(x.otherCpuPct, 0),
    ]);
    console.log(
      table(['peer', 'req/s', 'by round', 'MiB/s', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/req', 'CPU %', '÷ streamed', '÷ direct', '÷ nginx', 'new upstream/1k', 'other %'], rows),
    );
  }
  for (const [name, why] of Object.entries(r.skipped)) console.log(`  (skipped ${name}: ${why.split('\n')[0]})`);
  console.log('  homing-buffered = requestBuffering default: a body up to 64 KiB is read whole before a member connection is taken,');
  console.log('  larger ones stream; homing-streamed = requestBuffering: false. At 256 KiB both homing peers stream the body: their');
  console.log('  ratio there differs from 1 only by noise.');
  console.log('  nginx buffers request bodies by default (proxy_request_buffering on): it reads the whole body before it connects');
  console.log('  upstream, and a body over client_body_buffer_size (two memory pages: 8 KiB on x86-64) goes to a temp file first.');
  console.log('  ÷ streamed = ÷ homing-streamed (homing rows); CPU % = the proxy\'s processes (100 = one core); MiB/s = body bytes;');
  console.log('  new upstream/1k = backend connections opened per 1000 requests mid-pass; other % = box busy minus proxy, backend and wrk.');
}
