// Transports: how bytes of one disk are read and written, whatever holds them.
//
// Vocabulary:
// - DiskReader: a disk of a fixed size that can be read at any byte offset. Readers that know
//   the disk's layout (NBD base:allocation, a sparse file) also say which ranges are
//   allocated (`allocation`).
// - DiskWriter: a disk that can be written, zeroed (the target may punch a hole) and flushed.
// - AllocationExtent: a range of the disk and what the source knows about it: `hole` means
//   unallocated, `zero` means it reads as zeroes (a hole usually does both).
// - transport: one implementation (NBD client, local file, datastore HTTP). `openDisk` picks
//   one from a URI or path.
//
// Contract for every implementation: read() fills the whole target or rejects (never a
// short read); ranges outside [0, sizeBytes) reject with code DISK_RANGE; calls may overlap
// (how many is the copy's choice: copy-areas.ts); an aborted signal rejects with its reason
// and leaves the caller's buffer untouched afterwards. Data passed to write() must not change
// until its promise settles; after an aborted or failed write the range's contents are
// undefined (write it again).

import type { Extent } from '../extents/extent.ts';
export type { Extent } from '../extents/extent.ts';

export interface AllocationExtent extends Extent {
  /** Unallocated in the source. */
  readonly hole: boolean;
  /** Reads as zeroes. */
  readonly zero: boolean;
}

export interface DiskReader {
  readonly sizeBytes: number;
  /** Fill `target` with the bytes at offsetBytes.. (target.length bytes), or reject. */
  read(offsetBytes: number, target: Uint8Array, signal?: AbortSignal): Promise<void>;
  /**
   * Allocation of `range`, as consecutive extents covering exactly the range. Present only
   * where the source knows it cheaply.
   */
  allocation?(range: Extent, signal?: AbortSignal): Promise<AllocationExtent[]>;
  close(): Promise<void>;
}

export interface DiskWriter {
  readonly sizeBytes: number;
  write(offsetBytes: number, data: Uint8Array, signal?: AbortSignal): Promise<void>;
  /** Make the range read as zeroes; the target may deallocate it (punch a hole). */
  writeZeroes(offsetBytes: number, lengthBytes: number, signal?: AbortSignal): Promise<void>;
  /** Make every completed write durable. */
  flush(signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** A disk opened for writing can also be read. */
export type Disk = DiskReader & DiskWriter;
