// VMDK descriptors: the small text file (`disk.vmdk`) that names a virtual disk's data
// extents and, for a delta disk of a snapshot chain, its parent.
//
// Vocabulary: createType (the disk's layout: `vmfs` flat, `vmfsSparse` and `seSparse` deltas),
// extent line `RW <sectors> <TYPE> "<file>" [offset]`, CID (a content id the disk's writer
// changes when the content changes) and parentCID (the parent's CID when this delta was
// created; `ffffffff` = no parent), parentFileNameHint (the parent's descriptor, relative to
// this one's directory or absolute), sector = 512 bytes.
//
// `parseDescriptor` reads any descriptor; `parseVmdkDescriptor` is the flat-only view the
// `file` transport uses (a flat disk it can read as one local file).
import { VmdkError } from './errors.ts';
export { VmdkError } from './errors.ts';

export const sectorBytes = 512;
/** parentCID of a disk without a parent. */
export const noParentCid = 0xffffffff;

/** Extent types vcbt reads: flat data, and the two ESXi delta formats. */
export const flatExtentTypes: ReadonlySet<string> = new Set(['VMFS', 'FLAT']);
export const sparseExtentTypes: ReadonlySet<string> = new Set(['VMFSSPARSE', 'SESPARSE']);

export interface DescriptorExtent {
  access: 'RW' | 'RDONLY' | 'NOACCESS';
  sectors: number;
  /** VMFS, FLAT, VMFSSPARSE, SESPARSE, or another type vcbt cannot read (VMFSRDM, SPARSE, ...). */
  type: string;
  /** File name relative to the descriptor's directory. */
  file: string;
  /** FLAT extents: where the disk's bytes start inside the file, in sectors. */
  offsetSectors: number;
}

export interface Descriptor {
  createType: string;
  cid: number;
  parentCid: number;
  parentFileNameHint?: string;
  extents: DescriptorExtent[];
  capacityBytes: number;
}

export interface FlatExtent {
  file: string;
  sizeBytes: number;
  /** Where the disk's bytes start inside that file. */
  fileOffsetBytes: number;
}

export interface VmdkDescriptor {
  createType: string;
  extents: FlatExtent[];
  capacityBytes: number;
}

const flatCreateTypes = new Set(['vmfs', 'monolithicflat', 'twogbmaxextentflat', 'vmfsthin', 'vmfseagerzeroedthick', 'vmfspreallocated']);
const extentLine = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Z]+)\s+"([^"]+)"(?:\s+(\d+))?\s*$/;

function parseCid(value: string | undefined, name: string, path: string): number {
  if (value === undefined) return noParentCid;
  if (!/^[0-9a-fA-F]{1,8}$/.test(value)) throw new VmdkError('VMDK_DESCRIPTOR', `${path}: ${name}=${value} is not a hexadecimal content id`, { path, offsetBytes: 0, [name]: value });
  return Number.parseInt(value, 16);
}

/** Parses any descriptor; sparse extent headers (KDMV/COWD instead of text) are refused. */
export function parseDescriptor(text: string, path: string): Descriptor {
  if (text.startsWith('KDMV') || text.startsWith('COWD')) {
    throw new VmdkError('VMDK_NOT_FLAT', `${path} is a sparse disk (${text.slice(0, 4)} header), not a descriptor; read it through NBD instead (--transport nbd or vddk)`, { path, offsetBytes: 0 });
  }
  const settings = new Map<string, string>();
  const extents: DescriptorExtent[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const setting = /^([A-Za-z.]+)\s*=\s*"?([^"]*)"?$/.exec(line);
    if (setting) {
      settings.set(setting[1], setting[2]);
      continue;
    }
    const extent = extentLine.exec(line);
    if (!extent) continue;
    const [, access, sectors, type, file, offset] = extent;
    extents.push({ access: access as DescriptorExtent['access'], sectors: Number(sectors), type, file, offsetSectors: Number(offset ?? 0) });
  }
  const createType = settings.get('createType');
  if (createType === undefined || extents.length === 0) {
    throw new VmdkError('VMDK_DESCRIPTOR', `${path} is not a VMDK descriptor (no createType or no extent line)`, { path, offsetBytes: 0 });
  }
  const parentFileNameHint = settings.get('parentFileNameHint');
  return {
    createType,
    cid: parseCid(settings.get('CID'), 'CID', path),
    parentCid: parseCid(settings.get('parentCID'), 'parentCID', path),
    ...(parentFileNameHint ? { parentFileNameHint } : {}),
    extents,
    capacityBytes: extents.reduce((sum, e) => sum + e.sectors * sectorBytes, 0),
  };
}

/** The flat-only view: every extent must be flat data (for the file transport). */
export function parseVmdkDescriptor(text: string, path: string): VmdkDescriptor {
  const useNbd = 'read it through NBD instead (--transport nbd or vddk)';
  const descriptor = parseDescriptor(text, path);
  for (const { type, file } of descriptor.extents) {
    if (!flatExtentTypes.has(type)) {
      const parent = descriptor.parentFileNameHint;
      throw new VmdkError('VMDK_NOT_FLAT', `${path} has a ${type} extent "${file}"${parent ? ` (a delta disk of "${parent}": the VM had snapshots before this one)` : ''}; this transport can only read flat disks; ${useNbd}`, { path, extentType: type, file, parent });
    }
  }
  if (!flatCreateTypes.has(descriptor.createType.toLowerCase())) {
    throw new VmdkError('VMDK_NOT_FLAT', `${path} has createType "${descriptor.createType}"; this transport can only read flat disks; ${useNbd}`, { path, createType: descriptor.createType });
  }
  return {
    createType: descriptor.createType,
    extents: descriptor.extents.map((e) => ({ file: e.file, sizeBytes: e.sectors * sectorBytes, fileOffsetBytes: e.offsetSectors * sectorBytes })),
    capacityBytes: descriptor.capacityBytes,
  };
}

/** Splits a datastore path `[ds] dir/disk.vmdk` into datastore name and path inside it. */
export function parseDatastorePath(datastorePath: string): { datastore: string; path: string } {
  const match = /^\[([^\]]+)\]\s*(.+)$/.exec(datastorePath.trim());
  if (!match) throw new VmdkError('VMDK_PATH', `"${datastorePath}" is not a datastore path like "[datastore1] vm/vm.vmdk"`, { datastorePath });
  return { datastore: match[1], path: match[2] };
}
