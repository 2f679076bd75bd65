// Disk index files (docs/format.md, "Index files"): the complete list of chunk ids of one
// disk in one restore point, slot i covering bytes [i * chunkBytes, (i + 1) * chunkBytes)
// (the last slot may be short). An all-zero id is the reserved marker of an all-zero chunk,
// which is never stored (a SHA-256/HMAC output of all zeros does not occur in practice).
//
// Logical content: a 64-byte header, entryCount ids of 32 bytes, and a 32-byte trailer that is
// the SHA-256 of header + ids. It is stored in segments of 1 MiB logical bytes; in an
// encrypted repository each segment is an AES-256-GCM box (aad names the segment and whether
// it is the last one). The file is named by the SHA-256 of its stored bytes, which the
// manifest also records, so identical indexes are stored once and any damage is detected.
//
// Writers stream entries to a temp file segment by segment and readers fetch segments on
// demand with a small cache, so neither holds a whole index of a huge disk in memory.
//
// The same segmented, checksummed (and, encrypted, boxed) layout with another magic, entry
// size and segment size holds format v2's pack indexes (pack-index.ts): an IndexLayout.
import { createHash, type Hash } from 'node:crypto';
import { boxOverheadBytes, open, seal, type MasterKeys } from './crypto.ts';
import { RepositoryError } from './errors.ts';
import { isBlobNotFound, type BlobRef, type BlobStream, type Storage } from './storage/storage.ts';

export const idBytes = 32;
export const indexHeaderBytes = 64;
export const indexSegmentBytes = 1 << 20;
const segmentsCached = 4;

/** What distinguishes the files that share this layout. */
export interface IndexLayout {
  kind: 'index' | 'packindex';
  /** 8 bytes. */
  magic: Buffer;
  /** 12 bytes, the start of each segment box's aad. */
  aadPrefix: string;
  /** A multiple of 32 that divides segmentBytes. */
  entryBytes: number;
  segmentBytes: number;
}

export const diskIndexLayout: IndexLayout = { kind: 'index', magic: Buffer.from('VCBTIDX\0'), aadPrefix: 'vcbt-idx-v1\0', entryBytes: idBytes, segmentBytes: indexSegmentBytes };

export const zeroChunkId: Buffer = Buffer.alloc(idBytes);

export function isZeroId(id: Uint8Array): boolean {
  for (let i = 0; i < idBytes; i++) if (id[i] !== 0) return false;
  return true;
}

export interface IndexFileRef {
  /** SHA-256 (hex) of the stored file; also its name under indexes/. */
  sha256: string;
  entryCount: number;
}

/** How many entries a stored file of `sizeBytes` holds in `layout` (undefined: no count fits). */
export function entryCountForSize(layout: IndexLayout, sizeBytes: number, encrypted: boolean): number | undefined {
  const overhead = encrypted ? boxOverheadBytes : 0;
  for (let segments = 1; segments <= Math.ceil(sizeBytes / layout.segmentBytes) + 1; segments++) {
    const logical = sizeBytes - segments * overhead;
    if (logical < indexHeaderBytes + idBytes || Math.ceil(logical / layout.segmentBytes) !== segments) continue;
    const body = logical - indexHeaderBytes - idBytes;
    if (body % layout.entryBytes === 0) return body / layout.entryBytes;
  }
  return undefined;
}

export function indexRef(sha256: string): BlobRef {
  return { kind: 'index', name: sha256 };
}

function segmentAad(layout: IndexLayout, segment: number, last: boolean): Buffer {
  const aad = Buffer.alloc(22);
  aad.write(layout.aadPrefix, 0, 'latin1');
  aad.writeBigUInt64LE(BigInt(segment), 12);
  aad[20] = last ? 1 : 0;
  return aad;
}

function logicalBytesOf(layout: IndexLayout, entryCount: number): number {
  return indexHeaderBytes + entryCount * layout.entryBytes + idBytes;
}

export class IndexWriter {
  readonly #keys: MasterKeys | undefined;
  readonly #stream: BlobStream;
  readonly #entryCount: number;
  readonly #layout: IndexLayout;
  readonly #contentHash: Hash = createHash('sha256');
  readonly #fileHash: Hash = createHash('sha256');
  readonly #segment: Buffer;
  #segmentFill = 0;
  #segmentNumber = 0;
  #logicalWritten = 0;
  #appended = 0;

  private constructor(keys: MasterKeys | undefined, stream: BlobStream, entryCount: number, layout: IndexLayout) {
    this.#keys = keys;
    this.#stream = stream;
    this.#entryCount = entryCount;
    this.#layout = layout;
    this.#segment = Buffer.alloc(layout.segmentBytes);
  }

