// Writing one restore point: disks one after another, then commit.
//
// Per disk the slots are walked in order. A slot no area touches needs no I/O: zero for a
// full backup, the previous restore point's id for an incremental. A touched slot is read
// from the source (only the given areas; the rest is zero for a full, or taken from the
// previous chunk by the worker for an incremental) and handed to the chunk workers, which
// zero-detect, hash, compress and encrypt it into a chunk record. At most `windowChunks`
// slots are in flight; their ids are appended to the streaming index writer in slot order.
// Memory is windowChunks chunk buffers, one index segment, the pack being written (streamed,
// not held) and the locations of this run's chunks not yet in a pack index (at most
// indexFlushEntries plus one pack), whatever the disk size.
//
// Storage (format v2, docs/format.md "Pack files"): this thread appends each new chunk's
// record to the open pack, in slot order; a pack is closed at 16 MiB (trailer, footer, one
// durable commit: fsync, rename, directory fsync) while the next one fills (at most
// packsCommitting closing at once). Once packs are durable their entries go into a pack index
// file (every indexFlushEntries chunks, and at commit). Commit order: last pack closed, every
// pack durable, their pack index durable, then the manifest (atomic put), then the point's
// committed record (format.md, "Committed records"). A crash before the manifest is in place
// leaves only unreferenced packs, pack indexes and disk indexes, which GC removes.
//
// Stored chunks are trusted only after a check (docs/format.md, "Reusing a stored chunk"): a
// chunk the pack indexes (or a v1 chunk file) already hold is reused only when its record's
// length and header fit (a full copy also decodes it and compares it with the chunk in
// hand); otherwise the chunk is written again into this run's pack, whose newer pack index
// entry then wins. An incremental carries a slot's id over from the previous restore point
// only when that chunk is located and its pack exists (checked first, one pass over the
// previous index, one stat per distinct pack); a missing one is REPO_MISSING, which the
// backup turns into a full copy of the disk before a byte was read for the incremental.
import { randomBytes } from 'node:crypto';
import { totalBytes, type Extent } from '../extents/extent.ts';
import { validateAreas } from '../extents/validate.ts';
import type { DecodeReply, IngestReply, IngestRequest } from './chunk-protocol.ts';
import { ChunkDecodeError, chunkHeaderBytes, parseChunkHeader } from './chunk-codec.ts';
import { chunkIdHex, chunkRef } from './chunk-store.ts';
import { boxOverheadBytes } from './crypto.ts';
import { writePackIndex, type ChunkTable, type PackIndexEntry } from './pack-index.ts';
import { PackWriter, packRef, packTargetBytes, type ChunkLocation } from './pack.ts';
import { isBlobNotFound } from './storage/storage.ts';
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

interface SlotResult {
  id: Uint8Array;
  zero: boolean;
  /** The encoded record to store; null when zero or already stored (sound). */
  record: ArrayBuffer | null;
  /** A stored copy failed its reuse check: this record replaces it. */
  rewritten: boolean;
}

interface Pending {
  promise: Promise<SlotResult>;
  /** A chunk on the workers (holds a buffer), not a carried-over id. */
  ingest: boolean;
}

// Packs closing (trailer, fsync, rename) while the next one fills.
const packsCommitting = 2;
// New chunks per pack index file written during a run (bounds the run's in-memory locations).
const indexFlushEntries = 16384;
// Slots queued at once (carried-over ones cost nothing), whatever the ingest window.
const slotsQueued = 256;

export class RestorePointWriter {
  readonly pointId: string;
  readonly #repo: Repository;
  readonly #lock: RepositoryLock;
  readonly #info: RestorePointInfo;
  readonly #createdAt: Date;
  readonly #disks: DiskRecord[] = [];
  /** Per device key: stored chunks that failed their reuse check and were written anew. */
  readonly chunksRewritten = new Map<number, number>();
  #done = false;
  #pack: PackWriter | undefined;
  readonly #committing = new Set<Promise<void>>();
  /** Entries of durable packs not yet in a pack index file. */
  #pending: PackIndexEntry[] = [];
  /** This run's new chunks not yet in a pack index file (id hex -> location). */
  readonly #runChunks = new Map<string, ChunkLocation>();

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

