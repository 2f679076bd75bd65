// A sparse extent as a map from the disk's bytes to the extent file's bytes, whatever its
// format (VMFSSPARSE/COWD in cowd.ts, SEsparse in sesparse.ts).
//
// Vocabulary (the VMware Virtual Disk Format's terms): a grain is the unit of allocation
// (grainBytes); a grain table (GT) holds one entry per grain for `entriesPerTable` grains; the
// grain directory (GD) holds one entry per grain table. A grain is `data` (at a file offset),
// `unallocated` (the parent disk holds it) or `zero` (reads as zeros: SEsparse's zero and
// SCSI-unmapped grains). A run is a stretch of the disk where consecutive grains have the same
// kind and, for data, consecutive file offsets: one read of the file serves it.
//
// Grain tables are read on demand and kept in a TableCache shared by a chain, bounded in bytes
// (least recently used go first); the grain directory is read once when the extent opens.
import { VmdkError } from './errors.ts';
import type { VmdkFile } from './files.ts';

export type GrainKind = 'data' | 'unallocated' | 'zero';

export interface GrainRun {
  kind: GrainKind;
  /** Disk offset (relative to the extent's start) and length of the run. */
  offsetBytes: number;
  lengthBytes: number;
  /** kind 'data': where the run's first byte is in the file. */
  fileOffsetBytes: number;
}

/** What a format tells the generic map. */
export interface SparseFormat {
  readonly formatName: 'VMFSSPARSE' | 'SESPARSE';
  readonly file: VmdkFile;
  readonly capacityBytes: number;
  readonly grainBytes: number;
  readonly entriesPerTable: number;
  readonly entryBytes: 4 | 8;
  /** File offset of grain table `tableIndex`, or undefined when it is not allocated (checked). */
  tableOffset(tableIndex: number): number | undefined;
  /** Decodes entry `entryIndex` of the table at tableOffsetBytes (checked). */
  grain(table: DataView, entryIndex: number, tableOffsetBytes: number, grainIndex: number): { kind: GrainKind; fileOffsetBytes: number };
}

/** Grain tables of every extent of a chain, bounded in bytes. */
export class TableCache {
  readonly maxBytes: number;
  #bytes = 0;
  readonly #tables = new Map<string, { bytes: number; table: Promise<DataView> }>();
  /** Tables read from files (for tests and the bench: metadata traffic). */
  tablesRead = 0;

  constructor(maxBytes = 64 * 1024 * 1024) {
    this.maxBytes = maxBytes;
  }

  get(key: string, bytes: number, load: () => Promise<DataView>): Promise<DataView> {
    const hit = this.#tables.get(key);
    if (hit) {
      this.#tables.delete(key);
      this.#tables.set(key, hit);
      return hit.table;
    }
    this.tablesRead++;
    const table = load();
    const entry = { bytes, table };
    this.#tables.set(key, entry);
    this.#bytes += bytes;
    // A failed read is not kept: the next lookup tries again.
    table.catch(() => {
      if (this.#tables.get(key) === entry) {
        this.#tables.delete(key);
        this.#bytes -= bytes;
      }
    });
    for (const [oldKey, old] of this.#tables) {
      if (this.#bytes <= this.maxBytes || oldKey === key) break;
      this.#tables.delete(oldKey);
      this.#bytes -= old.bytes;
    }
    return table;
  }
}

/** Reads `length` bytes of a file, failing with VMDK_TRUNCATED when the file is shorter. */
export async function readChecked(file: VmdkFile, offsetBytes: number, lengthBytes: number, what: string, signal?: AbortSignal): Promise<Uint8Array> {
  if (offsetBytes + lengthBytes > file.sizeBytes) {
    throw new VmdkError('VMDK_TRUNCATED', `${file.name}: the ${what} at offset ${offsetBytes} (${lengthBytes} bytes) ends past the end of the file (${file.sizeBytes} bytes)`, { file: file.name, offsetBytes, lengthBytes, fileBytes: file.sizeBytes });
  }
  const target = new Uint8Array(lengthBytes);
  await file.read(offsetBytes, target, signal);
  return target;
}

/** Checks that a table or grain an entry points to lies inside the file. */
export function checkInFile(file: VmdkFile, offsetBytes: number, lengthBytes: number, what: string): void {
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes >= file.sizeBytes || offsetBytes < 0) {
    throw new VmdkError('VMDK_OUT_OF_BOUNDS', `${file.name}: ${what} points to offset ${offsetBytes}, outside the file (${file.sizeBytes} bytes)`, { file: file.name, offsetBytes, fileBytes: file.sizeBytes });
  }
  if (offsetBytes + lengthBytes > file.sizeBytes) {
    throw new VmdkError('VMDK_TRUNCATED', `${file.name}: ${what} at offset ${offsetBytes} (${lengthBytes} bytes) ends past the end of the file (${file.sizeBytes} bytes)`, { file: file.name, offsetBytes, lengthBytes, fileBytes: file.sizeBytes });
  }
}

