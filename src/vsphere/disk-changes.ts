// The changed areas of one disk of a VM, with every precondition checked first: CBT on,
// disk present, a snapshot for a powered-on VM, a ChangeId on the disk. Used by `vcbt changes`;
// backup and replication query through src/jobs/areas-to-copy.ts instead.
import { totalBytes, type Extent } from '../extents/extent.ts';
import { ALLOCATED_AREAS, queryChangedAreas } from './changed-areas.ts';
import { VsphereError } from './errors.ts';
import { diskByKey, readSnapshotDisks, type VirtualDiskInfo, type VmInfo } from './inventory.ts';
import type { MoRef } from './decode.ts';
import type { VsphereSession } from './session.ts';

export interface DiskChangesRequest {
  vm: VmInfo;
  diskKey: number;
  /** A previous backup's ChangeId, or `*` for the allocated areas. */
  changeId: string;
  /** The snapshot to query at (required when the VM is powered on). */
  snapshot?: MoRef;
  signal?: AbortSignal;
}

export interface DiskChanges {
  disk: VirtualDiskInfo;
  /** The disks as the snapshot froze them (their ChangeIds are the next `--since`); the VM's when no snapshot. */
  disks: VirtualDiskInfo[];
  areas: Extent[];
  changedBytes: number;
}

export async function readDiskChanges(session: VsphereSession, request: DiskChangesRequest): Promise<DiskChanges> {
  const { vm, diskKey, snapshot } = request;
  const target = session.target({ vm: { name: vm.name, moref: vm.moref.value }, diskKey });
  if (!vm.cbtEnabled) throw new VsphereError('CBT_NOT_ENABLED', 'Changed Block Tracking is off on this VM; run `vcbt cbt enable` first', target);
  if (!snapshot && vm.powerState !== 'poweredOff') {
    throw new VsphereError('SNAPSHOT_REQUIRED', `the VM is ${vm.powerState}: changed areas can only be asked at a snapshot (--snapshot or --take-snapshot)`, target);
  }
  const disks = snapshot ? await readSnapshotDisks(session, vm, snapshot) : vm.disks;
  const disk = diskByKey(session, vm, disks, diskKey);
  if (disk.changeId === undefined) {
    throw new VsphereError('CBT_NOT_ENABLED', 'the disk has no ChangeId: CBT is not active on it yet (a powered-on VM applies CBT at its next stun/unstun, e.g. a snapshot)', target);
  }
  const areas = await queryChangedAreas(session, {
    vm,
    snapshot,
    deviceKey: diskKey,
    capacityBytes: disk.capacityBytes,
    changeId: request.changeId,
    currentChangeId: request.changeId === ALLOCATED_AREAS ? undefined : disk.changeId,
    signal: request.signal,
  });
  return { disk, disks, areas, changedBytes: totalBytes(areas) };
}
