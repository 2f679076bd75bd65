// Repository: a deduplicating, compressed, optionally encrypted, crash-safe store of disk
// restore points on a Storage (storage/storage.ts: a local directory today, storage/local.ts;
// in memory for tests, storage/memory.ts). It knows nothing about vSphere.
//
// Vocabulary
// - Chunk: chunkBytes of a disk at an aligned offset (the last one of a disk may be short),
//   stored once as chunks/ab/<id>, where id = SHA-256 of the plaintext (HMAC-SHA-256 under a
//   secret key when encrypted). All-zero chunks are never stored.
// - Slot: position i of a disk, bytes [i * chunkBytes, (i + 1) * chunkBytes).
// - Index: per disk per restore point, the chunk id of every slot (indexes/<sha256>.idx).
// - Restore point: a manifest (points/<id>.json) naming the VM, its source, time, snapshot,
//   configuration and per disk the index. Every restore point restores on its own.
// - Full / incremental: a full reads the given allocated areas; an incremental reads only the
//   changed areas and takes the rest of each touched chunk from an earlier restore point.
// - Lock: shared (backup, read, verify) or exclusive (prune/GC), see lock.ts.
// - GC: deleting chunks and indexes no manifest references (gc.ts).
// The on-disk format is specified in docs/format.md.
import * as os from 'node:os';
import type { Transferable } from 'node:worker_threads';
import { WorkerFailure, WorkerPool } from '../pipeline/worker-pool.ts';
import type { ChunkReply, ChunkRequest, ChunkWorkerData } from './chunk-protocol.ts';
import { ChunkWork } from './chunk-work.ts';
import { checkImmutableDays, newConfig, readConfig, type RepositoryConfig } from './config.ts';
import { createSealedKey, openSealedKey, type MasterKeys } from './crypto.ts';
import { RepositoryError } from './errors.ts';
import { isErrorCode } from '../errors.ts';
import { RepositoryLock, defaultLockTiming, type LockKind, type LockTiming } from './lock.ts';
import { decodeManifest, pointRef, type RestorePointManifest } from './manifest.ts';
import { RestorePointWriter, type RestorePointInfo } from './restore-point-writer.ts';
import { checkEncryptionConsistent, encodeKeyFile, keyRef } from './key-file.ts';
import { listCommitted, pointIdTime } from './point-records.ts';
import { RestoredDisk } from './restored-disk.ts';
import { LocalStorage } from './storage/local.ts';
import { isS3Url, S3Storage, s3SettingsFrom, type S3Settings } from './storage/s3.ts';
import { configRef, isBlobNotFound, isValidBlobName, type Storage, type StorageFeatures } from './storage/storage.ts';

/**
 * 256 KiB: stores ~2.4 bytes per changed byte for scattered 64 KiB changes (1 MiB: ~6, 4 MiB:
 * ~15) at ~85% of 1 MiB's ingest speed; indexes are 128 MiB per TiB of disk. Measurements:
 * bench/README.md, "Repository".
 */
export const defaultChunkBytes = 256 * 1024;
export const defaultCompressionLevel = 1;
/** Far above any real manifest (a few KiB per disk, plus the caller's VM configuration). */
const maxManifestBytes = 64 * 1024 * 1024;

export interface InitOptions {
  chunkBytes?: number;
  compressionLevel?: number;
  /** Encrypt with a key sealed by this passphrase. */
  passphrase?: string;
  /** scrypt cost; tests lower it. */
  scryptCost?: { N: number; r: number; p: number };
  /** Object Lock retention of every restore point's blobs (an object store with Object Lock). */
  immutableDays?: number;
  /** Where an s3:// location's endpoint and credentials come from (default: process.env). */
  env?: NodeJS.ProcessEnv;
  s3?: S3Entry;
}

/** A repository entry's object-store settings (service config); win over the environment. */
export type S3Entry = Partial<Omit<S3Settings, 'bucket' | 'prefix'>>;

