// The chunk work (docs/format.md, "Chunk files"): ingest = zero-detect, merge with the
// previous chunk (incrementals), hash, compress, encrypt and stage a new chunk blob; decode =
// read, decrypt, decompress and re-hash one. Runs on a chunk worker thread (chunk-worker.ts)
// or, for a storage that threads cannot share (storage/memory.ts), on the calling thread.
// Messages: chunk-protocol.ts.
import type { ErrorCode } from '../errors.ts';
import { ChunkDecodeError, chunkHeaderBytes, decodeChunk, encodeChunk, parseChunkHeader } from './chunk-codec.ts';
import { chunkIdHex, chunkRef } from './chunk-store.ts';
import type { ChunkReply, ChunkRequest, DecodeReply, DecodeRequest, IngestReply, IngestRequest } from './chunk-protocol.ts';
import { boxOverheadBytes, chunkId, type MasterKeys } from './crypto.ts';
import { isZeroId } from './disk-index.ts';
import { RepositoryError } from './errors.ts';
import { isBlobNotFound, type Storage } from './storage/storage.ts';

export class ChunkWork {
  readonly #storage: Storage;
  readonly #keys: MasterKeys | undefined;
  readonly #compressionLevel: number;
  readonly #chunkBytes: number;
  #zeros = Buffer.alloc(0);

  constructor(storage: Storage, keys: MasterKeys | undefined, compressionLevel: number, chunkBytes: number) {
    this.#storage = storage;
    this.#keys = keys;
    this.#compressionLevel = compressionLevel;
    this.#chunkBytes = chunkBytes;
  }

  handle(request: ChunkRequest): Promise<ChunkReply> {
    return request.kind === 'ingest' ? this.#ingest(request) : this.#decode(request);
  }

