// Replicating onto a VM (`vcbt replicate --to-vm DEST`): the seed's own flow. The targets are
// the disks of another VM, DEST, matched by device key and written through a writable NBD
// export of its live disks (`--to-nbd-uri TEMPLATE`: nbdkit-vddk without a snapshot, or the
// lab's live endpoint), which vSphere allows only while DEST is powered off.
//
// Replica state on DEST itself: each target disk's state (replica-state.ts, the same JSON
// document as a state file) is kept in DEST's extraConfig under `vcbt.replica.disk.<key>`
// (REPLICA_STATE_KEY_PREFIX), written by ReconfigVM_Task. So the replica state lives and dies
// with the replica: losing the host that runs vcbt loses nothing, and a DEST that does not
// match (another source, another disk size, no state, a voided ChangeId) is copied in full
// with the copy plan's reason (copy-plan.ts).
import type { VirtualDiskInfo, VmInfo, VsphereSession } from '../vsphere/vsphere.ts';
import { readExtraConfig, setExtraConfig } from '../vsphere/vsphere.ts';
import { parseReplicaState, ReplicateError, type ReplicaState } from './replica-state.ts';
import { expandNbdTemplate } from './snapshot-source.ts';

/** extraConfig key prefix of the per-disk replica states on DEST. */
export const REPLICA_STATE_KEY_PREFIX = 'vcbt.replica.disk.';

export function replicaStateKey(deviceKey: number): string {
  return `${REPLICA_STATE_KEY_PREFIX}${deviceKey}`;
}

/** Where a disk's state lives, for messages and results: `VM "x" (vm-60) extraConfig vcbt.replica.disk.2000`. */
export function replicaStateWhere(vm: Pick<VmInfo, 'name' | 'moref'>, deviceKey: number): string {
  return `VM "${vm.name}" (${vm.moref.value}) extraConfig ${replicaStateKey(deviceKey)}`;
}

/** Every replica state recorded on DEST, by device key. A state that does not parse is REPLICA_STATE_CORRUPT. */
export async function readVmReplicaStates(session: VsphereSession, vm: VmInfo): Promise<Map<number, ReplicaState>> {
  const states = new Map<number, ReplicaState>();
  for (const [key, text] of await readExtraConfig(session, vm, REPLICA_STATE_KEY_PREFIX)) {
    const deviceKey = Number(key.slice(REPLICA_STATE_KEY_PREFIX.length));
    if (!Number.isSafeInteger(deviceKey)) continue;
    const where = replicaStateWhere(vm, deviceKey);
    states.set(deviceKey, parseReplicaState(text, where, `remove the option (vcbt replicate --full copies everything and rewrites it)`));
  }
  return states;
}

/** Records one disk's state on DEST (one ReconfigVM_Task). */
export async function saveVmReplicaState(session: VsphereSession, vm: VmInfo, state: ReplicaState, signal?: AbortSignal): Promise<void> {
  await setExtraConfig(session, vm, new Map([[replicaStateKey(state.deviceKey), JSON.stringify(state)]]), signal);
}

/** DEST must be off: its disks are written through an export vSphere opens only then. */
export function requirePoweredOff(vm: VmInfo, what: string): void {
  if (vm.powerState === 'poweredOff') return;
  throw new ReplicateError(
    'VM_POWERED_ON',
    `VM "${vm.name}" is ${vm.powerState}: ${what} writes its disks, which needs it powered off (a powered-on replica is a failover: it no longer follows its source)`,
    { vm: vm.name, powerState: vm.powerState },
  );
}

/** DEST's disk for each source disk, by device key; its writable NBD URI from the template. */
export function matchDestDisks(source: VmInfo, sourceDisks: readonly VirtualDiskInfo[], dest: VmInfo, template: string): Map<number, { disk: VirtualDiskInfo; uri: string }> {
  if (dest.moref.value === source.moref.value) {
    throw new ReplicateError('REPLICATE_TARGET', `--to-vm names the source VM "${source.name}" itself`, { vm: source.name });
  }
  const matched = new Map<number, { disk: VirtualDiskInfo; uri: string }>();
  for (const disk of sourceDisks) {
    const target = dest.disks.find((d) => d.key === disk.key);
    if (!target) {
      throw new ReplicateError(
        'REPLICATE_TARGET',
        `VM "${dest.name}" has no disk ${disk.key} to hold disk ${disk.key} of "${source.name}" (it has ${dest.disks.map((d) => d.key).join(', ') || 'none'}); a replica VM has the source's disks with the same device keys (--create makes one)`,
        { vm: dest.name, deviceKey: disk.key },
      );
    }
    const uri = expandNbdTemplate(template, { vm: dest, snapshot: { type: 'VirtualMachineSnapshot', value: '' }, disk: target });
    matched.set(disk.key, { disk: target, uri });
  }
  return matched;
}
