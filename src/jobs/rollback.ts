// The in-place rollback job (`vcbt restore --in-place`): puts disks of a restore point back
// into the VM they came from, writing only what can differ.
//
// - powered off: the VM's disks are written through a writable NBD export of the live disk
//   (`--nbd-uri TEMPLATE`, as nbdkit-vddk or the lab's live endpoint serve it), which vSphere
//   allows only while the VM is off: VM_POWERED_ON, unless `powerOff` powers it off first.
// - changed areas: when the disk is still in the CBT epoch of the restore point (same VM,
//   same capacity, the point's ChangeId accepted), QueryChangedDiskAreas on the powered-off VM
//   (no snapshot needed) since the point's ChangeId lists every area written since the point's
//   snapshot; everything else is still as the point holds it. Only those areas are written
//   back (zero chunks as zero writes). The writes are tracked by CBT like any other, so the
//   next backup's incremental (since its newest restore point) includes them.
// - full: otherwise (another VM, capacity changed, no ChangeId, ChangeId refused, CBT off)
//   every byte of the disk is written from the restore point; the reason code and prose are
//   the copy plan's (copy-plan.ts, copy-reason.ts).
import { VcbtError } from '../errors.ts';
import type { Extent } from '../extents/extent.ts';
import type { Repository } from '../repository/repository.ts';
import type { RestoredDisk } from '../repository/restored-disk.ts';
import type { Disk } from '../transport/disk.ts';
import { openDisk } from '../transport/open-disk.ts';
import {
  ChangeIdInvalidError,
  diskByKey,
  findVm,
  queryChangedAreas,
  readVm,
  runTask,
  type VirtualDiskInfo,
  type VmInfo,
  type VmSelector,
  type VsphereSession,
} from '../vsphere/vsphere.ts';
import type { CopyReasonCode } from './copy-reason.ts';
import { planCopy, type CopyBaseline } from './copy-plan.ts';
import { RestoreError } from './restore.ts';
import { backedUpVm } from './restore-points.ts';
import { diskNow } from './snapshot-job.ts';
import { expandNbdTemplate, TransportError, type TransportOptions } from './snapshot-source.ts';

/** Codes: VM_POWERED_ON. */
export class RollbackError extends VcbtError {}

/** Largest piece read from the restore point and written at once. */
const pieceBytes = 1 << 20;

export interface RollbackOptions {
  session: VsphereSession;
  repository: Repository;
  pointId: string;
  vm: VmSelector;
  /** Device keys to roll back (default: every disk of the restore point). */
  diskKeys?: readonly number[];
  /** Only `nbd` with `nbdUriTemplate` ({vm} {disk} {file} {datastore} of the live disk). */
  transport: TransportOptions;
  /** Power the VM off first when it is on (otherwise VM_POWERED_ON). */
  powerOff?: boolean;
  signal?: AbortSignal;
  onEvent?: (line: string) => void;
  onProgress?: (deviceKey: number, doneBytes: number, totalBytes: number) => void;
}

export interface DiskRollbackResult {
  key: number;
  label: string;
  target: string;
  mode: 'changed-areas' | 'full';
  reasonCode: CopyReasonCode;
  reason: string;
  capacityBytes: number;
  /** Areas written (changed-areas mode; 1 for a full write). */
  areas: number;
  /** Bytes written to the disk, zero writes included. */
  bytesWritten: number;
}

export interface RollbackResult {
  pointId: string;
  vm: { name: string; moref: string; instanceUuid: string | null };
  /** The VM was powered off by this rollback (`powerOff`). */
  poweredOff: boolean;
  disks: DiskRollbackResult[];
  elapsedMs: number;
}

type DiskPlan = { mode: 'changed-areas'; reasonCode: CopyReasonCode; reason: string; areas: Extent[] } | { mode: 'full'; reasonCode: CopyReasonCode; reason: string };

