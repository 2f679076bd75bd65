// ByteBudget: a server-wide allowance of payload bytes (read replies being produced or
// waiting to be sent, write payloads being applied). Every connection takes from the one
// budget, so the server's buffer memory is bounded by the budget however many clients
// there are and however few of their replies they read. A request waits (in arrival order)
// until its bytes fit; one request always fits when nothing else holds the budget, so a
// request as large as the maximum payload is never stuck.

interface Waiter {
  bytes: number;
  resolve(): void;
  reject(error: unknown): void;
}

export class ByteBudget {
  readonly limitBytes: number;
  #usedBytes = 0;
  readonly #waiters: Waiter[] = [];

  constructor(limitBytes: number) {
    this.limitBytes = limitBytes;
  }

  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** Take `bytes`, waiting while they do not fit; rejects with the signal's reason on abort. */
  acquire(bytes: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#waiters.length === 0 && this.#fits(bytes)) {
      this.#usedBytes += bytes;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(signal.reason);
        this.#wake(); // the queue's head may have changed
      };
      const waiter: Waiter = {
        bytes,
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  release(bytes: number): void {
    this.#usedBytes -= bytes;
    this.#wake();
  }

  #fits(bytes: number): boolean {
    return this.#usedBytes === 0 || this.#usedBytes + bytes <= this.limitBytes;
  }

  #wake(): void {
    while (this.#waiters.length > 0 && this.#fits(this.#waiters[0].bytes)) {
      const waiter = this.#waiters.shift()!;
      this.#usedBytes += waiter.bytes;
      waiter.resolve();
    }
  }
}