  #isAllZero(bytes: Buffer): boolean {
    if (this.#zeros.length < bytes.length) this.#zeros = Buffer.alloc(bytes.length);
    return bytes.equals(this.#zeros.subarray(0, bytes.length));
  }

  #chunkError(code: ErrorCode, why: string, idHex: string, cause?: unknown): RepositoryError {
    return new RepositoryError(code, `chunk ${idHex}: ${why}`, { chunkId: idHex, file: this.#storage.describe(chunkRef(idHex)) }, { cause });
  }

  async #readChunk(id: Uint8Array): Promise<Buffer> {
    const idHex = chunkIdHex(id);
    let file: Buffer;
    try {
      // Raw payload at most a chunk, plus header and box: a bigger file is damage, not read.
      file = await this.#storage.get(chunkRef(idHex), { maxBytes: chunkHeaderBytes + this.#chunkBytes + boxOverheadBytes });
    } catch (error) {
      if (isBlobNotFound(error)) throw this.#chunkError('REPO_MISSING', 'chunk file is missing', idHex, error);
      throw error;
    }
    try {
      return decodeChunk(file, id, this.#keys, this.#chunkBytes);
    } catch (error) {
      if (error instanceof ChunkDecodeError) throw this.#chunkError('REPO_CORRUPT', error.message, idHex, error);
      throw error;
    }
  }

  async #fillFromPrevious(target: Buffer, merge: NonNullable<IngestRequest['merge']>): Promise<void> {
    const previous = isZeroId(merge.previousId) ? undefined : await this.#readChunk(merge.previousId);
    if (previous && previous.length !== target.length) {
      throw this.#chunkError('REPO_CORRUPT', `previous chunk holds ${previous.length} bytes, the slot needs ${target.length}`, chunkIdHex(merge.previousId));
    }
    let at = 0;
    const gaps: Array<[number, number]> = [];
    for (const [offset, length] of merge.freshRanges) {
      if (offset > at) gaps.push([at, offset]);
      at = Math.max(at, offset + length);
    }
    if (at < target.length) gaps.push([at, target.length]);
    for (const [from, to] of gaps) {
      if (previous) previous.copy(target, from, from, to);
      else target.fill(0, from, to);
    }
  }

  async #ingest(request: IngestRequest): Promise<IngestReply> {
    const chunk = Buffer.from(request.buffer, 0, request.lengthBytes);
    if (request.merge) await this.#fillFromPrevious(chunk, request.merge);
    if (this.#isAllZero(chunk)) return { buffer: request.buffer, zero: true, id: new Uint8Array(32), storedBytes: 0, stagedToken: null, rewritten: false };
    const id = chunkId(chunk, this.#keys?.idKey);
    const stored = await this.#storedState(id, chunk, request.checkExisting ?? 'header');
    if (stored === 'sound') return { buffer: request.buffer, zero: false, id: new Uint8Array(id), storedBytes: 0, stagedToken: null, rewritten: false };
    // Absent, or stored but unsound (truncated, bit-flipped, a stranger's bytes): written anew
    // from the chunk in hand; publishing it replaces the bad file atomically.
    const staged = await this.#storage.stage(encodeChunk(chunk, id, this.#compressionLevel, this.#keys), chunkRef(id.toString('hex')));
    return { buffer: request.buffer, zero: false, id: new Uint8Array(id), storedBytes: staged.sizeBytes, stagedToken: staged.token, rewritten: stored === 'unsound' };
  }

  /**
   * Whether the chunk file named `id` can be reused for `chunk`. `header`: the file's size is
   * its header's 16 + payloadBytes, the header parses, claims exactly this chunk's length and
   * the repository's encryption; `full`: the file also decodes (tag, zstd, hash) to exactly
   * `chunk`. Costs one stat and one 16-byte read (header), or one read of the file and a
   * decode (full).
   */
  async #storedState(id: Buffer, chunk: Buffer, check: 'header' | 'full'): Promise<'absent' | 'sound' | 'unsound'> {
    const ref = chunkRef(id.toString('hex'));
    const info = await this.#storage.stat(ref).catch((error: unknown) => {
      // A FIFO or directory planted under the name: not a chunk; replaced like any damage.
      if (error instanceof RepositoryError && error.code === 'REPO_NOT_REGULAR_FILE') return 'unsound' as const;
      throw error;
    });
    if (info === 'unsound') return 'unsound';
    if (!info) return 'absent';
    if (info.sizeBytes < chunkHeaderBytes || info.sizeBytes > chunkHeaderBytes + this.#chunkBytes + boxOverheadBytes) return 'unsound';
    try {
      if (check === 'full') {
        const plaintext = decodeChunk(await this.#storage.get(ref, { maxBytes: chunkHeaderBytes + this.#chunkBytes + boxOverheadBytes }), id, this.#keys, this.#chunkBytes);
        return plaintext.equals(chunk) ? 'sound' : 'unsound';
      }
      const header = parseChunkHeader(await this.#storage.getRange(ref, 0, chunkHeaderBytes));
      const sound = info.sizeBytes === chunkHeaderBytes + header.payloadBytes && header.plaintextBytes === chunk.length && header.encrypted === (this.#keys !== undefined);
      return sound ? 'sound' : 'unsound';
    } catch (error) {
      if (error instanceof ChunkDecodeError) return 'unsound';
      // Gone between stat and read (verify moved it aside): write it anew.
      if (isBlobNotFound(error)) return 'absent';
      if (error instanceof RepositoryError && (error.code === 'REPO_CORRUPT' || error.code === 'REPO_NOT_REGULAR_FILE')) return 'unsound';
      throw error;
    }
  }

  async #decode(request: DecodeRequest): Promise<DecodeReply> {
    const plaintext = await this.#readChunk(request.id);
    if (plaintext.length > request.buffer.byteLength) throw this.#chunkError('REPO_CORRUPT', `chunk holds ${plaintext.length} bytes, more than a chunk`, chunkIdHex(request.id));
    new Uint8Array(request.buffer).set(plaintext);
    return { buffer: request.buffer, lengthBytes: plaintext.length };
  }
}