/** The VM powered off (VM_POWERED_ON, or power it off when allowed). */
async function poweredOffVm(session: VsphereSession, vm: VmInfo, options: RollbackOptions): Promise<{ vm: VmInfo; poweredOff: boolean }> {
  if (vm.powerState === 'poweredOff') return { vm, poweredOff: false };
  if (!options.powerOff) {
    throw new RollbackError('VM_POWERED_ON', `VM "${vm.name}" is ${vm.powerState}: an in-place restore writes its disks, which needs it powered off (power it off, or add --power-off)`, { vm: vm.name, powerState: vm.powerState });
  }
  options.onEvent?.(`powering off VM "${vm.name}"`);
  await runTask(session, 'PowerOffVM_Task', vm.moref, {}, { target: { vm: { name: vm.name, moref: vm.moref.value } }, signal: options.signal });
  return { vm: await readVm(session, vm.moref), poweredOff: true };
}

/** Changed areas since the point's ChangeId, or a full write and why. */
async function planDisk(session: VsphereSession, vm: VmInfo, disk: VirtualDiskInfo, baseline: CopyBaseline, pointId: string, signal?: AbortSignal): Promise<DiskPlan> {
  const words = { baseline: `restore point ${pointId}`, none: `restore point ${pointId} does not hold this disk` };
  const plan = planCopy(baseline, diskNow(session, vm, disk), false, words);
  if (plan.mode === 'full') return plan;
  const refused = (why: string): DiskPlan => ({ mode: 'full', reasonCode: 'CHANGEID_REFUSED', reason: `${why}; writing the whole disk` });
  if (!disk.changeId) return refused('CBT is not active on the disk now, so the changes since the restore point are unknown');
  try {
    const areas = await queryChangedAreas(session, { vm, deviceKey: disk.key, capacityBytes: disk.capacityBytes, changeId: plan.sinceChangeId, currentChangeId: disk.changeId, signal });
    return { mode: 'changed-areas', reasonCode: 'CHANGES_SINCE', reason: `areas changed since the restore point's ChangeId ${plan.sinceChangeId}`, areas };
  } catch (error) {
    if (!(error instanceof ChangeIdInvalidError)) throw error;
    return refused(`the server refused the restore point's ChangeId (${error.message})`);
  }
}

/**
 * Writes the extents of the restore point onto the target: data as writes, zero chunks as
 * zero writes, or not at all with `skipZeroes` (a target known to read as zeros: a new disk).
 */
export async function writeAreas(restored: RestoredDisk, target: Disk, areas: readonly Extent[], progress: (bytes: number) => void, signal?: AbortSignal, skipZeroes = false): Promise<void> {
  const buffer = new Uint8Array(pieceBytes);
  for (const area of areas) {
    for (const part of await restored.allocation(area)) {
      if (part.zero && skipZeroes) continue;
      if (part.zero) {
        await target.writeZeroes(part.offsetBytes, part.lengthBytes, signal);
        progress(part.lengthBytes);
        continue;
      }
      for (let at = part.offsetBytes; at < part.offsetBytes + part.lengthBytes; at += pieceBytes) {
        const piece = buffer.subarray(0, Math.min(pieceBytes, part.offsetBytes + part.lengthBytes - at));
        await restored.read(at, piece);
        await target.write(at, piece, signal);
        progress(piece.length);
      }
    }
  }
}

