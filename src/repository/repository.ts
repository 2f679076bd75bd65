// Repository: a deduplicating, compressed, optionally encrypted, crash-safe store of disk
// restore points in a local directory. It knows nothing about vSphere.
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
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { WorkerFailure, WorkerPool } from '../pipeline/worker-pool.ts';
import type { ChunkReply, ChunkRequest, IngestWorkerData } from './chunk-protocol.ts';
import { allFanoutNames } from './chunk-store.ts';
import { configPath, newConfig, readConfig, type RepositoryConfig } from './config.ts';
import { createSealedKey, openSealedKey, type MasterKeys } from './crypto.ts';
import { RepositoryError } from './errors.ts';
import { isNotFound, mkdirPrivate, writeFileAtomic } from './files.ts';
import { RepositoryLock, defaultLockTiming, type LockKind, type LockTiming } from './lock.ts';
import { decodeManifest, manifestPath, type RestorePointManifest } from './manifest.ts';
import { RestorePointWriter, type RestorePointInfo } from './restore-point-writer.ts';
import { RestoredDisk } from './restored-disk.ts';

/**
 * 256 KiB: stores ~2.4 bytes per changed byte for scattered 64 KiB changes (1 MiB: ~6, 4 MiB:
 * ~15) at ~85% of 1 MiB's ingest speed; indexes are 128 MiB per TiB of disk. Measurements:
 * bench/README.md, "Repository".
 */
export const defaultChunkBytes = 256 * 1024;
export const defaultCompressionLevel = 1;

export interface InitOptions {
  chunkBytes?: number;
  compressionLevel?: number;
  /** Encrypt with a key sealed by this passphrase. */
  passphrase?: string;
  /** scrypt cost; tests lower it. */
  scryptCost?: { N: number; r: number; p: number };
}

export interface OpenOptions {
  passphrase?: string;
  /** Chunk worker threads (default: available cores). */
  workers?: number;
  lockTiming?: LockTiming;
}

export interface RestorePointSummary {
  id: string;
  createdAt: string;
  vm: RestorePointManifest['vm'];
  disks: Array<{ deviceKey: number; label: string; capacityBytes: number; kind: 'full' | 'incremental' }>;
}

const subdirectories = ['chunks', 'indexes', 'points', 'locks', 'tmp'];

export class Repository {
  readonly path: string;
  readonly config: RepositoryConfig;
  readonly keys: MasterKeys | undefined;
  readonly lockTiming: LockTiming;
  /** Chunks in flight per disk stream (ingest window, restore read-ahead). */
  readonly windowChunks: number;
  readonly #workers: number;
  #pool: WorkerPool<ChunkRequest, ChunkReply> | undefined;

  private constructor(repoPath: string, config: RepositoryConfig, keys: MasterKeys | undefined, options: OpenOptions) {
    this.path = repoPath;
    this.config = config;
    this.keys = keys;
    this.lockTiming = options.lockTiming ?? defaultLockTiming;
    this.#workers = options.workers ?? Math.max(1, os.availableParallelism());
    // Enough to keep every worker busy while the next chunks are being read from the source.
    this.windowChunks = this.#workers * 2 + 2;
  }

  /** Creates a repository in an empty or absent directory. */
  static async init(repoPath: string, options: InitOptions = {}): Promise<RepositoryConfig> {
    const existing: string[] = await fsp.readdir(repoPath).catch((error: unknown) => {
      if (isNotFound(error)) return [];
      throw error;
    });
    if (existing.includes('config.json')) throw new RepositoryError('REPO_EXISTS', `a repository already exists at ${repoPath}`, { repoPath });
    if (existing.length > 0) throw new RepositoryError('REPO_EXISTS', `${repoPath} is not empty; a repository needs an empty directory`, { repoPath });
    const sealed = options.passphrase !== undefined ? await createSealedKey(options.passphrase, options.scryptCost) : undefined;
    const config = newConfig(options.chunkBytes ?? defaultChunkBytes, options.compressionLevel ?? defaultCompressionLevel, sealed?.config ?? null);
    await mkdirPrivate(repoPath);
    for (const sub of subdirectories) await mkdirPrivate(path.join(repoPath, sub));
    for (const fanout of allFanoutNames()) await mkdirPrivate(path.join(repoPath, 'chunks', fanout));
    // config.json last: a crashed init leaves no half repository that looks valid.
    await writeFileAtomic(path.join(repoPath, 'tmp'), configPath(repoPath), JSON.stringify(config, null, 2) + '\n');
    return config;
  }

