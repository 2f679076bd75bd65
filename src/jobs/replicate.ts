// The replicate job: the seed's whole flow as one command. For one VM:
//   1. remove snapshots a crashed vcbt run left behind;
//   2. take a snapshot (always removed again: on success, error or Ctrl-C);
//   3. per disk, read the target's replica state and decide full or incremental
//      (replica-state.ts: other VM, other disk, capacity change, no state => full);
//      incremental = QueryChangedDiskAreas since the recorded ChangeId; a ChangeId the
//      server refuses (CBT reset, voided epoch) falls back to a full copy, and says so;
//      full = the allocated areas ("*"), with the rest of the target zeroed;
//   4. copy those areas from the disk at the snapshot (chosen transport) to the target;
//   5. record the snapshot disk's ChangeId as the target's new state, atomically.
import { VcbtError } from '../errors.ts';
import { extent, subtract, totalBytes } from '../extents/extent.ts';
import type { Disk } from '../transport/disk.ts';
import { openDisk } from '../transport/open-disk.ts';
import {
  datacenterOf,
  readSnapshotDisks,
  withSnapshot,
  type MoRef,
  type VirtualDiskInfo,
  type VmInfo,
} from '../vsphere/vsphere.ts';
import { areasToCopy } from './areas-to-copy.ts';
import { copyAreas } from './copy-areas.ts';
import { loadReplicaState, planCopy, replicaStatePath, saveReplicaState, type ReplicaState } from './replica-state.ts';
import { prepareVm, requireChangeId, type SnapshotJobOptions } from './prepare-vm.ts';
import { openSnapshotDisk } from './snapshot-source.ts';

export class ReplicateError extends VcbtError {}

export interface ReplicateOptions extends SnapshotJobOptions {
  /** Device key -> target (file path or NBD URI). Absent keys are not replicated. */
  targets: ReadonlyMap<number, string> | ((disks: readonly VirtualDiskInfo[], vm: VmInfo) => ReadonlyMap<number, string>);
  stateDir?: string;
  env: NodeJS.ProcessEnv;
  maxInFlight?: number;
}

export interface DiskReplicaResult {
  deviceKey: number;
  label: string;
  target: string;
  statePath: string;
  mode: 'full' | 'incremental';
  reason: string;
  capacityBytes: number;
  areas: number;
  areaBytes: number;
  bytesCopied: number;
  bytesZeroed: number;
  changeId: string;
}

export interface ReplicateResult {
  vm: { name: string; moref: string; instanceUuid: string | null };
  server: string;
  snapshot: string;
  leftoverSnapshotsRemoved: string[];
  /** Why CBT was reset before the snapshot (a disk grew), or null. */
  cbtResetReason: string | null;
  disks: DiskReplicaResult[];
  elapsedMs: number;
}

function resolveTargets(options: ReplicateOptions, disks: readonly VirtualDiskInfo[], vm: VmInfo): Map<number, string> {
  const targets = typeof options.targets === 'function' ? options.targets(disks, vm) : options.targets;
  for (const key of targets.keys()) {
    if (!disks.some((d) => d.key === key)) {
      const keys = disks.map((d) => `${d.key} (${d.label})`).join(', ');
      throw new ReplicateError('REPLICATE_NO_SUCH_DISK', `VM "${vm.name}" has no disk ${key}; its disks: ${keys}`, { vm: vm.name, diskKey: key });
    }
  }
  if (targets.size === 0) throw new ReplicateError('REPLICATE_NO_TARGETS', `nothing to replicate for VM "${vm.name}": no disk has a target`, { vm: vm.name });
  return new Map(targets);
}

async function openTarget(target: string, capacityBytes: number, signal?: AbortSignal): Promise<Disk> {
  const disk = await openDisk(target, { writable: true, create: true, sizeBytes: capacityBytes, signal });
  if (disk.sizeBytes !== capacityBytes) {
    await disk.close();
    throw new ReplicateError('REPLICATE_TARGET_SIZE', `target ${target} has ${disk.sizeBytes} bytes but the disk has ${capacityBytes}; give a target of exactly the disk's size`, { target, targetBytes: disk.sizeBytes, capacityBytes });
  }
  return disk;
}

