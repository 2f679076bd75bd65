// Garbage collection: delete what no remaining manifest references - disk index files, packs
// (format v2), v1 chunk files - and left-over temp files; repack partly dead packs.
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
// Packs (docs/format.md, "Garbage collection"): marking sets one byte per pack index entry
// (typed array) for every stored copy of every referenced chunk. A pack with no live entry,
// or listed by no pack index (a crashed writer's), is deleted. A pack whose dead bytes reach
// repackDeadShare of its records is repacked (salvage.ts rewritePack: its live records copied
// into a new pack, new pack and its pack index durable first). Then every pack index that
// lists a deleted, repacked or missing pack is replaced by one without those entries (new
// file durable, then the old one deleted), and only then are the packs deleted. A crash at
// any step leaves duplicates or unreferenced packs, which the next GC removes, never an entry
// a manifest needs pointing at a deleted pack.
//
// Object Lock (object stores): an unreferenced blob still locked cannot be deleted; it is left
// (lockedKept) for a prune after its retention date, never an error, and a locked pack is not
// repacked (its dead bytes cannot be freed before its date anyway).
//
// If any manifest or index cannot be read, GC marks nothing as garbage (a damaged file might
// reference anything) and only removes temp files: run verify, fix or delete the point.
import { chunkIdHex, chunkRef } from './chunk-store.ts';
import { IndexReader, indexRef, isZeroId } from './disk-index.ts';
import { writePackIndex, type PackIndexEntry } from './pack-index.ts';
import { packRef, type PackEntry } from './pack.ts';
import type { Repository } from './repository.ts';
import { RepositoryError } from './errors.ts';
import { rewritePack } from './salvage.ts';
import type { BlobRef } from './storage/storage.ts';

/** A pack is repacked once this share of its record bytes is dead (docs/format.md, "Garbage collection"). */
export const repackDeadShare = 0.2;

