// A streaming frame decoder's input side: turns a socket's 'data' events into "give me the
// next N bytes" and "fill this buffer". Header reads return a view into the received chunk
// when it holds the whole header (no copy); payload reads copy straight from received chunks
// into the caller's buffer as they arrive, so a 32 MiB read never sits in an extra buffer.
// While nobody is waiting and too much is buffered, the socket is paused (backpressure).
// Consumed chunks are skipped with a head index (compacted now and then), never shifted off
// one by one, so consuming is linear however small the peer's segments are.

import type { Duplex } from 'node:stream';

/** How much unread input we hold before pausing the socket (default). */
const PAUSE_ABOVE_BYTES = 8 * 1024 * 1024;
/** Consumed chunk slots kept before the array is compacted (amortised O(1) per chunk). */
const COMPACT_ABOVE_CHUNKS = 1024;

type Waiter =
  | { kind: 'exact'; lengthBytes: number; resolve(view: Buffer): void; reject(error: Error): void }
  | { kind: 'into'; target: Uint8Array; filledBytes: number; resolve(): void; reject(error: Error): void };

export class ByteReader {
  readonly #stream: Duplex;
  /** Received chunks; those before #headIndex are consumed. */
  #chunks: Buffer[] = [];
  #headIndex = 0;
  #headOffsetBytes = 0;
  #availableBytes = 0;
  #receivedBytes = 0;
  #waiter: Waiter | null = null;
  #endError: Error | null = null;
  readonly #makeEndError: (cause?: Error) => Error;
  readonly #pauseAboveBytes: number;

