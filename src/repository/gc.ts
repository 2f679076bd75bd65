// Garbage collection: delete chunk and index files that no remaining manifest references,
// and left-over temp files.
//
// Why this never deletes a chunk a concurrent backup still needs: GC runs only under the
// exclusive lock, which cannot be acquired while any live shared lock (every backup holds
// one from begin to commit) exists, and no backup can start while it is held. So at GC time
// every unreferenced chunk belongs to a backup that is dead (crashed) or whose lock went
// stale. A stale-but-alive writer (frozen for longer than staleAfterMs) finds its lock file
// removed by prune and refuses to commit (REPO_LOCK_LOST), so its manifest never points at
// swept chunks. The remaining window - a writer frozen exactly between its lock check and its
// manifest rename while GC runs - needs a freeze longer than staleAfterMs at that instant.
//
// Temp files (staged blobs) are removed only when older than the lock stale time: prune must
// never pull a temp file from under a live writer (a process taking its lock writes it
// through tmp/ while GC may hold the exclusive lock).
//
// Object Lock (object stores): an unreferenced blob still locked cannot be deleted; it is left
// (lockedKept) for a prune after its retention date, never an error.
//
// If any manifest or index cannot be read, GC marks nothing as garbage (a damaged file might
// reference anything) and only removes temp files: run verify, fix or delete the point.
import { chunkIdHex, chunkRef } from './chunk-store.ts';
import { IndexReader, indexRef, isZeroId } from './disk-index.ts';
import type { Repository } from './repository.ts';
import { RepositoryError } from './errors.ts';
import type { BlobRef } from './storage/storage.ts';

export interface GcReport {
  chunksDeleted: number;
  bytesDeleted: number;
  indexesDeleted: number;
  tempFilesDeleted: number;
  /** Temp files too young to be left-overs (a live process may be writing them). */
  tempFilesKept: number;
  chunksKept: number;
  /** Unreferenced chunks and indexes still under Object Lock: left for a later prune. */
  lockedKept: number;
  /** Set when sweeping was skipped; says why. */
  skippedReason: string | null;
}

export interface GcOptions {
  /** Restore points to treat as already deleted (a prune in progress or its dry run). */
  excludePoints?: ReadonlySet<string>;
  dryRun?: boolean;
  /** Now, for the temp file age rule (tests). */
  nowMs?: number;
}

/** Caller holds the exclusive lock (or, for a dry run, any lock). */
export async function collectGarbage(repo: Repository, options: GcOptions = {}): Promise<GcReport> {
  const report: GcReport = { chunksDeleted: 0, bytesDeleted: 0, indexesDeleted: 0, tempFilesDeleted: 0, tempFilesKept: 0, chunksKept: 0, lockedKept: 0, skippedReason: null };
  const storage = repo.storage;
  const batch = storage.newPublishBatch();
  /** false when Object Lock keeps the blob (counted in lockedKept, never an error). */
  const remove = async (ref: BlobRef): Promise<boolean> => {
    try {
      if (options.dryRun && (await storage.lockedUntilMs?.(ref)) !== undefined) throw new RepositoryError('S3_OBJECT_LOCKED', 'locked', {});
      if (!options.dryRun) await storage.delete(ref, batch);
      return true;
    } catch (error) {
      if (!(error instanceof RepositoryError && error.code === 'S3_OBJECT_LOCKED')) throw error;
      report.lockedKept++;
      return false;
    }
  };
  // A temp file younger than a lock's stale time may belong to a live process that is just
  // taking its lock (that write goes through a temp file too): left alone, removed by a later GC.
  const tempCutoffMs = (options.nowMs ?? Date.now()) - repo.lockTiming.staleAfterMs;
  for (const staged of await storage.listStaged()) {
    if (staged.modifiedMs > tempCutoffMs) {
      report.tempFilesKept++;
      continue;
    }
    if (!options.dryRun) await storage.discard(staged.token);
    report.tempFilesDeleted++;
  }

  const liveIndexes = new Set<string>();
  const liveChunks = new Set<string>();
  try {
    for (const pointId of await repo.listPointIds()) {
      if (options.excludePoints?.has(pointId)) continue;
      const manifest = await repo.readManifest(pointId);
      for (const disk of manifest.disks) {
        if (liveIndexes.has(disk.index.sha256)) continue;
        liveIndexes.add(disk.index.sha256);
        const index = await IndexReader.open(storage, disk.index, repo.keys);
        try {
          for await (const id of index.entries()) if (!isZeroId(id)) liveChunks.add(chunkIdHex(id));
        } finally {
          await index.close();
        }
      }
    }
  } catch (error) {
    report.skippedReason = `cannot mark referenced chunks: ${(error as Error).message}`;
    return report;
  }

  for await (const name of storage.list('index')) {
    if (!liveIndexes.has(name) && (await remove(indexRef(name)))) report.indexesDeleted++;
  }
  for await (const name of storage.list('chunk')) {
    if (liveChunks.has(name)) {
      report.chunksKept++;
      continue;
    }
    const sizeBytes = (await storage.stat(chunkRef(name)))?.sizeBytes ?? 0;
    if (!(await remove(chunkRef(name)))) continue;
    report.bytesDeleted += sizeBytes;
    report.chunksDeleted++;
  }
  await batch.sync();
  return report;
}