export interface GcReport {
  /** Chunks no longer stored: v1 chunk files deleted and dead records in deleted or repacked packs. */
  chunksDeleted: number;
  bytesDeleted: number;
  indexesDeleted: number;
  tempFilesDeleted: number;
  /** Temp files too young to be left-overs (a live process may be writing them). */
  tempFilesKept: number;
  chunksKept: number;
  /** Unreferenced blobs (chunk files, indexes, packs, pack indexes) still under Object Lock: left for a later prune. */
  lockedKept: number;
  packsDeleted: number;
  packsRepacked: number;
  /** Pack index files replaced by smaller ones (or deleted) because packs they list went away. */
  packIndexesRewritten: number;
  /** Dead record bytes left in packs below the repack threshold. */
  deadBytesKept: number;
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

interface PackUse {
  liveBytes: number;
  deadBytes: number;
  liveEntries: number;
  deadEntries: number;
}

/** Caller holds the exclusive lock (or, for a dry run, any lock). */
export async function collectGarbage(repo: Repository, options: GcOptions = {}): Promise<GcReport> {
  const report: GcReport = { chunksDeleted: 0, bytesDeleted: 0, indexesDeleted: 0, tempFilesDeleted: 0, tempFilesKept: 0, chunksKept: 0, lockedKept: 0, packsDeleted: 0, packsRepacked: 0, packIndexesRewritten: 0, deadBytesKept: 0, skippedReason: null };
  const storage = repo.storage;
  const batch = storage.newPublishBatch();
  const isLocked = async (ref: BlobRef): Promise<boolean> => (storage.lockedUntilMs ? (await storage.lockedUntilMs(ref)) !== undefined : false);
  /** false when Object Lock keeps the blob (counted in lockedKept, never an error). */
  const remove = async (ref: BlobRef): Promise<boolean> => {
    try {
      if (options.dryRun && (await isLocked(ref))) throw new RepositoryError('S3_OBJECT_LOCKED', 'locked', {});
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

  const table = await repo.chunkTable();
  const live = new Uint8Array(table.size);
  const liveIndexes = new Set<string>();
  /** Referenced chunks no pack index lists: format-v1 chunk files. */
  const liveFiles = new Set<string>();
  try {
    for (const pointId of await repo.listPointIds()) {
      if (options.excludePoints?.has(pointId)) continue;
      const manifest = await repo.readManifest(pointId);
      for (const disk of manifest.disks) {
        if (liveIndexes.has(disk.index.sha256)) continue;
        liveIndexes.add(disk.index.sha256);
        const index = await IndexReader.open(storage, disk.index, repo.keys);
        try {
          for await (const id of index.entries()) {
            if (isZeroId(id)) continue;
            const ordinals = await table.ordinalsOf(id);
            for (const ordinal of ordinals) live[ordinal] = 1;
            if (ordinals.length === 0) liveFiles.add(chunkIdHex(id));
          }
        } finally {
          await index.close();
        }
      }
    }
    if (table.damaged.size > 0) throw new Error(`pack index ${[...table.damaged.keys()][0]} is damaged`);
  } catch (error) {
    report.skippedReason = `cannot mark referenced chunks: ${(error as Error).message}`;
    return report;
  }

  for await (const name of storage.list('index')) {
    if (!liveIndexes.has(name) && (await remove(indexRef(name)))) report.indexesDeleted++;
  }
  for await (const name of storage.list('chunk')) {
    if (liveFiles.has(name)) {
      report.chunksKept++;
      continue;
    }
    const sizeBytes = (await storage.stat(chunkRef(name)))?.sizeBytes ?? 0;
    if (!(await remove(chunkRef(name)))) continue;
    report.bytesDeleted += sizeBytes;
    report.chunksDeleted++;
  }

  // Packs: use per pack, from one pass over the pack index entries.
  const present = new Set<string>();
  for await (const name of storage.list('pack')) present.add(name);
  const use = new Map<string, PackUse>();
  for await (const e of table.entries()) {
    if (!present.has(e.pack)) continue;
    const u = use.get(e.pack) ?? { liveBytes: 0, deadBytes: 0, liveEntries: 0, deadEntries: 0 };
    if (live[e.ordinal]) {
      u.liveBytes += e.lengthBytes;
      u.liveEntries++;
    } else {
      u.deadBytes += e.lengthBytes;
      u.deadEntries++;
    }
    use.set(e.pack, u);
  }
  const goners = new Set<string>();
  const toRepack: string[] = [];
  for (const name of present) {
    const u = use.get(name);
    if (!u || u.liveEntries === 0) goners.add(name);
    else if (u.deadBytes > 0 && u.deadBytes >= repackDeadShare * (u.liveBytes + u.deadBytes) && !(await isLocked(packRef(name)))) toRepack.push(name);
    else report.deadBytesKept += u.deadBytes;
    report.chunksKept += u?.liveEntries ?? 0;
  }
  for (const name of goners) {
    const u = use.get(name);
    report.chunksDeleted += u?.deadEntries ?? 0;
    report.bytesDeleted += (await storage.stat(packRef(name)))?.sizeBytes ?? 0;
  }
  if (toRepack.length > 0) {
    // The live ids of the packs to repack (a second pass; at most a pack's entries each).
    const keep = new Map<string, Set<string>>(toRepack.map((name) => [name, new Set<string>()]));
    const records = new Map<string, PackEntry[]>(toRepack.map((name) => [name, []]));
    for await (const e of table.entries()) {
      records.get(e.pack)?.push({ id: Buffer.from(e.id), offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes });
      if (live[e.ordinal]) keep.get(e.pack)?.add(chunkIdHex(e.id));
    }
    for (const name of toRepack) {
      const u = use.get(name) as PackUse;
      report.packsRepacked++;
      report.chunksDeleted += u.deadEntries;
      report.bytesDeleted += u.deadBytes;
      goners.add(name);
      if (options.dryRun) continue;
      const liveIds = keep.get(name) as Set<string>;
      const { newPack } = await rewritePack(repo, name, (hex) => liveIds.has(hex), records.get(name));
      if (newPack) present.add(newPack);
    }
  }

  // Pack indexes listing a pack that goes (or is gone) are replaced without those entries.
  const stays = (pack: string) => present.has(pack) && !goners.has(pack);
  const stale = new Set<string>();
  for await (const e of table.entries()) if (!stays(e.pack)) stale.add(e.file);
  for (const file of stale) {
    report.packIndexesRewritten++;
    if (options.dryRun) continue;
    // One file's surviving entries at a time (a pack index holds at most a run's flush).
    const kept: PackIndexEntry[] = [];
    for await (const e of table.entries(file)) if (stays(e.pack)) kept.push({ id: Buffer.from(e.id), pack: e.pack, offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes });
    if (kept.length > 0) await writePackIndex(storage, repo.keys, repo.config.chunkBytes, kept, table.createdAtMs(file));
  }
  for (const file of stale) await remove({ kind: 'packindex', name: file });
  await batch.sync(); // the old pack indexes are gone before any pack they list
  for (const name of goners) if (await remove(packRef(name))) report.packsDeleted++;
  await batch.sync();
  if (!options.dryRun) await repo.chunkTable();
  return report;
}
