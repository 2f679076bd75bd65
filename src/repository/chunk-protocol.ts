// Messages between the repository and the chunk workers (see chunk-work.ts, chunk-worker.ts).
// Buffers travel as transferred ArrayBuffers and always come back in the reply.

import type { ChunkLocation } from './pack.ts';
import type { StorageDescriptor } from './storage/storage.ts';

export interface ChunkWorkerData {
  storage: StorageDescriptor;
  compressionLevel: number;
  chunkBytes: number;
  /** dataKey || idKey when the repository is encrypted. */
  keyMaterial: Uint8Array | null;
}

/** Turn the first lengthBytes of `buffer` into a stored chunk (or recognize it as zero). */
export interface IngestRequest {
  kind: 'ingest';
  buffer: ArrayBuffer;
  lengthBytes: number;
  /**
   * For an incremental: the chunk id this slot had in the previous restore point and the
   * ranges (offset, length within the chunk) that `buffer` already holds fresh from the
   * source. Every other byte is taken from the previous chunk (or zero for the zero marker).
   */
  /** `previous`: where the previous chunk is (null for the zero marker). */
  merge: { previousId: Uint8Array; previous: ChunkLocation | null; freshRanges: Array<[number, number]> } | null;
}

export interface IngestReply {
  /** The plaintext (after the merge), in the request's buffer. */
  buffer: ArrayBuffer;
  zero: boolean;
  id: Uint8Array;
  /**
   * The encoded chunk record (header and payload, compressed and encrypted: chunk-codec.ts),
   * transferred; null for a zero chunk. The caller decides whether the chunk is already stored
   * and otherwise appends the record to the pack it is writing.
   */
  record: ArrayBuffer | null;
}

/** Read the chunk `id` at `location` and verify it into the first bytes of `buffer`. */
export interface DecodeRequest {
  kind: 'decode';
  buffer: ArrayBuffer;
  id: Uint8Array;
  location: ChunkLocation;
}

export interface DecodeReply {
  buffer: ArrayBuffer;
  lengthBytes: number;
}

export type ChunkRequest = IngestRequest | DecodeRequest;
export type ChunkReply = IngestReply | DecodeReply;
