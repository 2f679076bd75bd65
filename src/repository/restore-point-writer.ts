// Writing one restore point: disks one after another, then commit.
//
// Per disk the slots are walked in order. A slot no area touches needs no I/O: zero for a
// full backup, the previous restore point's id for an incremental. A touched slot is read
// from the source (only the given areas; the rest is zero for a full, or taken from the
// previous chunk by the worker for an incremental) and handed to the chunk workers, which
// zero-detect, hash, compress, encrypt and write it. At most `windowChunks` slots are in
// flight; their ids are appended to the streaming index writer in slot order. Memory is
// windowChunks chunk buffers plus one index segment, whatever the disk size.
//
// Commit order: a worker stages each new chunk (storage.stage: locally a temp file); this
// thread publishes it (fsync + rename, up to durableInFlight at once, so the file system
// groups the fsyncs), syncs the batch of published names (the touched fan-out directories),
// and only then writes the disk's index (an atomic stream); the manifest follows with an
// atomic put after all indexes, and the point's committed record after the manifest (format.md,
// "Committed records"). A crash before the manifest is in place leaves only unreferenced
// blobs, which GC removes.
//
// Stored chunks are trusted only after a check (docs/format.md, "Reusing a stored chunk"): a
// chunk file found under a new chunk's id is reused only when its size and header fit (a full
// copy also decodes it and compares it with the chunk in hand); otherwise it is rewritten.
// An incremental carries a slot's id over from the previous restore point only when that
// chunk file exists with a plausible size (checked first, one pass over the previous index,
// stats in batches); a missing one is REPO_MISSING, which the backup turns into a full copy
// of the disk before a byte was read for the incremental.
import { randomBytes } from 'node:crypto';
import { totalBytes, type Extent } from '../extents/extent.ts';
import { validateAreas } from '../extents/validate.ts';
import type { IngestReply, IngestRequest } from './chunk-protocol.ts';
import { chunkHeaderBytes } from './chunk-codec.ts';
import { chunkIdHex, chunkRef } from './chunk-store.ts';
import { boxOverheadBytes } from './crypto.ts';
import { slotsWithParts } from './chunk-slots.ts';
import { IndexReader, IndexWriter, isZeroId, zeroChunkId } from './disk-index.ts';
import type { DiskSource } from './disk-source.ts';
import { RepositoryError } from './errors.ts';
import { isValidBlobName } from './storage/storage.ts';
import type { RepositoryLock } from './lock.ts';
import { encodeManifest, pointRef, type DiskRecord, type DiskStats, type RestorePointManifest, type VmIdentity } from './manifest.ts';
import type { Repository } from './repository.ts';
import { writeCommittedRecord } from './point-records.ts';

export interface RestorePointInfo {
  vm: VmIdentity;
  source?: unknown;
  snapshot?: unknown;
  vmConfig?: unknown;
  /** Defaults to now; tests and imports give synthetic times. */
  createdAt?: Date;
  /** The point's id; default a new one. `vcbt copy` keeps the source's, so a copied point is known by it. */
  id?: string;
}

export interface WriteDiskOptions {
  deviceKey: number;
  label: string;
  capacityBytes: number;
  changeId: string | null;
  reader: DiskSource;
  /** Full backup: the only areas read (allocated space); the rest is zero. Omitted: the whole disk. */
  allocatedAreas?: readonly Extent[];
  /** Incremental: the disk in an earlier restore point (same capacity) and what changed since. */
  previous?: { pointId: string; deviceKey: number };
  changedAreas?: readonly Extent[];
  /**
   * How a chunk already stored under a new chunk's id is checked before reuse: `header` (size
   * and header) or `full` (also decoded and compared). Default: `full` for a full copy (the
   * copy that repairs), `header` for an incremental.
   */
  checkExisting?: 'header' | 'full';
  /** Incremental: check that every carried-over chunk file exists (default true; bench/ turns it off to measure it). */
  checkCarried?: boolean;
  signal?: AbortSignal;
}

