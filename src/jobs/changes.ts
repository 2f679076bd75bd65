// The changes job (`vcbt changes`): the changed (or, with "*", the allocated) areas of one disk
// of a VM, optionally at a snapshot this job takes and always removes - the seed's Go program.
// The CBT checks are the snapshot jobs' own (snapshot-job.ts: CBT on, a ChangeId on the disk);
// a powered-on VM is only asked at a snapshot.
import { formatCsv } from '../extents/csv.ts';
import { totalBytes, type Extent } from '../extents/extent.ts';
import {
  ALLOCATED_AREAS,
  moRef,
  queryChangedAreas,
  readSnapshotDisks,
  type MoRef,
  type VirtualDiskInfo,
  type VmInfo,
  type VmSelector,
  type VsphereSession,
} from '../vsphere/vsphere.ts';
import { findTrackedVm, JobError, requireChangeId, selectDisks } from './snapshot-job.ts';
import { withOwnedSnapshot } from './snapshot-owner.ts';

export { ALLOCATED_AREAS };

/** The areas as the seed's CSV: one `offset,length` line per area, in bytes. */
export const formatAreasCsv = formatCsv;

export interface ChangesOptions {
  session: VsphereSession;
  vm: VmSelector;
  diskKey: number;
  /** A previous copy's ChangeId, or ALLOCATED_AREAS ("*") for the allocated areas. */
  since: string;
  /** Query at this existing snapshot (moref value). */
  snapshot?: string;
  /** Take a snapshot (owned, always removed) and query at it. */
  takeSnapshot?: boolean;
  signal?: AbortSignal;
  onEvent?: (line: string) => void;
}

export interface ChangesResult {
  server: string;
  vm: { name: string; moref: string };
  disk: { key: number; label: string; capacityBytes: number };
  /** The ChangeId the areas are relative to, or "*" for the allocated areas (--all). */
  since: string;
  /** Snapshot moref queried at, null for the live disk. */
  snapshot: string | null;
  /** Whether vcbt took the snapshot (--take-snapshot) and removed it again. */
  snapshotRemoved: boolean;
  /** Changed (or allocated) byte ranges, sorted, not overlapping. */
  areas: Extent[];
  changedBytes: number;
  /** With --take-snapshot: every disk's ChangeId at the snapshot, to pass as --since next time. */
  changeIds?: Array<{ key: number; label: string; changeId: string | null }>;
}

async function query(options: ChangesOptions, vm: VmInfo, snapshot: MoRef | undefined): Promise<{ disk: VirtualDiskInfo; disks: VirtualDiskInfo[]; areas: Extent[] }> {
  const { session, diskKey, since } = options;
  if (!snapshot && vm.powerState !== 'poweredOff') {
    throw new JobError('SNAPSHOT_REQUIRED', `VM "${vm.name}" is ${vm.powerState}: changed areas can only be asked at a snapshot (--snapshot or --take-snapshot)`, { vm: vm.name, diskKey });
  }
  const disks = snapshot ? await readSnapshotDisks(session, vm, snapshot) : vm.disks;
  const [disk] = selectDisks(session, vm, [diskKey], disks);
  const current = requireChangeId(vm, snapshot ?? { type: 'VirtualMachine', value: 'the live disk' }, disk);
  const areas = await queryChangedAreas(session, {
    vm,
    snapshot,
    deviceKey: diskKey,
    capacityBytes: disk.capacityBytes,
    changeId: since,
    currentChangeId: since === ALLOCATED_AREAS ? undefined : current,
    signal: options.signal,
  });
  return { disk, disks, areas };
}

export async function listChanges(options: ChangesOptions): Promise<ChangesResult> {
  const { session } = options;
  const vm = await findTrackedVm(session, options.vm);
  let snapshot = options.snapshot ?? null;
  const found = options.takeSnapshot
    ? await withOwnedSnapshot(session, vm, { purpose: 'changes', signal: options.signal, log: options.onEvent ?? (() => {}) }, (owned) => {
        snapshot = owned.moref.value;
        return query(options, vm, owned.moref);
      })
    : await query(options, vm, snapshot ? moRef('VirtualMachineSnapshot', snapshot) : undefined);
  return {
    server: session.server,
    vm: { name: vm.name, moref: vm.moref.value },
    disk: { key: found.disk.key, label: found.disk.label, capacityBytes: found.disk.capacityBytes },
    since: options.since,
    snapshot,
    snapshotRemoved: options.takeSnapshot ?? false,
    areas: found.areas,
    changedBytes: totalBytes(found.areas),
    ...(options.takeSnapshot ? { changeIds: found.disks.map((d) => ({ key: d.key, label: d.label, changeId: d.changeId ?? null })) } : {}),
  };
}
