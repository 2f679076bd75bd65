// The snapshot-job runner: the one flow every job that reads a VM's disks at a snapshot
// follows (backup, replicate, and the jobs to come). A job supplies only a *sink*: which disks
// it wants and what it last recorded of them (baselines), and where the bytes go.
//
// For one VM:
//   1. find it and insist CBT is on;
//   2. ask the sink for the disks and their baselines (read once, before the snapshot; the
//      sink checks there everything it can before a snapshot exists: targets, repository;
//      the transport's own needs - VDDK, mounted datastores - are checked before that);
//   3. when a disk grew since its baseline, reset CBT first (KB 2090639: changed-block data
//      across a resize cannot be trusted); the new epoch makes every disk's copy full;
//   4. claim the VM with an owned snapshot (snapshot-owner.ts: leftovers of dead runs go, a
//      live run's snapshot is never touched: wait or VM_BUSY), always removed afterwards;
//   5. per disk: the snapshot disk's ChangeId, the plan (copy-plan.ts), the areas
//      (areas-to-copy.ts: a refused ChangeId becomes a full), then the sink copies them from
//      the disk at the snapshot (snapshot-source.ts); a sink that finds its baseline's data
//      damaged gets the disk again as a full;
//   6. confirm the snapshot is still ours and intact, then let the sink commit; on any
//      failure the sink aborts and nothing half-done is recorded.
import { VcbtError } from '../errors.ts';
import { totalBytes } from '../extents/extent.ts';
import type { DiskReader } from '../transport/disk.ts';
import {
  datacenterOf,
  diskByKey,
  findVm,
  readSnapshotDisks,
  resetCbt,
  type MoRef,
  type VirtualDiskInfo,
  type VmInfo,
  type VmSelector,
  type VsphereSession,
} from '../vsphere/vsphere.ts';
import { areasToCopy, type AreasToCopy } from './areas-to-copy.ts';
import { diskResized, planCopy, type BaselineWords, type CopyBaseline, type DiskNow, type VmRef } from './copy-plan.ts';
import { withOwnedSnapshot } from './snapshot-owner.ts';
import { checkTransport, openSnapshotDisk, type TransportOptions } from './snapshot-source.ts';

/** Codes: CBT_NOT_ENABLED, VM_NO_DISKS, SNAPSHOT_REQUIRED. */
export class JobError extends VcbtError {}

/** What every snapshot job is asked. */
export interface SnapshotJobOptions {
  session: VsphereSession;
  vm: VmSelector;
  transport: TransportOptions;
  /** Copy every allocated block even where an incremental is possible. */
  forceFull?: boolean;
  /** Reset CBT before the snapshot when a disk grew since its last copy (default true). */
  resetCbtOnResize?: boolean;
  quiesce?: boolean;
  /** How long to wait while another vcbt run owns the VM before VM_BUSY (default 0). */
  waitBusyMs?: number;
  /** Lease of the run's snapshot (snapshot-owner.ts; default 10 minutes). */
  snapshotLeaseMs?: number;
  signal?: AbortSignal;
  /** Human-readable progress of the job (one line each). */
  onEvent?: (line: string) => void;
  onProgress?: (deviceKey: number, doneBytes: number, totalBytes: number) => void;
}

/** The snapshot a job works on, as the sink sees it. */
export interface SnapshotTaken {
  vm: VmInfo;
  snapshot: MoRef;
  snapshotInfo: { moref: string; name: string; createTime: string; quiesced: boolean };
  datacenter: string;
  /** The VM's disks as the snapshot froze them (ChangeIds of the snapshot). */
  disks: VirtualDiskInfo[];
  signal: AbortSignal;
}

/** One disk's copy, handed to the sink. */
export interface DiskToCopy<B> {
  taken: SnapshotTaken;
  disk: VirtualDiskInfo;
  /** The snapshot disk's ChangeId: what the next incremental starts from. */
  changeId: string;
  baseline: B | undefined;
  copy: AreasToCopy;
  areaBytes: number;
  /** Opens the disk at the snapshot through the job's transport (the sink closes it). */
  openSource(): Promise<DiskReader>;
  /** Reports bytes done of `areaBytes` so far. */
  progress(doneBytes: number): void;
  /** Throws SNAPSHOT_LOST unless the snapshot is still ours; call before recording anything. */
  confirmSnapshotIntact(): Promise<void>;
  signal: AbortSignal;
  log(line: string): void;
}

/** Thrown by a sink whose incremental baseline cannot be read: the runner copies the disk in full. */
export class BaselineDamagedError extends VcbtError {
  constructor(message: string, context: Record<string, unknown>, cause: unknown) {
    super('BASELINE_DAMAGED', message, context, { cause });
  }
}

