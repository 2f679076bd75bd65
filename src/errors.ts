// The project's error base class and the list of its error codes. Every error vcbt raises on
// purpose is a VcbtError with a stable machine-readable `code` (one of `ErrorCode`) and the
// context a user needs to act: which VM, disk, offset, server, file. The CLI prints
// `code: message` and, with --json, the code, message and context as a JSON document.
// Secrets never go into either.
//
// `ErrorCode` is the public contract: scripts match on these strings. Every code is
// documented in docs/errors.md (what happened, what to do); test/cli/error-codes.test.ts
// fails when one is missing there or when src throws a code that is not listed here. Adding a
// code means adding it to `errorCodes` and a row to docs/errors.md.

/** Every error code vcbt can report, grouped by the layer that raises it. */
export const errorCodes = [
  // command line and process (src/cli)
  'USAGE',
  'INTERNAL',
  'INTERRUPTED',
  'FILE_ACCESS',
  'NO_SPACE',
  // vSphere client (src/vsphere)
  'VSPHERE_FAULT',
  'VSPHERE_NOT_AUTHENTICATED',
  'VSPHERE_INVALID_LOGIN',
  'VSPHERE_NO_PERMISSION',
  'VSPHERE_OBJECT_NOT_FOUND',
  'VSPHERE_BAD_RESPONSE',
  'VSPHERE_UNREACHABLE',
  'VSPHERE_TIMEOUT',
  'VSPHERE_RESPONSE_TOO_LARGE',
  'VSPHERE_HTTP',
  'VSPHERE_CANCELLED',
  'XML_SYNTAX',
  'TLS_FINGERPRINT_MISMATCH',
  'TLS_UNTRUSTED',
  'TLS_FINGERPRINT_SYNTAX',
  'CBT_CHANGEID_INVALID',
  'CBT_NOT_ENABLED',
  'CBT_QUERY_NO_PROGRESS',
  'VM_NOT_FOUND',
  'VM_AMBIGUOUS',
  'DISK_NOT_FOUND',
  'SNAPSHOT_NOT_FOUND',
  'SNAPSHOT_REQUIRED',
  'SNAPSHOT_REMOVE_FAILED',
  // areas (src/extents)
  'EXTENT_CSV_SYNTAX',
  'EXTENT_INVALID',
  'EXTENT_UNSORTED',
  'EXTENT_OVERLAP',
  'EXTENT_OUTSIDE_DISK',
  'EXTENT_MISALIGNED',
  // disks and transports (src/transport, src/nbd, src/vddk)
  'DISK_URI',
  'DISK_RANGE',
  'DISK_READ_ONLY',
  'DISK_SHORT_READ',
  'DISK_SIZE',
  'DISK_CHANGED',
  'FILE_OPEN',
  'HTTP_CUT',
  'HTTP_STALLED',
  'HTTP_UNAUTHORIZED',
  'HTTP_STATUS',
  'HTTP_SIZE',
  'HTTP_RESUME_EXHAUSTED',
  'VMDK_NOT_FLAT',
  'VMDK_DESCRIPTOR',
  'VMDK_PATH',
  'VMDK_EXTENT_TYPE',
  'VMDK_MAGIC',
  'VMDK_HEADER',
  'VMDK_TRUNCATED',
  'VMDK_OUT_OF_BOUNDS',
  'VMDK_GRAIN_ENTRY',
  'VMDK_CID_MISMATCH',
  'VMDK_PARENT_CYCLE',
  'NBD_TIMEOUT',
  'NBD_PROTOCOL',
  'NBD_DISCONNECTED',
  'NBD_CONNECT',
  'NBD_HANDSHAKE',
  'NBD_TLS',
  'NBD_BAD_URI',
  'NBD_UNSUPPORTED',
  'VDDK_OPTIONS',
  'VDDK_START_FAILED',
  'TRANSPORT_OPTIONS',
  'TRANSPORT_UNSUPPORTED',
  'TRANSPORT_SIZE',
  // repository (src/repository)
  'REPO_NOT_FOUND',
  'REPO_EXISTS',
  'REPO_FORMAT',
  'REPO_CORRUPT',
  'REPO_MISSING',
  'REPO_PASSPHRASE_REQUIRED',
  'REPO_WRONG_PASSPHRASE',
  'REPO_LOCKED',
  'REPO_LOCK_LOST',
  'REPO_POINT_NOT_FOUND',
  'REPO_DISK_NOT_FOUND',
  'REPO_INVALID_ARGUMENT',
  'REPO_SOURCE_READ',
  'REPO_ENCRYPTION_MISMATCH',
  'REPO_INVALID_NAME',
  'REPO_NOT_REGULAR_FILE',
  'REPO_IO',
  'REPO_LOCK_LIVE',
  'REPO_LOCK_NOT_FOUND',
  'REPO_NO_OBJECT_LOCK',
  // object storage (src/repository/storage/s3.ts)
  'S3_CREDENTIALS',
  'S3_BUCKET_MISSING',
  'S3_TLS',
  'S3_CLOCK_SKEW',
  'S3_UNAVAILABLE',
  'S3_OBJECT_LOCKED',
  // jobs (src/jobs)
  'APPLY_AREAS_UNREADABLE',
  'APPLY_TARGET_SMALLER',
  'REPLICATE_NO_TARGETS',
  'REPLICATE_TARGET',
  'REPLICATE_TARGET_SIZE',
  'REPLICA_STATE_CORRUPT',
  'VM_NO_DISKS',
  'VM_BUSY',
  'VM_POWERED_ON',
  'SNAPSHOT_LOST',
  'BASELINE_DAMAGED',
  'RESTORE_POINT_DAMAGED',
  'RESTORE_POINT_AMBIGUOUS',
  'RESTORE_TARGET_SIZE',
  'RESTORE_TARGET_PARTIAL',
  // restore-vm (src/jobs/restore-vm.ts, src/vsphere/nfc.ts)
  'VM_EXISTS',
  'NETWORK_NOT_FOUND',
  'DATASTORE_SPACE',
  'PLACEMENT_NOT_FOUND',
  'RESTORE_VM_NO_CONFIG',
  'OVF_IMPORT_SPEC',
  'NFC_UPLOAD',
  'EXPORT_LISTEN',
  'FILES_ENGINE_MISSING',
  'FILES_ENGINE_FAILED',
  'FILES_NO_FILESYSTEM',
  'FILES_FILESYSTEM_ENCRYPTED',
  'FILES_FILESYSTEM_UNKNOWN',
  'FILES_PATH_SYNTAX',
  'FILES_PARTITION_NOT_FOUND',
  'FILES_PATH_NOT_FOUND',
  'FILES_DISK_AMBIGUOUS',
  'FILES_BUSY',
  // service: configuration, job runs, catalog (src/service)
  'CONFIG_INVALID',
  'CONFIG_UNREADABLE',
  'SECRET_UNREADABLE',
  'JOB_NOT_FOUND',
  'JOB_NO_VMS',
  'CATALOG_UNAVAILABLE',
  'JOB_RUNNING',
  'DAEMON_STOPPING',
  'JOB_AMBIGUOUS',
  'RESTORE_PATH_REFUSED',
  'NOTIFY_FAILED',
  'TOKEN_NOT_FOUND',
  'RESTORE_TARGET_EXISTS',
  // the HTTP API (src/api)
  'API_UNAUTHORIZED',
  'API_READ_ONLY',
  'API_NOT_FOUND',
  'API_BAD_REQUEST',
  'API_LISTEN',
  'API_TLS',
] as const;

/**
 * An NBD server's error number for one request, by name: NBD_EIO, NBD_EPERM, NBD_EINVAL,
 * NBD_ENOSPC, NBD_ENOMEM, NBD_EOVERFLOW, NBD_ENOTSUP, NBD_ESHUTDOWN, or NBD_E<number> for
 * one the protocol does not name. The only codes not spelled out in `errorCodes`.
 */
export type NbdErrnoCode = `NBD_E${string}`;

export type ErrorCode = (typeof errorCodes)[number] | NbdErrnoCode;

const knownCodes: ReadonlySet<string> = new Set(errorCodes);

/** Whether a string met at run time (a worker's serialized error) is one of ours. */
export function isErrorCode(code: string): code is ErrorCode {
  return knownCodes.has(code) || /^NBD_E[A-Z0-9]+$/.test(code);
}

export class VcbtError extends Error {
  readonly code: ErrorCode;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

/** A command line that cannot be acted on (unknown flag, missing value, bad number). */
export class UsageError extends VcbtError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super('USAGE', message, context);
  }
}

export function isVcbtError(error: unknown): error is VcbtError {
  return error instanceof VcbtError;
}
