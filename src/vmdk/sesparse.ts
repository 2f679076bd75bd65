// SEsparse ("space efficient sparse"): the delta format of snapshots on VMFS6 (ESXi 6.5+).
// VMware does not publish it; vcbt follows what qemu's block/vmdk.c reads, with its strict
// checks.
//
// Layout (every field a little-endian uint64, offsets and sizes in 512-byte sectors):
// - constant header (sector 0): magic 0xcafebabe, version 0x0000000200000001, capacity,
//   grain size (8 sectors: 4 KiB grains), grain table size (64 sectors: 4096 entries), flags
//   (0), four reserved words (0), then offset/size pairs of the volatile header, journal
//   header, journal, grain directory, grain tables, free bitmap, backmap and grains; zero
//   padding to 512 bytes.
// - volatile header: magic 0xcafecafe, free GT number, next transaction, replay-journal flag
//   (a journal to replay means the file is dirty: refused), zero padding.
// - grain directory entry: 0 = no table; 0x10000000_xxxxxxxx = grain table number x (tables
//   are packed in the grain tables area, 32 KiB each).
// - grain table entry, by its top nibble: 0 unallocated (the whole entry must be 0), 1 SCSI
//   unmapped and 2 zero (both read as zeros), 3 allocated: grain number =
//   bits 48-59 (low 12 bits) | bits 0-47 << 12, at grains offset + number * grain size.
import { VmdkError } from './errors.ts';
import type { VmdkFile } from './files.ts';
import { maxDirectoryEntries } from './cowd.ts';
import { checkInFile, readChecked, type SparseFormat } from './sparse-extent.ts';

export const seSparseConstMagic = 0xcafebaben;
export const seSparseVolatileMagic = 0xcafecafen;
export const seSparseVersion = 0x0000000200000001n;
export const seSparseGrainSectors = 8;
export const seSparseTableSectors = 64;
export const seSparseEntriesPerTable = 4096;
const sector = 512;

/** Word indexes of the constant header's fields. */
export const seSparseHeaderWords = {
  magic: 0, version: 1, capacity: 2, grainSize: 3, grainTableSize: 4, flags: 5,
  volatileOffset: 10, volatileSize: 11, journalHeaderOffset: 12, journalHeaderSize: 13, journalOffset: 14, journalSize: 15,
  grainDirOffset: 16, grainDirSize: 17, grainTablesOffset: 18, grainTablesSize: 19,
  freeBitmapOffset: 20, freeBitmapSize: 21, backmapOffset: 22, backmapSize: 23, grainsOffset: 24, grainsSize: 25,
} as const;

function safe(value: bigint, what: string, file: VmdkFile, offsetBytes: number): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) / 512n) throw new VmdkError('VMDK_HEADER', `${file.name}: SEsparse ${what} ${value} is too large`, { file: file.name, offsetBytes });
  return Number(value);
}