export interface OpenOptions {
  passphrase?: string;
  /** Chunk worker threads (default: available cores). */
  workers?: number;
  lockTiming?: LockTiming;
  /** Object Lock days for what this opening writes; overrides the repository's (a job's own). */
  immutableDays?: number;
  env?: NodeJS.ProcessEnv;
  s3?: S3Entry;
}

/** A restore point as listed: readable (summary) or damaged (manifest unreadable or gone: why). */
export interface PointListing {
  id: string;
  /** The manifest's time, or for a damaged point the time its id carries. */
  createdAt: string;
  summary: RestorePointSummary | undefined;
  /** Why the manifest cannot be used; undefined when it reads. */
  damage: { code: string; message: string } | undefined;
}

export interface RestorePointSummary {
  id: string;
  createdAt: string;
  vm: RestorePointManifest['vm'];
  disks: Array<{ deviceKey: number; label: string; capacityBytes: number; kind: 'full' | 'incremental' }>;
}

/** Runs chunk requests: the worker pool, or the calling thread for a storage threads cannot share. */
export interface ChunkRunner {
  run(request: ChunkRequest, transfer?: Transferable[]): Promise<ChunkReply>;
  close(): Promise<void>;
}

/** A directory path (the local storage), an s3://BUCKET/PREFIX URL, or any Storage. */
export type RepositoryLocation = string | Storage;

export function storageOf(location: RepositoryLocation, options: { env?: NodeJS.ProcessEnv; s3?: S3Entry } = {}): Storage {
  if (typeof location !== 'string') return location;
  if (isS3Url(location)) return new S3Storage(s3SettingsFrom(location, options.env ?? process.env, options.s3));
  return new LocalStorage(location);
}

/**
 * Checks a remote storage (bucket, credentials, clock: named errors before any work) and sets
 * the Object Lock retention `days` asks for; refused where the storage cannot lock.
 */
async function checkStorage(storage: Storage): Promise<StorageFeatures> {
  return storage.open ? await storage.open() : { objectLock: false };
}

function applyRetention(storage: Storage, features: StorageFeatures, days: number): void {
  checkImmutableDays(days);
  if (days === 0) return;
  if (!features.objectLock) {
    throw new RepositoryError('REPO_NO_OBJECT_LOCK', `${storage.location} cannot keep restore points immutable for ${days} days: ${storage.open ? 'its bucket was not created with Object Lock' : 'only an object store with Object Lock can (s3://BUCKET/PREFIX)'}`, { repoPath: storage.location, immutableDays: days });
  }
  storage.retentionDays = days;
}

export class Repository {
  /** The storage's location (a directory), for messages. */
  readonly path: string;
  readonly storage: Storage;
  readonly config: RepositoryConfig;
  readonly keys: MasterKeys | undefined;
  readonly lockTiming: LockTiming;
  /** Chunks in flight per disk stream (ingest window, restore read-ahead). */
  readonly windowChunks: number;
  readonly #workers: number;
  #pool: ChunkRunner | undefined;

  private constructor(storage: Storage, config: RepositoryConfig, keys: MasterKeys | undefined, options: OpenOptions) {
    this.storage = storage;
    this.path = storage.location;
    this.config = config;
    this.keys = keys;
    this.lockTiming = options.lockTiming ?? defaultLockTiming;
    this.#workers = options.workers ?? Math.max(1, os.availableParallelism());
    // Enough to keep every worker busy while the next chunks are being read from the source.
    this.windowChunks = this.#workers * 2 + 2;
  }

