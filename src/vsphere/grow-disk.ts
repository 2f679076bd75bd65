// Growing a VM's virtual disk (ReconfigVM_Task editing the VirtualDisk's capacity), as an
// administrator does in Edit Settings. vSphere refuses to shrink a disk and to grow one that
// has snapshots; a replica VM's disk is grown to follow its source's.
import type { VirtualDiskInfo, VmIdentity } from './inventory.ts';
import type { VsphereSession } from './session.ts';
import { runTask } from './tasks.ts';

/** Grows `disk` of `vm` to `capacityBytes` (a multiple of 1024). `diskMode` is the backing's mode (persistent, ...). */
export async function growDisk(session: VsphereSession, vm: VmIdentity, disk: VirtualDiskInfo, capacityBytes: number, diskMode: string, signal?: AbortSignal): Promise<void> {
  const device = {
    $type: 'VirtualDisk',
    key: disk.key,
    deviceInfo: { label: disk.label, summary: disk.label },
    backing: { $type: disk.backingType, fileName: disk.fileName, diskMode },
    controllerKey: disk.controllerKey,
    unitNumber: disk.unitNumber,
    capacityInKB: Math.ceil(capacityBytes / 1024),
    capacityInBytes: capacityBytes,
  };
  const spec = { $type: 'VirtualMachineConfigSpec', deviceChange: [{ $type: 'VirtualDeviceConfigSpec', operation: 'edit', device }] };
  await runTask(session, 'ReconfigVM_Task', vm.moref, { spec }, { target: { vm: { name: vm.name, moref: vm.moref.value }, diskKey: disk.key }, signal });
}
