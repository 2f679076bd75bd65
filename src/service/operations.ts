// Operations: actions of the API that are not job runs (verify a repository or points, prune
// it, restore a disk to a file), recorded in the catalog as runs with one task, and fed to the
// daemon's event bus like a job run, so the console follows them the same way
// (GET /api/runs/{id}, /events, /logs). The work itself is the CLI's job code.
//
// Vocabulary
// - operation run: `job` is `KIND/TARGET` (verify/main, restore/main), `jobType` the kind,
//   trigger `api`; its one task is named after what it works on (the repository, or
//   `POINT disk KEY`) with moref `-`, and ends success or failed with the error.
import { hostname } from 'node:os';
import { VcbtError, type ErrorCode } from '../errors.ts';
import type { Catalog, OperationKind } from './catalog/catalog.ts';
import type { JobEvent } from './run.ts';

export interface OperationContext {
  signal: AbortSignal;
  log(line: string): void;
  /** Bytes done of a total, reported as the task's (one-disk) progress. */
  progress(doneBytes: number, totalBytes: number, deviceKey?: number): void;
}

export interface OperationOutcome {
  /** A restore point the operation concerns (restore: the point restored). */
  pointId?: string | null;
  bytesRead?: number;
  bytesStored?: number;
  warnings?: string[];
}

export interface Operation {
  kind: OperationKind;
  /** What it works on: the repository name. */
  target: string;
  /** The task's name: what it works on, for people. */
  subject: string;
  work(context: OperationContext): Promise<OperationOutcome>;
}

export const OPERATION_MOREF = '-';

function errorOf(error: unknown): { code: ErrorCode; message: string } {
  if (error instanceof VcbtError) return { code: error.code, message: error.message };
  return { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

/**
 * Records and runs an operation; `onRunId` gets its run id once recorded, `emit` its events.
 * Resolves when it ended and was recorded (its failure is recorded, not thrown).
 */
export async function runOperation(catalog: Catalog, op: Operation, options: { signal: AbortSignal; onRunId: (runId: number) => void; emit: (runId: number, event: JobEvent) => void }): Promise<void> {
  const startedAt = new Date().toISOString();
  const job = `${op.kind}/${op.target}`;
  const runId = await catalog.startRun({ job, jobType: op.kind, trigger: 'api', startedAt, host: hostname(), pid: process.pid });
  options.onRunId(runId);
  const taskId = await catalog.startTask(runId, { vm: op.subject, moref: OPERATION_MOREF, host: null, startedAt });
  const where = { vm: op.subject, moref: OPERATION_MOREF, host: null, datastores: [] as string[] };
  const writes: Array<Promise<void>> = [];
  const log = (line: string) => {
    writes.push(catalog.log(runId, op.subject, new Date().toISOString(), line).catch(() => undefined));
    options.emit(runId, { type: 'log', vm: op.subject, line });
  };
  options.emit(runId, { type: 'vm-start', ...where, attempt: 1 });
  let outcome: OperationOutcome = {};
  let error: { code: ErrorCode; message: string } | null = null;
  try {
    outcome = await op.work({
      signal: options.signal,
      log,
      progress: (doneBytes, totalBytes, deviceKey = 0) => options.emit(runId, { type: 'progress', vm: op.subject, moref: OPERATION_MOREF, deviceKey, doneBytes, totalBytes }),
    });
  } catch (e) {
    error = errorOf(e);
    log(`failed: ${error.code}: ${error.message}`);
  }
  await Promise.all(writes);
  const endedAt = new Date().toISOString();
  const status = error ? (options.signal.aborted ? 'interrupted' : 'failed') : 'success';
  const result = error ? 'failed' : 'success';
  options.emit(runId, { type: 'vm-end', ...where, attempt: 1, error });
  options.emit(runId, {
    type: 'vm-result',
    result: { name: op.subject, moref: OPERATION_MOREF, host: null, result, attempts: 1, cbtEnabledByJob: false, mode: null, reasonCodes: [], bytesRead: outcome.bytesRead ?? 0, bytesWritten: outcome.bytesStored ?? 0, pointId: outcome.pointId ?? null, error, warnings: outcome.warnings ?? [], startedAt, endedAt },
  });
  await catalog.endTask(taskId, { status, endedAt, attempts: 1, mode: null, reasonCodes: [], bytesRead: outcome.bytesRead ?? 0, bytesStored: outcome.bytesStored ?? 0, pointId: outcome.pointId ?? null, error, warnings: outcome.warnings ?? [] });
  await catalog.endRun(runId, { status, endedAt, error });
}