  /** Creates a repository in an empty or absent directory (or an empty storage). */
  static async init(location: RepositoryLocation, options: InitOptions = {}): Promise<RepositoryConfig> {
    const storage = storageOf(location, options);
    const sealed = options.passphrase !== undefined ? await createSealedKey(options.passphrase, options.scryptCost) : undefined;
    const config = newConfig(options.chunkBytes ?? defaultChunkBytes, options.compressionLevel ?? defaultCompressionLevel, sealed?.config ?? null, options.immutableDays ?? 0);
    applyRetention(storage, await checkStorage(storage), config.immutableDays ?? 0);
    await storage.create();
    // The key file before config: config.json alone can never make this repository plain.
    if (config.encryption) await storage.put(keyRef(config.id), encodeKeyFile(config));
    // config last: a crashed init leaves no half repository that looks valid.
    await storage.put(configRef, JSON.stringify(config, null, 2) + '\n');
    return config;
  }

  static async open(location: RepositoryLocation, options: OpenOptions = {}): Promise<Repository> {
    const storage = storageOf(location, options);
    const resolved = storage.location;
    if (options.immutableDays !== undefined) checkImmutableDays(options.immutableDays);
    const features = await checkStorage(storage);
    const config = await readConfig(storage);
    applyRetention(storage, features, options.immutableDays ?? config.immutableDays ?? 0);
    await checkEncryptionConsistent(storage, config, options.passphrase !== undefined);
    let keys: MasterKeys | undefined;
    if (config.encryption) {
      if (options.passphrase === undefined) {
        throw new RepositoryError('REPO_PASSPHRASE_REQUIRED', `repository ${resolved} is encrypted: give a passphrase (VCBT_PASSPHRASE or --passphrase-file)`, { repoPath: resolved });
      }
      keys = await openSealedKey(options.passphrase, config.encryption, resolved);
    }
    return new Repository(storage, config, keys, options);
  }

  /** Stops the chunk workers. */
  async close(): Promise<void> {
    await this.#pool?.close();
    this.#pool = undefined;
  }

  pool(): ChunkRunner {
    if (!this.#pool) {
      const descriptor = this.storage.threadDescriptor();
      if (descriptor) {
        const workerData: ChunkWorkerData = {
          storage: descriptor,
          compressionLevel: this.config.compression.level,
          chunkBytes: this.config.chunkBytes,
          keyMaterial: this.keys ? new Uint8Array(Buffer.concat([this.keys.dataKey, this.keys.idKey])) : null,
        };
        this.#pool = new WorkerPool<ChunkRequest, ChunkReply>(new URL('./chunk-worker.ts', import.meta.url), this.#workers, workerData);
      } else {
        const work = new ChunkWork(this.storage, this.keys, this.config.compression.level, this.config.chunkBytes);
        this.#pool = { run: (request) => work.handle(request), close: async () => undefined };
      }
    }
    return this.#pool;
  }

  /** Turns a worker's failure into a RepositoryError naming `where`. */
  workerError(error: unknown, where: string): Error {
    if ((error instanceof WorkerFailure || error instanceof RepositoryError) && error.code !== undefined && isErrorCode(error.code)) return new RepositoryError(error.code, `${where}: ${error.message}`, { ...error.context }, { cause: error });
    return error instanceof Error ? error : new Error(String(error));
  }

  lock(kind: LockKind, purpose: string): Promise<RepositoryLock> {
    return RepositoryLock.acquire(this.storage, kind, purpose, this.lockTiming);
  }

  /** Starts a restore point under a shared lock (held until commit or abort). */
  async beginRestorePoint(info: RestorePointInfo): Promise<RestorePointWriter> {
    if (typeof info.vm?.id !== 'string' || typeof info.vm.name !== 'string') {
      throw new RepositoryError('REPO_INVALID_ARGUMENT', 'a restore point needs vm.id and vm.name', {});
    }
    // No VM name in the purpose: lock files are plain text even in an encrypted repository.
    const lock = await this.lock('shared', 'backup');
    return new RestorePointWriter(this, lock, info);
  }

