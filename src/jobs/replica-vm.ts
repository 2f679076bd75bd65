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
//
// `--create`: when no VM is named DEST, it is made from the source's configuration
// (CreateVM_Task, vsphere/create-vm.ts: same hardware, empty disks with the same keys and
// capacities), powered off, placed as the flags say or next to the source, and marked as a
// replica: its annotation says so and its extraConfig names the source
// (`vcbt.replica.source`). A VM named DEST that carries no vcbt replica option is somebody
// else's VM: VM_EXISTS (vcbt never writes over it because of --create).
//
// A source disk that grew: DEST's disk is grown to the same capacity before the snapshot
// (growReplicaDisks); the copy plan then copies it in full (CAPACITY_CHANGED). A DEST disk
// larger than its source's is refused (REPLICATE_TARGET_SIZE): vcbt never shrinks a disk.
import type { PlacementRequest, VirtualDiskInfo, VmInfo, VmSelector, VsphereSession } from '../vsphere/vsphere.ts';
import { createVm, findVm, growDisk, readExtraConfig, readVm, readVmConfig, resolvePlacementNear, setExtraConfig, VsphereError } from '../vsphere/vsphere.ts';
import { parseDatastorePath } from '../vmdk/descriptor.ts';
import { parseReplicaState, ReplicateError, type ReplicaState } from './replica-state.ts';
import { expandNbdTemplate } from './snapshot-source.ts';

/** extraConfig key prefix of every vcbt replica option. */
export const REPLICA_KEY_PREFIX = 'vcbt.replica.';
/** extraConfig key prefix of the per-disk replica states on DEST. */
export const REPLICA_STATE_KEY_PREFIX = `${REPLICA_KEY_PREFIX}disk.`;
/** extraConfig key naming the source of a VM made by --create: `{"server","vm":{name,moref,instanceUuid}}`. */
export const REPLICA_SOURCE_KEY = `${REPLICA_KEY_PREFIX}source`;

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

/** How to make DEST when it does not exist (`--create`). */
export interface CreateReplicaOptions {
  /** Placement flags; the datastore defaults to the source's (of its .vmx). */
  placement: Omit<PlacementRequest, 'datastore'> & { datastore?: string };
}

/**
 * DEST by name; with `create`, made from the source when no VM has the name (and refused
 * when the VM of that name is not a vcbt replica). Resolves to DEST and whether it was made.
 */
export async function findOrCreateReplicaVm(
  session: VsphereSession,
  source: VmInfo,
  dest: VmSelector,
  create: CreateReplicaOptions | undefined,
  log: (line: string) => void,
  signal?: AbortSignal,
): Promise<{ vm: VmInfo; created: boolean }> {
  let found: VmInfo | undefined;
  try {
    found = await findVm(session, dest);
  } catch (error) {
    if (!create || !(error instanceof VsphereError) || error.code !== 'VM_NOT_FOUND') throw error;
  }
  if (found) {
    if (create && (await readExtraConfig(session, found, REPLICA_KEY_PREFIX)).size === 0) {
      throw new ReplicateError('VM_EXISTS', `a VM named "${found.name}" (${found.moref.value}) exists and is not a vcbt replica; --create never writes over another VM (choose another --to-vm name)`, { vm: found.name });
    }
    return { vm: found, created: false };
  }
  if (!('name' in dest)) throw new ReplicateError('REPLICATE_TARGET', '--create needs --to-vm NAME (a name for the new VM, not a moref, UUID or path)', {});
  const config = await readVmConfig(session, source.moref, source);
  const datastore = create?.placement.datastore ?? parseDatastorePath(config.vmPathName).datastore;
  const placement = await resolvePlacementNear(session, source.moref, { ...create?.placement, datastore });
  const sourceRef = { server: session.server, vm: { name: source.name, moref: source.moref.value, instanceUuid: source.instanceUuid ?? null } };
  log(`creating VM "${dest.name}" from the configuration of "${source.name}" on datastore "${datastore}" (${config.disks.length} empty disks)`);
  const moref = await createVm(
    session,
    placement,
    {
      name: dest.name,
      config,
      annotation: `Replica of VM "${source.name}" (${source.moref.value}${source.instanceUuid ? `, ${source.instanceUuid}` : ''}) on ${session.server}, kept by vcbt replicate. Powering it on is a failover: it stops following its source.`,
      extraConfig: new Map([[REPLICA_SOURCE_KEY, JSON.stringify(sourceRef)]]),
      thin: true,
    },
    signal,
  );
  return { vm: await readVm(session, moref), created: true };
}

/**
 * DEST's disks smaller than their source disks grown to the source's capacity (a source
 * disk grew since DEST was made). Resolves to DEST as it is now.
 */
export async function growReplicaDisks(session: VsphereSession, dest: VmInfo, sourceDisks: readonly VirtualDiskInfo[], log: (line: string) => void, signal?: AbortSignal): Promise<VmInfo> {
  const smaller = sourceDisks.flatMap((disk) => {
    const target = dest.disks.find((d) => d.key === disk.key);
    return target && target.capacityBytes < disk.capacityBytes ? [{ target, capacityBytes: disk.capacityBytes }] : [];
  });
  if (smaller.length === 0) return dest;
  const config = await readVmConfig(session, dest.moref, dest);
  for (const { target, capacityBytes } of smaller) {
    log(`growing disk ${target.key} of replica VM "${dest.name}" from ${target.capacityBytes} to ${capacityBytes} bytes (its source disk grew)`);
    const mode = config.disks.find((d) => d.key === target.key)?.mode ?? 'persistent';
    await growDisk(session, dest, target, capacityBytes, mode, signal);
  }
  return readVm(session, dest.moref);
}
