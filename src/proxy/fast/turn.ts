/**
 * The fast engine's per-turn bookkeeping: what waits for the end of this turn of the event loop
 * (after every I/O callback of the turn: setImmediate), and the time read once per turn.
 * `turnNow` is Date.now() as of the turn's first ask: idle, head and request times and the Date
 * header are good to a turn (a few ms at most), and a busy turn serves many requests on one
 * clock read.
 */

let now = 0;
let waiting: (() => void)[] = [];
let spare: (() => void)[] = [];
let scheduled = false;

function turnEnded(): void {
  scheduled = false;
  now = 0;
  const list = waiting;
  waiting = spare;
  for (const fn of list) fn();
  list.length = 0;
  spare = list;
}

function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(turnEnded);
}

/** Date.now(), read once per turn of the event loop. */
export function turnNow(): number {
  if (now === 0) {
    now = Date.now();
    schedule();
  }
  return now;
}

/** `fn` runs at the end of this turn (once per call). */
export function atTurnEnd(fn: () => void): void {
  waiting.push(fn);
  schedule();
}
