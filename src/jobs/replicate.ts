// The replicate job: the seed's whole flow as one command, as a sink of the snapshot-job
// runner (snapshot-job.ts owns the flow: claim, snapshot, plan, areas, always remove).
//
// - prepare (before the snapshot): the target of each disk; each target's replica state
//   (replica-state.ts) read once, the baseline of its disk; every target checked (an existing
//   one must have exactly the disk's size, a new file's directory must be writable).
// - per disk: record "copy in progress" (keeping the last ChangeId the target fully matches),
//   then for a full copy zero what is not allocated, copy the areas from the disk at the
//   snapshot onto the target, confirm the snapshot is still intact, and only then record the
//   snapshot disk's ChangeId as the target's new state, atomically.
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { VcbtError } from '../errors.ts';
import { extent, subtract } from '../extents/extent.ts';
import { isNbdUri } from '../nbd/uri.ts';

export { isNbdUri };
import type { Disk } from '../transport/disk.ts';
import { openDisk } from '../transport/open-disk.ts';
import type { VirtualDiskInfo, VmInfo } from '../vsphere/vsphere.ts';
import type { CopyReasonCode } from './copy-reason.ts';
import { copyAreas } from './copy-areas.ts';
import { loadReplicaState, replicaStatePath, replicaWords, saveReplicaState, type ReplicaState } from './replica-state.ts';
import { runSnapshotJob, selectDisks, vmRef, type DiskToCopy, type FailedDisk, type SnapshotJobOptions, type SnapshotJobSink } from './snapshot-job.ts';

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
  reasonCode: CopyReasonCode;
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
  /** Disks whose copy failed while the others completed (exit code 3); their state says in progress. */
  failedDisks: FailedDisk[];
  elapsedMs: number;
}

/** A target's replica state, with where the target and its state live. */
type TargetBaseline = ReplicaState & { targetPath: string; statePath: string };

async function openTarget(target: string, capacityBytes: number, signal?: AbortSignal): Promise<Disk> {
  const disk = await openDisk(target, { writable: true, create: true, sizeBytes: capacityBytes, signal });
  if (disk.sizeBytes !== capacityBytes) {
    await disk.close();
    throw new ReplicateError('REPLICATE_TARGET_SIZE', `target ${target} has ${disk.sizeBytes} bytes but the disk has ${capacityBytes}; give a target of exactly the disk's size`, { target, targetBytes: disk.sizeBytes, capacityBytes });
  }
  return disk;
}

/** Before any snapshot: an existing target (file or NBD) must fit; a new file's directory must take it. */
async function checkTarget(target: string, capacityBytes: number, signal?: AbortSignal): Promise<void> {
  if (!isNbdUri(target)) {
    const existing = await stat(target).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw new ReplicateError('REPLICATE_TARGET', `target ${target} cannot be examined: ${error.message}`, { target }, { cause: error });
    });
    if (!existing) {
      await access(dirname(target), constants.W_OK).catch((error: NodeJS.ErrnoException) => {
        throw new ReplicateError('REPLICATE_TARGET', `target ${target} cannot be created: its directory is missing or not writable (${error.code})`, { target }, { cause: error });
      });
      return;
    }
  }
  await (await openTarget(target, capacityBytes, signal)).close();
}

class ReplicateSink implements SnapshotJobSink<TargetBaseline, DiskReplicaResult> {
  readonly purpose = 'replicate';
  readonly words = replicaWords;
  readonly independentDisks = true;
  readonly #options: ReplicateOptions;
  /** Per device key: target and state path (the state itself is the baseline, if any). */
  readonly #targets = new Map<number, { target: string; statePath: string; state: ReplicaState | undefined }>();

  constructor(options: ReplicateOptions) {
    this.#options = options;
  }

