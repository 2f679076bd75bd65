// Records kept next to the restore points (docs/format.md, "Committed records" and "Check
// records"), small plain JSON files that never hold a VM name or any disk content:
//
// - Committed record (committed/<point id>.json): written by the writer right after a point's
//   manifest, deleted by prune right before it deletes the manifest. So a committed record
//   whose manifest is absent means the manifest disappeared outside prune (a crash can only
//   leave the opposite: a manifest without its record, which verify adds back).
// - Check record (checks/<point id>.json): verify's last result for the point: clean, damaged
//   (verify found damage) or unrecoverable (verify --repair: the slots listed are lost for
//   good), with the byte ranges lost per disk. Backups read it: a disk of a point marked
//   damaged is never the baseline of an incremental.
import type { Extent } from '../extents/extent.ts';
import { RepositoryError } from './errors.ts';
import { arrayOf, boolean, check, object, oneOf, pattern, safeInteger, timestamp } from './schema.ts';
import type { BlobRef, Storage } from './storage/storage.ts';

const maxRecordBytes = 16 * 1024 * 1024;

export function committedRef(pointId: string): BlobRef {
  return { kind: 'committed', name: pointId };
}

export function checkRef(pointId: string): BlobRef {
  return { kind: 'check', name: pointId };
}

export async function writeCommittedRecord(storage: Storage, pointId: string, committedAt = new Date()): Promise<void> {
  await storage.put(committedRef(pointId), JSON.stringify({ format: 'vcbt-committed', version: 1, pointId, committedAt: committedAt.toISOString() }) + '\n');
}

/** Point ids of every committed record. */
export async function listCommitted(storage: Storage): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const id of storage.list('committed')) ids.add(id);
  return ids;
}

export type PointStatus = 'clean' | 'damaged' | 'unrecoverable';

/** One disk's lost bytes: slots whose chunk is missing or damaged, merged into byte ranges. */
export interface LostDisk {
  deviceKey: number;
  capacityBytes: number;
  /** Sorted, not overlapping; [0, capacityBytes) when the disk's index is lost. */
  lostRanges: Extent[];
}

/** What verify found for one restore point. */
export interface PointCheck {
  pointId: string;
  /** ISO 8601. */
  checkedAt: string;
  /** Chunks were decoded and re-hashed (--read-data, --repair). */
  readData: boolean;
  status: PointStatus;
  /** The manifest is unreadable or gone: every disk of the point is lost (which ones is unknown). */
  manifestLost: boolean;
  /** Disks with lost slots (empty when clean or when the manifest is lost). */
  lostDisks: LostDisk[];
}

const pointIdShape = pattern(/^\d{8}T\d{6}Z-[0-9a-f]{8}$/, 'a restore point id');
const extentShape = object({ offsetBytes: safeInteger(), lengthBytes: safeInteger(1) });
const checkShape = object({
  format: oneOf('vcbt-point-check'),
  version: oneOf(1),
  pointId: pointIdShape,
  checkedAt: timestamp,
  readData: boolean,
  status: oneOf('clean', 'damaged', 'unrecoverable'),
  manifestLost: boolean,
  lostDisks: arrayOf(object({ deviceKey: safeInteger(), capacityBytes: safeInteger(1), lostRanges: arrayOf(extentShape) })),
});

export async function writeCheckRecord(storage: Storage, record: PointCheck): Promise<void> {
  await storage.put(checkRef(record.pointId), JSON.stringify({ format: 'vcbt-point-check', version: 1, ...record }) + '\n');
}

/**
 * The point's last check, undefined when it was never verified. A record that does not read
 * (damaged, a newer version) counts as never verified: verify rewrites it.
 */
export async function readCheckRecord(storage: Storage, pointId: string): Promise<PointCheck | undefined> {
  let parsed: unknown;
  try {
    if (!(await storage.stat(checkRef(pointId)))) return undefined;
    parsed = JSON.parse((await storage.get(checkRef(pointId), { maxBytes: maxRecordBytes })).toString('utf8'));
  } catch (error) {
    if (error instanceof SyntaxError) return undefined;
    if (error instanceof RepositoryError && error.code !== 'REPO_IO') return undefined;
    throw error;
  }
  if (check(parsed, checkShape) !== undefined) return undefined;
  const { pointId: id, checkedAt, readData, status, manifestLost, lostDisks } = parsed as PointCheck;
  return id === pointId ? { pointId: id, checkedAt, readData, status, manifestLost, lostDisks } : undefined;
}

/** Whether the record says disk `deviceKey` of its point lost data. */
export function diskIsDamaged(record: PointCheck | undefined, deviceKey: number): boolean {
  if (!record || record.status === 'clean') return false;
  return record.manifestLost || record.lostDisks.some((d) => d.deviceKey === deviceKey);
}

/** The UTC time a restore point id carries (ids start with it), as ISO 8601. */
export function pointIdTime(pointId: string): string {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(pointId);
  // The id holds whole seconds; the point was made somewhere in that second. Taking its end
  // sorts a point whose manifest cannot be read after the sound points of the same second, so
  // `latest` never skips it silently.
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.999Z` : '';
}
