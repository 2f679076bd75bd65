// Messages between the repository and the chunk workers (see chunk-work.ts, chunk-worker.ts).
// Buffers travel as transferred ArrayBuffers and always come back in the reply.

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
  merge: { previousId: Uint8Array; freshRanges: Array<[number, number]> } | null;
  /**
   * How a chunk file already stored under this chunk's id is checked before it is reused
   * (docs/format.md, "Reusing a stored chunk"): `header` = its size and header agree with the
   * chunk in hand; `full` = also read, decoded and compared byte for byte. A file that fails
   * is replaced by a new one written from the chunk in hand.
   */
  checkExisting?: 'header' | 'full';
}

export interface IngestReply {
  buffer: ArrayBuffer;
  zero: boolean;
  id: Uint8Array;
  /** Bytes of the chunk blob this request staged; 0 when the chunk already existed or is zero. */
  storedBytes: number;
  /**
   * The staged chunk blob (storage.stage: locally a temp file, not yet fsynced), null when
   * nothing was written. The caller publishes it (many fsyncs in flight at once let the file
   * system group them: ~5x cheaper than one synchronous fsync per chunk).
   */
  stagedToken: string | null;
  /** A chunk file was stored under this id but failed the reuse check: the staged blob replaces it. */
  rewritten: boolean;
}

/** Read and verify the chunk `id` into the first bytes of `buffer`. */
export interface DecodeRequest {
  kind: 'decode';
  buffer: ArrayBuffer;
  id: Uint8Array;
}

export interface DecodeReply {
  buffer: ArrayBuffer;
  lengthBytes: number;
}

export type ChunkRequest = IngestRequest | DecodeRequest;
export type ChunkReply = IngestReply | DecodeReply;