  async prepare(vm: VmInfo): Promise<Map<number, TargetBaseline | undefined>> {
    const options = this.#options;
    const targets = typeof options.targets === 'function' ? options.targets(vm.disks, vm) : options.targets;
    if (targets.size === 0) throw new ReplicateError('REPLICATE_NO_TARGETS', `nothing to replicate for VM "${vm.name}": no disk has a target`, { vm: vm.name });
    const disks = selectDisks(options.session, vm, [...targets.keys()]);
    const baselines = new Map<number, TargetBaseline | undefined>();
    for (const disk of disks) {
      const target = targets.get(disk.key) as string;
      const statePath = replicaStatePath(target, options.env, options.stateDir);
      const state = await loadReplicaState(statePath);
      await checkTarget(target, disk.capacityBytes, options.signal);
      this.#targets.set(disk.key, { target, statePath, state });
      baselines.set(disk.key, state && { ...state, targetPath: target, statePath });
    }
    return baselines;
  }

  async copyDisk(work: DiskToCopy<TargetBaseline>): Promise<DiskReplicaResult> {
    const { session, maxInFlight } = this.#options;
    const { disk, copy, signal } = work;
    const { target, statePath, state } = this.#targets.get(disk.key) as { target: string; statePath: string; state: ReplicaState | undefined };
    const base: Omit<ReplicaState, 'changeId' | 'completedAt' | 'inProgress' | 'snapshotCreatedAt'> = {
      format: 'vcbt-replica',
      version: 1,
      target,
      server: session.server,
      vm: vmRef(work.taken.vm),
      deviceKey: disk.key,
      capacityBytes: disk.capacityBytes,
    };
    // While copying, the state keeps the last ChangeId the target fully matches (see replica-state.ts).
    const keep = copy.mode === 'incremental' && state;
    const startedAt = new Date().toISOString();
    await saveReplicaState(statePath, {
      ...base,
      changeId: keep ? state.changeId : null,
      snapshotCreatedAt: keep ? state.snapshotCreatedAt : null,
      completedAt: keep ? state.completedAt : null,
      inProgress: { startedAt, mode: copy.mode },
    });

    let bytesCopied = 0;
    let bytesZeroed = 0;
    const source = await work.openSource();
    try {
      const targetDisk = await openTarget(target, disk.capacityBytes, signal);
      try {
        if (copy.mode === 'full') {
          // Unallocated areas must read as zero on the target too, whatever it held before.
          for (const hole of subtract([extent(0, disk.capacityBytes)], copy.areas)) {
            await targetDisk.writeZeroes(hole.offsetBytes, hole.lengthBytes, signal);
            bytesZeroed += hole.lengthBytes;
          }
        }
        let done = 0;
        const copied = await copyAreas(source, targetDisk, copy.areas, { maxInFlight, signal, onProgress: (bytes) => work.progress((done += bytes)) });
        bytesCopied = copied.bytesCopied;
      } finally {
        await targetDisk.close();
      }
    } finally {
      await source.close();
    }
    await work.confirmSnapshotIntact();
    await saveReplicaState(statePath, { ...base, changeId: work.changeId, snapshotCreatedAt: work.taken.snapshotInfo.createTime || startedAt, completedAt: new Date().toISOString(), inProgress: null });
    return {
      deviceKey: disk.key,
      label: disk.label,
      target,
      statePath,
      mode: copy.mode,
      reasonCode: copy.reasonCode,
      reason: copy.reason,
      capacityBytes: disk.capacityBytes,
      areas: copy.areas.length,
      areaBytes: work.areaBytes,
      bytesCopied,
      bytesZeroed,
      changeId: work.changeId,
    };
  }
}

export async function replicate(options: ReplicateOptions): Promise<ReplicateResult> {
  const result = await runSnapshotJob(options, new ReplicateSink(options));
  return {
    vm: result.vm,
    server: result.server,
    snapshot: result.snapshot.moref,
    leftoverSnapshotsRemoved: result.leftoverSnapshotsRemoved,
    cbtResetReason: result.cbtResetReason,
    disks: result.disks,
    failedDisks: result.failedDisks,
    elapsedMs: result.elapsedMs,
  };
}
