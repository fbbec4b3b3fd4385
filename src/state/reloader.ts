/**
 * The machinery of everything that re-reads a value from outside (member lists from a file, DNS or
 * HTTP; the directory's seed file): first load in `start`, then `refresh()` on a timer (and, for
 * files, on watch events), serialized so two loads never race, change detection, error
 * de-duplication, and a clean `stop`.
 *
 * `start` resolves after the first successful load and rejects when it fails (nothing must start
 * from nothing because its file is missing). After that a failed reload keeps the last good value
 * and goes to `onError`.
 */
export abstract class Reloader<T> {
  private onValue: ((value: T) => void) | undefined;
  private onError: ((err: Error) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private lastKey: string | undefined;
  private lastError: string | undefined;
  protected stopped = false;

  /**
   * @param pollMs re-load period in ms (0 = no timer; the subclass triggers `refresh` itself).
   * @param what what is reloaded, for messages ("member source").
   */
  constructor(
    private readonly pollMs: number,
    private readonly what = 'source',
  ) {}

  /** One load; rejects with a message naming the source. */
  protected abstract load(): Promise<T>;
  /** Canonical form of a value: a reload that yields the same one delivers nothing. */
  protected abstract fingerprint(value: T): string;
  /** Hook after the first load (e.g. start a file watcher). */
  protected afterStart(): void {}
  /** Hook on stop (close watchers, sockets). */
  protected async beforeStop(): Promise<void> {}

  /**
   * Load once (rejecting with a message that names the file/URL/name on failure), hand the value
   * to `onValue`, then keep watching. `onValue` is called again only when the value changes;
   * `onError` gets every later failure (deduplicated: the same failure twice in a row is reported
   * once) and any error `onValue` throws on a reload; the last good value stays in force.
   */
  async start(onValue: (value: T) => void, onError: (err: Error) => void): Promise<void> {
    if (this.onValue) throw new Error(`${this.what} already started`);
    this.onValue = onValue;
    this.onError = onError;
    let value: T;
    try {
      value = await this.load();
    } catch (e) {
      // Not started: the caller may fix the cause and call start again.
      this.onValue = undefined;
      this.onError = undefined;
      throw e;
    }
    if (this.stopped) return;
    this.lastKey = this.fingerprint(value);
    onValue(value);
    if (this.pollMs > 0) {
      this.timer = setInterval(() => void this.refresh(), this.pollMs);
      this.timer.unref();
    }
    this.afterStart();
  }

  /**
   * Re-load now. Concurrent calls coalesce: while a load runs, further calls schedule exactly one
   * more load after it (so an edit made during a load is never missed) and share its promise.
   * Never rejects: failures go to `onError`.
   */
  refresh(): Promise<void> {
    if (this.stopped || !this.onValue) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.reloadOnce();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async reloadOnce(): Promise<void> {
    let value: T;
    try {
      value = await this.load();
    } catch (e) {
      if (this.stopped) return;
      const err = e instanceof Error ? e : new Error(String(e));
      // The same failure every poll would flood the log: report it once until something changes.
      if (err.message !== this.lastError) {
        this.lastError = err.message;
        this.onError?.(err);
      }
      return;
    }
    if (this.stopped) return;
    this.lastError = undefined;
    const key = this.fingerprint(value);
    if (key === this.lastKey) return;
    this.lastKey = key;
    try {
      this.onValue?.(value);
    } catch (e) {
      this.onError?.(e instanceof Error ? e : new Error(String(e)));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.beforeStop();
    await this.running;
  }
}