  static async open(repoPath: string, options: OpenOptions = {}): Promise<Repository> {
    const resolved = path.resolve(repoPath);
    const config = await readConfig(resolved);
    let keys: MasterKeys | undefined;
    if (config.encryption) {
      if (options.passphrase === undefined) {
        throw new RepositoryError('REPO_PASSPHRASE_REQUIRED', `repository ${resolved} is encrypted: give a passphrase (VCBT_PASSPHRASE or --passphrase-file)`, { repoPath: resolved });
      }
      keys = await openSealedKey(options.passphrase, config.encryption, resolved);
    }
    return new Repository(resolved, config, keys, options);
  }

  /** Stops the chunk workers. */
  async close(): Promise<void> {
    await this.#pool?.close();
    this.#pool = undefined;
  }

  pool(): WorkerPool<ChunkRequest, ChunkReply> {
    if (!this.#pool) {
      const workerData: IngestWorkerData = {
        repoPath: this.path,
        compressionLevel: this.config.compression.level,
        keyMaterial: this.keys ? new Uint8Array(Buffer.concat([this.keys.dataKey, this.keys.idKey])) : null,
      };
      this.#pool = new WorkerPool(new URL('./chunk-worker.ts', import.meta.url), this.#workers, workerData);
    }
    return this.#pool;
  }

  /** Turns a worker's failure into a RepositoryError naming `where`. */
  workerError(error: unknown, where: string): Error {
    if (error instanceof WorkerFailure && error.code) return new RepositoryError(error.code, `${where}: ${error.message}`, error.context, { cause: error });
    return error instanceof Error ? error : new Error(String(error));
  }

  lock(kind: LockKind, purpose: string): Promise<RepositoryLock> {
    return RepositoryLock.acquire(this.path, kind, purpose, this.lockTiming);
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
    const names = await fsp.readdir(path.join(this.path, 'points'));
    return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)).sort();
  }

  async readManifest(pointId: string): Promise<RestorePointManifest> {
    const file = manifestPath(this.path, pointId);
    let bytes: Buffer;
    try {
      bytes = await fsp.readFile(file);
    } catch (error) {
      if (isNotFound(error)) throw new RepositoryError('REPO_POINT_NOT_FOUND', `no restore point ${pointId} in ${this.path}`, { pointId }, { cause: error });
      throw error;
    }
    return decodeManifest(bytes, pointId, this.keys, file);
  }

  /** Readable restore points, oldest first. Damaged manifests are left to verify to report. */
  async listRestorePoints(): Promise<RestorePointSummary[]> {
    const summaries: RestorePointSummary[] = [];
    for (const id of await this.listPointIds()) {
      let manifest: RestorePointManifest;
      try {
        manifest = await this.readManifest(id);
      } catch (error) {
        if (error instanceof RepositoryError && (error.code === 'REPO_CORRUPT' || error.code === 'REPO_POINT_NOT_FOUND')) continue;
        throw error;
      }
      summaries.push({
        id,
        createdAt: manifest.createdAt,
        vm: manifest.vm,
        disks: manifest.disks.map((d) => ({ deviceKey: d.deviceKey, label: d.label, capacityBytes: d.capacityBytes, kind: d.kind })),
      });
    }
    return summaries.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
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
