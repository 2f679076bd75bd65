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
import { extent, subtract } from '../extents/extent.ts';
import { isNbdUri } from '../nbd/uri.ts';

export { isNbdUri };
import type { Disk } from '../transport/disk.ts';
import { openDisk } from '../transport/open-disk.ts';
import { type VirtualDiskInfo, type VmInfo, type VmSelector } from '../vsphere/vsphere.ts';
import type { CopyReasonCode } from './copy-reason.ts';
import { copyAreas } from './copy-areas.ts';
import { loadReplicaState, ReplicateError, replicaStatePath, replicaWords, saveReplicaState, type ReplicaState } from './replica-state.ts';
import { findOrCreateReplicaVm, growReplicaDisks, matchDestDisks, readVmReplicaStates, replicaStateWhere, requirePoweredOff, saveVmReplicaState, type CreateReplicaOptions } from './replica-vm.ts';
import { runSnapshotJob, selectDisks, vmRef, type DiskToCopy, type FailedDisk, type SnapshotJobOptions, type SnapshotJobSink } from './snapshot-job.ts';

export { ReplicateError };

/** Replicating onto the disks of another VM (replica-vm.ts). */
export interface ReplicaVmOptions {
  vm: VmSelector;
  /** Writable NBD export of DEST's live disks: {vm} {disk} {file} {datastore}. */
  nbdUriTemplate: string;
  /** Device keys of the source to replicate (default: all). */
  diskKeys?: readonly number[];
  /** Make DEST from the source's configuration when no VM has its name. */
  create?: CreateReplicaOptions;
}

export interface ReplicateOptions extends SnapshotJobOptions {
  /** Device key -> target (file path or NBD URI). Absent keys are not replicated. */
  targets?: ReadonlyMap<number, string> | ((disks: readonly VirtualDiskInfo[], vm: VmInfo) => ReadonlyMap<number, string>);
  /** Replicate onto the disks of a VM instead (the state then lives in its extraConfig). */
  toVm?: ReplicaVmOptions;
  stateDir?: string;
  env: NodeJS.ProcessEnv;
  maxInFlight?: number;
}

export interface DiskReplicaResult {
  deviceKey: number;
  label: string;
  target: string;
  /** Where the replica state lives: a file, or `VM "x" (vm-60) extraConfig vcbt.replica.disk.2000`. */
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
  /** The replica VM (`--to-vm`; `created` by this run's --create), or null for file/NBD targets. */
  toVm: { name: string; moref: string; instanceUuid: string | null; created: boolean } | null;
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

/** One disk's target: where it is written and where its state lives. */
interface TargetSlot {
  target: string;
  statePath: string;
  state: ReplicaState | undefined;
  save: (state: ReplicaState, signal?: AbortSignal) => Promise<void>;
}

class ReplicateSink implements SnapshotJobSink<TargetBaseline, DiskReplicaResult> {
  readonly purpose = 'replicate';
  readonly words = replicaWords;
  readonly independentDisks = true;
  readonly #options: ReplicateOptions;
  /** Per device key: target and state (the state itself is the baseline, if any). */
  readonly #targets = new Map<number, TargetSlot>();
  /** The replica VM when replicating onto one, and whether this run made it. */
  destVm: VmInfo | undefined;
  created = false;

  constructor(options: ReplicateOptions) {
    this.#options = options;
  }

  async prepare(vm: VmInfo): Promise<Map<number, TargetBaseline | undefined>> {
    const options = this.#options;
    if (options.toVm) await this.#prepareVm(vm, options.toVm);
    else await this.#prepareTargets(vm);
    const baselines = new Map<number, TargetBaseline | undefined>();
    for (const [key, slot] of this.#targets) baselines.set(key, slot.state && { ...slot.state, targetPath: slot.target, statePath: slot.statePath });
    return baselines;
  }

  async #prepareTargets(vm: VmInfo): Promise<void> {
    const options = this.#options;
    const given = options.targets ?? new Map<number, string>();
    const targets = typeof given === 'function' ? given(vm.disks, vm) : given;
    if (targets.size === 0) throw new ReplicateError('REPLICATE_NO_TARGETS', `nothing to replicate for VM "${vm.name}": no disk has a target`, { vm: vm.name });
    for (const disk of selectDisks(options.session, vm, [...targets.keys()])) {
      const target = targets.get(disk.key) as string;
      const statePath = replicaStatePath(target, options.env, options.stateDir);
      const state = await loadReplicaState(statePath);
      await checkTarget(target, disk.capacityBytes, options.signal);
      this.#targets.set(disk.key, { target, statePath, state, save: (next) => saveReplicaState(statePath, next) });
    }
  }

  /** DEST found, powered off, its disks matched by key and of the source's sizes, its states read. */
  async #prepareVm(vm: VmInfo, toVm: ReplicaVmOptions): Promise<void> {
    const { session, signal } = this.#options;
    const log = this.#options.onEvent ?? (() => {});
    const found = await findOrCreateReplicaVm(session, vm, toVm.vm, toVm.create, log, signal);
    this.created = found.created;
    requirePoweredOff(found.vm, `replicating onto it`);
    const disks = selectDisks(session, vm, toVm.diskKeys);
    matchDestDisks(vm, disks, found.vm, toVm.nbdUriTemplate);
    const dest = await growReplicaDisks(session, found.vm, disks, log, signal);
    const matched = matchDestDisks(vm, disks, dest, toVm.nbdUriTemplate);
    const states = await readVmReplicaStates(session, dest);
    for (const disk of disks) {
      const { uri } = matched.get(disk.key) as { uri: string };
      await checkTarget(uri, disk.capacityBytes, signal);
      this.#targets.set(disk.key, { target: uri, statePath: replicaStateWhere(dest, disk.key), state: states.get(disk.key), save: (next, s) => saveVmReplicaState(session, dest, next, s) });
    }
    this.destVm = dest;
  }

  async copyDisk(work: DiskToCopy<TargetBaseline>): Promise<DiskReplicaResult> {
    const { session, maxInFlight } = this.#options;
    const { disk, copy, signal } = work;
    const { target, statePath, state, save } = this.#targets.get(disk.key) as TargetSlot;
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
    await save({
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
        if (copy.mode === 'full' && !this.created) {
          // Unallocated areas must read as zero on the target too, whatever it held before
          // (a disk this run created is empty already).
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
    await save({ ...base, changeId: work.changeId, snapshotCreatedAt: work.taken.snapshotInfo.createTime || startedAt, completedAt: new Date().toISOString(), inProgress: null });
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
  const sink = new ReplicateSink(options);
  const result = await runSnapshotJob(options, sink);
  return {
    vm: result.vm,
    server: result.server,
    toVm: sink.destVm ? { ...vmRef(sink.destVm), created: sink.created } : null,
    snapshot: result.snapshot.moref,
    leftoverSnapshotsRemoved: result.leftoverSnapshotsRemoved,
    cbtResetReason: result.cbtResetReason,
    disks: result.disks,
    failedDisks: result.failedDisks,
    elapsedMs: result.elapsedMs,
  };
}
