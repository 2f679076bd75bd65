// The chunk work (docs/format.md, "Chunk records"): ingest = zero-detect, merge with the
// previous chunk (incrementals), hash, compress and encrypt one chunk into its record (the
// caller stores it in a pack); decode = read one record (from a pack, or a format-v1 chunk
// file), decrypt, decompress and re-hash it. Runs on a chunk worker thread (chunk-worker.ts)
// or, for a storage that threads cannot share (storage/memory.ts), on the calling thread.
// Messages: chunk-protocol.ts.
import type { ErrorCode } from '../errors.ts';
import { ChunkDecodeError, chunkHeaderBytes, decodeChunk, encodeChunk } from './chunk-codec.ts';
import { chunkIdHex, chunkRef } from './chunk-store.ts';
import type { ChunkReply, ChunkRequest, DecodeReply, DecodeRequest, IngestReply, IngestRequest } from './chunk-protocol.ts';
import { boxOverheadBytes, chunkId, type MasterKeys } from './crypto.ts';
import { RepositoryError } from './errors.ts';
import { packRef, type ChunkLocation } from './pack.ts';
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

  async #readChunk(id: Uint8Array, location: ChunkLocation): Promise<Buffer> {
    const idHex = chunkIdHex(id);
    // Raw payload at most a chunk, plus header and box: a bigger record is damage, not read.
    const maxBytes = chunkHeaderBytes + this.#chunkBytes + boxOverheadBytes;
    let record: Buffer;
    if (location.pack === null) {
      try {
        record = await this.#storage.get(chunkRef(idHex), { maxBytes });
      } catch (error) {
        if (isBlobNotFound(error)) throw this.#chunkError('REPO_MISSING', 'chunk file is missing', idHex, error);
        throw error;
      }
    } else {
      const ref = packRef(location.pack);
      if (location.lengthBytes > maxBytes) throw new RepositoryError('REPO_CORRUPT', `chunk ${idHex}: its pack index entry says ${location.lengthBytes} bytes, more than a chunk record`, { chunkId: idHex, file: this.#storage.describe(ref) });
      try {
        record = await this.#storage.getRange(ref, location.offsetBytes, location.lengthBytes);
      } catch (error) {
        if (isBlobNotFound(error)) throw new RepositoryError('REPO_MISSING', `chunk ${idHex}: pack ${this.#storage.describe(ref)} is missing`, { chunkId: idHex, file: this.#storage.describe(ref) }, { cause: error });
        throw error;
      }
      if (record.length !== location.lengthBytes) {
        throw new RepositoryError('REPO_CORRUPT', `chunk ${idHex}: its record at ${location.offsetBytes} in pack ${this.#storage.describe(ref)} ends past the pack (truncated)`, { chunkId: idHex, file: this.#storage.describe(ref) });
      }
    }
    try {
      return decodeChunk(record, id, this.#keys, this.#chunkBytes);
    } catch (error) {
      if (error instanceof ChunkDecodeError) {
        const file = location.pack === null ? this.#storage.describe(chunkRef(idHex)) : `${this.#storage.describe(packRef(location.pack))} at ${location.offsetBytes}`;
        throw new RepositoryError('REPO_CORRUPT', `chunk ${idHex}: ${error.message}`, { chunkId: idHex, file }, { cause: error });
      }
      throw error;
    }
  }

  async #fillFromPrevious(target: Buffer, merge: NonNullable<IngestRequest['merge']>): Promise<void> {
    const previous = merge.previous === null ? undefined : await this.#readChunk(merge.previousId, merge.previous);
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
    if (this.#isAllZero(chunk)) return { buffer: request.buffer, zero: true, id: new Uint8Array(32), record: null };
    const id = chunkId(chunk, this.#keys?.idKey);
    const [header, payload] = encodeChunk(chunk, id, this.#compressionLevel, this.#keys);
    const record = new Uint8Array(header.length + payload.length);
    record.set(header, 0);
    record.set(payload, header.length);
    return { buffer: request.buffer, zero: false, id: new Uint8Array(id), record: record.buffer };
  }

  async #decode(request: DecodeRequest): Promise<DecodeReply> {
    const plaintext = await this.#readChunk(request.id, request.location);
    if (plaintext.length > request.buffer.byteLength) throw this.#chunkError('REPO_CORRUPT', `chunk holds ${plaintext.length} bytes, more than a chunk`, chunkIdHex(request.id));
    new Uint8Array(request.buffer).set(plaintext);
    return { buffer: request.buffer, lengthBytes: plaintext.length };
  }
}
