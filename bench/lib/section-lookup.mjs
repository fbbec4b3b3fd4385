// Section "lookup" (issue 4, Bench): NOT IMPLEMENTED YET — a hook with the harness's shape.
// To do, with the same harness `h`: end-to-end throughput of
//   nginx → homing look-up (auth_request / lua-resty-redis against homing's RESP side) → backend
// against
//   nginx `hash $key consistent` → backend,
// both nginx confs rendered into h.tmp like startNginx() in peers.mjs (add a template under
// bench/peers/), measured with h.measure() in interleaved rounds, ratio = median of per-round ratios.
export async function lookupSection(_h) {
  const skipped = 'not implemented yet (issue 4: nginx → homing look-up → backend vs nginx hash $key consistent)';
  console.log(`\n== nginx → homing look-up: skipped — ${skipped}`);
  return { skipped };
}
