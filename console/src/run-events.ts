// Follows a run's Server-Sent Events (GET /api/runs/{id}/events, docs/api.md) into one live
// state: per VM its phase, attempt, result, error and per-disk bytes done of the bytes this
// attempt copies. `state` events replace the whole picture (the first one, and after a slow
// client missed events); the others update it. `live` is false when the stream could not be
// opened (the run page then shows what the catalog says, reloaded every second).
import { useEffect, useState } from 'preact/hooks';
import { pathOf, stream } from './api.ts';
import type { RunEvent } from './api-types.ts';

type StateData = Extract<RunEvent, { event: 'state' }>['data'];
export type LiveVm = StateData['vms'][number];

export interface LiveRun {
  live: boolean;
  ended: boolean;
  vms: Map<string, LiveVm>;
}

function apply(run: LiveRun, event: RunEvent): LiveRun {
  const vms = new Map(run.vms);
  switch (event.event) {
    case 'state':
      return { ...run, vms: new Map(event.data.vms.map((v) => [v.moref, v])) };
    case 'task-start': {
      const d = event.data;
      vms.set(d.moref, { vm: d.vm, moref: d.moref, host: d.host, phase: 'working', attempt: d.attempt, result: 'running', disks: vms.get(d.moref)?.disks ?? [], error: null });
      return { ...run, vms };
    }
    case 'progress': {
      const d = event.data;
      const vm = vms.get(d.moref) ?? { vm: d.vm, moref: d.moref, host: null, phase: 'copying', attempt: 1, result: 'running', disks: [], error: null };
      const disks = vm.disks.filter((k) => k.deviceKey !== d.deviceKey).concat({ deviceKey: d.deviceKey, doneBytes: d.doneBytes, totalBytes: d.totalBytes }).sort((a, b) => a.deviceKey - b.deviceKey);
      vms.set(d.moref, { ...vm, phase: 'copying', disks });
      return { ...run, vms };
    }
    case 'attempt-end': {
      const vm = vms.get(event.data.moref);
      if (vm && event.data.error) vms.set(vm.moref, { ...vm, phase: 'retrying', error: event.data.error });
      return { ...run, vms };
    }
    case 'task-end': {
      const d = event.data;
      const vm = vms.get(d.moref);
      if (vm) vms.set(d.moref, { ...vm, phase: 'done', result: d.result, error: d.error, attempt: d.attempts });
      return { ...run, vms };
    }
    case 'end':
      return { ...run, ended: true };
    default:
      return run;
  }
}

export function useRunEvents(runId: number): LiveRun {
  const [run, setRun] = useState<LiveRun>({ live: false, ended: false, vms: new Map() });
  useEffect(() => {
    const abort = new AbortController();
    setRun({ live: false, ended: false, vms: new Map() });
    const { url } = pathOf('GET /api/runs/{id}/events', { id: runId });
    stream(
      url,
      ({ event, data }) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(data);
        } catch {
          return;
        }
        setRun((r) => apply({ ...r, live: true }, { event, data: parsed } as RunEvent));
      },
      abort.signal,
    ).catch(() => setRun((r) => ({ ...r, live: false })));
    return () => abort.abort();
  }, [runId]);
  return run;
}

/** Fraction of a VM's bytes copied in its current attempt (null: nothing to measure yet). */
export function vmFraction(vm: LiveVm): number | null {
  if (vm.phase === 'done') return 1;
  const total = vm.disks.reduce((n, d) => n + d.totalBytes, 0);
  if (total === 0) return null;
  return vm.disks.reduce((n, d) => n + d.doneBytes, 0) / total;
}
