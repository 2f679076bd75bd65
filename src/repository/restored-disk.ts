// A disk of a restore point, readable at any offset (for NBD export or file-level access) and
// restorable as a stream. Slot i of the index covers [i * chunkBytes, ...); zero ids read as
// zeros and report as holes. Random reads go through a small cache of decoded chunks
// (concurrent reads of one chunk share one decode); restoreTo keeps `readAheadChunks`
// decodes in flight on the workers while it writes in order.
import type { Extent } from '../extents/extent.ts';
import type { DecodeReply, DecodeRequest } from './chunk-protocol.ts';
import { IndexReader, isZeroId } from './disk-index.ts';
import type { DiskTarget } from './disk-source.ts';
import { RepositoryError } from './errors.ts';
import type { RepositoryLock } from './lock.ts';
import type { DiskRecord } from './manifest.ts';
import type { ChunkLocation } from './pack.ts';
import type { Repository } from './repository.ts';

export interface AllocationExtent {
  offsetBytes: number;
  lengthBytes: number;
  /** Reads as zeros. */
  zero: boolean;
  /** Not stored (an all-zero chunk): a sparse target need not write it. */
  hole: boolean;
}

export interface RestoreStats {
  bytesWritten: number;
  bytesZero: number;
}

const cachedChunks = 8;

export class RestoredDisk {
  readonly pointId: string;
  readonly disk: DiskRecord;
  readonly sizeBytes: number;
  readonly chunkBytes: number;
  readonly #repo: Repository;
  readonly #index: IndexReader;
  readonly #cache = new Map<number, Promise<Uint8Array>>();
  readonly #lock: RepositoryLock;

  private constructor(repo: Repository, pointId: string, disk: DiskRecord, index: IndexReader, lock: RepositoryLock) {
    this.#repo = repo;
    this.#lock = lock;
    this.pointId = pointId;
    this.disk = disk;
    this.sizeBytes = disk.capacityBytes;
    this.chunkBytes = disk.chunkBytes;
    this.#index = index;
  }

  /** Takes over `lock` (a shared lock) and releases it on close. */
  static async open(repo: Repository, pointId: string, disk: DiskRecord, lock: RepositoryLock): Promise<RestoredDisk> {
    const index = await IndexReader.open(repo.storage, disk.index, repo.keys);
    if (index.header.capacityBytes !== disk.capacityBytes || index.header.chunkBytes !== disk.chunkBytes) {
      await index.close();
      throw new RepositoryError('REPO_CORRUPT', `index of restore point ${pointId} disk ${disk.deviceKey} disagrees with its manifest on size`, { pointId, deviceKey: disk.deviceKey });
    }
    return new RestoredDisk(repo, pointId, disk, index, lock);
  }

  async close(): Promise<void> {
    try {
      await this.#index.close();
    } finally {
      await this.#lock.release();
    }
  }

