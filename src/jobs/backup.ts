// The backup job: one restore point of a VM in the repository. For one VM:
//   1. remove snapshots a crashed vcbt run left behind;
//   2. take a snapshot (always removed again: on success, error or Ctrl-C);
//   3. start the restore point (its shared lock keeps prune away from the baselines); per
//      disk, find the newest restore point of this VM holding that disk (the baseline) and
//      plan full or incremental exactly as replication does (planCopy: same VM, same disk,
//      same capacity; the ChangeId's epoch is checked by the query); a refused ChangeId
//      becomes a full;
//   4. incremental = the areas changed since that point's ChangeId, written on top of that
//      point's index; full = the allocated areas ("*"), the rest stored as zero;
//   5. commit the restore point (the repository orders chunks -> indexes -> manifest), or
//      abort it on any failure so nothing half-done becomes visible.
// The manifest records the VM's identity, the snapshot, per disk the snapshot disk's ChangeId
// (the one the next incremental starts from) and a summary of the VM's configuration.
import { VcbtError } from '../errors.ts';
import { totalBytes } from '../extents/extent.ts';
import { RepositoryError } from '../repository/errors.ts';
import type { DiskRecord, RestorePointManifest } from '../repository/manifest.ts';
import type { Repository } from '../repository/repository.ts';
import type { RestorePointWriter } from '../repository/restore-point-writer.ts';
import {
  datacenterOf,
  listSnapshots,
  readSnapshotDisks,
  withSnapshot,
  type MoRef,
  type VirtualDiskInfo,
  type VmInfo,
} from '../vsphere/vsphere.ts';
import { areasToCopy, type AreasToCopy } from './areas-to-copy.ts';
import { prepareVm, requireChangeId, type SnapshotJobOptions } from './prepare-vm.ts';
import { planCopy, type CopyBaseline } from './replica-state.ts';
import { backedUpVm, backupVmId, type BackedUpVm } from './restore-points.ts';
import { openSnapshotDisk } from './snapshot-source.ts';

export class BackupError extends VcbtError {}

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
}

function selectDisks(vm: VmInfo, diskKeys: readonly number[] | undefined): VirtualDiskInfo[] {
  if (!diskKeys || diskKeys.length === 0) {
    if (vm.disks.length === 0) throw new BackupError('BACKUP_NO_DISKS', `VM "${vm.name}" has no virtual disks to back up`, { vm: vm.name });
    return vm.disks;
  }
  return diskKeys.map((key) => {
    const disk = vm.disks.find((d) => d.key === key);
    if (!disk) {
      const keys = vm.disks.map((d) => `${d.key} (${d.label})`).join(', ');
      throw new BackupError('BACKUP_NO_SUCH_DISK', `VM "${vm.name}" has no disk ${key}; its disks: ${keys}`, { vm: vm.name, diskKey: key });
    }
    return disk;
  });
}

/** Per device key, the newest restore point of this VM holding that disk, as a copy baseline. */
async function findBaselines(repository: Repository, vmId: string, keys: readonly number[]): Promise<Map<number, { pointId: string; baseline: CopyBaseline }>> {
  const found = new Map<number, { pointId: string; baseline: CopyBaseline }>();
  const points = (await repository.listRestorePoints()).filter((p) => p.vm.id === vmId).reverse();
  const manifests = new Map<string, RestorePointManifest>();
  for (const key of keys) {
    const point = points.find((p) => p.disks.some((d) => d.deviceKey === key));
    if (!point) continue;
    let manifest = manifests.get(point.id);
    if (!manifest) manifests.set(point.id, (manifest = await repository.readManifest(point.id)));
    const vm = backedUpVm(manifest);
    const disk = manifest.disks.find((d) => d.deviceKey === key) as DiskRecord;
    found.set(key, {
      pointId: point.id,
      baseline: { server: vm.server, vm: { name: vm.name, moref: vm.moref, instanceUuid: vm.instanceUuid }, deviceKey: key, capacityBytes: disk.capacityBytes, changeId: disk.changeId },
    });
  }
  return found;
}

