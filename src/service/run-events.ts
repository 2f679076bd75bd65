// Live run events: the daemon's in-process bus between the runs it works on (their JobEvents,
// run.ts) and the API's Server-Sent Events (GET /api/runs/{id}/events, docs/api.md).
//
// Vocabulary
// - live run: a run this daemon works on now; the bus keeps its *state* (per VM: phase,
//   attempt, result, error, per disk bytes done of bytes to copy) and its listeners. When the
//   run ends the bus sends `end` and forgets it (the catalog has the rest).
// - stream event: what a listener gets, named as the SSE event: `state` (the whole state, sent
//   first and whenever a listener fell behind), `task-start`, `attempt-end`, `task-end`,
//   `progress`, `log`, `end`.
// - phase of a VM: `working` (an attempt started: CBT, snapshot, reading the disks' changes),
//   `copying` (bytes flow), `retrying` (an attempt failed, the next waits), `done`.
// - throttled progress: a disk's progress is sent at most every PROGRESS_INTERVAL_MS (and when
//   it completes); the state always holds the newest figures.
import type { RunRecord, TaskRecord } from './catalog/catalog.ts';
import type { JobEvent, RunResult } from './run.ts';

export const PROGRESS_INTERVAL_MS = 250;

export interface DiskProgress {
  deviceKey: number;
  doneBytes: number;
  totalBytes: number;
}

export interface VmLiveState {
  vm: string;
  moref: string;
  host: string | null;
  phase: 'working' | 'copying' | 'retrying' | 'done';
  attempt: number;
  /** Null until the VM is done. */
  result: RunResult | 'interrupted' | null;
  disks: DiskProgress[];
  error: { code: string; message: string } | null;
}

export interface RunLiveState {
  runId: number;
  job: string;
  status: RunRecord['status'];
  vms: VmLiveState[];
}

type Error_ = { code: string; message: string } | null;
export type RunStreamEvent =
  | { event: 'state'; data: RunLiveState }
  | { event: 'task-start'; data: { vm: string; moref: string; host: string | null; attempt: number; at: string } }
  | { event: 'attempt-end'; data: { vm: string; moref: string; attempt: number; error: Error_; at: string } }
  | { event: 'task-end'; data: { vm: string; moref: string; result: RunResult; attempts: number; mode: string | null; reasonCodes: string[]; bytesRead: number; bytesStored: number; pointId: string | null; error: Error_; warnings: string[]; at: string } }
  | { event: 'progress'; data: DiskProgress & { vm: string; moref: string; at: string } }
  | { event: 'log'; data: { vm: string | null; line: string; at: string } }
  | { event: 'end'; data: { status: RunRecord['status']; endedAt: string | null; error: RunRecord['error'] } };

export type RunListener = (event: RunStreamEvent) => void;

interface LiveRun {
  state: RunLiveState;
  listeners: Set<RunListener>;
  progressSentMs: Map<string, number>;
}

export class RunEventBus {
  readonly #runs = new Map<number, LiveRun>();

  begin(runId: number, job: string): void {
    this.#runs.set(runId, { state: { runId, job, status: 'running', vms: [] }, listeners: new Set(), progressSentMs: new Map() });
  }

  /** Feeds a run's JobEvent into its state and to its listeners. */
  publish(runId: number, event: JobEvent, nowMs: number = Date.now()): void {
    const live = this.#runs.get(runId);
    if (!live) return;
    const at = new Date(nowMs).toISOString();
    const vmOf = (vm: string, moref: string, host: string | null): VmLiveState => {
      let v = live.state.vms.find((x) => x.moref === moref);
      if (!v) {
        v = { vm, moref, host, phase: 'working', attempt: 0, result: null, disks: [], error: null };
        live.state.vms.push(v);
      }
      return v;
    };
    let out: RunStreamEvent | undefined;
    if (event.type === 'log') out = { event: 'log', data: { vm: event.vm, line: event.line, at } };
    else if (event.type === 'vm-start') {
      const v = vmOf(event.vm, event.moref, event.host);
      Object.assign(v, { phase: 'working', attempt: event.attempt, host: event.host, disks: [] });
      out = { event: 'task-start', data: { vm: event.vm, moref: event.moref, host: event.host, attempt: event.attempt, at } };
    } else if (event.type === 'vm-end') {
      const v = vmOf(event.vm, event.moref, event.host);
      v.error = event.error;
      if (event.error) v.phase = 'retrying';
      out = { event: 'attempt-end', data: { vm: event.vm, moref: event.moref, attempt: event.attempt, error: event.error, at } };
    } else if (event.type === 'vm-result') {
      const r = event.result;
      const v = vmOf(r.name, r.moref, r.host);
      Object.assign(v, { phase: 'done', result: r.result, error: r.error });
      out = { event: 'task-end', data: { vm: r.name, moref: r.moref, result: r.result, attempts: r.attempts, mode: r.mode, reasonCodes: r.reasonCodes, bytesRead: r.bytesRead, bytesStored: r.bytesWritten, pointId: r.pointId, error: r.error, warnings: r.warnings, at } };
    } else if (event.type === 'progress') {
      const v = vmOf(event.vm, event.moref, null);
      v.phase = 'copying';
      let disk = v.disks.find((d) => d.deviceKey === event.deviceKey);
      if (!disk) {
        disk = { deviceKey: event.deviceKey, doneBytes: 0, totalBytes: 0 };
        v.disks.push(disk);
      }
      disk.doneBytes = event.doneBytes;
      disk.totalBytes = event.totalBytes;
      const key = `${event.moref}/${event.deviceKey}`;
      const last = live.progressSentMs.get(key);
      if (last !== undefined && nowMs - last < PROGRESS_INTERVAL_MS && event.doneBytes < event.totalBytes) return;
      live.progressSentMs.set(key, nowMs);
      out = { event: 'progress', data: { vm: event.vm, moref: event.moref, deviceKey: event.deviceKey, doneBytes: event.doneBytes, totalBytes: event.totalBytes, at } };
    }
    if (out) for (const listener of live.listeners) listener(out);
  }

  /** The run ended (recorded in the catalog): listeners get `end`, the bus forgets the run. */
  end(runId: number, end: { status: RunRecord['status']; endedAt: string | null; error: RunRecord['error'] }): void {
    const live = this.#runs.get(runId);
    if (!live) return;
    this.#runs.delete(runId);
    live.state.status = end.status;
    for (const listener of live.listeners) listener({ event: 'end', data: end });
    live.listeners.clear();
  }

  /** Listens to a live run: its state now, and a way to stop; undefined when the run is not live here. */
  subscribe(runId: number, listener: RunListener): { state: () => RunLiveState; unsubscribe: () => void } | undefined {
    const live = this.#runs.get(runId);
    if (!live) return undefined;
    live.listeners.add(listener);
    return { state: () => structuredClone(live.state), unsubscribe: () => live.listeners.delete(listener) };
  }
}

/** A finished (or foreign) run's state from the catalog: every task done with its status. */
export function stateFromCatalog(run: RunRecord, tasks: readonly TaskRecord[]): RunLiveState {
  return {
    runId: run.id,
    job: run.job,
    status: run.status,
    vms: tasks.map((t) => ({
      vm: t.vm,
      moref: t.moref,
      host: t.host,
      phase: t.status === 'running' ? 'working' : 'done',
      attempt: t.attempts,
      result: t.status === 'running' ? null : t.status,
      disks: [],
      error: t.error,
    })),
  };
}
