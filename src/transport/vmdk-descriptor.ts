// VMDK descriptors: the small text file (`disk.vmdk`) that names a virtual disk's data
// extents. vcbt reads disks over datastore HTTP only when every extent is flat (raw bytes,
// sector 0 of the extent = sector `offset` of the disk); anything else (vmfsSparse/SEsparse
// delta disks of a snapshot chain, hosted sparse formats, RDMs, vSAN/vVol objects) has no flat
// file to range-read and is refused with an error that says to use NBD instead.
//
// Vocabulary: createType (the disk's layout), extent line `RW <sectors> <TYPE> "<file>" [offset]`,
// parentFileNameHint (set on delta disks), sector = 512 bytes.
import { VcbtError } from '../errors.ts';

export const sectorBytes = 512;

export interface FlatExtent {
  /** File name relative to the descriptor's directory. */
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

/** Codes: VMDK_NOT_FLAT (delta/sparse/RDM: read it over NBD), VMDK_DESCRIPTOR (unreadable). */
export class VmdkError extends VcbtError {}

const flatCreateTypes = new Set(['vmfs', 'monolithicflat', 'twogbmaxextentflat', 'vmfsthin', 'vmfseagerzeroedthick', 'vmfspreallocated']);
const flatExtentTypes = new Set(['VMFS', 'FLAT']);
const extentLine = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Z]+)\s+"([^"]+)"(?:\s+(\d+))?\s*$/;

export function parseVmdkDescriptor(text: string, path: string): VmdkDescriptor {
  const useNbd = 'read it through NBD instead (--transport nbd or vddk)';
  if (text.startsWith('KDMV') || text.startsWith('COWD')) {
    throw new VmdkError('VMDK_NOT_FLAT', `${path} is a sparse disk (${text.slice(0, 4)} header), not a descriptor of a flat disk; ${useNbd}`, { path });
  }
  let createType: string | undefined;
  let parentHint: string | undefined;
  const extents: FlatExtent[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const setting = /^([A-Za-z.]+)\s*=\s*"?([^"]*)"?$/.exec(line);
    if (setting) {
      if (setting[1] === 'createType') createType = setting[2];
      if (setting[1] === 'parentFileNameHint') parentHint = setting[2];
      continue;
    }
    const extent = extentLine.exec(line);
    if (!extent) continue;
    const [, , sectors, type, file, offset] = extent;
    if (!flatExtentTypes.has(type)) {
      throw new VmdkError('VMDK_NOT_FLAT', `${path} has a ${type} extent "${file}"${parentHint ? ` (a delta disk of "${parentHint}": the VM had snapshots before this one)` : ''}; datastore HTTP can only read flat disks; ${useNbd}`, { path, extentType: type, file, parent: parentHint });
    }
    extents.push({ file, sizeBytes: Number(sectors) * sectorBytes, fileOffsetBytes: Number(offset ?? 0) * sectorBytes });
  }
  if (createType === undefined || extents.length === 0) {
    throw new VmdkError('VMDK_DESCRIPTOR', `${path} is not a VMDK descriptor (no createType or no extent line)`, { path });
  }
  if (!flatCreateTypes.has(createType.toLowerCase())) {
    throw new VmdkError('VMDK_NOT_FLAT', `${path} has createType "${createType}"; datastore HTTP can only read flat disks; ${useNbd}`, { path, createType });
  }
  return { createType, extents, capacityBytes: extents.reduce((sum, e) => sum + e.sizeBytes, 0) };
}

/** Splits a datastore path `[ds] dir/disk.vmdk` into datastore name and path inside it. */
export function parseDatastorePath(datastorePath: string): { datastore: string; path: string } {
  const match = /^\[([^\]]+)\]\s*(.+)$/.exec(datastorePath.trim());
  if (!match) throw new VmdkError('VMDK_PATH', `"${datastorePath}" is not a datastore path like "[datastore1] vm/vm.vmdk"`, { datastorePath });
  return { datastore: match[1], path: match[2] };
}