export class SparseExtent {
  readonly format: SparseFormat;
  readonly #cache: TableCache;

  constructor(format: SparseFormat, cache: TableCache) {
    this.format = format;
    this.#cache = cache;
  }

  get capacityBytes(): number {
    return this.format.capacityBytes;
  }

  #table(tableOffsetBytes: number, signal?: AbortSignal): Promise<DataView> {
    const { file, entriesPerTable, entryBytes } = this.format;
    const bytes = entriesPerTable * entryBytes;
    return this.#cache.get(`${file.name}@${tableOffsetBytes}`, bytes, async () => {
      const raw = await readChecked(file, tableOffsetBytes, bytes, 'grain table', signal);
      return new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    });
  }

  /** The runs covering [offsetBytes, offsetBytes + lengthBytes) of the extent, in order. */
  async map(offsetBytes: number, lengthBytes: number, signal?: AbortSignal): Promise<GrainRun[]> {
    const { grainBytes, entriesPerTable, capacityBytes } = this.format;
    const end = Math.min(offsetBytes + lengthBytes, capacityBytes);
    const runs: GrainRun[] = [];
    let at = offsetBytes;
    while (at < end) {
      const grainIndex = Math.floor(at / grainBytes);
      const tableIndex = Math.floor(grainIndex / entriesPerTable);
      const tableOffset = this.format.tableOffset(tableIndex);
      // The part of the request this grain table covers.
      const tableEnd = Math.min(end, (tableIndex + 1) * entriesPerTable * grainBytes);
      if (tableOffset === undefined) {
        push(runs, { kind: 'unallocated', offsetBytes: at, lengthBytes: tableEnd - at, fileOffsetBytes: 0 });
        at = tableEnd;
        continue;
      }
      const table = await this.#table(tableOffset, signal);
      while (at < tableEnd) {
        const grain = Math.floor(at / grainBytes);
        const grainStart = grain * grainBytes;
        const grainEnd = Math.min(tableEnd, grainStart + grainBytes);
        const entry = this.format.grain(table, grain % entriesPerTable, tableOffset, grain);
        const within = at - grainStart;
        if (entry.kind === 'data') {
          const usable = Math.min(grainBytes, capacityBytes - grainStart);
          checkInFile(this.format.file, entry.fileOffsetBytes, usable, `grain ${grain} (grain table at ${tableOffset}, entry ${grain % entriesPerTable})`);
        }
        push(runs, { kind: entry.kind, offsetBytes: at, lengthBytes: grainEnd - at, fileOffsetBytes: entry.fileOffsetBytes + within });
        at = grainEnd;
      }
    }
    return runs;
  }
}

/** Appends a run, merging it into the previous one when they continue each other. */
function push(runs: GrainRun[], run: GrainRun): void {
  const last = runs.at(-1);
  if (last && last.kind === run.kind && last.offsetBytes + last.lengthBytes === run.offsetBytes && (run.kind !== 'data' || last.fileOffsetBytes + last.lengthBytes === run.fileOffsetBytes)) {
    last.lengthBytes += run.lengthBytes;
    return;
  }
  runs.push(run);
}