  /**
   * `makeEndError` builds the error readers get once the stream ends or fails;
   * `pauseAboveBytes` is how much unread input is held before the stream is paused.
   */
  constructor(stream: Duplex, makeEndError: (cause?: Error) => Error, pauseAboveBytes = PAUSE_ABOVE_BYTES) {
    this.#stream = stream;
    this.#makeEndError = makeEndError;
    this.#pauseAboveBytes = pauseAboveBytes;
    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    stream.on('close', this.#onEnd);
    stream.on('error', this.#onError);
  }

  get bufferedBytes(): number {
    return this.#availableBytes;
  }

  /** Every byte received so far (a progress counter for inactivity deadlines). */
  get receivedBytes(): number {
    return this.#receivedBytes;
  }

  /** The next `lengthBytes` bytes. The view is only valid until the next read call. */
  readExact(lengthBytes: number): Promise<Buffer> {
    const ready = this.tryReadExact(lengthBytes);
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => this.#wait({ kind: 'exact', lengthBytes, resolve, reject }));
  }

  /** Like readExact, but returns null instead of waiting when the bytes are not here yet. */
  tryReadExact(lengthBytes: number): Buffer | null {
    if (this.#waiter) throw new Error('ByteReader: concurrent reads');
    if (this.#availableBytes < lengthBytes) {
      if (this.#endError) throw this.#endError;
      return null;
    }
    return this.#take(lengthBytes);
  }

  /** Fill `target` completely with the next bytes. */
  readInto(target: Uint8Array): Promise<void> {
    const waiter: Waiter = { kind: 'into', target, filledBytes: 0, resolve: () => {}, reject: () => {} };
    if (this.#fill(waiter)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      waiter.resolve = resolve;
      waiter.reject = reject;
      this.#wait(waiter);
    });
  }

  /** Drop the next `lengthBytes` bytes (payloads nobody wants any more). */
  async skip(lengthBytes: number): Promise<void> {
    const scratch = Buffer.allocUnsafe(Math.min(lengthBytes, 1024 * 1024));
    for (let leftBytes = lengthBytes; leftBytes > 0; leftBytes -= scratch.length) {
      await this.readInto(scratch.subarray(0, Math.min(leftBytes, scratch.length)));
    }
  }

  /** Stop listening, e.g. before the socket is handed to TLS. Nothing may be buffered. */
  detach(): void {
    this.#stream.off('data', this.#onData);
    this.#stream.off('end', this.#onEnd);
    this.#stream.off('close', this.#onEnd);
    this.#stream.off('error', this.#onError);
    if (this.#availableBytes !== 0) throw new Error('ByteReader: detached with unread input');
  }

  #wait(waiter: Waiter): void {
    if (this.#waiter) throw new Error('ByteReader: concurrent reads');
    if (this.#endError) {
      waiter.reject(this.#endError);
      return;
    }
    this.#waiter = waiter;
    if (this.#stream.isPaused()) this.#stream.resume();
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#chunks.push(chunk);
    this.#availableBytes += chunk.length;
    this.#receivedBytes += chunk.length;
    this.#serveWaiter();
    if (!this.#waiter && this.#availableBytes > this.#pauseAboveBytes) this.#stream.pause();
  };

  /**
   * Input from a socket's `onread` callback: `chunk` is a view into one of the socket's
   * read buffers, which the reader may keep referencing until that buffer is reused.
   * Returns false when the socket should pause.
   */
  pushBorrowed(chunk: Buffer): boolean {
    this.#chunks.push(chunk);
    this.#availableBytes += chunk.length;
    this.#receivedBytes += chunk.length;
    this.#serveWaiter();
    return this.#waiter !== null || this.#availableBytes <= this.#pauseAboveBytes;
  }

  /**
   * The socket is about to read into `buffer` again: copy out any unread input still in it.
   * (With two read buffers taking turns this is rare: by then the reader has had the event
   * loop turn in between to consume it.)
   */
  release(buffer: Uint8Array): void {
    const head = this.#headIndex;
    for (let i = head; i < this.#chunks.length; i++) {
      const chunk = this.#chunks[i];
      if (chunk.buffer !== buffer.buffer) continue;
      const from = i === head ? this.#headOffsetBytes : 0;
      const copy = Buffer.allocUnsafe(chunk.length - from);
      chunk.copy(copy, 0, from);
      this.#chunks[i] = copy;
      if (i === head) this.#headOffsetBytes = 0;
    }
  }

  readonly #onEnd = (): void => this.#finish(this.#makeEndError());
  readonly #onError = (error: Error): void => this.#finish(this.#makeEndError(error));

  #finish(error: Error): void {
    if (this.#endError) return;
    this.#endError = error;
    const waiter = this.#waiter;
    if (waiter) {
      // Bytes still buffered may satisfy the waiter; otherwise it fails now.
      this.#serveWaiter();
      if (this.#waiter === waiter) {
        this.#waiter = null;
        waiter.reject(error);
      }
    }
  }

  #serveWaiter(): void {
    const waiter = this.#waiter;
    if (!waiter) return;
    if (waiter.kind === 'exact') {
      if (this.#availableBytes < waiter.lengthBytes) return;
      this.#waiter = null;
      waiter.resolve(this.#take(waiter.lengthBytes));
    } else if (this.#fill(waiter)) {
      this.#waiter = null;
      waiter.resolve();
    }
  }

  /** Copy what is buffered into the waiter's target; true when it is full. */
  #fill(waiter: Waiter & { kind: 'into' }): boolean {
    const target = waiter.target;
    while (waiter.filledBytes < target.length && this.#availableBytes > 0) {
      const head = this.#chunks[this.#headIndex];
      const n = Math.min(head.length - this.#headOffsetBytes, target.length - waiter.filledBytes);
      target.set(head.subarray(this.#headOffsetBytes, this.#headOffsetBytes + n), waiter.filledBytes);
      waiter.filledBytes += n;
      this.#consume(n);
    }
    return waiter.filledBytes === target.length;
  }

  #take(lengthBytes: number): Buffer {
    const head = this.#chunks[this.#headIndex];
    if (head && head.length - this.#headOffsetBytes >= lengthBytes) {
      const view = head.subarray(this.#headOffsetBytes, this.#headOffsetBytes + lengthBytes);
      this.#consume(lengthBytes);
      return view;
    }
    // Spans chunk boundaries: rare (headers are small), so a fresh buffer is fine.
    const joined = Buffer.allocUnsafe(lengthBytes);
    this.#fill({ kind: 'into', target: joined, filledBytes: 0, resolve: () => {}, reject: () => {} });
    return joined;
  }

  #consume(lengthBytes: number): void {
    this.#availableBytes -= lengthBytes;
    this.#headOffsetBytes += lengthBytes;
    const chunks = this.#chunks;
    while (this.#headIndex < chunks.length && this.#headOffsetBytes >= chunks[this.#headIndex].length) {
      this.#headOffsetBytes -= chunks[this.#headIndex].length;
      this.#headIndex++;
    }
    if (this.#headIndex === chunks.length) {
      // Everything consumed: start over (drops references to the consumed chunks).
      chunks.length = 0;
      this.#headIndex = 0;
    } else if (this.#headIndex > COMPACT_ABOVE_CHUNKS && this.#headIndex * 2 > chunks.length) {
      this.#chunks = chunks.slice(this.#headIndex);
      this.#headIndex = 0;
    }
    if (this.#availableBytes <= this.#pauseAboveBytes && this.#stream.isPaused() && !this.#endError) this.#stream.resume();
  }
}
