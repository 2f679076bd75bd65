// The types of the --json documents vcbt prints: one per command, and the error document.
// These types are the contract: docs/json/<type>.schema.json are generated from them by
// scripts/json-schemas.ts, and test/cli/json-schemas.test.ts fails when the checked-in
// schemas drift from the types. Rules every document follows (docs/json.md):
// - `version` and `type` first; `version` changes only for an incompatible change.
// - one name per fact across documents: `mode` (full | incremental), `deviceKey` for a
//   disk's device key inside restore points and jobs, sizes in `...Bytes`, times in `...Ms`
//   or ISO 8601 strings (`createdAt`), a prose `reason` next to a stable `reasonCode`.
import type { ErrorCode } from '../errors.ts';
import type { Extent } from '../extents/extent.ts';
import type { ApplyResult } from '../jobs/apply.ts';
import type { BackupResult } from '../jobs/backup.ts';
import type { ChangesResult } from '../jobs/changes.ts';
import type { RunningExport } from '../jobs/export.ts';
import type { GuestEntry, GuestEntryKind, GuestFileSystem } from '../jobs/files.ts';
import type { ReplicateResult } from '../jobs/replicate.ts';
import type { RestoreResult } from '../jobs/restore.ts';
import type { RollbackResult } from '../jobs/rollback.ts';
import type { RestoreVmResult } from '../jobs/restore-vm.ts';
import type { VmHardwareSummary } from '../jobs/vm-capture.ts';
import type { PruneReport } from '../repository/prune.ts';
import type { CopyReport } from '../repository/copy.ts';
import type { ConfigCheckResult } from '../service/check.ts';
import type { JobRunResult } from '../service/run.ts';
import type { JobStatus } from '../service/catalog/status.ts';
import type { RunNotification } from '../service/notify.ts';
import type { TokenInfo } from '../service/tokens.ts';
import type { VerifyReport } from '../repository/verify.ts';
import type { VmInfo } from '../vsphere/vsphere.ts';

/** The format version of every --json document; bumped only by an incompatible change. */
export const JSON_FORMAT_VERSION = 1;

/** The fields every document starts with. */
export interface DocumentHeader<Type extends string> {
  /** Format version of the document (1). */
  version: typeof JSON_FORMAT_VERSION;
  /** Which document this is. */
  type: Type;
}

/** Printed on stdout instead of the command's document when a command fails under --json. */
export interface ErrorDocument extends DocumentHeader<'error'> {
  /** The command that failed (backup, points, ...). */
  command: string;
  /** A stable code (docs/errors.md); INTERNAL means a bug. */
  code: ErrorCode;
  message: string;
  /** What was wrong, as fields: server, vm, diskKey, path, offsetBytes, ... (varies by code). */
  context: Record<string, unknown>;
  /** The process's exit code (1 failure, 2 usage, 130/143 after a signal). */
  exitCode: number;
}

/** One VM of `vcbt vms`. */
export interface VmJson {
  name: string;
  moref: string;
  instanceUuid: string | null;
  powerState: VmInfo['powerState'];
  cbtEnabled: boolean;
  consolidationNeeded: boolean;
  disks: Array<{
    /** Device key (2000, 2001, ...): what --disk takes. */
    key: number;
    label: string;
    capacityBytes: number;
    /** Datastore path of the disk's current backing file. */
    fileName: string;
    /** Datastore paths from the current backing file down to the base disk. */
    backingChain: string[];
    /** The disk's current ChangeId, null while CBT is off or not yet active. */
    changeId: string | null;
  }>;
}

export interface VmsDocument extends DocumentHeader<'vms'> {
  vms: VmJson[];
}

export interface CbtDocument extends DocumentHeader<'cbt'> {
  vm: string;
  moref: string;
  action: 'enable' | 'disable' | 'reset';
  /** CBT state after the action. */
  cbtEnabled: boolean;
  disks: Array<{ key: number; label: string; changeId: string | null }>;
}

export type ChangesDocument = DocumentHeader<'changes'> & ChangesResult;

export type ApplyDocument = DocumentHeader<'apply'> & ApplyResult;

/** Each disk carries its reason as a stable code next to the prose (src/jobs/copy-reason.ts). */
export type BackupDocument = DocumentHeader<'backup'> & BackupResult;

export type ReplicateDocument = DocumentHeader<'replicate'> & ReplicateResult;

export type RestoreDocument = DocumentHeader<'restore'> & RestoreResult;

/** `vcbt restore --in-place`: per disk whether only the changed areas or the whole disk was written, and why. */
export type RollbackDocument = DocumentHeader<'rollback'> & RollbackResult;

/** Printed once the export serves (one line, so a script can read it while vcbt runs). */
export type ExportDocument = DocumentHeader<'export'> & Omit<RunningExport, 'close'>;

export interface InitDocument extends DocumentHeader<'init'> {
  repo: string;
  id: string;
  chunkBytes: number;
  compression: { algorithm: string; level: number };
  encrypted: boolean;
  /** Object Lock retention of every restore point's objects, in days (0: none). */
  immutableDays: number;
}

