// Protection status per VM: what `GET /api/vms` answers. Every VM of every configured server
// (the cached inventory), the jobs whose selection covers it, its newest good restore point
// per job and whether the job's recovery point objective is breached.
//
// Vocabulary
// - covered: the job's selection (vms.include/exclude, selection.ts) selects the VM now.
// - last good: the newest task of a job for the VM that ended `success` or `warning` (it made
//   a restore point or updated the replica), with its age.
// - RPO (recovery point objective): `rpo` of the job, else twice its schedule's interval
//   (schedule.ts `rpoOf`); a covered VM is *breached* when it has no last good task of that
//   job or the last good one is older. A job without an objective breaches nothing (null).
// - gone: a VM the catalog has tasks for that its server's inventory no longer lists (deleted
//   or unregistered; its restore points remain). A server whose inventory could not be read
//   marks nothing gone: its catalog VMs appear with `inInventory: null` (unknown).
// VMs are keyed by server and moref; a catalog task's server is its job's server.
import type { TaskRecord, Catalog } from './catalog/catalog.ts';
import type { ServiceConfig } from './config.ts';
import type { InventoryCache, ServerInventory } from './inventory.ts';
import { rpoOf } from './schedule.ts';
import { selectVms } from './selection.ts';

export interface LastGood {
  job: string;
  runId: number;
  endedAt: string;
  ageSeconds: number;
  pointId: string | null;
}

export interface VmJobStatus {
  job: string;
  lastGood: LastGood | null;
  /** The job's recovery point objective, null when it has none. */
  rpoSeconds: number | null;
  /** Null when the job has no objective. */
  breached: boolean | null;
}

export interface VmStatus {
  server: string;
  name: string;
  moref: string;
  /** false: gone from the inventory; null: the server could not be read. */
  inInventory: boolean | null;
  instanceUuid: string | null;
  powerState: string | null;
  cbtEnabled: boolean | null;
  /** Sum of the disks' capacities; null when not in the inventory. */
  provisionedBytes: number | null;
  host: string | null;
  folder: string | null;
  /** Jobs whose selection covers the VM now, and jobs that have tasks of it. */
  jobs: VmJobStatus[];
  /** The newest last good over its jobs. */
  lastGood: LastGood | null;
  /** Its newest task of any job. */
  lastTask: (TaskRecord & { job: string }) | null;
}

export interface ProtectionReport {
  servers: Array<Pick<ServerInventory, 'server' | 'error' | 'readAt'> & { vmCount: number | null }>;
  vms: VmStatus[];
}

const keyOf = (server: string, moref: string) => `${server}\u0000${moref}`;

export async function protectionReport(config: ServiceConfig, catalog: Catalog, inventory: InventoryCache, now: Date = new Date()): Promise<ProtectionReport> {
  const [inventories, latest, good] = await Promise.all([inventory.all(now.getTime()), catalog.latestTasks(), catalog.lastGoodTasks()]);
  const rows = new Map<string, VmStatus>();
  const readable = new Set(inventories.filter((i) => i.vms !== null).map((i) => i.server));
  for (const inv of inventories) {
    for (const p of inv.vms ?? []) {
      rows.set(keyOf(inv.server, p.vm.moref.value), {
        server: inv.server,
        name: p.vm.name,
        moref: p.vm.moref.value,
        inInventory: true,
        instanceUuid: p.vm.instanceUuid ?? null,
        powerState: p.vm.powerState,
        cbtEnabled: p.vm.cbtEnabled,
        provisionedBytes: p.vm.disks.reduce((sum, d) => sum + d.capacityBytes, 0),
        host: p.host ?? null,
        folder: p.folderPath || null,
        jobs: [],
        lastGood: null,
        lastTask: null,
      });
    }
  }
  const jobsOf = (row: VmStatus, job: string): VmJobStatus => {
    let status = row.jobs.find((j) => j.job === job);
    if (!status) {
      const jobConfig = config.jobs.get(job);
      const rpoMs = jobConfig ? rpoOf(jobConfig, now) : null;
      status = { job, lastGood: null, rpoSeconds: rpoMs === null ? null : Math.round(rpoMs / 1000), breached: null };
      row.jobs.push(status);
    }
    return status;
  };
  // Coverage: each job's selection over its server's inventory.
  for (const job of config.jobs.values()) {
    const inv = inventories.find((i) => i.server === job.server);
    if (!inv?.vms) continue;
    for (const s of selectVms(inv.vms, job.vms).selected) {
      const row = rows.get(keyOf(job.server, s.placement.vm.moref.value));
      if (row) jobsOf(row, job.name);
    }
  }
  // The catalog: VMs gone from the inventory appear too; last tasks and last good ones.
  const rowOfTask = (t: TaskRecord & { job: string }): VmStatus | undefined => {
    const server = config.jobs.get(t.job)?.server;
    if (server === undefined) return undefined; // a job no longer configured: its server is unknown
    const key = keyOf(server, t.moref);
    let row = rows.get(key);
    if (!row) {
      row = { server, name: t.vm, moref: t.moref, inInventory: readable.has(server) ? false : null, instanceUuid: null, powerState: null, cbtEnabled: null, provisionedBytes: null, host: null, folder: null, jobs: [], lastGood: null, lastTask: null };
      rows.set(key, row);
    }
    return row;
  };
  for (const t of latest) {
    const row = rowOfTask(t);
    if (!row) continue;
    jobsOf(row, t.job);
    if (!row.lastTask || row.lastTask.id < t.id) row.lastTask = t;
  }
  for (const t of good) {
    const row = rowOfTask(t);
    if (!row || !t.endedAt) continue;
    const lastGood: LastGood = { job: t.job, runId: t.runId, endedAt: t.endedAt, ageSeconds: Math.max(0, Math.floor((now.getTime() - Date.parse(t.endedAt)) / 1000)), pointId: t.pointId };
    jobsOf(row, t.job).lastGood = lastGood;
    if (!row.lastGood || row.lastGood.endedAt < lastGood.endedAt) row.lastGood = lastGood;
  }
  for (const row of rows.values()) {
    for (const j of row.jobs) j.breached = j.rpoSeconds === null ? null : j.lastGood === null || j.lastGood.ageSeconds > j.rpoSeconds;
    row.jobs.sort((a, b) => a.job.localeCompare(b.job));
  }
  const vms = [...rows.values()].sort((a, b) => a.server.localeCompare(b.server) || a.name.localeCompare(b.name) || a.moref.localeCompare(b.moref));
  return { servers: inventories.map((i) => ({ server: i.server, error: i.error, readAt: i.readAt, vmCount: i.vms?.length ?? null })), vms };
}
