// VMFSSPARSE: the delta format ESXi used for snapshots before VMFS6 (the "COWD" sparse extent of
// the VMware Virtual Disk Format, section "ESX Server Sparse Extents").
//
// Layout (little-endian): a 2048-byte header - magic "COWD" (bytes 0-3), version (1), flags,
// numSectors (capacity), grainSize (sectors per grain; ESXi writes 1, 512-byte grains),
// gdOffset (sector of the grain directory), numGDEntries, freeSector, then parent and
// generation data vcbt does not need. The grain directory holds numGDEntries uint32 sector
// offsets of grain tables (0 = no table); a grain table holds 4096 uint32 sector offsets of
// grains (0 = unallocated: read the parent). There are no zero grains.
import { VmdkError } from './errors.ts';
import type { VmdkFile } from './files.ts';
import { checkInFile, readChecked, type SparseFormat } from './sparse-extent.ts';

export const cowdMagic = 'COWD';
export const cowdHeaderBytes = 2048;
export const cowdEntriesPerTable = 4096;
const sector = 512;
/** Larger grains are not plausible (qemu's limit as well: 1 GiB). */
const maxGrainSectors = 0x200000;
/** Grain directories above this many entries are refused rather than read (32 Mi entries). */
export const maxDirectoryEntries = 32 * 1024 * 1024;

export async function openCowd(file: VmdkFile, signal?: AbortSignal): Promise<SparseFormat> {
  const header = await readChecked(file, 0, 32, 'COWD header', signal);
  const magic = Buffer.from(header.subarray(0, 4)).toString('latin1');
  if (magic !== cowdMagic) {
    throw new VmdkError('VMDK_MAGIC', `${file.name}: a VMFSSPARSE extent must start with "COWD", found ${JSON.stringify(magic)}`, { file: file.name, offsetBytes: 0 });
  }
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const field = (offsetBytes: number) => view.getUint32(offsetBytes, true);
  const version = field(4);
  const numSectors = field(12);
  const grainSectors = field(16);
  const gdSector = field(20);
  const gdEntries = field(24);
  const bad = (what: string, offsetBytes: number) => new VmdkError('VMDK_HEADER', `${file.name}: COWD header ${what}`, { file: file.name, offsetBytes });
  if (version !== 1) throw bad(`version ${version} (vcbt reads version 1)`, 4);
  if (grainSectors === 0 || grainSectors > maxGrainSectors) throw bad(`grain size ${grainSectors} sectors is not plausible`, 16);
  const grainBytes = grainSectors * sector;
  const capacityBytes = numSectors * sector;
  const needed = Math.ceil(numSectors / (grainSectors * cowdEntriesPerTable));
  if (gdEntries < needed || gdEntries > maxDirectoryEntries) throw bad(`has ${gdEntries} grain directory entries; ${numSectors} sectors need ${needed}`, 24);
  const gdOffsetBytes = gdSector * sector;
  if (gdSector === 0) throw bad('places the grain directory at sector 0', 20);
  const directoryRaw = await readChecked(file, gdOffsetBytes, gdEntries * 4, 'grain directory', signal);
  const directory = new DataView(directoryRaw.buffer, directoryRaw.byteOffset, directoryRaw.byteLength);
  const tableBytes = cowdEntriesPerTable * 4;
  return {
    formatName: 'VMFSSPARSE',
    file,
    capacityBytes,
    grainBytes,
    entriesPerTable: cowdEntriesPerTable,
    entryBytes: 4,
    tableOffset(tableIndex) {
      const tableSector = directory.getUint32(tableIndex * 4, true);
      if (tableSector === 0) return undefined;
      const offsetBytes = tableSector * sector;
      checkInFile(file, offsetBytes, tableBytes, `grain directory entry ${tableIndex} (at ${gdOffsetBytes + tableIndex * 4})`);
      return offsetBytes;
    },
    grain(table, entryIndex) {
      const grainSector = table.getUint32(entryIndex * 4, true);
      return grainSector === 0 ? { kind: 'unallocated', fileOffsetBytes: 0 } : { kind: 'data', fileOffsetBytes: grainSector * sector };
    },
  };
}
