// Storage: where a repository's bytes live, as named blobs (in the spirit of kopia's
// blob.Storage and restic's backend.Backend). The repository decides what blobs mean; a
// storage only keeps them. Everything above this file names blobs, never paths.
//
// Vocabulary
// - Blob: an immutable byte string named by a kind and a name (BlobRef). Kinds: config (one,
//   named "config"), key (32 hex: the repository id), chunk (64 hex), index (64 hex), point
//   (restore point id), lock (16 hex), committed (restore point id: the record that a point
//   was committed, format.md "Committed records"), check (restore point id: verify's last
//   result for it, format.md "Check records").
//   Names are checked against their kind's pattern before they reach a path or key
//   (REPO_INVALID_NAME), so a name read from a file or typed by a user cannot escape.
// - put: atomic and durable. When it resolves the blob is complete under its name and
//   survives a crash; a crash before leaves the previous blob or none, never a torn one.
//   (Local directory: temp file, fsync, rename, directory fsync. Object store: one PUT.)
// - Staged blob (bulk writes: chunks): written by any thread, not yet visible under its name;
//   `publish` makes it durable and visible, and a PublishBatch's `sync` makes the published
//   names themselves durable (local: one fsync per directory touched instead of per file).
//   The one rule callers rely on: a name never becomes visible before its content is durable,
//   because a writer that finds a chunk name present reuses it without reading it. An object
//   store may upload a staged blob straight to its name (a PUT is atomic and durable).
//   Staged blobs of a writer that died are left-overs (`listStaged`, `discard`).
// - Object store (storage/s3.ts): `open` checks the bucket before any work; retained blobs.
// - Stream: a large blob written piece by piece (indexes), atomic and durable at `finish`.
// - Reads open regular files only: anything else planted under a blob's name (FIFO,
//   directory, device) is REPO_NOT_REGULAR_FILE naming it, never a hang.
// - Quarantine: a damaged blob moved aside (out of its name, bytes kept) by verify; it is
//   never read again by vcbt and never deleted by it (format.md "Quarantine").
// - Errors: an absent blob is BlobNotFound (code REPO_MISSING); any other I/O failure is
//   REPO_IO naming the blob's location and the system error.
import { RepositoryError } from '../errors.ts';
import type { S3Settings } from './s3.ts';

export type BlobKind = 'config' | 'key' | 'chunk' | 'index' | 'point' | 'lock' | 'committed' | 'check';

export interface BlobRef {
  readonly kind: BlobKind;
  readonly name: string;
}

export interface BlobInfo {
  name: string;
  sizeBytes: number;
  modifiedMs: number;
}

/** A staged blob; `token` is plain text so a blob staged on a worker thread can be published by another. */
export interface StagedBlob {
  token: string;
  sizeBytes: number;
}

export interface PublishBatch {
  /** Makes the names published through this batch durable. */
  sync(): Promise<void>;
}

export interface BlobStream {
  write(bytes: Uint8Array): Promise<void>;
  /** Durable and visible under `ref` when it resolves (same content may already be there). */
  finish(ref: BlobRef): Promise<void>;
  abort(): Promise<void>;
}

/** How a worker thread opens the same storage (undefined: the storage cannot be shared with threads). */
export type StorageDescriptor = { type: 'local'; root: string } | { type: 's3'; settings: S3Settings; retentionDays: number };

/** What `open` found out about a storage (an object store's bucket). */
export interface StorageFeatures {
  /** Blobs can be written with a retention date no one can delete them before (S3 Object Lock). */
  objectLock: boolean;
}