  async #table(): Promise<ChunkTable> {
    return this.#repo.chunkTable();
  }

  async #ingestDisk(options: WriteDiskOptions, areas: Extent[], previous: IndexReader | undefined): Promise<DiskRecord> {
    const repo = this.#repo;
    const { chunkBytes } = repo.config;
    const pool = repo.pool();
    const windowChunks = repo.windowChunks;
    const buffers: ArrayBuffer[] = Array.from({ length: windowChunks }, () => new ArrayBuffer(chunkBytes));
    const stats: DiskStats = { bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0, chunksZero: 0 };
    const storage = repo.storage;
    const index = await IndexWriter.create(storage, repo.keys, chunkBytes, options.capacityBytes);
    const queue: Pending[] = [];
    let ingesting = 0;
    let rewritten = 0;
    const checkExisting = options.checkExisting ?? (previous ? 'header' : 'full');
    const where = (startBytes: number) => `disk ${options.deviceKey} chunk at offset ${startBytes}`;
    const drainOne = async () => {
      const head = queue.shift() as Pending;
      if (head.ingest) ingesting--;
      const done = await head.promise;
      if (done.zero) stats.chunksZero++;
      else if (done.record && !this.#runChunks.has(chunkIdHex(done.id))) {
        if (done.rewritten) rewritten++;
        stats.chunksNew++;
        stats.bytesStored += done.record.byteLength;
        await this.#store(done.id, new Uint8Array(done.record));
      } else stats.chunksReused++;
      await index.append(done.id);
    };
    const ingestSlot = async (startBytes: number, lengthBytes: number, parts: Extent[], previousId: Uint8Array | null): Promise<SlotResult> => {
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
      let previousLocation: ChunkLocation | null = null;
      try {
        if (previousId && !isZeroId(previousId)) previousLocation = await repo.locateOrFail(previousId, `${where(startBytes)}, previous chunk`);
      } catch (error) {
        buffers.push(buffer);
        throw error;
      }
      const request: IngestRequest = {
        kind: 'ingest',
        buffer,
        lengthBytes,
        merge: previousId ? { previousId, previous: previousLocation, freshRanges: parts.map((p) => [p.offsetBytes - startBytes, p.lengthBytes]) } : null,
      };
      const reply = (await pool.run(request, [buffer]).catch((error: unknown) => {
        throw repo.workerError(error, where(startBytes));
      })) as IngestReply;
      try {
        if (reply.zero || !reply.record) return { id: reply.id, zero: true, record: null, rewritten: false };
        if (this.#runChunks.has(chunkIdHex(reply.id))) return { id: reply.id, zero: false, record: null, rewritten: false };
        const stored = await this.#storedState(reply.id, new Uint8Array(reply.buffer, 0, lengthBytes), checkExisting);
        if (stored === 'sound') return { id: reply.id, zero: false, record: null, rewritten: false };
        return { id: reply.id, zero: false, record: reply.record, rewritten: stored === 'unsound' };
      } finally {
        buffers.push(reply.buffer);
      }
    };
    const carry = (id: Buffer): SlotResult => ({ id, zero: isZeroId(id), record: null, rewritten: false });
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
      // The disk index may name chunks whose pack is still open: only the manifest makes them
      // reachable, and commit writes it after every pack and pack index is durable.
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
      await Promise.allSettled(queue.map((p) => p.promise));
      await index.abort();
      throw error;
    }
  }

  /**
   * Whether chunk `id` is already stored soundly (docs/format.md, "Reusing a stored chunk"):
   * `header`: its record's length and header agree with the chunk in hand (one 16-byte read);
   * `full`: the record also decodes (on a worker) to exactly `chunk`.
   */
  async #storedState(id: Uint8Array, chunk: Uint8Array, check: 'header' | 'full'): Promise<'absent' | 'sound' | 'unsound'> {
    const repo = this.#repo;
    const location = await repo.locate(id);
    if (!location) return 'absent';
    const maxRecordBytes = chunkHeaderBytes + repo.config.chunkBytes + boxOverheadBytes;
    if (location.lengthBytes < chunkHeaderBytes || location.lengthBytes > maxRecordBytes) return 'unsound';
    const ref = location.pack === null ? chunkRef(chunkIdHex(id)) : packRef(location.pack);
    try {
      if (check === 'full') {
        const buffer = new ArrayBuffer(repo.config.chunkBytes);
        const reply = (await repo.pool().run({ kind: 'decode', buffer, id, location }, [buffer])) as DecodeReply;
        return Buffer.from(reply.buffer, 0, reply.lengthBytes).equals(chunk) ? 'sound' : 'unsound';
      }
      const header = parseChunkHeader(await repo.storage.getRange(ref, location.offsetBytes, chunkHeaderBytes));
      const sound = location.lengthBytes === chunkHeaderBytes + header.payloadBytes && header.plaintextBytes === chunk.length && header.encrypted === (repo.keys !== undefined);
      return sound ? 'sound' : 'unsound';
    } catch (error) {
      if (error instanceof ChunkDecodeError) return 'unsound';
      // Gone (verify moved its pack aside, or damage): write it anew.
      if (isBlobNotFound(error)) return 'absent';
      const code = (error as { code?: string }).code;
      if (code === 'REPO_MISSING') return 'absent';
      if (code === 'REPO_CORRUPT' || code === 'REPO_NOT_REGULAR_FILE') return 'unsound';
      throw error;
    }
  }

  /** Appends a new chunk's record to the open pack (opening one), closing it once full. */
  async #store(id: Uint8Array, record: Uint8Array): Promise<void> {
    this.#pack ??= await PackWriter.create(this.#repo.storage);
    const location = await this.#pack.append(id, record);
    this.#runChunks.set(chunkIdHex(id), location);
    if (this.#pack.sizeBytes >= packTargetBytes) await this.#closePack();
  }

  /** Closes the open pack (durable in the background); writes a pack index when enough entries wait. */
  async #closePack(): Promise<void> {
    const pack = this.#pack;
    this.#pack = undefined;
    if (pack && pack.entries.length > 0) {
      const job: Promise<void> = pack
        .finish(this.#repo.keys)
        .then(() => {
          for (const e of pack.entries) this.#pending.push({ id: e.id, pack: pack.name, offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes });
        })
        .finally(() => this.#committing.delete(job));
      job.catch(() => undefined); // observed through race/all below and in commit
      this.#committing.add(job);
      if (this.#committing.size >= packsCommitting) await Promise.race(this.#committing);
    } else if (pack) {
      await pack.abort();
    }
    if (this.#pending.length >= indexFlushEntries) await this.#flushIndex();
  }

  /** Writes the entries of durable packs into a pack index file and loads it into the table. */
  async #flushIndex(): Promise<void> {
    if (this.#pending.length === 0) return;
    const entries = this.#pending;
    this.#pending = [];
    const repo = this.#repo;
    await writePackIndex(repo.storage, repo.keys, repo.config.chunkBytes, entries);
    await (await this.#table()).refresh();
    for (const e of entries) this.#runChunks.delete(chunkIdHex(e.id));
  }

  /**
   * Proves that every chunk an incremental carries over (the untouched slots' ids of the
   * previous restore point) is located (pack indexes, or a v1 chunk file) with a plausible
   * record length and that its pack exists: one pass over the previous index, one stat per
   * distinct pack. A missing one is REPO_MISSING, a wrong size REPO_CORRUPT, naming the chunk,
   * slot and point.
   */
  async #checkCarried(options: WriteDiskOptions, areas: Extent[], previous: IndexReader): Promise<void> {
    const { chunkBytes } = this.#repo.config;
    const storage = this.#repo.storage;
    const maxStoredBytes = chunkHeaderBytes + chunkBytes + boxOverheadBytes;
    const packs = new Map<string, boolean>();
    for (const { slot, parts } of slotsWithParts(areas, chunkBytes, options.capacityBytes)) {
      if (parts.length > 0) continue;
      options.signal?.throwIfAborted();
      const id = await previous.entry(slot);
      if (isZeroId(id)) continue;
      const location = await this.#repo.locate(id);
      let why: string | undefined;
      let missing = false;
      const file = location?.pack ? storage.describe(packRef(location.pack)) : storage.describe(chunkRef(chunkIdHex(id)));
      if (!location) {
        why = 'is in no pack and has no chunk file';
        missing = true;
      } else if (location.lengthBytes < chunkHeaderBytes || location.lengthBytes > maxStoredBytes) why = `is ${location.lengthBytes} bytes, not a chunk record`;
      else if (location.pack !== null) {
        let present = packs.get(location.pack);
        if (present === undefined) {
          const info = await storage.stat(packRef(location.pack)).catch(() => undefined);
          present = info !== undefined && info.sizeBytes >= location.offsetBytes + location.lengthBytes;
          packs.set(location.pack, present);
        }
        if (!present) {
          why = 'is in a pack that is missing or too short';
          missing = true;
        }
      }
      if (!why) continue;
      const hex = chunkIdHex(id);
      throw new RepositoryError(missing ? 'REPO_MISSING' : 'REPO_CORRUPT', `chunk ${hex} of disk ${options.deviceKey} slot ${slot} in restore point ${options.previous?.pointId} ${why} (${file}); it cannot be carried over`, { chunkId: hex, file, deviceKey: options.deviceKey, slot, pointId: options.previous?.pointId });
    }
  }

  /** Makes the restore point durable and visible; returns its id. */
  async commit(): Promise<string> {
    if (this.#done) throw new RepositoryError('REPO_INVALID_ARGUMENT', `restore point ${this.pointId} is already committed or aborted`, {});
    try {
      // Every pack durable and in a pack index before the manifest names its chunks.
      await this.#closePack();
      await Promise.all(this.#committing);
      await this.#flushIndex();
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

  /** Gives up: nothing becomes visible; written packs and indexes are garbage for GC. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      await this.#pack?.abort();
      await Promise.allSettled(this.#committing);
      // The packs that became durable are indexed, so the next backup finds their chunks and
      // does not send them again (a cut backup resumes); garbage to GC if none is ever used.
      await this.#flushIndex().catch(() => undefined);
    } finally {
      await this.#lock.release();
    }
  }
}
