/**
 * Single flight: concurrent look-ups of one key share one call. The first caller starts it; every
 * caller that asks for the key while it runs gets the same promise; when it settles the key is
 * free again, so the next look-up starts a new call (nothing is cached here). A rejection reaches
 * every waiter and frees the key exactly like an answer does.
 *
 *   const reads = new SingleFlight<string, Value | undefined>();
 *   reads.run(key, () => fetchIt(key));   // one fetch however many ask at once
 */

/** One call in progress. */
export interface Flight<V> {
  /** Settles with the call: what every waiter gets. */
  readonly promise: Promise<V>;
  /** Callers sharing the call so far, the one that started it included. */
  readonly waiters: number;
}

interface OpenFlight<V> {
  promise: Promise<V>;
  waiters: number;
}

export class SingleFlight<K, V> {
  private readonly flights = new Map<K, OpenFlight<V>>();

  /**
   * The promise of the call in flight for `key`, or of `start(flight)` started now. `start` gets
   * its own flight, e.g. to read how many callers waited once it has its answer. The key is taken
   * before `start` runs (a synchronous re-entry joins the flight) and freed when the call settles,
   * before any waiter sees the outcome; a `start` that throws rejects the flight the same way.
   */
  run(key: K, start: (flight: Flight<V>) => Promise<V>): Promise<V> {
    const open = this.flights.get(key);
    if (open) {
      open.waiters++;
      return open.promise;
    }
    let resolve!: (v: V) => void;
    let reject!: (e: unknown) => void;
    const flight: OpenFlight<V> = {
      promise: new Promise<V>((res, rej) => {
        resolve = res;
        reject = rej;
      }),
      waiters: 1,
    };
    this.flights.set(key, flight);
    const free = (): void => {
      if (this.flights.get(key) === flight) this.flights.delete(key);
    };
    try {
      start(flight).then(
        (v) => {
          free();
          resolve(v);
        },
        (e: unknown) => {
          free();
          reject(e);
        },
      );
    } catch (e) {
      free();
      reject(e);
    }
    return flight.promise;
  }

  /** The flight in progress for `key`, without joining it. */
  get(key: K): Flight<V> | undefined {
    return this.flights.get(key);
  }

  /** Every flight in progress. */
  values(): IterableIterator<Flight<V>> {
    return this.flights.values();
  }

  /** Keys with a call in progress. */
  get size(): number {
    return this.flights.size;
  }
}
