// Pack files (repository format v2, docs/format.md "Pack files"): many chunk records back to
// back in one immutable blob, then the pack's own index (its trailer) and a fixed footer.
//
// Vocabulary
// - Chunk record: exactly the bytes of a format-v1 chunk file (chunk-codec.ts: 16-byte header,
//   payload; encrypted payloads are boxes whose aad is the header and the chunk id), so a
//   record decodes, and moves between packs, unchanged.
// - Location: where a chunk's record is: a pack name, its offset and its length in bytes.
//   `pack: null` is a format-v1 chunk file (chunks/<2 hex>/<id>), read whole.
// - Trailer: per record (in order) id (32), offsetBytes (u64), lengthBytes (u32), reserved
//   (u32, 0): 48 bytes each. Plain: those entries, then SHA-256(entries || pack name). Encrypted:
//   box(dataKey, entries, aad = "vcbt-pack-v1\0" || pack name || footer's count).
// - Footer (the last 24 bytes): magic "VCBTPACK", version (u32, 1), entryCount (u32),
//   trailerBytes (u32: stored trailer length), reserved (u32, 0).
// A pack describes itself (the repository's pack indexes can be rebuilt from packs alone);
// readers normally find a record through a pack index (pack-index.ts) and read only it.
//
// Writing: one pack at a time through storage.openStream (a temp file locally), records
// appended in the order the writer hands them over; `finish` writes trailer and footer and
// makes the pack durable under its name (fsync, rename, directory fsync: one durable commit
// per pack), so a pack's name never appears before its bytes are durable.
import { createHash, randomBytes } from 'node:crypto';
import { boxOverheadBytes, open, seal, type MasterKeys } from './crypto.ts';
import { idBytes } from './disk-index.ts';
import { RepositoryError } from './errors.ts';
import type { BlobRef, BlobStream, Storage } from './storage/storage.ts';

/** Packs are closed once they hold this much (bench/README.md, "Pack format": 16 MiB). */
export const packTargetBytes = 16 << 20;
export const packFooterBytes = 24;
export const packTrailerEntryBytes = 48;
const footerMagic = Buffer.from('VCBTPACK');

export interface ChunkLocation {
  /** Pack name (32 hex), or null for a format-v1 chunk file. */
  pack: string | null;
  offsetBytes: number;
  lengthBytes: number;
}

export interface PackEntry {
  id: Buffer;
  offsetBytes: number;
  lengthBytes: number;
}

export function packRef(name: string): BlobRef {
  return { kind: 'pack', name };
}

export function newPackName(): string {
  return randomBytes(16).toString('hex');
}

function trailerAad(name: string, entryCount: number): Buffer {
  const aad = Buffer.alloc(13 + 16 + 4);
  aad.write('vcbt-pack-v1\0', 0, 'latin1');
  Buffer.from(name, 'hex').copy(aad, 13);
  aad.writeUInt32LE(entryCount, 29);
  return aad;
}

function encodeTrailer(name: string, entries: readonly PackEntry[], keys: MasterKeys | undefined): Buffer[] {
  const plain = Buffer.alloc(entries.length * packTrailerEntryBytes);
  entries.forEach((e, i) => {
    const at = i * packTrailerEntryBytes;
    e.id.copy(plain, at);
    plain.writeBigUInt64LE(BigInt(e.offsetBytes), at + idBytes);
    plain.writeUInt32LE(e.lengthBytes, at + idBytes + 8);
  });
  const trailer = keys ? seal(keys.dataKey, plain, trailerAad(name, entries.length)) : Buffer.concat([plain, createHash('sha256').update(plain).update(name).digest()]);
  const footer = Buffer.alloc(packFooterBytes);
  footerMagic.copy(footer, 0);
  footer.writeUInt32LE(1, 8);
  footer.writeUInt32LE(entries.length, 12);
  footer.writeUInt32LE(trailer.length, 16);
  return [trailer, footer];
}

/** One pack being written: append records, then finish (durable) or abort. */
export class PackWriter {
  readonly name: string;
  readonly entries: PackEntry[] = [];
  #stream: BlobStream;
  #sizeBytes = 0;

