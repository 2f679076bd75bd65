// Errors the repository raises. One class, stable codes:
// - REPO_NOT_FOUND: no repository config at the path.          - REPO_EXISTS: init over an existing one.
// - REPO_FORMAT: a file we own does not parse (bad magic, unknown version, malformed JSON).
// - REPO_CORRUPT: a checksum / authentication tag does not match (flipped byte, truncation), or
//   a file does not have its documented shape.
// - REPO_MISSING: a file a restore point references is absent.
// - REPO_PASSPHRASE_REQUIRED / REPO_WRONG_PASSPHRASE: encrypted repository, no or wrong passphrase.
// - REPO_ENCRYPTION_MISMATCH: config.json says plain but the repository is encrypted (key-file.ts).
// - REPO_LOCKED: a live lock of another process conflicts (context.locks lists them).
// - REPO_LOCK_LOST: our own lock file vanished (someone removed it as stale) before commit.
// - REPO_POINT_NOT_FOUND / REPO_DISK_NOT_FOUND: unknown restore point id or device key.
// - REPO_INVALID_ARGUMENT: a caller passed something the format cannot hold.
// - REPO_SOURCE_READ: the caller's disk reader failed (cause attached).
// - REPO_INVALID_NAME: a point id, index id or lock name not of its kind's form (never made a path).
// - REPO_NOT_REGULAR_FILE: a FIFO, directory or device where a repository file should be.
// - REPO_IO: the file system refused a repository file (errno in the context).
// - REPO_LOCK_LIVE / REPO_LOCK_NOT_FOUND: `vcbt unlock` of a live-looking lock without force
//   (or of a live local process's), or of a lock that does not exist.
import { VcbtError } from '../errors.ts';

export class RepositoryError extends VcbtError {}