export function newPointId(createdAt: Date): string {
  const stamp = createdAt.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${randomBytes(4).toString('hex')}`;
}

interface Pending {
  promise: Promise<{ id: Uint8Array; storedBytes: number; zero: boolean; stagedToken: string | null; rewritten: boolean }>;
  /** A chunk on the workers (holds a buffer), not a carried-over id. */
  ingest: boolean;
}

// Chunk files being fsynced and renamed at once; the file system groups concurrent fsyncs.
const durableInFlight = 16;
// Carried-over chunk checks per synchronous batch of stats (a few ms of event loop each).
const carriedCheckBatch = 2048;
// Slots queued at once (carried-over ones cost nothing), whatever the ingest window.
const slotsQueued = 256;

export class RestorePointWriter {
  readonly pointId: string;
  readonly #repo: Repository;
  readonly #lock: RepositoryLock;
  readonly #info: RestorePointInfo;
  readonly #createdAt: Date;
  readonly #disks: DiskRecord[] = [];
  /** Per device key: stored chunk files that failed their reuse check and were written anew. */
  readonly chunksRewritten = new Map<number, number>();
  #done = false;

  constructor(repo: Repository, lock: RepositoryLock, info: RestorePointInfo) {
    this.#repo = repo;
    this.#lock = lock;
    this.#info = info;
    this.#createdAt = info.createdAt ?? new Date();
    if (info.id !== undefined && !isValidBlobName('point', info.id)) throw new RepositoryError('REPO_INVALID_ARGUMENT', `"${info.id}" is not a restore point id`, { pointId: info.id });
    this.pointId = info.id ?? newPointId(this.#createdAt);
  }

  async writeDisk(options: WriteDiskOptions): Promise<DiskRecord> {
    if (this.#done) throw new RepositoryError('REPO_INVALID_ARGUMENT', `restore point ${this.pointId} is already committed or aborted`, {});
    const { chunkBytes } = this.#repo.config;
    const { capacityBytes, deviceKey } = options;
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes <= 0) {
      throw new RepositoryError('REPO_INVALID_ARGUMENT', `disk ${deviceKey}: capacity ${capacityBytes} is not a positive integer`, { deviceKey });
    }
    if (this.#disks.some((d) => d.deviceKey === deviceKey)) {
      throw new RepositoryError('REPO_INVALID_ARGUMENT', `disk ${deviceKey} is already in restore point ${this.pointId}`, { deviceKey });
    }
    const source = `restore point ${this.pointId} disk ${deviceKey}`;
    let previous: IndexReader | undefined;
    let areas: Extent[];
    if (options.previous) {
      if (!options.changedAreas) throw new RepositoryError('REPO_INVALID_ARGUMENT', `${source}: an incremental needs changedAreas`, { deviceKey });
      const base = await this.#repo.readManifest(options.previous.pointId);
      const baseDisk = base.disks.find((d) => d.deviceKey === options.previous?.deviceKey);
      if (!baseDisk) {
        throw new RepositoryError('REPO_DISK_NOT_FOUND', `restore point ${base.id} has no disk ${options.previous.deviceKey}`, { pointId: base.id, deviceKey: options.previous.deviceKey });
      }
      if (baseDisk.capacityBytes !== capacityBytes || baseDisk.chunkBytes !== chunkBytes) {
        throw new RepositoryError(
          'REPO_INVALID_ARGUMENT',
          `${source}: capacity ${capacityBytes} differs from ${baseDisk.capacityBytes} in restore point ${base.id}; write a full backup`,
          { deviceKey, capacityBytes, previousCapacityBytes: baseDisk.capacityBytes },
        );
      }
      previous = await IndexReader.open(this.#repo.storage, baseDisk.index, this.#repo.keys);
      areas = validateAreas(options.changedAreas, { capacityBytes, source });
    } else {
      areas = options.allocatedAreas ? validateAreas(options.allocatedAreas, { capacityBytes, source }) : [{ offsetBytes: 0, lengthBytes: capacityBytes }];
    }
    try {
      const record = await this.#ingestDisk(options, areas, previous);
      this.#disks.push(record);
      return record;
    } finally {
      await previous?.close();
    }
  }

  async #ingestDisk(options: WriteDiskOptions, areas: Extent[], previous: IndexReader | undefined): Promise<DiskRecord> {
    const repo = this.#repo;
    const { chunkBytes } = repo.config;
    const pool = repo.pool();
    const windowChunks = repo.windowChunks;
    const buffers: ArrayBuffer[] = Array.from({ length: windowChunks }, () => new ArrayBuffer(chunkBytes));
    const stats: DiskStats = { bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0, chunksZero: 0 };
    const storage = repo.storage;
    const published = storage.newPublishBatch();
    const index = await IndexWriter.create(storage, repo.keys, chunkBytes, options.capacityBytes);
    const queue: Pending[] = [];
    let ingesting = 0;
    let rewritten = 0;
    const checkExisting = options.checkExisting ?? (previous ? 'header' : 'full');
    const durable = new Set<Promise<void>>();
    const drainOne = async () => {
      const head = queue.shift() as Pending;
      if (head.ingest) ingesting--;
      const done = await head.promise;
      if (done.zero) stats.chunksZero++;
      else if (done.stagedToken) {
        if (done.rewritten) rewritten++;
        stats.chunksNew++;
        stats.bytesStored += done.storedBytes;
        const job: Promise<void> = storage.publish(done.stagedToken, chunkRef(chunkIdHex(done.id)), published).finally(() => durable.delete(job));
        durable.add(job);
        if (durable.size >= durableInFlight) await Promise.race(durable);
      } else stats.chunksReused++;
      await index.append(done.id);
    };
    const ingestSlot = async (startBytes: number, lengthBytes: number, parts: Extent[], previousId: Uint8Array | null) => {
      const buffer = buffers.pop() ?? new ArrayBuffer(chunkBytes);
      const view = new Uint8Array(buffer, 0, lengthBytes);
      if (!previousId) view.fill(0);
      for (const part of parts) {
        options.signal?.throwIfAborted();
        const target = view.subarray(part.offsetBytes - startBytes, part.offsetBytes - startBytes + part.lengthBytes);
        try {
          await options.reader.read(part.offsetBytes, target);
        } catch (error) {
          buffers.push(buffer);
          throw new RepositoryError('REPO_SOURCE_READ', `reading disk ${options.deviceKey} at offset ${part.offsetBytes} (${part.lengthBytes} bytes) failed: ${(error as Error).message}`, { deviceKey: options.deviceKey, offsetBytes: part.offsetBytes, lengthBytes: part.lengthBytes }, { cause: error });
        }
      }
      stats.bytesRead += totalBytes(parts);
      const request: IngestRequest = {
        kind: 'ingest',
        buffer,
        lengthBytes,
        merge: previousId ? { previousId, freshRanges: parts.map((p) => [p.offsetBytes - startBytes, p.lengthBytes]) } : null,
        checkExisting,
      };
      const reply = (await pool.run(request, [buffer]).catch((error: unknown) => {
        throw repo.workerError(error, `disk ${options.deviceKey} chunk at offset ${startBytes}`);
      })) as IngestReply;
      buffers.push(reply.buffer);
      return { id: reply.id, storedBytes: reply.storedBytes, zero: reply.zero, stagedToken: reply.stagedToken, rewritten: reply.rewritten };
    };
    const carry = (id: Buffer) => ({ id, storedBytes: 0, zero: isZeroId(id), stagedToken: null, rewritten: false });
    try {
      // Before reading anything: every chunk carried over must still exist.
      if (previous && options.checkCarried !== false) await this.#checkCarried(options, areas, previous);
      for (const { slot, startBytes, lengthBytes, parts } of slotsWithParts(areas, chunkBytes, options.capacityBytes)) {
        let promise: Pending['promise'];
        const ingest = parts.length > 0;
        if (ingest) {
          const previousId = previous ? Buffer.from(await previous.entry(slot)) : null;
          promise = ingestSlot(startBytes, lengthBytes, parts, previousId);
          ingesting++;
        } else {
          promise = Promise.resolve(carry(previous ? Buffer.from(await previous.entry(slot)) : zeroChunkId));
        }
        promise.catch(() => undefined); // observed by drainOne; avoids an unhandled rejection meanwhile
        queue.push({ promise, ingest });
        while (ingesting >= windowChunks || queue.length >= slotsQueued) await drainOne();
      }
      while (queue.length > 0) await drainOne();
      await Promise.all(durable);
      await published.sync();
      const ref = await index.finish();
      this.chunksRewritten.set(options.deviceKey, rewritten);
      return {
        deviceKey: options.deviceKey,
        label: options.label,
        capacityBytes: options.capacityBytes,
        changeId: options.changeId,
        chunkBytes,
        kind: previous ? 'incremental' : 'full',
        basedOn: options.previous ?? null,
        index: ref,
        stats,
      };
    } catch (error) {
      await Promise.allSettled([...queue.map((p) => p.promise), ...durable]);
      await index.abort();
      throw error;
    }
  }

  /**
   * Proves that every chunk an incremental carries over (the untouched slots' ids of the
   * previous restore point) exists with a chunk file's size: one pass over the previous index,
   * stats in batches (storage.statMany). A missing one is REPO_MISSING, a wrong size
   * REPO_CORRUPT, naming the chunk, slot and point. Cost: bench/carried-chunks.ts.
   */
  async #checkCarried(options: WriteDiskOptions, areas: Extent[], previous: IndexReader): Promise<void> {
    const { chunkBytes } = this.#repo.config;
    const storage = this.#repo.storage;
    const maxStoredBytes = chunkHeaderBytes + chunkBytes + boxOverheadBytes;
    let batch: Array<{ slot: number; hex: string }> = [];
    const flush = async () => {
      const infos = await storage.statMany(batch.map((c) => chunkRef(c.hex)));
      for (let i = 0; i < batch.length; i++) {
        const info = infos[i];
        const why = !info ? 'is missing' : info.sizeBytes < chunkHeaderBytes || info.sizeBytes > maxStoredBytes ? `is ${info.sizeBytes} bytes, not a chunk file` : undefined;
        if (!why) continue;
        const { slot, hex } = batch[i];
        const file = storage.describe(chunkRef(hex));
        throw new RepositoryError(info ? 'REPO_CORRUPT' : 'REPO_MISSING', `chunk ${hex} of disk ${options.deviceKey} slot ${slot} in restore point ${options.previous?.pointId} ${why} (${file}); it cannot be carried over`, { chunkId: hex, file, deviceKey: options.deviceKey, slot, pointId: options.previous?.pointId });
      }
      batch = [];
    };
    for (const { slot, parts } of slotsWithParts(areas, chunkBytes, options.capacityBytes)) {
      if (parts.length > 0) continue;
      options.signal?.throwIfAborted();
      const id = await previous.entry(slot);
      if (isZeroId(id)) continue;
      batch.push({ slot, hex: chunkIdHex(id) });
      if (batch.length >= carriedCheckBatch) await flush();
    }
    await flush();
  }

  /** Makes the restore point durable and visible; returns its id. */
  async commit(): Promise<string> {
    if (this.#done) throw new RepositoryError('REPO_INVALID_ARGUMENT', `restore point ${this.pointId} is already committed or aborted`, {});
    try {
      await this.#lock.assertHeld();
      const manifest: RestorePointManifest = {
        id: this.pointId,
        createdAt: this.#createdAt.toISOString(),
        vm: this.#info.vm,
        source: this.#info.source ?? null,
        snapshot: this.#info.snapshot ?? null,
        vmConfig: this.#info.vmConfig ?? null,
        disks: this.#disks,
      };
      await this.#repo.storage.put(pointRef(this.pointId), encodeManifest(manifest, this.#repo.keys));
      // After the manifest: a crash between leaves a point without its record (verify adds
      // it), never a record of a point that was not committed.
      await writeCommittedRecord(this.#repo.storage, this.pointId).catch(() => undefined);
      return this.pointId;
    } finally {
      this.#done = true;
      await this.#lock.release();
    }
  }

  /** Gives up: nothing becomes visible; written chunks and indexes are garbage for GC. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#lock.release();
  }
}
