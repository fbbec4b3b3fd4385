/** Reading the admin API in tests: its event stream (`GET /api/v1/events`) and /metrics sums. */
import { request } from 'undici';
import { WAIT } from './backends.js';

export interface AdminEvent {
  event: string;
  // The payloads are the admin's JSON; tests read the fields they check.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

export interface EventStream {
  status: number;
  contentType: string;
  /** The next event (after those already taken) for which `pred` holds; rejects after `ms`. */
  next(pred?: (e: AdminEvent) => boolean, ms?: number): Promise<AdminEvent>;
  close(): void;
}

/** Open the stream at `adminUrl` (with `token` as a bearer when given). */
export async function openEvents(adminUrl: string, token?: string): Promise<EventStream> {
  const ac = new AbortController();
  const r = await request(`${adminUrl}/api/v1/events`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: ac.signal });
  const queue: AdminEvent[] = [];
  let wake: (() => void) | undefined;
  let ended: Error | undefined;
  let buf = '';
  r.body.setEncoding('utf8');
  r.body.on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) queue.push({ event, data: JSON.parse(data.join('\n')) });
    }
    wake?.();
  });
  const end = (e: Error): void => {
    ended = e;
    wake?.();
  };
  r.body.on('end', () => end(new Error('the event stream ended')));
  r.body.on('error', (e: Error) => end(e));
  return {
    status: r.statusCode,
    contentType: String(r.headers['content-type']),
    async next(pred = () => true, ms = WAIT) {
      const deadline = Date.now() + ms;
      for (;;) {
        const i = queue.findIndex(pred);
        if (i >= 0) return queue.splice(0, i + 1)[i]!;
        queue.length = 0;
        if (ended) throw ended;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no matching event within ${ms} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(t);
            wake = undefined;
            resolve();
          };
        });
      }
    },
    close() {
      ac.abort();
      r.body.destroy();
    },
  };
}

/** Sum of the samples of `name` whose labels include every `labels` pair, from a /metrics text. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) n += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return n;
}
