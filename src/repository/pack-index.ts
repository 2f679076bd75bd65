// Pack indexes (repository format v2, docs/format.md "Pack index files") and the chunk table
// built from them: where each stored chunk is (pack, offset, length), for restores, verify,
// GC and the writer's "is this chunk already stored?".
//
// Vocabulary
// - Pack index file: packindexes/<SHA-256 of its stored bytes>.pix, the disk-index layout
//   (disk-index.ts: 64-byte header, entries, SHA-256 trailer, segments boxed when encrypted)
//   with magic "VCBTPIX\0", 64 KiB segments and 64-byte entries: id (32), pack (16 bytes, the
//   pack name in binary), offsetBytes (u64), lengthBytes (u32), reserved (u32, 0). Entries are
//   in the order the chunks were written (a full backup: disk order), not sorted. The header's
//   u64 at offset 16 (a disk index's capacityBytes) is the file's creation time in ms since
//   the epoch: of two entries for one id, the one in the newer file wins. A writer
//   puts one after the packs it lists are durable and before the manifest that needs them
//   (every 16,384 new chunks and at commit). Immutable; GC replaces a file by a smaller one.
// - Chunk table: every entry of every pack index, numbered (ordinal) file after file, kept as
//   typed arrays only: the first 8 bytes of each id (two u32) and an open-addressing hash
//   table of ordinals (u32 slots, at most half full) - 16 to 24 bytes per stored chunk, no
//   JS object per chunk. A lookup probes the prefixes, then reads the candidate's entry from
//   its file (a cached segment) to compare the whole id and get the location; the newest
//   entry of an id wins (a chunk written again after damage). The files' readers cache a few
//   segments each and only the most recently used readers keep their cache.
// - Refresh: the table is brought up to date at the start of each operation (one listing of
//   packindexes/): new files are loaded; if one it knew is gone (GC replaced it), it is
//   rebuilt. A damaged file is left out and reported (`damaged`), never fatal.
import type { MasterKeys } from './crypto.ts';
import { entryCountForSize, idBytes, IndexReader, IndexWriter, type IndexLayout } from './disk-index.ts';
import { RepositoryError } from './errors.ts';
import type { ChunkLocation } from './pack.ts';
import type { Storage } from './storage/storage.ts';

export const packIndexEntryBytes = 64;
export const packIndexLayout: IndexLayout = { kind: 'packindex', magic: Buffer.from('VCBTPIX\0'), aadPrefix: 'vcbt-pix-v1\0', entryBytes: packIndexEntryBytes, segmentBytes: 64 * 1024 };
/** Readers whose segment cache is kept (the others drop theirs): bounds the cache at 8 x 4 x 64 KiB. */
const readersCached = 8;

export interface PackIndexEntry {
  id: Uint8Array;
  pack: string;
  offsetBytes: number;
  lengthBytes: number;
}

export function encodePackIndexEntry(entry: PackIndexEntry): Buffer {
  const bytes = Buffer.alloc(packIndexEntryBytes);
  bytes.set(entry.id, 0);
  Buffer.from(entry.pack, 'hex').copy(bytes, idBytes);
  bytes.writeBigUInt64LE(BigInt(entry.offsetBytes), idBytes + 16);
  bytes.writeUInt32LE(entry.lengthBytes, idBytes + 24);
  return bytes;
}

export function decodePackIndexEntry(bytes: Buffer): PackIndexEntry {
  return {
    id: bytes.subarray(0, idBytes),
    pack: bytes.subarray(idBytes, idBytes + 16).toString('hex'),
    offsetBytes: Number(bytes.readBigUInt64LE(idBytes + 16)),
    lengthBytes: bytes.readUInt32LE(idBytes + 24),
  };
}

/**
 * Writes one pack index file (durable when it resolves); returns its name. `createdAtMs`: now,
 * or for a file that replaces another (GC), the replaced file's time, so it keeps its rank.
 */
export async function writePackIndex(storage: Storage, keys: MasterKeys | undefined, chunkBytes: number, entries: readonly PackIndexEntry[], createdAtMs = Date.now()): Promise<string> {
  const writer = await IndexWriter.create(storage, keys, chunkBytes, createdAtMs, packIndexLayout, entries.length);
  try {
    for (const entry of entries) await writer.append(encodePackIndexEntry(entry));
    return (await writer.finish()).sha256;
  } catch (error) {
    await writer.abort();
    throw error;
  }
}

