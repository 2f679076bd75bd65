// Restore point manifests (docs/format.md, "Manifests"): one JSON document per restore point
// naming the VM, where it came from, when, which snapshot, and per disk the index file (by
// checksum) that lists its chunks. The repository treats vm/source/snapshot/vmConfig as the
// caller's data: it only requires vm.id (a stable identity; prune groups restore points by it)
// and vm.name.
//
// Stored as points/<id>.json. Plain: {"format","version","sha256","point"} where sha256 is the
// SHA-256 of JSON.stringify(point) (so a flipped byte anywhere is detected). Encrypted: the
// 8-byte magic "VCBTENC1" followed by an AES-256-GCM box of that same JSON text.
import { open, seal, sha256Hex, type MasterKeys } from './crypto.ts';
import type { IndexFileRef } from './disk-index.ts';
import { RepositoryError } from './errors.ts';
import { anything, arrayOf, check, nullable, object, oneOf, pattern, safeInteger, string, timestamp } from './schema.ts';
import type { BlobRef } from './storage/storage.ts';

export const manifestVersion = 1;
const encryptedMagic = Buffer.from('VCBTENC1');

export interface VmIdentity {
  /** Stable identity chosen by the caller (e.g. the VM's instance UUID). */
  id: string;
  name: string;
  [key: string]: unknown;
}

export interface DiskStats {
  /** Bytes read from the source disk. */
  bytesRead: number;
  /** Bytes of new chunk files written (encoded size). */
  bytesStored: number;
  chunksNew: number;
  /** Non-zero chunks whose id was already stored (deduplicated) or carried from the previous point. */
  chunksReused: number;
  chunksZero: number;
}

export interface DiskRecord {
  deviceKey: number;
  label: string;
  capacityBytes: number;
  changeId: string | null;
  chunkBytes: number;
  kind: 'full' | 'incremental';
  basedOn: { pointId: string; deviceKey: number } | null;
  index: IndexFileRef;
  stats: DiskStats;
}

export interface RestorePointManifest {
  id: string;
  createdAt: string;
  vm: VmIdentity;
  source: unknown;
  snapshot: unknown;
  vmConfig: unknown;
  disks: DiskRecord[];
}

const pointIdShape = pattern(/^\d{8}T\d{6}Z-[0-9a-f]{8}$/, 'a restore point id');
const statShape = safeInteger();

/** The documented shape of a restore point (docs/format.md, "Manifests"). */
const pointShape = object({
  id: pointIdShape,
  createdAt: timestamp,
  vm: object({ id: string, name: string }),
  source: anything,
  snapshot: anything,
  vmConfig: anything,
  disks: arrayOf(
    object({
      deviceKey: safeInteger(),
      label: string,
      capacityBytes: safeInteger(1),
      changeId: nullable(string),
      chunkBytes: (v, at) => safeInteger(4096, 64 << 20)(v, at) ?? ((v as number) % 4096 === 0 ? undefined : `${at} is not a multiple of 4096`),
      kind: oneOf('full', 'incremental'),
      basedOn: nullable(object({ pointId: pointIdShape, deviceKey: safeInteger() })),
      index: object({ sha256: pattern(/^[0-9a-f]{64}$/, '64 hex digits'), entryCount: safeInteger(1) }),
      stats: object({ bytesRead: statShape, bytesStored: statShape, chunksNew: statShape, chunksReused: statShape, chunksZero: statShape }),
    }),
  ),
});

export function pointRef(pointId: string): BlobRef {
  return { kind: 'point', name: pointId };
}

function aad(pointId: string): Buffer {
  return Buffer.from(`vcbt-manifest-v1\0${pointId}`);
}

export function encodeManifest(point: RestorePointManifest, keys: MasterKeys | undefined): Buffer {
  const body = JSON.stringify(point);
  const text = `{"format":"vcbt-restore-point","version":${manifestVersion},"sha256":"${sha256Hex(body)}","point":${body}}\n`;
  if (!keys) return Buffer.from(text);
  return Buffer.concat([encryptedMagic, seal(keys.dataKey, Buffer.from(text), aad(point.id))]);
}

export function decodeManifest(bytes: Buffer, pointId: string, keys: MasterKeys | undefined, file: string): RestorePointManifest {
  const corrupt = (why: string) => new RepositoryError('REPO_CORRUPT', `manifest ${file} is damaged: ${why}`, { file, pointId });
  let text: string;
  if (keys) {
    if (!bytes.subarray(0, 8).equals(encryptedMagic)) throw corrupt('it lacks the encrypted-file magic');
    try {
      text = open(keys.dataKey, bytes.subarray(8), aad(pointId)).toString('utf8');
    } catch {
      throw corrupt('authentication tag does not match');
    }
  } else {
    text = bytes.toString('utf8');
  }
  let outer: { format?: unknown; version?: unknown; sha256?: unknown; point?: unknown };
  try {
    outer = JSON.parse(text) as typeof outer;
  } catch (error) {
    throw corrupt(`not JSON (${(error as Error).message})`);
  }
  if (typeof outer !== 'object' || outer === null || Array.isArray(outer)) throw corrupt('it is not a JSON object');
  if (outer.format !== 'vcbt-restore-point') throw corrupt('format field is not vcbt-restore-point');
  if (outer.version !== manifestVersion) throw new RepositoryError('REPO_FORMAT', `manifest ${file} has unknown version ${String(outer.version)}`, { file });
  if (typeof outer.point !== 'object' || outer.point === null) throw corrupt('it has no point object');
  if (sha256Hex(JSON.stringify(outer.point)) !== outer.sha256) throw corrupt('its checksum does not match its content');
  const problem = check(outer.point, pointShape);
  if (problem) throw corrupt(problem.replace(/^the document/, 'the point'));
  const point = outer.point as RestorePointManifest;
  if (point.id !== pointId) throw corrupt(`it names restore point ${String(point.id)}`);
  for (const disk of point.disks) {
    if (disk.index.entryCount !== Math.ceil(disk.capacityBytes / disk.chunkBytes)) throw corrupt(`disk ${disk.deviceKey}: index entryCount ${disk.index.entryCount} does not fit its capacity and chunk size`);
  }
  if (new Set(point.disks.map((d) => d.deviceKey)).size !== point.disks.length) throw corrupt('a device key appears twice');
  return point;
}
