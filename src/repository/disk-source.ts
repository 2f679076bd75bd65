// What the repository reads from and writes to: the caller's disk, as plain async calls.
// (Transports - datastore HTTP, NBD, local files - adapt to these; the repository knows none.)

/** A source disk at the snapshot. `read` fills all of `target` from offsetBytes. */
export interface DiskSource {
  read(offsetBytes: number, target: Uint8Array): Promise<void>;
}

/** A restore target. `zero` is called for all-zero chunks when given; otherwise they are skipped (sparse). */
export interface DiskTarget {
  write(offsetBytes: number, data: Uint8Array): Promise<void>;
  zero?(offsetBytes: number, lengthBytes: number): Promise<void>;
}
