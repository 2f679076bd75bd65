// What every snapshot-based job (replicate, backup) does to a VM before its snapshot:
// find it and insist CBT is on; remove snapshots a crashed vcbt run left behind; and, when a
// disk grew since its last copy, reset CBT first (vsphere-cbt.md, KB 2090639: after a disk is
// extended, changed-block data may be wrong until tracking is reset). The reset starts a new
// tracking epoch, so every disk's next copy is a full one, and each says why.
import { VcbtError } from '../errors.ts';
import { findLeftoverSnapshots, findVm, removeSnapshot, resetCbt, type MoRef, type VirtualDiskInfo, type VmInfo, type VmSelector, type VsphereSession } from '../vsphere/vsphere.ts';
import { diskResized, type CopyBaseline } from './replica-state.ts';
import type { TransportOptions } from './snapshot-source.ts';

/** Codes: CBT_NOT_ENABLED. */
export class JobError extends VcbtError {}

/** What every snapshot-based job (replicate, backup) is asked. */
export interface SnapshotJobOptions {
  session: VsphereSession;
  vm: VmSelector;
  transport: TransportOptions;
  /** Copy every allocated block even where an incremental is possible. */
  forceFull?: boolean;
  /** Reset CBT before the snapshot when a disk grew since its last copy (default true). */
  resetCbtOnResize?: boolean;
  quiesce?: boolean;
  signal?: AbortSignal;
  /** Human-readable progress of the job (one line each). */
  onEvent?: (line: string) => void;
  onProgress?: (deviceKey: number, doneBytes: number, totalBytes: number) => void;
}

/**
 * The snapshot disk's ChangeId, which the next incremental starts from. A disk without one
 * has no active tracking yet (a powered-on VM applies "CBT on" only after a stun/unstun).
 */
export function requireChangeId(vm: VmInfo, snapshot: MoRef, disk: VirtualDiskInfo): string {
  if (disk.changeId) return disk.changeId;
  throw new JobError('CBT_NOT_ENABLED', `VM "${vm.name}" disk ${disk.key} has no ChangeId at snapshot ${snapshot.value}: CBT is not active on it yet (a powered-on VM needs a snapshot cycle after enabling; try: vcbt cbt reset --vm ${vm.moref.value})`, { vm: vm.name, diskKey: disk.key });
}

export interface PreparedVm {
  vm: VmInfo;
  leftoverSnapshotsRemoved: string[];
  /** Why CBT was reset before the snapshot, if it was. */
  cbtResetReason: string | undefined;
}

export interface PrepareOptions {
  /** Per device key, the last copy's baseline (undefined: none). */
  baselines?: (vm: VmInfo) => Promise<ReadonlyMap<number, CopyBaseline | undefined>>;
  /** Reset CBT when a disk grew (default true). */
  resetCbtOnResize?: boolean;
  log: (line: string) => void;
}

export async function prepareVm(session: VsphereSession, selector: VmSelector, options: PrepareOptions): Promise<PreparedVm> {
  let vm = await findVm(session, selector);
  if (!vm.cbtEnabled) {
    throw new JobError('CBT_NOT_ENABLED', `Changed Block Tracking is off on VM "${vm.name}" (server ${session.server}); enable it with: vcbt cbt enable --vm ${vm.moref.value}`, { vm: vm.name, server: session.server });
  }
  const leftovers = await findLeftoverSnapshots(session, vm);
  for (const leftover of leftovers) {
    options.log(`removing leftover snapshot ${leftover.moref.value} "${leftover.name}" from an earlier run`);
    await removeSnapshot(session, vm, leftover.moref);
  }
  let cbtResetReason: string | undefined;
  if (options.baselines && options.resetCbtOnResize !== false) {
    const baselines = await options.baselines(vm);
    const identity = { moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null };
    const grown = vm.disks.filter((disk) =>
      diskResized(baselines.get(disk.key), { server: session.server, vm: identity, deviceKey: disk.key, capacityBytes: disk.capacityBytes, changeId: disk.changeId }));
    if (grown.length > 0) {
      cbtResetReason = grown.map((d) => `disk ${d.key} is now ${d.capacityBytes} bytes (was ${baselines.get(d.key)?.capacityBytes})`).join('; ');
      options.log(`resetting CBT on VM "${vm.name}" before the snapshot: ${cbtResetReason} (KB 2090639); every disk gets a full copy this time`);
      await resetCbt(session, vm);
      vm = await findVm(session, { moref: vm.moref.value });
    }
  }
  return { vm, leftoverSnapshotsRemoved: leftovers.map((s) => s.moref.value), cbtResetReason };
}
