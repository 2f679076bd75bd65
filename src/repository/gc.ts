// Garbage collection: delete chunk and index files that no remaining manifest references,
// and leftover temp files.
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
// If any manifest or index cannot be read, GC marks nothing as garbage (a damaged file might
// reference anything) and only removes temp files: run verify, fix or delete the point.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { allFanoutNames, chunkIdHex } from './chunk-store.ts';
import { IndexReader, isZeroId } from './disk-index.ts';
import type { Repository } from './repository.ts';

export interface GcReport {
  chunksDeleted: number;
  bytesDeleted: number;
  indexesDeleted: number;
  tempFilesDeleted: number;
  chunksKept: number;
  /** Set when sweeping was skipped; says why. */
  skippedReason: string | null;
}

export interface GcOptions {
  /** Restore points to treat as already deleted (a prune in progress or its dry run). */
  excludePoints?: ReadonlySet<string>;
  dryRun?: boolean;
}

/** Caller holds the exclusive lock (or, for a dry run, any lock). */
export async function collectGarbage(repo: Repository, options: GcOptions = {}): Promise<GcReport> {
  const report: GcReport = { chunksDeleted: 0, bytesDeleted: 0, indexesDeleted: 0, tempFilesDeleted: 0, chunksKept: 0, skippedReason: null };
  const remove = async (file: string) => {
    if (!options.dryRun) await fsp.rm(file, { force: true });
  };
  const tmpDir = path.join(repo.path, 'tmp');
  for (const name of await fsp.readdir(tmpDir)) {
    await remove(path.join(tmpDir, name));
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
        const index = await IndexReader.open(repo.path, disk.index, repo.keys);
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

  const indexDir = path.join(repo.path, 'indexes');
  for (const name of await fsp.readdir(indexDir)) {
    if (!liveIndexes.has(name.replace(/\.idx$/, ''))) {
      await remove(path.join(indexDir, name));
      report.indexesDeleted++;
    }
  }
  for (const fanout of allFanoutNames()) {
    const dir = path.join(repo.path, 'chunks', fanout);
    for (const name of await fsp.readdir(dir)) {
      if (liveChunks.has(name)) {
        report.chunksKept++;
        continue;
      }
      const file = path.join(dir, name);
      report.bytesDeleted += (await fsp.stat(file)).size;
      await remove(file);
      report.chunksDeleted++;
    }
  }
  return report;
}
