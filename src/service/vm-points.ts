// One VM's restore points across the repositories of the configuration, and its replicas as
// the catalog knows them: what `GET /api/vms/{server}/{moref}/points` answers.
//
// Vocabulary
// - the VM's points: points whose manifest names the VM: by instance UUID when the inventory
//   knows it (stable across re-registration), else by moref. Damaged points whose VM cannot
//   be read are not shown here (`vcbt points` and the repository's list show them).
// - mode of a point: `full` when every disk is, `incremental` when every disk is, else
//   `mixed`; its reason codes come from the catalog task that made it (copy-reason.ts), empty
//   when the point was made outside the service (`vcbt backup`).
// - replica: per replicate job, the newest task of the VM that ended success or warning.
import { listPoints } from '../jobs/restore-points.ts';
import type { Catalog } from './catalog/catalog.ts';
import type { ServiceConfig } from './config.ts';
import { openConfiguredRepository } from './run.ts';

/** How many of the VM's tasks are searched for the reason codes of its points. */
const TASK_LOOKBACK = 1000;

export interface VmPoint {
  repository: string;
  id: string;
  createdAt: string;
  mode: 'full' | 'incremental' | 'mixed';
  reasonCodes: string[];
  /** Bytes of new chunk files this point stored. */
  bytesStored: number;
  damaged: boolean;
  /** The catalog run that made it, null when unknown. */
  runId: number | null;
  job: string | null;
  disks: Array<{ deviceKey: number; label: string; capacityBytes: number; mode: 'full' | 'incremental'; bytesStored: number; basedOn: string | null }>;
}

export interface VmReplica {
  job: string;
  runId: number;
  endedAt: string;
  mode: 'full' | 'incremental' | 'mixed' | null;
  reasonCodes: string[];
  bytesWritten: number;
}

export async function vmPoints(config: ServiceConfig, catalog: Catalog, env: NodeJS.ProcessEnv, vm: { server: string; moref: string; instanceUuid: string | null }): Promise<{ points: VmPoint[]; replicas: VmReplica[] }> {
  const tasks = await catalog.vmTasks(vm.moref, TASK_LOOKBACK);
  const ofServer = tasks.filter((t) => config.jobs.get(t.job)?.server === vm.server);
  const byPoint = new Map(ofServer.filter((t) => t.pointId).map((t) => [t.pointId as string, t]));
  const points: VmPoint[] = [];
  for (const name of config.repositories.keys()) {
    const repository = await openConfiguredRepository(config, name, env);
    try {
      for (const p of await listPoints(repository)) {
        if (!p.vm) continue;
        const mine = vm.instanceUuid ? p.vm.instanceUuid === vm.instanceUuid || p.vm.id === vm.instanceUuid : p.vm.moref === vm.moref;
        if (!mine) continue;
        const disks = p.disks.map((d) => ({ deviceKey: d.deviceKey, label: d.label, capacityBytes: d.capacityBytes, mode: d.kind, bytesStored: d.stats.bytesStored, basedOn: d.basedOn?.pointId ?? null }));
        const task = byPoint.get(p.id);
        points.push({
          repository: name,
          id: p.id,
          createdAt: p.createdAt,
          mode: disks.every((d) => d.mode === 'full') ? 'full' : disks.every((d) => d.mode === 'incremental') ? 'incremental' : 'mixed',
          reasonCodes: task?.reasonCodes ?? [],
          bytesStored: disks.reduce((sum, d) => sum + d.bytesStored, 0),
          damaged: p.damaged,
          runId: task?.runId ?? null,
          job: task?.job ?? null,
          disks,
        });
      }
    } finally {
      await repository.close();
    }
  }
  points.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  const replicas: VmReplica[] = [];
  for (const t of ofServer) {
    if (config.jobs.get(t.job)?.type !== 'replicate' || (t.status !== 'success' && t.status !== 'warning') || !t.endedAt) continue;
    if (replicas.some((r) => r.job === t.job)) continue; // newest first: the first is the newest
    replicas.push({ job: t.job, runId: t.runId, endedAt: t.endedAt, mode: t.mode, reasonCodes: t.reasonCodes, bytesWritten: t.bytesStored });
  }
  return { points, replicas };
}
