// The chunk work (docs/format.md, "Chunk files"): ingest = zero-detect, merge with the
// previous chunk (incrementals), hash, compress, encrypt and stage a new chunk blob; decode =
// read, decrypt, decompress and re-hash one. Runs on a chunk worker thread (chunk-worker.ts)
// or, for a storage that threads cannot share (storage/memory.ts), on the calling thread.
// Messages: chunk-protocol.ts.
import type { ErrorCode } from '../errors.ts';
import { ChunkDecodeError, chunkHeaderBytes, decodeChunk, encodeChunk } from './chunk-codec.ts';
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
    if (this.#isAllZero(chunk)) return { buffer: request.buffer, zero: true, id: new Uint8Array(32), storedBytes: 0, stagedToken: null };
    const id = chunkId(chunk, this.#keys?.idKey);
    let storedBytes = 0;
    let stagedToken: string | null = null;
    if (!(await this.#storage.stat(chunkRef(id.toString('hex'))))) {
      const staged = await this.#storage.stage(encodeChunk(chunk, id, this.#compressionLevel, this.#keys));
      stagedToken = staged.token;
      storedBytes = staged.sizeBytes;
    }
    return { buffer: request.buffer, zero: false, id: new Uint8Array(id), storedBytes, stagedToken };
  }

  async #decode(request: DecodeRequest): Promise<DecodeReply> {
    const plaintext = await this.#readChunk(request.id);
    if (plaintext.length > request.buffer.byteLength) throw this.#chunkError('REPO_CORRUPT', `chunk holds ${plaintext.length} bytes, more than a chunk`, chunkIdHex(request.id));
    new Uint8Array(request.buffer).set(plaintext);
    return { buffer: request.buffer, lengthBytes: plaintext.length };
  }
}
