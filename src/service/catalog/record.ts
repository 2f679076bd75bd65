// Recording a job run in the catalog: the same runJob the CLI runs, with its events written as
// the run's row, one task per VM and the log lines. Used by `vcbt job run` and the daemon.
//
// Vocabulary
// - recorded run: before it starts, runs whose process died are marked `interrupted`
//   (`recoverCatalog`) and history older than `catalog.keepHistory` is deleted; then the run
//   row is written `running` with this process's host and pid, and ended with the run's
//   result, or `interrupted` when the run's signal (or drain) stopped it, or `failed` with
//   the error of a run that could not start (JOB_NO_VMS, a server that cannot be reached).
// - writes are queued in event order and awaited before the run's end is recorded, so a
//   task's end never overtakes its start.
// - notifications: once the run's end is recorded, the job's notifiers for its result get the
//   run's summary (notify.ts); each outcome is a log line of the run (printed and recorded).
//   A notification that fails never changes the run's result.
import { hostname } from 'node:os';
import { VcbtError } from '../../errors.ts';
import { notifyRun, runNotification, type NotifiedStatus } from '../notify.ts';
import { runJob, type JobRunResult, type RunJobOptions, type VmRunResult } from '../run.ts';
import type { Catalog, RunRecord, RunStatus, RunTrigger, TaskEnd } from './catalog.ts';

/** Whether a process of this host with this pid is gone (another host's processes: never known, so not gone). */
export function ownerGone(host: string, pid: number, localHost: string = hostname()): boolean {
  if (host !== localHost) return false;
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Marks dead runs interrupted and deletes history older than `keepHistoryMs`. */
export async function recoverCatalog(catalog: Catalog, keepHistoryMs: number, now: Date = new Date()): Promise<{ interrupted: RunRecord[]; pruned: number }> {
  const interrupted = await catalog.markInterrupted((host, pid) => ownerGone(host, pid), now.toISOString());
  const pruned = await catalog.pruneHistory(new Date(now.getTime() - keepHistoryMs).toISOString());
  return { interrupted, pruned };
}

export interface RecordedRunOptions extends RunJobOptions {
  catalog: Catalog;
  trigger: RunTrigger;
  /** Called with the run's id once its row exists (the API answers it). */
  onRunId?: (runId: number) => void;
}

function errorOf(error: unknown): { code: VcbtError['code']; message: string } {
  if (error instanceof VcbtError) return { code: error.code, message: error.message };
  return { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

function taskEnd(vm: VmRunResult, stopping: boolean): TaskEnd {
  const interrupted = vm.result === 'failed' && (vm.error?.code === 'INTERRUPTED' || stopping);
  // An abort surfaces as whatever the VM was doing (a read, a task); the record says why.
  const error = interrupted && vm.error && vm.error.code !== 'INTERRUPTED' ? { code: 'INTERRUPTED' as const, message: `stopped while at work (${vm.error.code}: ${vm.error.message})` } : vm.error;
  return {
    status: interrupted ? 'interrupted' : vm.result,
    endedAt: vm.endedAt,
    attempts: vm.attempts,
    mode: vm.mode,
    reasonCodes: vm.reasonCodes,
    bytesRead: vm.bytesRead,
    bytesStored: vm.bytesWritten,
    pointId: vm.pointId,
    error,
    warnings: vm.warnings,
  };
}

/** Runs the job and records it; answers the run's result and id. A run that cannot start is recorded `failed` and rethrown. */
export async function runRecorded(options: RecordedRunOptions): Promise<{ runId: number; result: JobRunResult }> {
  const { catalog, job } = options;
  const runId = await catalog.startRun({ job: job.name, jobType: job.type, trigger: options.trigger, startedAt: new Date().toISOString(), host: hostname(), pid: process.pid });
  options.onRunId?.(runId);
  const taskIds = new Map<string, Promise<number>>();
  let queue: Promise<unknown> = Promise.resolve();
  let writeError: unknown;
  const enqueue = (write: () => Promise<unknown>) => {
    queue = queue.then(write).catch((error: unknown) => (writeError ??= error));
  };
  const taskOf = (vm: string, moref: string, host: string | null, startedAt: string) => {
    let id = taskIds.get(moref);
    if (!id) {
      id = catalog.startTask(runId, { vm, moref, host, startedAt });
      taskIds.set(moref, id);
    }
    return id;
  };
  const stopping = () => options.signal?.aborted === true || options.drain?.aborted === true;
  const startedAt = new Date().toISOString();
  const notify = async (status: NotifiedStatus, endedAt: string, error: RunRecord['error'], result: JobRunResult | undefined) => {
    if (job.notify.length === 0) return;
    const outcomes = await notifyRun(options.config, job, runNotification({ job, runId, status, startedAt: result?.startedAt ?? startedAt, endedAt, error, result }), options.env);
    for (const o of outcomes) {
      const line = o.sent ? `notification sent to ${o.notifier} (${status})` : `notification to ${o.notifier} failed: ${o.error?.code}: ${o.error?.message}`;
      options.onEvent?.({ type: 'log', vm: null, line });
      await catalog.log(runId, null, new Date().toISOString(), line).catch(() => undefined);
    }
  };
  try {
    const result = await runJob({
      ...options,
      onEvent: (event) => {
        options.onEvent?.(event);
        const at = new Date().toISOString();
        if (event.type === 'log') enqueue(() => catalog.log(runId, event.vm, at, event.line));
        else if (event.type === 'vm-start') enqueue(() => taskOf(event.vm, event.moref, event.host, at));
        else if (event.type === 'vm-result') {
          const vm = event.result;
          enqueue(async () => catalog.endTask(await taskOf(vm.name, vm.moref, vm.host, vm.startedAt), taskEnd(vm, stopping())));
        }
      },
    });
    // The final word per VM (retention may have turned a success into a warning).
    for (const vm of result.vms) enqueue(async () => catalog.endTask(await taskOf(vm.name, vm.moref, vm.host, vm.startedAt), taskEnd(vm, stopping())));
    await queue;
    const interrupted = stopping() && result.vms.some((v) => v.result === 'failed');
    const status: RunStatus = interrupted ? 'interrupted' : result.result;
    const error = interrupted ? { code: 'INTERRUPTED' as const, message: 'the run was stopped before every VM was done' } : null;
    await catalog.endRun(runId, { status, endedAt: result.endedAt, error });
    if (writeError) throw writeError;
    await notify(status as NotifiedStatus, result.endedAt, error, result);
    return { runId, result };
  } catch (error) {
    await queue;
    const e = errorOf(error);
    const status: RunStatus = e.code === 'INTERRUPTED' || stopping() ? 'interrupted' : 'failed';
    const endedAt = new Date().toISOString();
    await catalog.endRun(runId, { status, endedAt, error: e });
    await notify(status as NotifiedStatus, endedAt, e, undefined);
    throw error;
  }
}
