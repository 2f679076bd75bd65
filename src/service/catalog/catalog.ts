// The catalog: the history of job runs, kept so that `vcbt job status`, the daemon and its API
// can say what happened. This file is the interface; sqlite.ts implements it on an embedded
// SQLite file (node:sqlite) and another store (PostgreSQL, for several machines sharing the
// work) can take its place behind the same methods.
//
// Vocabulary
// - run: one execution of a job (RunRecord); `trigger` says who started it (a person through
//   the CLI, the scheduler, the API). While it works its result is `running`; it ends
//   `success`, `warning` or `failed` (src/service/run.ts), or `interrupted` when its process
//   stopped before the end (SIGTERM, or it died: see `markInterrupted`).
// - operation: an action the API starts that is not a job (verify, prune, restore a disk),
//   recorded as a run named `KIND/TARGET` (`verify/main`) with one task, so its progress,
//   log and result show like a job's.
// - owner: the process that records a run (host name and pid). A `running` run whose owner
//   on this host no longer exists was killed; the next process that opens the catalog marks it
//   `interrupted` with its unfinished tasks.
// - task: one VM of a run (TaskRecord): start, end, result, full/incremental with the disks'
//   reason codes, bytes read and stored, the restore point made, the error.
// - log line: a line a run printed, for the run or one of its tasks.
// - history retention: runs that ended longer ago than `keepHistoryMs` are deleted with
//   their tasks and log lines, and older repository size samples (`pruneHistory`).
// - schedule mark: per job, the time the daemon last handled its schedule; a scheduled time
//   between the mark and the daemon's start was missed (the daemon was down) and runs once.
// - repository size sample: a repository's stored and logical bytes, chunks and points at one
//   time, recorded by the daemon after each run; the history of a repository's size.
// - API token: stored as the SHA-256 of the token (src/service/tokens.ts); the token itself is
//   never stored.
import type { ErrorCode } from '../../errors.ts';

export type RunStatus = 'running' | 'success' | 'warning' | 'failed' | 'interrupted';
export type RunTrigger = 'manual' | 'schedule' | 'api';
export type OperationKind = 'verify' | 'prune' | 'restore';

export interface RunRecord {
  id: number;
  job: string;
  /** A job's type, or the kind of an operation (an action of the API: verify, prune, restore; `job` is then `KIND/TARGET`). */
  jobType: 'backup' | 'replicate' | OperationKind;
  trigger: RunTrigger;
  status: RunStatus;
  startedAt: string;
  /** null while running. */
  endedAt: string | null;
  /** The process that runs it: host name and pid. */
  host: string;
  pid: number;
  /** A failure of the whole run (JOB_NO_VMS, a server that cannot be reached, INTERRUPTED). */
  error: { code: ErrorCode; message: string } | null;
}

export interface TaskRecord {
  id: number;
  runId: number;
  vm: string;
  moref: string;
  /** The ESXi host the VM ran on. */
  host: string | null;
  status: RunStatus;
  startedAt: string;
  endedAt: string | null;
  attempts: number;
  mode: 'full' | 'incremental' | 'mixed' | null;
  reasonCodes: string[];
  bytesRead: number;
  bytesStored: number;
  /** backup: the restore point made. */
  pointId: string | null;
  error: { code: ErrorCode; message: string } | null;
  warnings: string[];
}

export interface LogRecord {
  runId: number;
  /** The VM the line is about, null for the run. */
  vm: string | null;
  at: string;
  line: string;
}

export interface TokenRecord {
  id: number;
  /** SHA-256 of the token, hex. */
  hash: string;
  readOnly: boolean;
  createdAt: string;
  /** What the creator wrote about it (who uses it). */
  note: string;
}

/** A repository's size at one time (the history the console charts). */
export interface RepositorySizeSample {
  repository: string;
  at: string;
  /** Bytes of chunk files and indexes stored (what the disk holds). */
  storedBytes: number;
  /** Bytes the restore points describe (sum of their disks' capacities). */
  logicalBytes: number;
  chunks: number;
  points: number;
}

export interface NewRun {
  job: string;
  jobType: RunRecord['jobType'];
  trigger: RunTrigger;
  startedAt: string;
  host: string;
  pid: number;
}

/** A task's end: what the run learned about the VM. */
export type TaskEnd = Pick<TaskRecord, 'status' | 'endedAt' | 'attempts' | 'mode' | 'reasonCodes' | 'bytesRead' | 'bytesStored' | 'pointId' | 'error' | 'warnings'>;

/** The history store; every method may be asynchronous so a networked database fits. */
export interface Catalog {
  startRun(run: NewRun): Promise<number>;
  endRun(runId: number, end: { status: RunStatus; endedAt: string; error: RunRecord['error'] }): Promise<void>;
  /** A VM's task starts (or, when the VM already has one in this run, is found again). */
  startTask(runId: number, task: { vm: string; moref: string; host: string | null; startedAt: string }): Promise<number>;
  endTask(taskId: number, end: TaskEnd): Promise<void>;
  log(runId: number, vm: string | null, at: string, line: string): Promise<void>;
  run(runId: number): Promise<RunRecord | undefined>;
  /** Newest first; `job` limits to one job. */
  runs(query: { job?: string; limit: number; beforeId?: number }): Promise<RunRecord[]>;
  tasks(runId: number): Promise<TaskRecord[]>;
  logs(runId: number): Promise<LogRecord[]>;
  /** Per job and VM (moref), its newest task whatever its status, with the job. */
  latestTasks(): Promise<Array<TaskRecord & { job: string }>>;
  /** Per job and VM (moref), its newest task that protected it (success or warning), with the job. */
  lastGoodTasks(): Promise<Array<TaskRecord & { job: string }>>;
  /** The tasks of one VM (moref), newest first, with their run's job. */
  vmTasks(moref: string, limit: number): Promise<Array<TaskRecord & { job: string }>>;
  /** Records a repository's size (after a run, a verify or a prune). */
  addRepositorySize(sample: RepositorySizeSample): Promise<void>;
  /** A repository's size samples, oldest first, at most `limit` (the newest ones). */
  repositorySizes(repository: string, limit: number): Promise<RepositorySizeSample[]>;
  /**
   * Runs still `running` whose owner is gone become `interrupted` (their running tasks too).
   * `isGone(host, pid)` decides; answers the runs it marked.
   */
  markInterrupted(isGone: (host: string, pid: number) => boolean, endedAt: string): Promise<RunRecord[]>;
  /** Deletes runs that ended before `endedBefore`, with their tasks and logs; answers how many. */
  pruneHistory(endedBefore: string): Promise<number>;
  /** Per scheduled job, when the daemon last handled its schedule (fired it, or started watching it). */
  scheduleMarks(): Promise<Map<string, string>>;
  setScheduleMark(job: string, at: string): Promise<void>;
  addToken(token: { hash: string; readOnly: boolean; createdAt: string; note: string }): Promise<number>;
  tokenByHash(hash: string): Promise<TokenRecord | undefined>;
  /** Every token, oldest first (hashes included: callers never show them). */
  tokens(): Promise<TokenRecord[]>;
  /** Deletes a token; answers whether it existed. */
  deleteToken(id: number): Promise<boolean>;
  close(): Promise<void>;
}