export async function backup(options: BackupOptions): Promise<BackupResult> {
  const started = performance.now();
  const { session, repository } = options;
  const log = options.onEvent ?? (() => {});
  const prepared = await prepareVm(session, options.vm, {
    log,
    resetCbtOnResize: options.resetCbtOnResize,
    // Read without the restore point's lock: only capacities are compared here; the baselines
    // used for the copy are read again under the lock below.
    baselines: async (found) => {
      const id = backupVmId(session.server, { moref: found.moref.value, instanceUuid: found.instanceUuid ?? null });
      const keys = selectDisks(found, options.diskKeys).map((d) => d.key);
      const baselines = await findBaselines(repository, id, keys);
      return new Map(keys.map((key) => [key, baselines.get(key)?.baseline]));
    },
  });
  const { vm } = prepared;
  const selected = selectDisks(vm, options.diskKeys);
  const identity = { moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null };
  const backedUp: BackedUpVm = { id: backupVmId(session.server, identity), name: vm.name, ...identity, server: session.server };

  const datacenter = (await datacenterOf(session, vm.moref)).name;
  const point = await withSnapshot(session, vm, { purpose: 'backup', quiesce: options.quiesce }, async (snapshot) => {
    const info = (await listSnapshots(session, vm)).find((s) => s.moref.value === snapshot.value);
    const snapshotRecord: BackupSnapshot = { moref: snapshot.value, name: info?.name ?? '', createTime: info?.createTime ?? '', quiesced: info?.quiesced ?? false };
    log(`snapshot ${snapshot.value} "${snapshotRecord.name}" taken of VM "${vm.name}"`);
    const snapshotDisks = await readSnapshotDisks(session, vm, snapshot);
    const vmConfig: VmConfigSummary = {
      powerState: vm.powerState,
      cbtEnabled: vm.cbtEnabled,
      disks: snapshotDisks.map((d) => ({
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
    };
    const writer = await repository.beginRestorePoint({ vm: { ...backedUp }, source: { server: session.server, datacenter }, snapshot: snapshotRecord, vmConfig });
    try {
      // Under the restore point's shared lock: prune cannot delete a baseline while we use it.
      const baselines = await findBaselines(repository, backedUp.id, selected.map((d) => d.key));
      const disks: DiskBackupResult[] = [];
      for (const wanted of selected) {
        const disk = snapshotDisks.find((d) => d.key === wanted.key);
        if (!disk) throw new BackupError('BACKUP_NO_SUCH_DISK', `snapshot ${snapshot.value} of VM "${vm.name}" has no disk ${wanted.key}`, { vm: vm.name, diskKey: wanted.key });
        disks.push(await backupDisk(options, { vm, snapshot, disk, datacenter, writer, previous: baselines.get(disk.key) }));
      }
      const pointId = await writer.commit();
      log(`restore point ${pointId} committed`);
      return { pointId, snapshot: snapshotRecord, disks };
    } catch (error) {
      await writer.abort();
      throw error;
    }
  });
  return {
    pointId: point.pointId,
    repository: repository.path,
    vm: backedUp,
    snapshot: point.snapshot,
    leftoverSnapshotsRemoved: prepared.leftoverSnapshotsRemoved,
    cbtResetReason: prepared.cbtResetReason ?? null,
    disks: point.disks,
    bytesRead: point.disks.reduce((sum, d) => sum + d.bytesRead, 0),
    bytesStored: point.disks.reduce((sum, d) => sum + d.bytesStored, 0),
    elapsedMs: performance.now() - started,
  };
}

interface DiskJob {
  vm: VmInfo;
  snapshot: MoRef;
  disk: VirtualDiskInfo;
  datacenter: string;
  writer: RestorePointWriter;
  previous: { pointId: string; baseline: CopyBaseline } | undefined;
}

async function backupDisk(options: BackupOptions, job: DiskJob): Promise<DiskBackupResult> {
  const { session, signal } = options;
  const { vm, snapshot, disk, previous } = job;
  const log = options.onEvent ?? (() => {});
  const what = `VM "${vm.name}" disk ${disk.key}`;
  const changeId = requireChangeId(vm, snapshot, disk);
  const now = { server: session.server, vm: { moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null }, deviceKey: disk.key, capacityBytes: disk.capacityBytes, changeId };
  const plan = planCopy(previous?.baseline, now, options.forceFull ?? false, {
    baseline: `restore point ${previous?.pointId ?? ''}`,
    none: 'no earlier restore point of this VM holds this disk (first backup)',
  });
  const query = { vm, snapshot, deviceKey: disk.key, capacityBytes: disk.capacityBytes, signal };
  const chosen = await areasToCopy(session, query, plan, changeId);
  try {
    return await writeDiskFrom(options, job, changeId, chosen);
  } catch (error) {
    // The previous restore point's data for this disk is unreadable: never build on it.
    const damaged = error instanceof RepositoryError && (error.code === 'REPO_MISSING' || error.code === 'REPO_CORRUPT');
    if (chosen.mode !== 'incremental' || !damaged) throw error;
    const reason = `restore point ${previous?.pointId} is damaged (${error.message}); reading everything`;
    log(`${what}: ${reason}`);
    return writeDiskFrom(options, job, changeId, await areasToCopy(session, query, { mode: 'full', reason }, changeId));
  }
}

async function writeDiskFrom(options: BackupOptions, job: DiskJob, changeId: string, chosen: AreasToCopy): Promise<DiskBackupResult> {
  const { session, signal } = options;
  const { vm, snapshot, disk, previous } = job;
  const { mode, reason, areas } = chosen;
  const log = options.onEvent ?? (() => {});
  const areaBytes = totalBytes(areas);
  log(`VM "${vm.name}" disk ${disk.key}: ${mode} (${reason}); ${areas.length} areas, ${areaBytes} bytes to read`);

  const source = await openSnapshotDisk({ session, vm, snapshot, disk, datacenter: job.datacenter, signal }, options.transport);
  let record: DiskRecord;
  try {
    let doneBytes = 0;
    const reader = {
      read: async (offsetBytes: number, target: Uint8Array) => {
        await source.read(offsetBytes, target, signal);
        options.onProgress?.(disk.key, (doneBytes += target.length), areaBytes);
      },
    };
    const common = { deviceKey: disk.key, label: disk.label, capacityBytes: disk.capacityBytes, changeId, reader, signal };
    record = mode === 'incremental' && previous
      ? await job.writer.writeDisk({ ...common, previous: { pointId: previous.pointId, deviceKey: disk.key }, changedAreas: areas })
      : await job.writer.writeDisk({ ...common, allocatedAreas: areas });
  } finally {
    await source.close();
  }
  return {
    deviceKey: disk.key,
    label: disk.label,
    capacityBytes: disk.capacityBytes,
    mode,
    reason,
    basedOn: record.basedOn?.pointId ?? null,
    areas: areas.length,
    areaBytes,
    changeId,
    ...record.stats,
  };
}