  private constructor(stream: BlobStream) {
    this.name = newPackName();
    this.#stream = stream;
  }

  static async create(storage: Storage): Promise<PackWriter> {
    return new PackWriter(await storage.openStream());
  }

  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Appends one chunk record; returns where it is. Callers serialize appends. */
  async append(id: Uint8Array, record: Uint8Array): Promise<ChunkLocation> {
    const offsetBytes = this.#sizeBytes;
    this.#sizeBytes += record.length;
    this.entries.push({ id: Buffer.from(id), offsetBytes, lengthBytes: record.length });
    await this.#stream.write(record);
    return { pack: this.name, offsetBytes, lengthBytes: record.length };
  }

  /** Trailer, footer, then durable under its name. */
  async finish(keys: MasterKeys | undefined): Promise<void> {
    for (const part of encodeTrailer(this.name, this.entries, keys)) await this.#stream.write(part);
    await this.#stream.finish(packRef(this.name));
  }

  async abort(): Promise<void> {
    await this.#stream.abort();
  }
}

/**
 * Reads and checks a pack's trailer: the footer parses, the trailer authenticates (encrypted)
 * or its checksum holds (plain), and every record lies inside the pack before the trailer.
 * Throws REPO_MISSING (no pack), REPO_CORRUPT or REPO_FORMAT.
 */
export async function readPackTrailer(storage: Storage, name: string, keys: MasterKeys | undefined): Promise<{ entries: PackEntry[]; sizeBytes: number }> {
  const ref = packRef(name);
  const file = storage.describe(ref);
  const info = await storage.stat(ref);
  if (!info) throw new RepositoryError('REPO_MISSING', `pack ${file} is missing`, { file });
  const corrupt = (why: string) => new RepositoryError('REPO_CORRUPT', `pack ${file} is damaged: ${why}`, { file });
  if (info.sizeBytes < packFooterBytes) throw corrupt(`${info.sizeBytes} bytes, shorter than its footer`);
  const footer = await storage.getRange(ref, info.sizeBytes - packFooterBytes, packFooterBytes);
  if (!footer.subarray(0, 8).equals(footerMagic)) throw corrupt('its footer has a bad magic (truncated or overwritten)');
  const version = footer.readUInt32LE(8);
  if (version !== 1) throw new RepositoryError('REPO_FORMAT', `pack ${file} has unknown version ${version}`, { file, version });
  const entryCount = footer.readUInt32LE(12);
  const trailerBytes = footer.readUInt32LE(16);
  const plainBytes = entryCount * packTrailerEntryBytes;
  if (trailerBytes !== plainBytes + (keys ? boxOverheadBytes : 32) || trailerBytes > info.sizeBytes - packFooterBytes) throw corrupt(`its trailer length ${trailerBytes} does not fit ${entryCount} entries`);
  const recordsEnd = info.sizeBytes - packFooterBytes - trailerBytes;
  const stored = await storage.getRange(ref, recordsEnd, trailerBytes);
  let plain: Buffer;
  if (keys) {
    try {
      plain = open(keys.dataKey, stored, trailerAad(name, entryCount));
    } catch {
      throw corrupt('its trailer fails authentication');
    }
  } else {
    plain = stored.subarray(0, plainBytes);
    if (!createHash('sha256').update(plain).update(name).digest().equals(stored.subarray(plainBytes))) throw corrupt('its trailer checksum does not match');
  }
  const entries: PackEntry[] = [];
  for (let i = 0; i < entryCount; i++) {
    const at = i * packTrailerEntryBytes;
    const offsetBytes = Number(plain.readBigUInt64LE(at + idBytes));
    const lengthBytes = plain.readUInt32LE(at + idBytes + 8);
    if (offsetBytes + lengthBytes > recordsEnd) throw corrupt(`record ${i} ends past the records`);
    entries.push({ id: Buffer.from(plain.subarray(at, at + idBytes)), offsetBytes, lengthBytes });
  }
  return { entries, sizeBytes: info.sizeBytes };
}