/** Opens and fully checks a pack index file (its name is its checksum). */
export async function openPackIndex(storage: Storage, name: string, keys: MasterKeys | undefined): Promise<IndexReader> {
  const ref = { kind: 'packindex', name } as const;
  const info = await storage.stat(ref);
  if (!info) throw new RepositoryError('REPO_MISSING', `pack index ${storage.describe(ref)} is missing`, { file: storage.describe(ref) });
  const entryCount = entryCountForSize(packIndexLayout, info.sizeBytes, keys !== undefined);
  if (entryCount === undefined) throw new RepositoryError('REPO_CORRUPT', `pack index ${storage.describe(ref)} is damaged: ${info.sizeBytes} bytes is no pack index size`, { file: storage.describe(ref) });
  return IndexReader.open(storage, { sha256: name, entryCount }, keys, packIndexLayout);
}

interface TableFile {
  name: string;
  /** Ordinal of its first entry. */
  start: number;
  count: number;
  reader: IndexReader;
}

export interface Located {
  location: ChunkLocation;
  ordinal: number;
}

export class ChunkTable {
  readonly #storage: Storage;
  readonly #keys: MasterKeys | undefined;
  #files: TableFile[] = [];
  #hi = new Uint32Array(1024);
  #lo = new Uint32Array(1024);
  #slots = new Uint32Array(2048);
  #size = 0;
  readonly #recent: TableFile[] = [];
  /** Pack index files that failed their check: name -> why (verify reports them). */
  damaged = new Map<string, RepositoryError>();

  constructor(storage: Storage, keys: MasterKeys | undefined) {
    this.#storage = storage;
    this.#keys = keys;
  }

  /** Entries in the table (ordinals are 0 .. size - 1). */
  get size(): number {
    return this.#size;
  }

  get files(): ReadonlyArray<{ name: string; start: number; count: number; reader: IndexReader }> {
    return this.#files;
  }

  /** A loaded file's creation time (its header), ms since the epoch. */
  createdAtMs(file: string): number {
    return this.#files.find((f) => f.name === file)?.reader.header.capacityBytes ?? 0;
  }

  /** Typed-array bytes held (for measurements). */
  get tableBytes(): number {
    return this.#hi.byteLength + this.#lo.byteLength + this.#slots.byteLength;
  }

  #refreshing: Promise<void> = Promise.resolve();

  /** Loads pack index files that appeared; rebuilds when one it knew is gone. Calls are serialized (concurrent operations share a table). */
  refresh(): Promise<void> {
    const next = this.#refreshing.then(() => this.#refreshOnce());
    this.#refreshing = next.catch(() => undefined);
    return next;
  }

