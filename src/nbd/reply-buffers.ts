// ReplyBufferPool: read reply buffers kept for reuse once the socket has taken a reply (a
// copy reads one request size millions of times; allocating 32 MiB per request would churn
// the heap). Shared by all connections of a server and capped in total bytes, so idle
// buffers never add more than `limitBytes` to the server's memory.

/** Distinct buffer sizes kept at once (clients use one or two request sizes). */
const MAX_SIZES = 4;

export class ReplyBufferPool {
  readonly limitBytes: number;
  readonly #free = new Map<number, Buffer[]>();
  #cachedBytes = 0;

  constructor(limitBytes: number) {
    this.limitBytes = limitBytes;
  }

  get cachedBytes(): number {
    return this.#cachedBytes;
  }

  /** A buffer of exactly lengthBytes (contents undefined). */
  take(lengthBytes: number): Buffer {
    const buffer = this.#free.get(lengthBytes)?.pop();
    if (!buffer) return Buffer.allocUnsafe(lengthBytes);
    this.#cachedBytes -= lengthBytes;
    return buffer;
  }

  /** The socket has taken the reply: keep the buffer if it fits under the limit. */
  giveBack(buffer: Buffer): void {
    let free = this.#free.get(buffer.length);
    if (!free) {
      if (this.#free.size >= MAX_SIZES) this.#clear();
      free = [];
      this.#free.set(buffer.length, free);
    }
    if (this.#cachedBytes + buffer.length > this.limitBytes) return;
    free.push(buffer);
    this.#cachedBytes += buffer.length;
  }

  #clear(): void {
    this.#free.clear();
    this.#cachedBytes = 0;
  }
}
