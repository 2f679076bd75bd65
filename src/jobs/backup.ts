// The backup job: one restore point of a VM in the repository, as a sink of the snapshot-job
// runner (snapshot-job.ts owns the flow: claim, snapshot, plan, areas, always remove).
//
// - prepare (before the snapshot): the disks asked for; a shared repository lock taken now and
//   held to the end (prune cannot delete a baseline meanwhile; a locked or read-only
//   repository fails before any snapshot); per disk the baseline: the newest restore point of
//   this VM holding that disk, read once.
// - begin: start the restore point (the manifest records the VM's identity, the snapshot and
//   a summary of the VM's configuration as the snapshot froze it).
// - per disk: incremental = the changed areas written on top of the baseline point's index;
//   full = the allocated areas, the rest stored as zero. A baseline that `vcbt verify` marked
//   damaged for this disk (its check record), or whose index or chunks turn out unreadable or
//   missing while the incremental reads it, is reported to the runner (BaselineDamagedError),
//   which copies the disk in full (reason BASELINE_DAMAGED): that full rewrites every chunk
//   it reads whose stored file is missing (quarantined) or fails its check.
// - commit (the snapshot confirmed intact): the repository orders chunks -> indexes ->
//   manifest; abort on any failure, so nothing half-done becomes visible.
import { RepositoryError } from '../repository/errors.ts';
import type { RepositoryLock } from '../repository/lock.ts';
import type { DiskRecord, RestorePointManifest } from '../repository/manifest.ts';
import type { Repository } from '../repository/repository.ts';
import type { RestorePointWriter } from '../repository/restore-point-writer.ts';
import { diskIsDamaged, readCheckRecord, type PointCheck } from '../repository/point-records.ts';
import type { VirtualDiskInfo, VmInfo } from '../vsphere/vsphere.ts';
import type { CopyBaseline } from './copy-plan.ts';
import type { CopyReasonCode } from './copy-reason.ts';
import { backedUpVm, backupVmId, type BackedUpVm } from './restore-points.ts';
import { captureVm, type VmCapture } from './vm-capture.ts';
import { BaselineDamagedError, runSnapshotJob, selectDisks, type DiskToCopy, type SnapshotJobOptions, type SnapshotJobSink, type SnapshotTaken } from './snapshot-job.ts';

export interface BackupOptions extends SnapshotJobOptions {
  repository: Repository;
  /** Device keys to back up; absent or empty: every disk. */
  diskKeys?: readonly number[];
}

export interface DiskBackupResult {
  deviceKey: number;
  label: string;
  capacityBytes: number;
  mode: 'full' | 'incremental';
  reasonCode: CopyReasonCode;
  reason: string;
  /** The restore point the incremental builds on. */
  basedOn: string | null;
  areas: number;
  areaBytes: number;
  changeId: string;
  bytesRead: number;
  bytesStored: number;
  chunksNew: number;
  chunksReused: number;
  chunksZero: number;
  /** Stored chunk files that failed their reuse check (damaged) and were written again from the source. */
  chunksRewritten: number;
}

/** What the manifest's `snapshot` holds. */
export interface BackupSnapshot {
  moref: string;
  name: string;
  createTime: string;
  quiesced: boolean;
}

export interface BackupResult {
  pointId: string;
  repository: string;
  vm: BackedUpVm;
  snapshot: BackupSnapshot;
  leftoverSnapshotsRemoved: string[];
  /** Why CBT was reset before the snapshot (a disk grew), or null. */
  cbtResetReason: string | null;
  disks: DiskBackupResult[];
  bytesRead: number;
  bytesStored: number;
  elapsedMs: number;
}

