// Turning Changed Block Tracking on and off. The VM setting (`config.changeTrackingEnabled`)
// is changed with ReconfigVM_Task; a powered-on VM applies it only at its next stun/unstun,
// which a snapshot create + remove provides. Reset = disable, stun/unstun, enable,
// stun/unstun: afterwards every earlier ChangeId is void (a new tracking epoch).
import { retrieveOne } from './property-collector.ts';
import { createSnapshot, removeSnapshot } from './snapshots.ts';
import { runTask, type TaskProgress } from './tasks.ts';
import type { VmIdentity } from './inventory.ts';
import type { VsphereSession } from './session.ts';

export interface CbtOptions {
  onProgress?: (progress: TaskProgress) => void;
}

function vmTarget(vm: VmIdentity) {
  return { vm: { name: vm.name, moref: vm.moref.value } };
}

async function isPoweredOn(session: VsphereSession, vm: VmIdentity): Promise<boolean> {
  const props = await retrieveOne(session, vm.moref, ['runtime.powerState'], { target: vmTarget(vm), idempotent: true });
  return props.get('runtime.powerState')?.text.trim() === 'poweredOn';
}

/** A snapshot create + remove: the stun/unstun that makes a CBT change take effect. */
async function stunCycle(session: VsphereSession, vm: VmIdentity, options: CbtOptions): Promise<void> {
  const snapshot = await createSnapshot(session, vm, { purpose: 'cbt-stun', onProgress: options.onProgress });
  await removeSnapshot(session, vm, snapshot, options);
}

async function setCbt(session: VsphereSession, vm: VmIdentity, enabled: boolean, options: CbtOptions): Promise<void> {
  const spec = { $type: 'VirtualMachineConfigSpec', changeTrackingEnabled: enabled };
  await runTask(session, 'ReconfigVM_Task', vm.moref, { spec }, { target: vmTarget(vm), onProgress: options.onProgress });
  if (await isPoweredOn(session, vm)) await stunCycle(session, vm, options);
}

export function enableCbt(session: VsphereSession, vm: VmIdentity, options: CbtOptions = {}): Promise<void> {
  return setCbt(session, vm, true, options);
}

export function disableCbt(session: VsphereSession, vm: VmIdentity, options: CbtOptions = {}): Promise<void> {
  return setCbt(session, vm, false, options);
}

/** Voids every earlier ChangeId; the next backup of each disk must be a full one. */
export async function resetCbt(session: VsphereSession, vm: VmIdentity, options: CbtOptions = {}): Promise<void> {
  await setCbt(session, vm, false, options);
  await setCbt(session, vm, true, options);
}
