// Section "cache": NOT IMPLEMENTED YET — a hook with the harness's shape.
// To do, with the same harness `h`: cache-hit throughput against the proxied path —
// startHoming(h, { routes: [{ …, cache: true }] }) vs the plain route, h.measure() in interleaved
// rounds, ratio = median of per-round ratios; backend requests per run (h.measure's
// backendRequests) show the hit rate.
export async function cacheSection(_h) {
  const skipped = 'not implemented yet (cache-hit throughput vs the proxied path)';
  console.log(`\n== Cache: skipped — ${skipped}`);
  return { skipped };
}