export async function openSeSparse(file: VmdkFile, signal?: AbortSignal): Promise<SparseFormat> {
  const raw = await readChecked(file, 0, sector, 'SEsparse constant header', signal);
  const header = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const word = (index: number) => header.getBigUint64(index * 8, true);
  const w = seSparseHeaderWords;
  const bad = (code: 'VMDK_MAGIC' | 'VMDK_HEADER', what: string, offsetBytes: number) => new VmdkError(code, `${file.name}: SEsparse ${what}`, { file: file.name, offsetBytes });
  if (word(w.magic) !== seSparseConstMagic) throw bad('VMDK_MAGIC', `constant header magic is 0x${word(w.magic).toString(16)}, not 0xcafebabe`, 0);
  if (word(w.version) !== seSparseVersion) throw bad('VMDK_HEADER', `version 0x${word(w.version).toString(16)} is not supported (0x200000001)`, 8);
  if (word(w.grainSize) !== BigInt(seSparseGrainSectors)) throw bad('VMDK_HEADER', `grain size ${word(w.grainSize)} sectors is not supported (8)`, 24);
  if (word(w.grainTableSize) !== BigInt(seSparseTableSectors)) throw bad('VMDK_HEADER', `grain table size ${word(w.grainTableSize)} sectors is not supported (64)`, 32);
  if (word(w.flags) !== 0n) throw bad('VMDK_HEADER', `flags 0x${word(w.flags).toString(16)} are not supported`, 40);
  for (let i = 6; i < 10; i++) if (word(i) !== 0n) throw bad('VMDK_HEADER', `reserved word ${i - 6} is not zero`, i * 8);
  if (raw.subarray(26 * 8).some((b) => b !== 0)) throw bad('VMDK_HEADER', 'constant header padding is not zero', 26 * 8);
  const sectors = (index: number, what: string) => safe(word(index), what, file, index * 8);
  const capacityBytes = sectors(w.capacity, 'capacity') * sector;

  const volatileOffsetBytes = sectors(w.volatileOffset, 'volatile header offset') * sector;
  const volatileRaw = await readChecked(file, volatileOffsetBytes, sector, 'SEsparse volatile header', signal);
  const volatile = new DataView(volatileRaw.buffer, volatileRaw.byteOffset, volatileRaw.byteLength);
  if (volatile.getBigUint64(0, true) !== seSparseVolatileMagic) throw bad('VMDK_MAGIC', `volatile header magic is 0x${volatile.getBigUint64(0, true).toString(16)}, not 0xcafecafe`, volatileOffsetBytes);
  if (volatile.getBigUint64(24, true) !== 0n) throw bad('VMDK_HEADER', 'volatile header asks for a journal replay (the delta is dirty: the VM or host stopped mid-write)', volatileOffsetBytes + 24);
  if (volatileRaw.subarray(32).some((b) => b !== 0)) throw bad('VMDK_HEADER', 'volatile header padding is not zero', volatileOffsetBytes + 32);

  const gdOffsetBytes = sectors(w.grainDirOffset, 'grain directory offset') * sector;
  const gdEntries = (sectors(w.grainDirSize, 'grain directory size') * sector) / 8;
  const tablesOffsetBytes = sectors(w.grainTablesOffset, 'grain tables offset') * sector;
  const tablesBytes = sectors(w.grainTablesSize, 'grain tables size') * sector;
  const grainsOffsetBytes = sectors(w.grainsOffset, 'grains offset') * sector;
  const grainsBytes = sectors(w.grainsSize, 'grains size') * sector;
  const grainBytes = seSparseGrainSectors * sector;
  const tableBytes = seSparseTableSectors * sector;
  const needed = Math.ceil(capacityBytes / (grainBytes * seSparseEntriesPerTable));
  if (gdEntries < needed || gdEntries > maxDirectoryEntries) throw bad('VMDK_HEADER', `grain directory has ${gdEntries} entries; a capacity of ${capacityBytes} bytes needs ${needed}`, w.grainDirSize * 8);
  const directoryRaw = await readChecked(file, gdOffsetBytes, gdEntries * 8, 'grain directory', signal);
  const directory = new DataView(directoryRaw.buffer, directoryRaw.byteOffset, directoryRaw.byteLength);
  return {
    formatName: 'SESPARSE',
    file,
    capacityBytes,
    grainBytes,
    entriesPerTable: seSparseEntriesPerTable,
    entryBytes: 8,
    tableOffset(tableIndex) {
      const entry = directory.getBigUint64(tableIndex * 8, true);
      if (entry === 0n) return undefined;
      const at = gdOffsetBytes + tableIndex * 8;
      if (entry >> 32n !== 0x10000000n) {
        throw new VmdkError('VMDK_GRAIN_ENTRY', `${file.name}: grain directory entry ${tableIndex} (at ${at}) is 0x${entry.toString(16)}, not an allocated table (0x10000000xxxxxxxx)`, { file: file.name, offsetBytes: at });
      }
      const offsetBytes = tablesOffsetBytes + Number(entry & 0xffffffffn) * tableBytes;
      if (offsetBytes + tableBytes > tablesOffsetBytes + tablesBytes) {
        throw new VmdkError('VMDK_OUT_OF_BOUNDS', `${file.name}: grain directory entry ${tableIndex} (at ${at}) names grain table ${entry & 0xffffffffn}, outside the grain tables area (${tablesBytes} bytes at ${tablesOffsetBytes})`, { file: file.name, offsetBytes: at });
      }
      checkInFile(file, offsetBytes, tableBytes, `grain directory entry ${tableIndex} (at ${at})`);
      return offsetBytes;
    },
    grain(table, entryIndex, tableOffsetBytes) {
      const entry = table.getBigUint64(entryIndex * 8, true);
      const at = tableOffsetBytes + entryIndex * 8;
      switch (entry >> 60n) {
        case 0n:
          if (entry !== 0n) break;
          return { kind: 'unallocated', fileOffsetBytes: 0 };
        case 1n:
        case 2n:
          return { kind: 'zero', fileOffsetBytes: 0 };
        case 3n: {
          const number = Number(((entry >> 48n) & 0xfffn) | ((entry & 0xffffffffffffn) << 12n));
          const offsetBytes = grainsOffsetBytes + number * grainBytes;
          if (offsetBytes + grainBytes > grainsOffsetBytes + grainsBytes) {
            throw new VmdkError('VMDK_OUT_OF_BOUNDS', `${file.name}: grain table entry at ${at} names grain ${number}, outside the grains area (${grainsBytes} bytes at ${grainsOffsetBytes})`, { file: file.name, offsetBytes: at });
          }
          return { kind: 'data', fileOffsetBytes: offsetBytes };
        }
      }
      throw new VmdkError('VMDK_GRAIN_ENTRY', `${file.name}: grain table entry at ${at} is 0x${entry.toString(16)}, of no known type`, { file: file.name, offsetBytes: at });
    },
  };
}