  async #refreshOnce(): Promise<void> {
    const listed = new Set<string>();
    for await (const name of this.#storage.list('packindex')) listed.add(name);
    if (this.#files.some((f) => !listed.has(f.name))) this.#clear();
      const known = new Set(this.#files.map((f) => f.name));
    const opened: IndexReader[] = [];
    const names: string[] = [];
    for (const name of listed) {
      if (known.has(name) || this.damaged.has(name)) continue;
      const reader = await this.#open(name);
      if (reader) {
        opened.push(reader);
        names.push(name);
      }
    }
    // Oldest first, so ordinals follow creation where the files' times allow.
    const order = opened.map((_, i) => i).sort((a, b) => opened[a].header.capacityBytes - opened[b].header.capacityBytes || names[a].localeCompare(names[b]));
    for (const i of order) await this.#load(names[i], opened[i]);
  }

  #clear(): void {
    for (const f of this.#files) void f.reader.close();
    this.#files = [];
    this.#recent.length = 0;
    this.#hi = new Uint32Array(1024);
    this.#lo = new Uint32Array(1024);
    this.#slots = new Uint32Array(2048);
    this.#size = 0;
    this.damaged.clear();
  }

  async #open(name: string): Promise<IndexReader | undefined> {
    try {
      return await openPackIndex(this.#storage, name, this.#keys);
    } catch (error) {
      if (!(error instanceof RepositoryError) || error.code === 'REPO_IO') throw error;
      if (error.code === 'REPO_MISSING') return undefined; // GC replaced it meanwhile
      this.damaged.set(name, error);
      return undefined;
    }
  }

  async #load(name: string, reader: IndexReader): Promise<void> {
    const file: TableFile = { name, start: this.#size, count: reader.header.entryCount, reader };
    this.#files.push(file);
    for (let i = 0; i < file.count; i++) this.#insert(await reader.entry(i));
    await reader.close();
  }

  #insert(id: Uint8Array): void {
    const ordinal = this.#size;
    if (ordinal >= this.#hi.length) {
      const grow = (a: Uint32Array) => {
        const b = new Uint32Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.#hi = grow(this.#hi);
      this.#lo = grow(this.#lo);
    }
    const view = Buffer.from(id.buffer, id.byteOffset, idBytes);
    this.#hi[ordinal] = view.readUInt32LE(0);
    this.#lo[ordinal] = view.readUInt32LE(4);
    this.#size++;
    if (this.#size * 2 > this.#slots.length) this.#rehash(this.#slots.length * 2);
    else this.#place(ordinal);
  }

  #place(ordinal: number): void {
    const mask = this.#slots.length - 1;
    let slot = this.#hi[ordinal] & mask;
    while (this.#slots[slot] !== 0) slot = (slot + 1) & mask;
    this.#slots[slot] = ordinal + 1;
  }

  #rehash(slotCount: number): void {
    this.#slots = new Uint32Array(slotCount);
    for (let ordinal = 0; ordinal < this.#size; ordinal++) this.#place(ordinal);
  }

  /** Ordinals whose 8-byte prefix equals the id's, newest first (file creation time, then ordinal). */
  #candidates(id: Uint8Array): number[] {
    const view = Buffer.from(id.buffer, id.byteOffset, idBytes);
    const hi = view.readUInt32LE(0);
    const lo = view.readUInt32LE(4);
    const mask = this.#slots.length - 1;
    const found: number[] = [];
    for (let slot = hi & mask; this.#slots[slot] !== 0; slot = (slot + 1) & mask) {
      const ordinal = this.#slots[slot] - 1;
      if (this.#hi[ordinal] === hi && this.#lo[ordinal] === lo) found.push(ordinal);
    }
    if (found.length < 2) return found;
    const created = (ordinal: number) => this.#fileOf(ordinal).reader.header.capacityBytes;
    return found.sort((a, b) => created(b) - created(a) || b - a);
  }

  #fileOf(ordinal: number): TableFile {
    let low = 0;
    let high = this.#files.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.#files[mid].start <= ordinal) low = mid;
      else high = mid - 1;
    }
    const file = this.#files[low];
    const at = this.#recent.indexOf(file);
    if (at !== 0) {
      if (at > 0) this.#recent.splice(at, 1);
      this.#recent.unshift(file);
      if (this.#recent.length > readersCached) void (this.#recent.pop() as TableFile).reader.close();
    }
    return file;
  }

  /** The entry with this ordinal. */
  async entry(ordinal: number): Promise<PackIndexEntry> {
    const file = this.#fileOf(ordinal);
    return decodePackIndexEntry(await file.reader.entry(ordinal - file.start));
  }

  /** Where the newest stored copy of chunk `id` is, per the pack indexes; undefined when none lists it. */
  async locate(id: Uint8Array): Promise<Located | undefined> {
    for (const ordinal of this.#candidates(id)) {
      const entry = await this.entry(ordinal);
      if (Buffer.compare(entry.id, id) === 0) return { location: { pack: entry.pack, offsetBytes: entry.offsetBytes, lengthBytes: entry.lengthBytes }, ordinal };
    }
    return undefined;
  }

  /** Ordinals of every entry naming chunk `id` (all stored copies). */
  async ordinalsOf(id: Uint8Array): Promise<number[]> {
    const found: number[] = [];
    for (const ordinal of this.#candidates(id)) if (Buffer.compare((await this.entry(ordinal)).id, id) === 0) found.push(ordinal);
    return found;
  }

  /** Every entry, file after file, or of one file (GC, salvage). */
  async *entries(only?: string): AsyncGenerator<PackIndexEntry & { ordinal: number; file: string }> {
    for (const file of [...this.#files]) {
      if (only !== undefined && file.name !== only) continue;
      for (let i = 0; i < file.count; i++) yield { ...decodePackIndexEntry(Buffer.from(await file.reader.entry(i))), ordinal: file.start + i, file: file.name };
      if (!this.#recent.includes(file)) await file.reader.close();
    }
  }
}