export interface SnapshotJobSink<B extends CopyBaseline, D> {
  /** `backup`, `replicate`, ...: names the snapshot. */
  purpose: string;
  /**
   * Each disk's copy stands alone (replication onto separate targets): a disk that fails is
   * reported in `failedDisks` and the others go on. Otherwise the first failure ends the job.
   */
  independentDisks?: boolean;
  words: BaselineWords;
  /**
   * Before the snapshot: the device keys to copy, in order, each with its baseline (undefined:
   * none). Checks here whatever can fail before a snapshot exists.
   */
  prepare(vm: VmInfo): Promise<ReadonlyMap<number, B | undefined>>;
  /** After the snapshot, before the first disk. */
  begin?(taken: SnapshotTaken): Promise<void>;
  copyDisk(work: DiskToCopy<B>): Promise<D>;
  /** Every disk copied and the snapshot confirmed intact: make the result durable. */
  commit?(taken: SnapshotTaken): Promise<void>;
  /** Something failed after begin: nothing may become visible. */
  abort?(): Promise<void>;
  /** Always, last: releases what prepare took. */
  release?(): Promise<void>;
}

export interface SnapshotJobResult<D> {
  vm: VmRef;
  server: string;
  snapshot: SnapshotTaken['snapshotInfo'];
  leftoverSnapshotsRemoved: string[];
  /** Why CBT was reset before the snapshot (a disk grew), or null. */
  cbtResetReason: string | null;
  disks: D[];
  /** Disks that failed while the others went on (sinks with independentDisks only). */
  failedDisks: FailedDisk[];
  elapsedMs: number;
}

export interface FailedDisk {
  deviceKey: number;
  code: string;
  message: string;
}

/** The disks a job asked for by device key (all when none named); DISK_NOT_FOUND lists the VM's disks. */
export function selectDisks(session: VsphereSession, vm: VmInfo, diskKeys: readonly number[] | undefined, disks: readonly VirtualDiskInfo[] = vm.disks): VirtualDiskInfo[] {
  if (!diskKeys || diskKeys.length === 0) {
    if (disks.length === 0) throw new JobError('VM_NO_DISKS', `VM "${vm.name}" has no virtual disks`, { vm: vm.name });
    return [...disks];
  }
  return diskKeys.map((key) => diskByKey(session, vm, disks, key));
}

export function vmRef(vm: VmInfo): VmRef {
  return { name: vm.name, moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null };
}

/** The disk as this run sees it, for the copy plan. */
export function diskNow(session: VsphereSession, vm: VmInfo, disk: VirtualDiskInfo): DiskNow {
  return { server: session.server, vm: { moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null }, deviceKey: disk.key, capacityBytes: disk.capacityBytes, changeId: disk.changeId ?? null };
}

/**
 * The snapshot disk's ChangeId, which the next incremental starts from. A disk without one
 * has no active tracking yet (a powered-on VM applies "CBT on" only after a stun/unstun).
 */
export function requireChangeId(vm: VmInfo, snapshot: MoRef, disk: VirtualDiskInfo): string {
  if (disk.changeId) return disk.changeId;
  throw new JobError('CBT_NOT_ENABLED', `VM "${vm.name}" disk ${disk.key} has no ChangeId at snapshot ${snapshot.value}: CBT is not active on it yet (a powered-on VM needs a snapshot cycle after enabling; try: vcbt cbt reset --vm ${vm.moref.value})`, { vm: vm.name, diskKey: disk.key });
}

/** Finds the VM and insists CBT is on. */
export async function findTrackedVm(session: VsphereSession, selector: VmSelector): Promise<VmInfo> {
  const vm = await findVm(session, selector);
  if (!vm.cbtEnabled) {
    throw new JobError('CBT_NOT_ENABLED', `Changed Block Tracking is off on VM "${vm.name}" (server ${session.server}); enable it with: vcbt cbt enable --vm ${vm.moref.value}`, { vm: vm.name, server: session.server });
  }
  return vm;
}