  /** Ids of every manifest file, oldest first (ids start with their UTC time). */
  async listPointIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const id of this.storage.list('point')) ids.push(id);
    return ids.sort();
  }

  async readManifest(pointId: string): Promise<RestorePointManifest> {
    if (!isValidBlobName('point', pointId)) {
      // Never made a path: `--point ../config` names no restore point.
      throw new RepositoryError('REPO_POINT_NOT_FOUND', `no restore point "${pointId}" in ${this.path} (not a restore point id: YYYYMMDDTHHMMSSZ-8 hex digits)`, { pointId });
    }
    const file = this.storage.describe(pointRef(pointId));
    let bytes: Buffer;
    try {
      bytes = await this.storage.get(pointRef(pointId), { maxBytes: maxManifestBytes });
    } catch (error) {
      if (isBlobNotFound(error)) throw new RepositoryError('REPO_POINT_NOT_FOUND', `no restore point ${pointId} in ${this.path}`, { pointId }, { cause: error });
      throw error;
    }
    return decodeManifest(bytes, pointId, this.keys, file);
  }

  /**
   * Every restore point, oldest first: each manifest, and each committed record whose manifest
   * is gone (point-records.ts). A manifest that cannot be read (damaged, of an unknown
   * version, not a regular file, absent) is listed with its `damage`, never left out.
   */
  async listPoints(): Promise<PointListing[]> {
    const ids = new Set([...(await this.listPointIds()), ...(await listCommitted(this.storage))]);
    const listed: PointListing[] = [];
    for (const id of ids) {
      let manifest: RestorePointManifest;
      try {
        manifest = await this.readManifest(id);
      } catch (error) {
        if (!(error instanceof RepositoryError) || error.code === 'REPO_IO') throw error;
        const damage =
          error.code === 'REPO_POINT_NOT_FOUND'
            ? { code: 'REPO_MISSING', message: `manifest ${this.storage.describe(pointRef(id))} is missing: restore point ${id} was committed and not removed by prune` }
            : { code: error.code, message: error.message };
        listed.push({ id, createdAt: pointIdTime(id), summary: undefined, damage });
        continue;
      }
      const summary = {
        id,
        createdAt: manifest.createdAt,
        vm: manifest.vm,
        disks: manifest.disks.map((d) => ({ deviceKey: d.deviceKey, label: d.label, capacityBytes: d.capacityBytes, kind: d.kind })),
      };
      listed.push({ id, createdAt: manifest.createdAt, summary, damage: undefined });
    }
    return listed.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  /**
   * Readable restore points, oldest first. A damaged one (see listPoints) is passed to
   * `onDamaged`: one bad point never stops listing, restoring or backing up the others.
   */
  async listRestorePoints(onDamaged?: (pointId: string, damage: { code: string; message: string }) => void): Promise<RestorePointSummary[]> {
    const summaries: RestorePointSummary[] = [];
    for (const point of await this.listPoints()) {
      if (point.summary) summaries.push(point.summary);
      else if (point.damage) onDamaged?.(point.id, point.damage);
    }
    return summaries;
  }

  /**
   * One disk of a restore point, for reads, allocation maps and streaming restores. Holds a
   * shared lock (so prune cannot collect its chunks) until `close()`.
   */
  async openDisk(pointId: string, deviceKey: number): Promise<RestoredDisk> {
    const lock = await this.lock('shared', `read of restore point ${pointId} disk ${deviceKey}`);
    try {
      const manifest = await this.readManifest(pointId);
      const disk = manifest.disks.find((d) => d.deviceKey === deviceKey);
      if (!disk) throw new RepositoryError('REPO_DISK_NOT_FOUND', `restore point ${pointId} has no disk ${deviceKey}`, { pointId, deviceKey });
      return await RestoredDisk.open(this, pointId, disk, lock);
    } catch (error) {
      await lock.release();
      throw error;
    }
  }
}

/** The storage of an existing repository (config checked), for work that needs no keys (unlock). */
export async function openRepositoryStorage(location: RepositoryLocation, options: { env?: NodeJS.ProcessEnv; s3?: S3Entry } = {}): Promise<Storage> {
  const storage = storageOf(location, options);
  await checkStorage(storage);
  await readConfig(storage);
  return storage;
}