  /** A disk index (entryCount from the capacity), or with `layout`, a file of `entryCount` entries of that layout. */
  static async create(storage: Storage, keys: MasterKeys | undefined, chunkBytes: number, capacityBytes: number, layout: IndexLayout = diskIndexLayout, entryCount = Math.ceil(capacityBytes / chunkBytes)): Promise<IndexWriter> {
    const writer = new IndexWriter(keys, await storage.openStream(), entryCount, layout);
    const header = Buffer.alloc(indexHeaderBytes);
    layout.magic.copy(header, 0);
    header.writeUInt32LE(1, 8);
    header.writeUInt32LE(chunkBytes, 12);
    header.writeBigUInt64LE(BigInt(capacityBytes), 16);
    header.writeBigUInt64LE(BigInt(entryCount), 24);
    await writer.#put(header);
    return writer;
  }

  get entryCount(): number {
    return this.#entryCount;
  }

  async append(id: Uint8Array): Promise<void> {
    if (this.#appended >= this.#entryCount) throw new RepositoryError('REPO_INVALID_ARGUMENT', `index already holds its ${this.#entryCount} entries`, {});
    this.#appended++;
    await this.#put(id);
  }

  /** Writes the trailer, makes the file durable under its content name, returns the reference. */
  async finish(): Promise<IndexFileRef> {
    if (this.#appended !== this.#entryCount) {
      throw new RepositoryError('REPO_INVALID_ARGUMENT', `index got ${this.#appended} of ${this.#entryCount} entries`, {});
    }
    await this.#put(this.#contentHash.copy().digest());
    if (this.#segmentFill > 0) await this.#flush();
    const sha256 = this.#fileHash.digest('hex');
    await this.#stream.finish({ kind: this.#layout.kind, name: sha256 }); // same content when it already exists
    return { sha256, entryCount: this.#entryCount };
  }

  async abort(): Promise<void> {
    await this.#stream.abort();
  }

  async #put(bytes: Uint8Array): Promise<void> {
    const total = logicalBytesOf(this.#layout, this.#entryCount);
    const isTrailer = this.#logicalWritten === total - idBytes;
    if (!isTrailer) this.#contentHash.update(bytes);
    const segmentBytes = this.#layout.segmentBytes;
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, segmentBytes - this.#segmentFill);
      this.#segment.set(bytes.subarray(at, at + n), this.#segmentFill);
      this.#segmentFill += n;
      this.#logicalWritten += n;
      at += n;
      if (this.#segmentFill === segmentBytes && this.#logicalWritten < total) await this.#flush();
    }
  }

  async #flush(): Promise<void> {
    const plain = this.#segment.subarray(0, this.#segmentFill);
    const last = this.#logicalWritten === logicalBytesOf(this.#layout, this.#entryCount);
    const stored = this.#keys ? seal(this.#keys.dataKey, plain, segmentAad(this.#layout, this.#segmentNumber, last)) : plain;
    this.#fileHash.update(stored);
    await this.#stream.write(stored);
    this.#segmentNumber++;
    this.#segmentFill = 0;
  }
}

export interface IndexHeader {
  chunkBytes: number;
  capacityBytes: number;
  entryCount: number;
}

/** Random access to a verified index file. */
export class IndexReader {
  readonly header: IndexHeader;
  readonly #storage: Storage;
  readonly #ref: BlobRef;
  readonly #keys: MasterKeys | undefined;
  readonly #file: string;
  readonly #layout: IndexLayout;
  readonly #cache = new Map<number, Buffer>();

  private constructor(storage: Storage, ref: BlobRef, keys: MasterKeys | undefined, file: string, header: IndexHeader, layout: IndexLayout) {
    this.#storage = storage;
    this.#ref = ref;
    this.#keys = keys;
    this.#file = file;
    this.header = header;
    this.#layout = layout;
  }

  /**
   * Opens and fully checks an index: stored bytes hash to `ref.sha256`, every segment decrypts,
   * the trailer matches, the header is consistent with what the manifest expects.
   * Throws REPO_MISSING, REPO_CORRUPT or REPO_FORMAT.
   */
  static async open(storage: Storage, ref: IndexFileRef, keys: MasterKeys | undefined, layout: IndexLayout = diskIndexLayout): Promise<IndexReader> {
    const blob: BlobRef = { kind: layout.kind, name: ref.sha256 };
    const file = storage.describe(blob);
    const size = await storage.stat(blob);
    if (!size) throw new RepositoryError('REPO_MISSING', `index file ${file} is missing`, { file });
    const reader = new IndexReader(storage, blob, keys, file, { chunkBytes: 0, capacityBytes: 0, entryCount: ref.entryCount }, layout);
    const header = await reader.#checkWhole(ref, size.sizeBytes);
    return new IndexReader(storage, blob, keys, file, header, layout);
  }

  /** Nothing stays open between reads; kept so callers release readers explicitly. */
  async close(): Promise<void> {
    this.#cache.clear();
  }

  /** The id in slot `slot` (an entry of the layout; a view into a cached segment: copy it to keep it). */
  async entry(slot: number): Promise<Buffer> {
    if (!Number.isSafeInteger(slot) || slot < 0 || slot >= this.header.entryCount) {
      throw new RepositoryError('REPO_INVALID_ARGUMENT', `slot ${slot} is outside index ${this.#file} (${this.header.entryCount} entries)`, { slot });
    }
    const { entryBytes, segmentBytes } = this.#layout;
    const logical = indexHeaderBytes + slot * entryBytes;
    const segment = Math.floor(logical / segmentBytes);
    const plain = await this.#segmentPlain(segment, this.header.entryCount);
    const at = logical - segment * segmentBytes;
    return plain.subarray(at, at + entryBytes);
  }

  async *entries(): AsyncGenerator<Buffer> {
    for (let slot = 0; slot < this.header.entryCount; slot++) yield await this.entry(slot);
  }

  #corrupt(why: string): RepositoryError {
    return new RepositoryError('REPO_CORRUPT', `index file ${this.#file} is damaged: ${why}`, { file: this.#file });
  }

  async #segmentPlain(segment: number, entryCount: number): Promise<Buffer> {
    const cached = this.#cache.get(segment);
    if (cached) return cached;
    const { segmentBytes } = this.#layout;
    const logicalTotal = logicalBytesOf(this.#layout, entryCount);
    const segments = Math.ceil(logicalTotal / segmentBytes);
    const plainBytes = Math.min(segmentBytes, logicalTotal - segment * segmentBytes);
    const overhead = this.#keys ? boxOverheadBytes : 0;
    const storedBytes = plainBytes + overhead;
    const stored = await this.#read(segment * (segmentBytes + overhead), storedBytes);
    if (stored.length !== storedBytes) throw this.#corrupt(`segment ${segment} is truncated`);
    const plain = this.#decodeSegment(stored, segment, segments);
    if (this.#cache.size >= segmentsCached) this.#cache.delete(this.#cache.keys().next().value as number);
    this.#cache.set(segment, plain);
    return plain;
  }

  #decodeSegment(stored: Buffer, segment: number, segments: number): Buffer {
    if (!this.#keys) return stored;
    try {
      return open(this.#keys.dataKey, stored, segmentAad(this.#layout, segment, segment === segments - 1));
    } catch {
      throw this.#corrupt(`segment ${segment} fails authentication`);
    }
  }

  async #read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    try {
      return await this.#storage.getRange(this.#ref, offsetBytes, lengthBytes);
    } catch (error) {
      if (isBlobNotFound(error)) throw new RepositoryError('REPO_MISSING', `index file ${this.#file} is missing`, { file: this.#file }, { cause: error });
      throw error;
    }
  }

  async #checkWhole(ref: IndexFileRef, size: number): Promise<IndexHeader> {
    const overhead = this.#keys ? boxOverheadBytes : 0;
    const { segmentBytes } = this.#layout;
    const logicalTotal = logicalBytesOf(this.#layout, ref.entryCount);
    const segments = Math.ceil(logicalTotal / segmentBytes);
    const expectedSize = logicalTotal + segments * overhead;
    if (size !== expectedSize) throw this.#corrupt(`${size} bytes, expected ${expectedSize} for ${ref.entryCount} entries`);
    const fileHash = createHash('sha256');
    const contentHash = createHash('sha256');
    let trailer: Buffer | undefined;
    let header: IndexHeader | undefined;
    for (let segment = 0; segment < segments; segment++) {
      const plainBytes = Math.min(segmentBytes, logicalTotal - segment * segmentBytes);
      const stored = await this.#read(segment * (segmentBytes + overhead), plainBytes + overhead);
      if (stored.length !== plainBytes + overhead) throw this.#corrupt(`segment ${segment} is truncated`);
      fileHash.update(stored);
      const plain = this.#decodeSegment(stored, segment, segments);
      if (segment === 0) header = this.#parseHeader(plain);
      const contentEnd = segment === segments - 1 ? plain.length - idBytes : plain.length;
      // The trailer may straddle the last two segments only if a segment boundary falls inside
      // it; ids and trailer are 32-byte aligned and segments are 1 MiB, so it never does.
      contentHash.update(plain.subarray(0, contentEnd));
      if (segment === segments - 1) trailer = plain.subarray(contentEnd);
    }
    if (fileHash.digest('hex') !== ref.sha256) throw this.#corrupt('its content does not match the checksum recorded in the manifest');
    if (!trailer || !contentHash.digest().equals(trailer)) throw this.#corrupt('its trailer checksum does not match');
    if (!header || header.entryCount !== ref.entryCount) throw this.#corrupt('its header does not match the manifest');
    return header;
  }

  #parseHeader(plain: Buffer): IndexHeader {
    if (!plain.subarray(0, 8).equals(this.#layout.magic)) throw new RepositoryError('REPO_FORMAT', `index file ${this.#file} has a bad magic`, { file: this.#file });
    const version = plain.readUInt32LE(8);
    if (version !== 1) throw new RepositoryError('REPO_FORMAT', `index file ${this.#file} has unknown version ${version}`, { file: this.#file, version });
    return {
      chunkBytes: plain.readUInt32LE(12),
      capacityBytes: Number(plain.readBigUInt64LE(16)),
      entryCount: Number(plain.readBigUInt64LE(24)),
    };
  }
}