export async function runSnapshotJob<B extends CopyBaseline, D>(options: SnapshotJobOptions, sink: SnapshotJobSink<B, D>): Promise<SnapshotJobResult<D>> {
  const started = performance.now();
  const { session } = options;
  const log = options.onEvent ?? (() => {});
  await checkTransport(options.transport);
  let vm = await findTrackedVm(session, options.vm);
  try {
    const baselines = await sink.prepare(vm);
    let cbtResetReason: string | null = null;
    if (options.resetCbtOnResize !== false) {
      const grown = vm.disks.filter((disk) => diskResized(baselines.get(disk.key), diskNow(session, vm, disk)));
      if (grown.length > 0) {
        cbtResetReason = grown.map((d) => `disk ${d.key} is now ${d.capacityBytes} bytes (was ${baselines.get(d.key)?.capacityBytes})`).join('; ');
        log(`resetting CBT on VM "${vm.name}" before the snapshot: ${cbtResetReason} (KB 2090639); every disk gets a full copy this time`);
        await resetCbt(session, vm);
        vm = await findTrackedVm(session, { moref: vm.moref.value });
      }
    }
    const datacenter = (await datacenterOf(session, vm.moref)).name;
    const claimed = await withOwnedSnapshot(
      session,
      vm,
      { purpose: sink.purpose, quiesce: options.quiesce, waitBusyMs: options.waitBusyMs, leaseMs: options.snapshotLeaseMs, signal: options.signal, log },
      async (owned) => {
        const { info } = owned;
        log(`snapshot ${owned.moref.value} "${info.name}" taken of VM "${vm.name}"`);
        const taken: SnapshotTaken = {
          vm,
          snapshot: owned.moref,
          snapshotInfo: { moref: owned.moref.value, name: info.name, createTime: info.createTime, quiesced: info.quiesced },
          datacenter,
          disks: await readSnapshotDisks(session, vm, owned.moref),
          signal: owned.signal,
        };
        await sink.begin?.(taken);
        try {
          const disks: D[] = [];
          const failedDisks: FailedDisk[] = [];
          let firstFailure: unknown;
          for (const [key, baseline] of baselines) {
            // An interrupt stops the job even where no read would notice it (nothing to copy).
            taken.signal.throwIfAborted();
            const [disk] = selectDisks(session, vm, [key], taken.disks);
            try {
              disks.push(await copyOneDisk(options, sink, taken, disk, baseline, owned.confirmIntact));
            } catch (error) {
              const lost = error instanceof VcbtError && error.code === 'SNAPSHOT_LOST';
              if (!sink.independentDisks || taken.signal.aborted || lost) throw error;
              firstFailure ??= error;
              const code = error instanceof VcbtError ? error.code : 'INTERNAL';
              const message = error instanceof Error ? error.message : String(error);
              failedDisks.push({ deviceKey: key, code, message });
              log(`VM "${vm.name}" disk ${key} failed (${code}: ${message}); the other disks go on`);
            }
          }
          if (disks.length === 0 && firstFailure !== undefined) throw firstFailure;
          taken.signal.throwIfAborted();
          await owned.confirmIntact();
          await sink.commit?.(taken);
          return { taken, disks, failedDisks, leftovers: owned.leftoversRemoved };
        } catch (error) {
          await sink.abort?.();
          throw error;
        }
      },
    );
    return {
      vm: vmRef(vm),
      server: session.server,
      snapshot: claimed.taken.snapshotInfo,
      leftoverSnapshotsRemoved: claimed.leftovers,
      cbtResetReason,
      disks: claimed.disks,
      failedDisks: claimed.failedDisks,
      elapsedMs: performance.now() - started,
    };
  } finally {
    await sink.release?.();
  }
}

async function copyOneDisk<B extends CopyBaseline, D>(
  options: SnapshotJobOptions,
  sink: SnapshotJobSink<B, D>,
  taken: SnapshotTaken,
  disk: VirtualDiskInfo,
  baseline: B | undefined,
  confirmSnapshotIntact: () => Promise<void>,
): Promise<D> {
  const { session } = options;
  const { vm, snapshot, signal } = taken;
  const log = options.onEvent ?? (() => {});
  const what = `VM "${vm.name}" disk ${disk.key}`;
  const changeId = requireChangeId(vm, snapshot, disk);
  const query = { vm, snapshot, deviceKey: disk.key, capacityBytes: disk.capacityBytes, signal };
  const transport: TransportOptions = {
    ...options.transport,
    onReconnect: (cause, attempt) => log(`${what}: source connection lost (${cause instanceof Error ? cause.message : String(cause)}); reconnecting, attempt ${attempt}`),
  };
  const work = (copy: AreasToCopy): DiskToCopy<B> => {
    const areaBytes = totalBytes(copy.areas);
    log(`${what}: ${copy.mode} (${copy.reason}); ${copy.areas.length} areas, ${areaBytes} bytes to read`);
    return {
      taken,
      disk,
      changeId,
      baseline,
      copy,
      areaBytes,
      openSource: () => openSnapshotDisk({ session, vm, snapshot, disk, datacenter: taken.datacenter, signal }, transport),
      progress: (doneBytes) => options.onProgress?.(disk.key, doneBytes, areaBytes),
      confirmSnapshotIntact,
      signal,
      log,
    };
  };
  const plan = planCopy(baseline, diskNow(session, vm, disk), options.forceFull ?? false, sink.words);
  const chosen = await areasToCopy(session, query, plan, changeId);
  try {
    return await sink.copyDisk(work(chosen));
  } catch (error) {
    if (!(error instanceof BaselineDamagedError) || chosen.mode !== 'incremental') throw error;
    // The baseline's data is unreadable: never build on it; read everything instead.
    const reason = `${error.message}; reading everything`;
    log(`${what}: ${reason}`);
    return sink.copyDisk(work(await areasToCopy(session, query, { mode: 'full', reasonCode: 'BASELINE_DAMAGED', reason }, changeId)));
  }
}