/** One restore point of `vcbt points`. */
export interface PointJson {
  id: string;
  /** ISO 8601 (for a point whose manifest cannot be read: the time its id carries). */
  createdAt: string;
  /** Null when the manifest cannot be read: the VM is unknown. */
  vm: { id: string; name: string; [key: string]: unknown } | null;
  /** The snapshot the point was read from, as vSphere described it. */
  snapshot: unknown;
  /** The manifest cannot be used, or the last verify found data of the point lost. */
  damaged: boolean;
  /** Why the manifest cannot be used (unreadable, or gone though committed); null when it reads. */
  manifestProblem: { code: string; message: string } | null;
  /** The last `vcbt verify` of the point (docs/format.md, "Check records"); null when never verified. */
  lastVerify: {
    checkedAt: string;
    status: 'clean' | 'damaged' | 'unrecoverable';
    readData: boolean;
    manifestLost: boolean;
    /** Per disk, the byte ranges whose chunks are missing or damaged. */
    lostDisks: Array<{ deviceKey: number; capacityBytes: number; lostRanges: Extent[] }>;
  } | null;
  /** Empty when the manifest cannot be read. */
  disks: Array<{
    deviceKey: number;
    label: string;
    capacityBytes: number;
    mode: 'full' | 'incremental';
    /** The restore point an incremental was built on. */
    basedOn: string | null;
    /** The disk's ChangeId at the snapshot (null when CBT gave none). */
    changeId: string | null;
    bytesRead: number;
    bytesStored: number;
  }>;
  /** The VM's hardware stored with the point (docs/format.md, "VM configuration"); null for points written before vcbt recorded it. */
  hardware: VmHardwareSummary | null;
}

export interface PointsDocument extends DocumentHeader<'points'> {
  points: PointJson[];
}

export type PruneDocument = DocumentHeader<'prune'> & PruneReport;

/** `vcbt copy --json`: each selected point, copied now or already in the target. */
export interface CopyDocument extends DocumentHeader<'copy'> {
  from: string;
  to: string;
  points: CopyReport['points'];
}

export type VerifyDocument = DocumentHeader<'verify'> & VerifyReport;

/** `vcbt config check FILE --json`: valid or not, every problem with its position, warnings. */
export type ConfigCheckDocument = DocumentHeader<'config-check'> & ConfigCheckResult;

/** `vcbt job list --config FILE --json`. */
export interface JobListDocument extends DocumentHeader<'job-list'> {
  file: string;
  jobs: Array<{
    name: string;
    type: 'backup' | 'replicate';
    server: string;
    /** `repository NAME` or `replica TEMPLATE`. */
    target: string;
    /** The cron expression, null without a schedule. */
    schedule: string | null;
    timezone: string | null;
    /** ISO 8601 time of the next scheduled run, null without one. */
    nextRun: string | null;
    /** With --vms: the VMs the job selects now; otherwise null. */
    selected: Array<{ name: string; moref: string; host: string | null; excludedDiskKeys: number[] }> | null;
    /** With --vms: VMs an include rule matched that the job leaves out, and why. */
    excluded: Array<{ name: string; moref: string; reason: string }> | null;
  }>;
}

/** `vcbt job run NAME --config FILE --json`: per VM and overall success / warning / failed. */
export type JobRunDocument = DocumentHeader<'job-run'> & JobRunResult;

/** `vcbt job status --config FILE --json`: per job its latest runs from the catalog. */
export interface JobStatusDocument extends DocumentHeader<'job-status'> {
  file: string;
  /** The catalog file read. */
  catalog: string;
  jobs: JobStatus[];
}

/** `vcbt token list --config FILE --json`: the daemon's API tokens, oldest first (never a token or its hash). */
export interface TokenListDocument extends DocumentHeader<'token-list'> {
  tokens: TokenInfo[];
}

/** What a webhook notifier of format `json` receives when a job run ends (not printed by a command). */
export type RunNotificationDocument = RunNotification;

/** `vcbt files ls --json`: the disk's file systems, and the entries of PATH when one was given. */
export interface FilesLsDocument extends DocumentHeader<'files-ls'> {
  pointId: string;
  deviceKey: number;
  filesystems: GuestFileSystem[];
  /** The PATH asked for, null when none was given. */
  path: string | null;
  /** PATH's entries (a directory's, sorted by name; or the one file), null without PATH. */
  entries: GuestEntry[] | null;
}

/** `vcbt files find PATTERN --json`. */
export interface FilesFindDocument extends DocumentHeader<'files-find'> {
  pointId: string;
  deviceKey: number;
  pattern: string;
  /** Guest paths (N:/dir/name or /dir/name), sorted. */
  paths: string[];
}

/** `vcbt files get PATH... --to DIR --json`. */
export interface FilesGetDocument extends DocumentHeader<'files-get'> {
  pointId: string;
  deviceKey: number;
  copied: Array<{ path: string; to: string; kind: GuestEntryKind }>;
}

/** `vcbt restore-vm --json`: the new VM, per disk what was uploaded, the transport. */
export type RestoreVmDocument = DocumentHeader<'restore-vm'> & RestoreVmResult;

/** Every document, by its `type`: the schemas in docs/json/ are generated from these. */
export interface JsonDocuments {
  error: ErrorDocument;
  vms: VmsDocument;
  cbt: CbtDocument;
  changes: ChangesDocument;
  apply: ApplyDocument;
  backup: BackupDocument;
  replicate: ReplicateDocument;
  restore: RestoreDocument;
  rollback: RollbackDocument;
  'restore-vm': RestoreVmDocument;
  export: ExportDocument;
  init: InitDocument;
  points: PointsDocument;
  prune: PruneDocument;
  copy: CopyDocument;
  verify: VerifyDocument;
  'config-check': ConfigCheckDocument;
  'job-list': JobListDocument;
  'job-run': JobRunDocument;
  'job-status': JobStatusDocument;
  'run-notification': RunNotificationDocument;
  'token-list': TokenListDocument;
  'files-ls': FilesLsDocument;
  'files-find': FilesFindDocument;
  'files-get': FilesGetDocument;
}

export type JsonDocument = JsonDocuments[keyof JsonDocuments];

/** The header of a document of `type`. */
export function documentHeader<Type extends keyof JsonDocuments>(type: Type): DocumentHeader<Type> {
  return { version: JSON_FORMAT_VERSION, type };
}