export async function replicate(options: ReplicateOptions): Promise<ReplicateResult> {
  const started = performance.now();
  const { session } = options;
  const log = options.onEvent ?? (() => {});
  // Each target's state is read once: before the snapshot (did a disk grow?) and for its copy.
  const states = new Map<string, Promise<ReplicaState | undefined>>();
  const stateOf = (target: string): Promise<ReplicaState | undefined> => {
    let state = states.get(target);
    if (!state) states.set(target, (state = loadReplicaState(replicaStatePath(target, options.env, options.stateDir))));
    return state;
  };
  const prepared = await prepareVm(session, options.vm, {
    log,
    resetCbtOnResize: options.resetCbtOnResize,
    baselines: async (found) => {
      const baselines = new Map<number, ReplicaState | undefined>();
      for (const [key, target] of resolveTargets(options, found.disks, found)) baselines.set(key, await stateOf(target));
      return baselines;
    },
  });
  const { vm } = prepared;
  const targets = resolveTargets(options, vm.disks, vm);

  const datacenter = (await datacenterOf(session, vm.moref)).name;
  let snapshotRef: MoRef | undefined;
  const disks = await withSnapshot(session, vm, { purpose: 'replicate', quiesce: options.quiesce }, async (snapshot) => {
    snapshotRef = snapshot;
    log(`snapshot ${snapshot.value} taken of VM "${vm.name}"`);
    const snapshotDisks = await readSnapshotDisks(session, vm, snapshot);
    const results: DiskReplicaResult[] = [];
    for (const [deviceKey, target] of targets) {
      const disk = snapshotDisks.find((d) => d.key === deviceKey);
      if (!disk) throw new ReplicateError('REPLICATE_NO_SUCH_DISK', `snapshot ${snapshot.value} of VM "${vm.name}" has no disk ${deviceKey}`, { vm: vm.name, diskKey: deviceKey });
      results.push(await replicateDisk(options, vm, snapshot, disk, target, datacenter, await stateOf(target)));
    }
    return results;
  });
  return {
    vm: { name: vm.name, moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null },
    server: session.server,
    snapshot: snapshotRef?.value ?? '',
    leftoverSnapshotsRemoved: prepared.leftoverSnapshotsRemoved,
    cbtResetReason: prepared.cbtResetReason ?? null,
    disks,
    elapsedMs: performance.now() - started,
  };
}

async function replicateDisk(options: ReplicateOptions, vm: VmInfo, snapshot: MoRef, disk: VirtualDiskInfo, target: string, datacenter: string, state: ReplicaState | undefined): Promise<DiskReplicaResult> {
  const { session, signal } = options;
  const log = options.onEvent ?? (() => {});
  const what = `VM "${vm.name}" disk ${disk.key}`;
  const changeId = requireChangeId(vm, snapshot, disk);
  const statePath = replicaStatePath(target, options.env, options.stateDir);
  const now = { server: session.server, vm: { moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null }, deviceKey: disk.key, capacityBytes: disk.capacityBytes, changeId };
  const plan = planCopy(state, now, options.forceFull ?? false);
  const query = { vm, snapshot, deviceKey: disk.key, capacityBytes: disk.capacityBytes, signal };

  const { mode, reason, areas } = await areasToCopy(session, query, plan, changeId);
  log(`${what} -> ${target}: ${mode} (${reason}); ${areas.length} areas, ${totalBytes(areas)} bytes`);

  const base: Omit<ReplicaState, 'changeId' | 'completedAt' | 'inProgress' | 'snapshotCreatedAt'> = {
    format: 'vcbt-replica',
    version: 1,
    target,
    server: session.server,
    vm: { name: vm.name, moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null },
    deviceKey: disk.key,
    capacityBytes: disk.capacityBytes,
  };
  const startedAt = new Date().toISOString();
  await saveReplicaState(statePath, {
    ...base,
    changeId: mode === 'incremental' && state ? state.changeId : null,
    snapshotCreatedAt: mode === 'incremental' && state ? state.snapshotCreatedAt : null,
    completedAt: mode === 'incremental' && state ? state.completedAt : null,
    inProgress: { startedAt, mode },
  });

  const source = await openSnapshotDisk({ session, vm, snapshot, disk, datacenter, signal }, {
    ...options.transport,
    onReconnect: (cause, attempt) => log(`${what}: source connection lost (${cause instanceof Error ? cause.message : String(cause)}); reconnecting, attempt ${attempt}`),
  });
  let copied;
  let bytesZeroed = 0;
  try {
    const targetDisk = await openTarget(target, disk.capacityBytes, signal);
    try {
      if (mode === 'full') {
        // Unallocated areas must read as zero on the target too, whatever it held before.
        for (const hole of subtract([extent(0, disk.capacityBytes)], areas)) {
          await targetDisk.writeZeroes(hole.offsetBytes, hole.lengthBytes, signal);
          bytesZeroed += hole.lengthBytes;
        }
      }
      let done = 0;
      const total = totalBytes(areas);
      copied = await copyAreas(source, targetDisk, areas, {
        maxInFlight: options.maxInFlight,
        signal,
        onProgress: (bytes) => options.onProgress?.(disk.key, (done += bytes), total),
      });
    } finally {
      await targetDisk.close();
    }
  } finally {
    await source.close();
  }
  await saveReplicaState(statePath, { ...base, changeId, snapshotCreatedAt: startedAt, completedAt: new Date().toISOString(), inProgress: null });
  return {
    deviceKey: disk.key,
    label: disk.label,
    target,
    statePath,
    mode,
    reason,
    capacityBytes: disk.capacityBytes,
    areas: areas.length,
    areaBytes: totalBytes(areas),
    bytesCopied: copied.bytesCopied,
    bytesZeroed,
    changeId: changeId,
  };
}