/** The VM configuration recorded with each restore point: what a restore needs to rebuild it. */
export interface VmConfigSummary {
  powerState: VmInfo['powerState'];
  cbtEnabled: boolean;
  disks: Array<Pick<VirtualDiskInfo, 'key' | 'label' | 'capacityBytes' | 'fileName' | 'backingType' | 'backingChain' | 'controllerKey' | 'unitNumber'> & { changeId: string | null }>;
  /** The whole configuration at the snapshot (vm-capture.ts); absent in points written before it was recorded. */
  configuration?: VmCapture['configuration'];
  /** The .vmx and .nvram files; absent in points written before they were recorded. */
  files?: VmCapture['files'];
}

/** A restore point's disk as a copy baseline; `damaged`: verify's finding that rules it out. */
type PointBaseline = CopyBaseline & { pointId: string; damaged: string | null };

function damageOf(record: PointCheck | undefined, deviceKey: number): string | null {
  if (!record || !diskIsDamaged(record, deviceKey)) return null;
  const lost = record.lostDisks.find((d) => d.deviceKey === deviceKey);
  const what = lost ? `${lost.lostRanges.length} byte range(s) of disk ${deviceKey} lost` : 'its manifest lost';
  return `restore point ${record.pointId} is marked ${record.status} by vcbt verify at ${record.checkedAt} (${what})`;
}

/** Per device key, the newest restore point of this VM holding that disk. */
async function findBaselines(repository: Repository, vmId: string, keys: readonly number[]): Promise<Map<number, PointBaseline | undefined>> {
  const found = new Map<number, PointBaseline | undefined>();
  const points = (await repository.listRestorePoints()).filter((p) => p.vm.id === vmId).reverse();
  const manifests = new Map<string, RestorePointManifest>();
  for (const key of keys) {
    const point = points.find((p) => p.disks.some((d) => d.deviceKey === key));
    if (!point) {
      found.set(key, undefined);
      continue;
    }
    let manifest = manifests.get(point.id);
    if (!manifest) manifests.set(point.id, (manifest = await repository.readManifest(point.id)));
    const vm = backedUpVm(manifest);
    const disk = manifest.disks.find((d) => d.deviceKey === key) as DiskRecord;
    const damaged = damageOf(await readCheckRecord(repository.storage, point.id), key);
    found.set(key, { pointId: point.id, server: vm.server, vm: { name: vm.name, moref: vm.moref, instanceUuid: vm.instanceUuid }, deviceKey: key, capacityBytes: disk.capacityBytes, changeId: disk.changeId, damaged });
  }
  return found;
}

function vmConfigOf(vm: VmInfo, disks: readonly VirtualDiskInfo[], capture: VmCapture): VmConfigSummary {
  return {
    powerState: vm.powerState,
    cbtEnabled: vm.cbtEnabled,
    disks: disks.map((d) => ({
      key: d.key,
      label: d.label,
      capacityBytes: d.capacityBytes,
      fileName: d.fileName,
      backingType: d.backingType,
      backingChain: d.backingChain,
      controllerKey: d.controllerKey,
      unitNumber: d.unitNumber,
      changeId: d.changeId ?? null,
    })),
    ...capture,
  };
}

class BackupSink implements SnapshotJobSink<PointBaseline, DiskBackupResult> {
  readonly purpose = 'backup';
  readonly words = { baseline: 'the previous restore point', none: 'no earlier restore point of this VM holds this disk (first backup)' };
  readonly #options: BackupOptions;
  #lock: RepositoryLock | undefined;
  #writer: RestorePointWriter | undefined;
  backedUp: BackedUpVm | undefined;
  pointId = '';

  constructor(options: BackupOptions) {
    this.#options = options;
  }