export interface Storage {
  /** For messages: a directory, or a URL. */
  readonly location: string;
  threadDescriptor(): StorageDescriptor | undefined;
  /** Makes an empty repository layout; REPO_EXISTS when anything is there already. */
  create(): Promise<void>;
  /**
   * Checks a remote storage before any work (bucket, credentials, clock) and says what it can
   * do; absent for local storages.
   */
  open?(): Promise<StorageFeatures>;
  /**
   * Object Lock: blobs of restore points written from now on are retained this many days
   * (storages without `open` or without objectLock never get a value above 0).
   */
  retentionDays?: number;
  /** Until when a blob cannot be deleted (Object Lock), undefined when it can; absent: never locked. */
  lockedUntilMs?(ref: BlobRef): Promise<number | undefined>;
  /** Where a blob lives, for messages (a path or a URL). */
  describe(ref: BlobRef): string;
  /** The whole blob; `maxBytes` refuses a larger one (REPO_CORRUPT) before reading it. */
  get(ref: BlobRef, options?: { maxBytes?: number }): Promise<Buffer>;
  /** Up to lengthBytes from offsetBytes (shorter at the end of the blob). */
  getRange(ref: BlobRef, offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /** undefined when absent. */
  stat(ref: BlobRef): Promise<BlobInfo | undefined>;
  /**
   * Many stats at once (an incremental proves its carried-over chunks exist: millions of
   * them). Same answers as `stat`, except that anything but a regular file reports size 0.
   */
  statMany(refs: readonly BlobRef[]): Promise<Array<BlobInfo | undefined>>;
  /** Names of every blob of a kind (files whose names do not fit the kind are not ours: skipped). */
  list(kind: BlobKind): AsyncIterable<string>;
  put(ref: BlobRef, data: Uint8Array | string): Promise<void>;
  /**
   * Removes a blob; absent is fine. Durable when it resolves, or, given a batch, once the
   * batch is synced (GC deletes thousands of chunks; prune must know a manifest is gone for
   * good before it deletes what only that manifest referenced).
   */
  delete(ref: BlobRef, batch?: PublishBatch): Promise<void>;
  /** `ref`: the name the blob will be published under (an object store uploads it there at once). */
  stage(parts: readonly Uint8Array[], ref?: BlobRef): Promise<StagedBlob>;
  newPublishBatch(): PublishBatch;
  publish(token: string, ref: BlobRef, batch: PublishBatch): Promise<void>;
  discard(token: string): Promise<void>;
  listStaged(): Promise<Array<BlobInfo & { token: string }>>;
  openStream(): Promise<BlobStream>;
  /**
   * Moves a blob out of its name into the quarantine, keeping its bytes; returns where it went
   * (for messages). Durable when it resolves. Absent: BlobNotFound.
   */
  quarantine(ref: BlobRef): Promise<string>;
}

const namePatterns: Record<BlobKind, RegExp> = {
  config: /^config$/,
  key: /^[0-9a-f]{32}$/,
  chunk: /^[0-9a-f]{64}$/,
  index: /^[0-9a-f]{64}$/,
  point: /^\d{8}T\d{6}Z-[0-9a-f]{8}$/,
  lock: /^[0-9a-f]{16}$/,
  committed: /^\d{8}T\d{6}Z-[0-9a-f]{8}$/,
  check: /^\d{8}T\d{6}Z-[0-9a-f]{8}$/,
};

export function isValidBlobName(kind: BlobKind, name: string): boolean {
  return namePatterns[kind].test(name);
}

/** Throws REPO_INVALID_NAME unless `name` fits its kind. */
export function checkBlobRef(ref: BlobRef): void {
  if (typeof ref.name !== 'string' || !isValidBlobName(ref.kind, ref.name)) {
    throw new RepositoryError('REPO_INVALID_NAME', `"${String(ref.name)}" is not a valid ${ref.kind} name; refusing to use it as a repository file name`, { kind: ref.kind, name: String(ref.name) });
  }
}

export const configRef: BlobRef = { kind: 'config', name: 'config' };

export class BlobNotFound extends RepositoryError {
  constructor(where: string, cause?: unknown) {
    super('REPO_MISSING', `${where} does not exist`, { file: where }, { cause });
  }
}

export function isBlobNotFound(error: unknown): error is BlobNotFound {
  return error instanceof BlobNotFound;
}