async function rollbackDisk(options: RollbackOptions, vm: VmInfo, disk: VirtualDiskInfo, baseline: CopyBaseline): Promise<DiskRollbackResult> {
  const { session, signal } = options;
  const template = options.transport.nbdUriTemplate ?? '';
  const target = expandNbdTemplate(template, { vm, snapshot: { type: 'VirtualMachineSnapshot', value: '' }, disk });
  const restored = await options.repository.openDisk(options.pointId, disk.key);
  try {
    const plan = await planDisk(session, vm, disk, baseline, options.pointId, signal);
    const writer = await openDisk(target, { writable: true, signal });
    let written = 0;
    let closed = false;
    try {
      if (writer.sizeBytes < restored.sizeBytes) {
        throw new RestoreError('RESTORE_TARGET_SIZE', `disk ${disk.key} of VM "${vm.name}" (${target}) has ${writer.sizeBytes} bytes, less than the restore point's ${restored.sizeBytes}`, { target, targetBytes: writer.sizeBytes, capacityBytes: restored.sizeBytes });
      }
      const areas = plan.mode === 'full' ? [{ offsetBytes: 0, lengthBytes: restored.sizeBytes }] : plan.areas.map((a) => ({ offsetBytes: a.offsetBytes, lengthBytes: Math.min(a.lengthBytes, restored.sizeBytes - a.offsetBytes) }));
      const totalBytes = areas.reduce((sum, a) => sum + a.lengthBytes, 0);
      options.onEvent?.(`disk ${disk.key}: ${plan.mode} (${plan.reason}): ${areas.length} areas, ${totalBytes} bytes`);
      await writeAreas(restored, writer, areas, (bytes) => options.onProgress?.(disk.key, (written += bytes), totalBytes), signal);
      await writer.flush(signal);
      closed = true;
      await writer.close();
      return { key: disk.key, label: disk.label, target, mode: plan.mode, reasonCode: plan.reasonCode, reason: plan.reason, capacityBytes: restored.sizeBytes, areas: areas.length, bytesWritten: written };
    } catch (error) {
      if (!closed) await writer.close().catch(() => undefined);
      if (error instanceof RestoreError || written === 0) throw error;
      const cause = error as { code?: string; message?: string };
      throw new RestoreError(
        'RESTORE_TARGET_PARTIAL',
        `rolling back disk ${disk.key} of VM "${vm.name}" failed after it started writing; the disk is partially written (roll back again): ${cause.code ?? 'ERROR'}: ${cause.message ?? String(error)}`,
        { target, vm: vm.name, diskKey: disk.key, causeCode: cause.code },
        { cause: error },
      );
    }
  } finally {
    await restored.close();
  }
}

export async function rollback(options: RollbackOptions): Promise<RollbackResult> {
  const started = performance.now();
  const { session } = options;
  if (options.transport.transport !== 'nbd' || !options.transport.nbdUriTemplate) {
    throw new TransportError('TRANSPORT_OPTIONS', 'an in-place restore writes through --transport nbd --nbd-uri TEMPLATE (a writable export of the live disk: {vm} {disk} {file} {datastore})', { transport: options.transport.transport });
  }
  if (options.transport.nbdUriTemplate.includes('{snapshot}')) {
    throw new TransportError('TRANSPORT_OPTIONS', `an in-place restore writes the live disk, which has no {snapshot}: --nbd-uri "${options.transport.nbdUriTemplate}"`, { template: options.transport.nbdUriTemplate });
  }
  // The restore point first: an unknown point or disk never touches the VM.
  const manifest = await options.repository.readManifest(options.pointId);
  const pointVm = backedUpVm(manifest);
  const keys = options.diskKeys && options.diskKeys.length > 0 ? options.diskKeys : manifest.disks.map((d) => d.deviceKey);
  const records = keys.map((key) => {
    const record = manifest.disks.find((d) => d.deviceKey === key);
    if (!record) throw new RestoreError('REPO_DISK_NOT_FOUND', `restore point ${options.pointId} has no disk ${key} (it has ${manifest.disks.map((d) => d.deviceKey).join(', ')})`, { pointId: options.pointId, deviceKey: key });
    return record;
  });
  const found = await findVm(session, options.vm);
  const { vm, poweredOff } = await poweredOffVm(session, found, options);
  const disks: DiskRollbackResult[] = [];
  for (const record of records) {
    const disk = diskByKey(session, vm, vm.disks, record.deviceKey);
    const baseline: CopyBaseline = {
      server: pointVm.server,
      vm: { name: pointVm.name, moref: pointVm.moref, instanceUuid: pointVm.instanceUuid },
      deviceKey: record.deviceKey,
      capacityBytes: record.capacityBytes,
      changeId: record.changeId,
    };
    disks.push(await rollbackDisk(options, vm, disk, baseline));
  }
  return { pointId: options.pointId, vm: { name: vm.name, moref: vm.moref.value, instanceUuid: vm.instanceUuid ?? null }, poweredOff, disks, elapsedMs: performance.now() - started };
}
