// Section "affinity" (issue 3, Bench): NOT IMPLEMENTED YET — a hook with the harness's shape.
// To do, with the same harness `h`:
//   - throughput with affinity on a warm table within 10% of the plain balance route:
//       const aff = await startHoming(h, { name: 'homing-affinity', routes: [{ name: 'bench', match: { path: '/' },
//                                          pool: 'bench', affinity: { … } }] });
//       const bal = await startHoming(h, { name: 'homing-balance', routes: [{ name: 'bench', match: { path: '/' },
//                                          pool: 'bench', balance: 'round-robin' }] });
//       warm the table (wrk with a Lua script sending the learned key), then interleave
//       h.measure(aff, …) / h.measure(bal, …) over h.opts.rounds and take median per-round ratios;
//   - memory for 1 M learned keys (RSS of the homing process before/after, from /proc/<pid>/status);
//   - redirects per token for 1 instance, 2 workers, 2 instances + Redis (redis-server via
//     section-resp.mjs's startRedis pattern).
// Return a JSON-able result; print a table like section-http.mjs does.
export async function affinitySection(_h) {
  const skipped = 'not implemented yet (issue 3: affinity vs balance throughput, memory for 1 M keys, redirects per token)';
  console.log(`\n== Affinity: skipped — ${skipped}`);
  return { skipped };
}
