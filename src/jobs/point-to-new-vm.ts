// Writing a restore point onto a VM made for it (the `--transport nbd` path of restore-vm:
// CreateVM_Task with empty disks of the point's capacities, vsphere/create-vm.ts, then this).
// Each disk of the point goes to the VM's disk with the same device key through a writable
// NBD export of the VM's live disks (`{vm} {disk} {file} {datastore}`, as for an in-place
// rollback), and only the chunks that hold data are written: the new disks read as zeros,
// so a zero chunk needs no write at all (rollback.ts writes them; a new disk does not).
//
// The VM must be powered off (VM_POWERED_ON) and must have every disk of the point with at
// least its capacity (RESTORE_TARGET_SIZE, REPO_DISK_NOT_FOUND name what is missing).
import type { Repository } from '../repository/repository.ts';
import { openDisk } from '../transport/open-disk.ts';
import { diskByKey, type VmInfo, type VsphereSession } from '../vsphere/vsphere.ts';
import { requirePoweredOff } from './replica-vm.ts';
import { RestoreError } from './restore.ts';
import { writeAreas } from './rollback.ts';
import { expandNbdTemplate } from './snapshot-source.ts';

export interface PointToNewVmOptions {
  session: VsphereSession;
  repository: Repository;
  pointId: string;
  /** The VM just made for the point, read after its creation (its disks, power state). */
  vm: VmInfo;
  /** Writable NBD export of the VM's live disks. */
  nbdUriTemplate: string;
  signal?: AbortSignal;
  onProgress?: (deviceKey: number, doneBytes: number, totalBytes: number) => void;
}

export interface PointDiskWritten {
  key: number;
  capacityBytes: number;
  /** Bytes of data written (zero chunks are not written). */
  bytesWritten: number;
}

/** Writes every disk of the point onto the new VM's disks of the same keys, data chunks only. */
export async function writePointToNewVm(options: PointToNewVmOptions): Promise<PointDiskWritten[]> {
  const { session, repository, pointId, vm, signal } = options;
  requirePoweredOff(vm, 'writing a restore point onto it');
  const manifest = await repository.readManifest(pointId);
  const written: PointDiskWritten[] = [];
  for (const record of manifest.disks) {
    const disk = diskByKey(session, vm, vm.disks, record.deviceKey);
    const target = expandNbdTemplate(options.nbdUriTemplate, { vm, snapshot: { type: 'VirtualMachineSnapshot', value: '' }, disk });
    const restored = await repository.openDisk(pointId, record.deviceKey);
    try {
      const writer = await openDisk(target, { writable: true, signal });
      try {
        if (writer.sizeBytes < restored.sizeBytes) {
          throw new RestoreError('RESTORE_TARGET_SIZE', `disk ${disk.key} of VM "${vm.name}" (${target}) has ${writer.sizeBytes} bytes, less than the restore point's ${restored.sizeBytes}`, { target, targetBytes: writer.sizeBytes, capacityBytes: restored.sizeBytes });
        }
        let done = 0;
        await writeAreas(restored, writer, [{ offsetBytes: 0, lengthBytes: restored.sizeBytes }], (bytes) => options.onProgress?.(disk.key, (done += bytes), restored.sizeBytes), signal, true);
        await writer.flush(signal);
        written.push({ key: disk.key, capacityBytes: restored.sizeBytes, bytesWritten: done });
      } finally {
        await writer.close();
      }
    } finally {
      await restored.close();
    }
  }
  return written;
}