  async prepare(vm: VmInfo): Promise<Map<number, PointBaseline | undefined>> {
    const { session, repository } = this.#options;
    const keys = selectDisks(session, vm, this.#options.diskKeys).map((d) => d.key);
    const identity = { moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null };
    this.backedUp = { id: backupVmId(session.server, identity), name: vm.name, ...identity, server: session.server };
    // No VM name in the purpose: lock files are plain text even in an encrypted repository.
    this.#lock = await repository.lock('shared', 'backup');
    return findBaselines(repository, this.backedUp.id, keys);
  }

  async begin(taken: SnapshotTaken): Promise<void> {
    const { session, repository } = this.#options;
    const capture = await captureVm(session, taken.vm, taken.snapshot, taken.datacenter, taken.signal);
    if (capture.files.problem) this.#options.onEvent?.(`VM "${taken.vm.name}": its .vmx/.nvram files are not all recorded: ${capture.files.problem}`);
    this.#writer = await repository.beginRestorePoint({
      vm: { ...(this.backedUp as BackedUpVm) },
      source: { server: session.server, datacenter: taken.datacenter },
      snapshot: taken.snapshotInfo,
      vmConfig: vmConfigOf(taken.vm, taken.disks, capture),
    });
  }

  async copyDisk(work: DiskToCopy<PointBaseline>): Promise<DiskBackupResult> {
    const { disk, copy, baseline, signal } = work;
    const writer = this.#writer as RestorePointWriter;
    const source = await work.openSource();
    let record: DiskRecord;
    try {
      let doneBytes = 0;
      const reader = {
        read: async (offsetBytes: number, target: Uint8Array) => {
          await source.read(offsetBytes, target, signal);
          work.progress((doneBytes += target.length));
        },
      };
      const common = { deviceKey: disk.key, label: disk.label, capacityBytes: disk.capacityBytes, changeId: work.changeId, reader, signal };
      if (copy.mode === 'incremental' && baseline) {
        // Never build on a baseline verify found damaged: the runner reads the disk in full.
        if (baseline.damaged) throw new BaselineDamagedError(baseline.damaged, { pointId: baseline.pointId, diskKey: disk.key }, undefined);
        try {
          record = await writer.writeDisk({ ...common, previous: { pointId: baseline.pointId, deviceKey: disk.key }, changedAreas: copy.areas });
        } catch (error) {
          const damaged = error instanceof RepositoryError && (error.code === 'REPO_MISSING' || error.code === 'REPO_CORRUPT');
          if (!damaged) throw error;
          throw new BaselineDamagedError(`restore point ${baseline.pointId} is damaged (${error.message})`, { pointId: baseline.pointId, diskKey: disk.key }, error);
        }
      } else {
        record = await writer.writeDisk({ ...common, allocatedAreas: copy.areas });
      }
    } finally {
      await source.close();
    }
    return {
      deviceKey: disk.key,
      label: disk.label,
      capacityBytes: disk.capacityBytes,
      mode: copy.mode,
      reasonCode: copy.reasonCode,
      reason: copy.reason,
      basedOn: record.basedOn?.pointId ?? null,
      areas: copy.areas.length,
      areaBytes: work.areaBytes,
      changeId: work.changeId,
      ...record.stats,
      chunksRewritten: writer.chunksRewritten.get(disk.key) ?? 0,
    };
  }

  async commit(): Promise<void> {
    this.pointId = await (this.#writer as RestorePointWriter).commit();
    this.#options.onEvent?.(`restore point ${this.pointId} committed`);
  }

  async abort(): Promise<void> {
    await this.#writer?.abort();
  }

  async release(): Promise<void> {
    await this.#lock?.release();
  }
}

export async function backup(options: BackupOptions): Promise<BackupResult> {
  const sink = new BackupSink(options);
  const result = await runSnapshotJob(options, sink);
  return {
    pointId: sink.pointId,
    repository: options.repository.path,
    vm: sink.backedUp as BackedUpVm,
    snapshot: result.snapshot,
    leftoverSnapshotsRemoved: result.leftoverSnapshotsRemoved,
    cbtResetReason: result.cbtResetReason,
    disks: result.disks,
    bytesRead: result.disks.reduce((sum, d) => sum + d.bytesRead, 0),
    bytesStored: result.disks.reduce((sum, d) => sum + d.bytesStored, 0),
    elapsedMs: result.elapsedMs,
  };
}
