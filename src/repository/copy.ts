// Copy restore points between two repositories (local to S3 off-site and back, or any pair):
// `vcbt copy`. A point is copied by writing it into the target as a full backup whose source
// is the point as stored in the source repository (a RestoredDisk), keeping its id, time, VM,
// snapshot and configuration. The target's writer chunks, names, compresses and encrypts with
// the target's own chunk size and keys, so differing keys (or plain to encrypted) re-encrypt,
// and a chunk the target already holds is not sent again (deduplication by its name there).
//
// - Already copied: a point whose id the target's manifests hold is skipped (the second copy of
//   the same points copies nothing).
// - Resumable: a copy cut short commits nothing for the point in progress (the manifest is
//   written last); its chunks already stored in the target are reused by the next run.
// - Verified: after each commit every disk is read back from the target (each chunk decoded:
//   authentication tag, decompression, hash) and compared byte for byte with the source;
//   a difference is REPO_CORRUPT naming the point, disk and offset.
// - Only the source's allocated (non-zero) chunks are read; zero chunks stay unstored.
import { RepositoryError } from './errors.ts';
import type { Repository } from './repository.ts';
import type { RestoredDisk } from './restored-disk.ts';

export interface CopiedPoint {
  id: string;
  /** copied now, or already in the target. */
  status: 'copied' | 'present';
  disks: number;
  bytesRead: number;
  /** Bytes of new chunk blobs stored in the target (0 when every chunk was there). */
  bytesStored: number;
  chunksNew: number;
  chunksReused: number;
}

export interface CopyReport {
  points: CopiedPoint[];
}

const compareStepBytes = 4 * 1024 * 1024;

/** Copies `pointIds` (source ids, oldest first) from `from` to `to`; `onPoint` hears of each. */
export async function copyPoints(from: Repository, to: Repository, pointIds: readonly string[], onPoint?: (point: CopiedPoint) => void): Promise<CopyReport> {
  const present = new Set(await to.listPointIds());
  const points: CopiedPoint[] = [];
  for (const id of pointIds) {
    const manifest = await from.readManifest(id);
    if (present.has(id)) {
      const done: CopiedPoint = { id, status: 'present', disks: manifest.disks.length, bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0 };
      points.push(done);
      onPoint?.(done);
      continue;
    }
    const copied: CopiedPoint = { id, status: 'copied', disks: manifest.disks.length, bytesRead: 0, bytesStored: 0, chunksNew: 0, chunksReused: 0 };
    const writer = await to.beginRestorePoint({ id, vm: manifest.vm, source: manifest.source, snapshot: manifest.snapshot, vmConfig: manifest.vmConfig, createdAt: new Date(manifest.createdAt) });
    try {
      for (const disk of manifest.disks) {
        const source = await from.openDisk(id, disk.deviceKey);
        try {
          const allocated = (await source.allocation({ offsetBytes: 0, lengthBytes: source.sizeBytes })).filter((e) => !e.zero).map((e) => ({ offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes }));
          const record = await writer.writeDisk({
            deviceKey: disk.deviceKey,
            label: disk.label,
            capacityBytes: disk.capacityBytes,
            changeId: disk.changeId,
            reader: source,
            allocatedAreas: allocated,
            // A chunk already in the target (an earlier, cut copy) is reused after the header check.
            checkExisting: 'header',
          });
          copied.bytesRead += record.stats.bytesRead;
          copied.bytesStored += record.stats.bytesStored;
          copied.chunksNew += record.stats.chunksNew;
          copied.chunksReused += record.stats.chunksReused;
        } finally {
          await source.close();
        }
      }
      await writer.commit();
    } catch (error) {
      await writer.abort().catch(() => undefined);
      throw error;
    }
    for (const disk of manifest.disks) await compareDisks(from, to, id, disk.deviceKey);
    points.push(copied);
    onPoint?.(copied);
  }
  return { points };
}

/** Reads a disk of a point from both repositories and compares every byte. */
async function compareDisks(from: Repository, to: Repository, pointId: string, deviceKey: number): Promise<void> {
  const opened: RestoredDisk[] = [];
  try {
    const a = await from.openDisk(pointId, deviceKey);
    opened.push(a);
    const b = await to.openDisk(pointId, deviceKey);
    opened.push(b);
    const left = Buffer.alloc(compareStepBytes);
    const right = Buffer.alloc(compareStepBytes);
    for (let at = 0; at < a.sizeBytes; at += compareStepBytes) {
      const n = Math.min(compareStepBytes, a.sizeBytes - at);
      await a.read(at, left.subarray(0, n));
      await b.read(at, right.subarray(0, n));
      if (!left.subarray(0, n).equals(right.subarray(0, n))) {
        throw new RepositoryError('REPO_CORRUPT', `the copy of restore point ${pointId} disk ${deviceKey} in ${to.path} differs from ${from.path} within bytes ${at}..${at + n}`, { pointId, deviceKey, offsetBytes: at });
      }
    }
  } finally {
    for (const disk of opened) await disk.close();
  }
}