  /** Fills `target` with the disk's bytes from offsetBytes. */
  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    this.#checkRange(offsetBytes, target.length);
    let done = 0;
    const pieces: Promise<void>[] = [];
    while (done < target.length) {
      const at = offsetBytes + done;
      const slot = Math.floor(at / this.chunkBytes);
      const within = at - slot * this.chunkBytes;
      const n = Math.min(target.length - done, this.#slotBytes(slot) - within);
      const into = target.subarray(done, done + n);
      pieces.push(this.#chunk(slot).then((chunk) => into.set(chunk.subarray(within, within + n))));
      done += n;
    }
    await Promise.all(pieces);
  }

  /** Data/zero map of [offsetBytes, offsetBytes + lengthBytes), adjacent equal kinds merged. */
  async allocation(range: Extent): Promise<AllocationExtent[]> {
    this.#checkRange(range.offsetBytes, range.lengthBytes);
    const result: AllocationExtent[] = [];
    const end = range.offsetBytes + range.lengthBytes;
    for (let at = range.offsetBytes; at < end; ) {
      const slot = Math.floor(at / this.chunkBytes);
      const slotEnd = Math.min(slot * this.chunkBytes + this.#slotBytes(slot), end);
      const zero = isZeroId(await this.#index.entry(slot));
      const last = result[result.length - 1];
      if (last && last.zero === zero) last.lengthBytes += slotEnd - at;
      else result.push({ offsetBytes: at, lengthBytes: slotEnd - at, zero, hole: zero });
      at = slotEnd;
    }
    return result;
  }

  /**
   * Writes the whole disk to `target`: up to `readAheadChunks` chunks are being decoded (on the
   * workers) or written at once, so writes may complete out of offset order. Zero chunks are
   * skipped (sparse) unless the target has `zero`.
   */
  async restoreTo(target: DiskTarget, options: { readAheadChunks?: number; signal?: AbortSignal } = {}): Promise<RestoreStats> {
    const readAhead = options.readAheadChunks ?? this.#repo.windowChunks;
    const stats: RestoreStats = { bytesWritten: 0, bytesZero: 0 };
    const spare: ArrayBuffer[] = [];
    const inFlight = new Set<Promise<void>>();
    const pool = this.#repo.pool();
    let failed: { error: unknown } | undefined;
    const restoreChunk = async (id: Buffer, location: ChunkLocation, offsetBytes: number, lengthBytes: number) => {
      const buffer = spare.pop() ?? new ArrayBuffer(this.chunkBytes);
      const request: DecodeRequest = { kind: 'decode', buffer, id, location };
      const reply = (await pool.run(request, [buffer]).catch((error: unknown) => {
        throw this.#repo.workerError(error, `restore point ${this.pointId} disk ${this.disk.deviceKey} offset ${offsetBytes}`);
      })) as DecodeReply;
      if (reply.lengthBytes !== lengthBytes) throw this.#sizeMismatch(offsetBytes, reply.lengthBytes, lengthBytes);
      await target.write(offsetBytes, new Uint8Array(reply.buffer, 0, reply.lengthBytes));
      stats.bytesWritten += reply.lengthBytes;
      spare.push(reply.buffer);
    };
    try {
      for (let slot = 0; slot < this.#index.header.entryCount; slot++) {
        options.signal?.throwIfAborted();
        const id = Buffer.from(await this.#index.entry(slot));
        const offsetBytes = slot * this.chunkBytes;
        const lengthBytes = this.#slotBytes(slot);
        let job: Promise<void>;
        if (isZeroId(id)) {
          stats.bytesZero += lengthBytes;
          if (!target.zero) continue;
          job = target.zero(offsetBytes, lengthBytes);
        } else {
          // Located here, in slot order: pack index entries of a full are in disk order too.
          job = restoreChunk(id, await this.#repo.locateOrFail(id, this.#where(offsetBytes)), offsetBytes, lengthBytes);
        }
        const tracked: Promise<void> = job.finally(() => inFlight.delete(tracked));
        // A job that fails leaves the set at once: its error is kept here, not lost.
        tracked.catch((error: unknown) => {
          failed ??= { error };
        });
        inFlight.add(tracked);
        if (inFlight.size >= readAhead) await Promise.race(inFlight);
        if (failed) throw failed.error;
      }
      await Promise.all(inFlight);
      if (failed) throw failed.error;
    } finally {
      await Promise.allSettled(inFlight);
    }
    return stats;
  }

  #where(offsetBytes: number): string {
    return `restore point ${this.pointId} disk ${this.disk.deviceKey} offset ${offsetBytes}`;
  }

  #slotBytes(slot: number): number {
    return Math.min(this.chunkBytes, this.sizeBytes - slot * this.chunkBytes);
  }

  #checkRange(offsetBytes: number, lengthBytes: number): void {
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.sizeBytes) {
      throw new RepositoryError('REPO_INVALID_ARGUMENT', `range ${offsetBytes}+${lengthBytes} is outside disk ${this.disk.deviceKey} of restore point ${this.pointId} (${this.sizeBytes} bytes)`, { offsetBytes, lengthBytes, sizeBytes: this.sizeBytes });
    }
  }

  #sizeMismatch(offsetBytes: number, got: number, want: number): RepositoryError {
    return new RepositoryError('REPO_CORRUPT', `chunk at offset ${offsetBytes} of restore point ${this.pointId} disk ${this.disk.deviceKey} holds ${got} bytes, expected ${want}`, { offsetBytes });
  }

  #chunk(slot: number): Promise<Uint8Array> {
    const cached = this.#cache.get(slot);
    if (cached) {
      this.#cache.delete(slot); // re-insert: most recently used last
      this.#cache.set(slot, cached);
      return cached;
    }
    const loading = this.#load(slot);
    loading.catch(() => this.#cache.delete(slot));
    if (this.#cache.size >= cachedChunks) this.#cache.delete(this.#cache.keys().next().value as number);
    this.#cache.set(slot, loading);
    return loading;
  }

  async #load(slot: number): Promise<Uint8Array> {
    const id = Buffer.from(await this.#index.entry(slot));
    const lengthBytes = this.#slotBytes(slot);
    if (isZeroId(id)) return new Uint8Array(lengthBytes);
    const buffer = new ArrayBuffer(this.chunkBytes);
    const location = await this.#repo.locateOrFail(id, this.#where(slot * this.chunkBytes));
    const request: DecodeRequest = { kind: 'decode', buffer, id, location };
    const reply = (await this.#repo.pool().run(request, [buffer]).catch((error: unknown) => {
      throw this.#repo.workerError(error, this.#where(slot * this.chunkBytes));
    })) as DecodeReply;
    if (reply.lengthBytes !== lengthBytes) throw this.#sizeMismatch(slot * this.chunkBytes, reply.lengthBytes, lengthBytes);
    return new Uint8Array(reply.buffer, 0, reply.lengthBytes);
  }
}
