// A reader that survives a cut connection: when a read fails because the transport went
// away or stalled (NBD_DISCONNECTED, NBD_CONNECT, NBD_ESHUTDOWN, NBD_TIMEOUT, or what
// `isTransient` accepts), it opens the disk again and repeats the read - reads are
// idempotent, and the caller's buffer is only ever filled by a read that succeeded. Concurrent failures share one reopen.
// Errors that are not about the transport (NBD_EIO, DISK_RANGE, a bad certificate) and the
// last failed attempt are passed through unchanged.

import { VcbtError } from '../errors.ts';
import type { AllocationExtent, DiskReader, Extent } from './disk.ts';

export interface ReconnectOptions {
  /** Opens made after the first, per failing call (default 3). */
  attempts?: number;
  /** Wait before reopening, doubled on each further attempt (default 200 ms). */
  retryDelayMs?: number;
  /** Which errors mean "the transport broke" (default: the NBD connection codes). */
  isTransient?: (error: unknown) => boolean;
  /** Told about each reopen, e.g. to log it. */
  onReconnect?: (cause: unknown, attempt: number) => void;
}

/** A stalled server (NBD_TIMEOUT) is treated like a cut one: the connection is dropped and reopened. */
const TRANSIENT_CODES = new Set(['NBD_DISCONNECTED', 'NBD_CONNECT', 'NBD_ESHUTDOWN', 'NBD_TIMEOUT']);

export function isTransportCut(error: unknown): boolean {
  return error instanceof VcbtError && TRANSIENT_CODES.has(error.code);
}

export async function openReconnectingReader(open: (signal?: AbortSignal) => Promise<DiskReader>, options: ReconnectOptions = {}): Promise<DiskReader> {
  return new ReconnectingReader(await open(), open, options);
}

class ReconnectingReader implements DiskReader {
  readonly sizeBytes: number;
  readonly allocation?: (range: Extent, signal?: AbortSignal) => Promise<AllocationExtent[]>;
  #current: DiskReader;
  #reopening: Promise<DiskReader> | null = null;
  #closed = false;
  readonly #open: (signal?: AbortSignal) => Promise<DiskReader>;
  readonly #attempts: number;
  readonly #retryDelayMs: number;
  readonly #isTransient: (error: unknown) => boolean;
  readonly #onReconnect?: (cause: unknown, attempt: number) => void;

  constructor(first: DiskReader, open: (signal?: AbortSignal) => Promise<DiskReader>, options: ReconnectOptions) {
    this.#current = first;
    this.#open = open;
    this.sizeBytes = first.sizeBytes;
    this.#attempts = options.attempts ?? 3;
    this.#retryDelayMs = options.retryDelayMs ?? 200;
    this.#isTransient = options.isTransient ?? isTransportCut;
    this.#onReconnect = options.onReconnect;
    if (first.allocation) {
      this.allocation = (range, signal) => this.#withRetry((reader) => reader.allocation!(range, signal), signal);
    }
  }

  read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void> {
    return this.#withRetry((reader) => reader.read(offsetBytes, target, signal), signal);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#reopening?.catch(() => undefined);
    await this.#current.close();
  }

  async #withRetry<T>(operation: (reader: DiskReader) => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const reader = this.#current;
      try {
        return await operation(reader);
      } catch (error) {
        if (attempt >= this.#attempts || this.#closed || signal?.aborted || !this.#isTransient(error)) throw error;
        await this.#reopen(reader, error, attempt + 1, signal);
      }
    }
  }

  /** Replace `broken` with a fresh reader, unless another call already did. */
  async #reopen(broken: DiskReader, cause: unknown, attempt: number, signal?: AbortSignal): Promise<void> {
    if (this.#current !== broken) return;
    this.#reopening ??= (async () => {
      try {
        this.#onReconnect?.(cause, attempt);
        // The broken reader's close only releases what is left of it.
        await broken.close().catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, this.#retryDelayMs * 2 ** (attempt - 1)));
        const fresh = await this.#open(signal);
        if (fresh.sizeBytes !== this.sizeBytes) {
          await fresh.close();
          throw new VcbtError('DISK_CHANGED', `the disk reopened after a cut connection is ${fresh.sizeBytes} bytes, not ${this.sizeBytes}`, {
            sizeBytes: this.sizeBytes, reopenedBytes: fresh.sizeBytes,
          });
        }
        this.#current = fresh;
        return fresh;
      } finally {
        this.#reopening = null;
      }
    })();
    try {
      await this.#reopening;
    } catch (error) {
      if (!this.#isTransient(error)) throw error;
      // Still down: the caller's next attempt fails fast on the broken reader and tries again.
    }
  }
}
