// Inventory: finding a VM (by name, inventory path, moref or instance UUID) and reading
// what a backup needs about it: power state, CBT state and its virtual disks (device key,
// label, capacity, backing file, backing chain, ChangeId). A snapshot's disks are read the
// same way from the snapshot's own `config.hardware.device`, which names the frozen files
// and carries the ChangeId to keep for the next incremental.
import { UsageError } from '../errors.ts';
import { asMoRef, child, children, longOf, moRef, optionalLong, optionalMoRef, optionalText, parseBoolean, requireChild, requireText, withTarget, type MoRef } from './decode.ts';
import { VsphereError, isVsphereFault } from './errors.ts';
import { retrieveAllOfType, retrieveOne } from './property-collector.ts';
import { returnValues } from './soap.ts';
import type { VsphereSession } from './session.ts';
import type { XmlElement } from './xml.ts';

export type PowerState = 'poweredOn' | 'poweredOff' | 'suspended';

export interface VirtualDiskInfo {
  key: number;
  label: string;
  capacityBytes: number;
  /** `[datastore] folder/vm.vmdk` of the top of the chain (the delta while a snapshot exists). */
  fileName: string;
  datastore: MoRef | undefined;
  /** vim25 backing type, e.g. VirtualDiskFlatVer2BackingInfo. */
  backingType: string;
  /** Absent when CBT is off for this disk. */
  changeId: string | undefined;
  /** File names from this backing down through `parent` to the base disk. */
  backingChain: string[];
  controllerKey: number | undefined;
  unitNumber: number | undefined;
}

/** Enough to name a VM in messages and calls. */
export interface VmIdentity {
  moref: MoRef;
  name: string;
}

export interface VmInfo extends VmIdentity {
  instanceUuid: string | undefined;
  powerState: PowerState;
  cbtEnabled: boolean;
  consolidationNeeded: boolean;
  disks: VirtualDiskInfo[];
}

export type VmSelector = { moref: string } | { name: string } | { path: string } | { instanceUuid: string };

export const vmProperties = ['name', 'config.instanceUuid', 'runtime.powerState', 'config.changeTrackingEnabled', 'config.hardware.device', 'runtime.consolidationNeeded'];
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `--vm` text to a selector: `moref:vm-10`, `uuid:…`, `path:DC/vm/x`, `name:x` explicitly;
 * otherwise `vm-<digits>` is a moref, a UUID is an instance UUID, text with `/` an inventory
 * path, anything else a name.
 */
export function parseVmSelector(text: string): VmSelector {
  const match = /^(moref|uuid|path|name):(.+)$/.exec(text);
  if (match) {
    const value = match[2];
    if (match[1] === 'moref') return { moref: value };
    if (match[1] === 'uuid') return { instanceUuid: value };
    if (match[1] === 'path') return { path: value };
    return { name: value };
  }
  if (text === '') throw new UsageError('--vm is empty');
  if (/^vm-\d+$/.test(text)) return { moref: text };
  if (uuidPattern.test(text)) return { instanceUuid: text };
  if (text.includes('/')) return { path: text };
  return { name: text };
}

function describeSelector(selector: VmSelector): string {
  if ('moref' in selector) return `moref ${selector.moref}`;
  if ('instanceUuid' in selector) return `instance UUID ${selector.instanceUuid}`;
  if ('path' in selector) return `inventory path "${selector.path}"`;
  return `name "${selector.name}"`;
}

function notFound(session: VsphereSession, selector: VmSelector): VsphereError {
  return new VsphereError('VM_NOT_FOUND', `no VM with ${describeSelector(selector)}`, session.target(), { selector });
}

/** Resolves a selector to exactly one VM and reads it. */
export async function findVm(session: VsphereSession, selector: VmSelector): Promise<VmInfo> {
  const vm = await resolveVm(session, selector);
  return readVm(session, vm);
}

async function resolveVm(session: VsphereSession, selector: VmSelector): Promise<MoRef> {
  const { searchIndex } = session.serviceContent;
  if ('moref' in selector) return moRef('VirtualMachine', selector.moref);
  if ('path' in selector) {
    const response = await session.call('FindByInventoryPath', searchIndex, { inventoryPath: selector.path }, { idempotent: true });
    const found = returnValues(response)[0];
    if (!found || asMoRef(found).type !== 'VirtualMachine') throw notFound(session, selector);
    return asMoRef(found);
  }
  if ('instanceUuid' in selector) {
    const response = await session.call('FindByUuid', searchIndex, { uuid: selector.instanceUuid, vmSearch: true, instanceUuid: true }, { idempotent: true });
    const found = returnValues(response)[0];
    if (!found) throw notFound(session, selector);
    return asMoRef(found);
  }
  const all = await retrieveAllOfType(session, 'VirtualMachine', ['name']);
  const matches = all.filter((o) => o.props.get('name')?.text === selector.name);
  if (matches.length === 0) throw notFound(session, selector);
  if (matches.length > 1) {
    const morefs = matches.map((m) => m.obj.value).join(', ');
    throw new VsphereError('VM_AMBIGUOUS', `${matches.length} VMs are named "${selector.name}" (${morefs}); select one with --vm moref:<id>`, session.target());
  }
  return matches[0].obj;
}

/** Reads one VM's state and disks. */
export async function readVm(session: VsphereSession, vm: MoRef): Promise<VmInfo> {
  const target = { vm: { name: vm.value, moref: vm.value } };
  try {
    return await withTarget(session.target(target), async () => decodeVm(vm, await retrieveOne(session, vm, vmProperties, { target, idempotent: true })));
  } catch (error) {
    if (isVsphereFault(error, 'ManagedObjectNotFound')) throw new VsphereError('VM_NOT_FOUND', `no VM with moref ${vm.value}`, session.target(), {}, { cause: error });
    throw error;
  }
}

/** Every VM in the inventory, sorted by name. */
export async function listVms(session: VsphereSession): Promise<VmInfo[]> {
  return withTarget(session.target(), async () => {
    const all = await retrieveAllOfType(session, 'VirtualMachine', vmProperties);
    return all.map((o) => decodeVm(o.obj, o.props)).sort((a, b) => a.name.localeCompare(b.name));
  });
}

export function decodeVm(vm: MoRef, props: Map<string, XmlElement>): VmInfo {
  const devices = props.get('config.hardware.device');
  const cbt = props.get('config.changeTrackingEnabled');
  const consolidation = props.get('runtime.consolidationNeeded');
  return {
    moref: vm,
    name: props.get('name')?.text ?? vm.value,
    instanceUuid: props.get('config.instanceUuid')?.text,
    powerState: (props.get('runtime.powerState')?.text.trim() ?? 'poweredOff') as PowerState,
    cbtEnabled: cbt ? parseBoolean(cbt.text, 'config.changeTrackingEnabled') : false,
    consolidationNeeded: consolidation ? parseBoolean(consolidation.text, 'runtime.consolidationNeeded') : false,
    disks: devices ? decodeDisks(devices) : [],
  };
}

/** The VirtualDisk devices of an `ArrayOfVirtualDevice` value, in device order. */
export function decodeDisks(devices: XmlElement): VirtualDiskInfo[] {
  return decodeDiskDevices(children(devices, 'VirtualDevice'));
}

/** The VirtualDisk devices among device elements (of an array, or `<device>` children of `config.hardware`). */
export function decodeDiskDevices(devices: readonly XmlElement[]): VirtualDiskInfo[] {
  return devices
    .filter((device) => device.xsiType === 'VirtualDisk')
    .map((disk) => {
      const backing = requireChild(disk, 'backing');
      const deviceInfo = child(disk, 'deviceInfo');
      const capacityBytes = optionalLong(disk, 'capacityInBytes') ?? longOf(disk, 'capacityInKB') * 1024;
      const backingChain: string[] = [];
      for (let b: XmlElement | undefined = backing; b; b = child(b, 'parent')) backingChain.push(requireText(b, 'fileName'));
      return {
        key: longOf(disk, 'key'),
        label: deviceInfo ? (optionalText(deviceInfo, 'label') ?? '') : '',
        capacityBytes,
        fileName: backingChain[0],
        datastore: optionalMoRef(backing, 'datastore'),
        backingType: backing.xsiType ?? 'VirtualDeviceBackingInfo',
        changeId: optionalText(backing, 'changeId')?.trim() || undefined,
        backingChain,
        controllerKey: optionalLong(disk, 'controllerKey'),
        unitNumber: optionalLong(disk, 'unitNumber'),
      };
    });
}

/** The disks as a snapshot froze them (file names, capacities, ChangeIds). */
export async function readSnapshotDisks(session: VsphereSession, vm: VmIdentity, snapshot: MoRef): Promise<VirtualDiskInfo[]> {
  const target = { vm: { name: vm.name, moref: vm.moref.value } };
  try {
    return await withTarget(session.target(target), async () => {
      const props = await retrieveOne(session, snapshot, ['config.hardware.device', 'vm'], { target, idempotent: true });
      const owner = props.get('vm');
      if (owner && asMoRef(owner).value !== vm.moref.value) {
        throw new VsphereError('SNAPSHOT_NOT_FOUND', `snapshot ${snapshot.value} belongs to ${asMoRef(owner).value}, not to this VM`, session.target(target), { snapshot: snapshot.value });
      }
      const devices = props.get('config.hardware.device');
      return devices ? decodeDisks(devices) : [];
    });
  } catch (error) {
    if (isVsphereFault(error, 'ManagedObjectNotFound')) {
      throw new VsphereError('SNAPSHOT_NOT_FOUND', `no snapshot ${snapshot.value}`, session.target(target), { snapshot: snapshot.value }, { cause: error });
    }
    throw error;
  }
}

/** The disk with `key`, or DISK_NOT_FOUND listing the keys there are. */
export function diskByKey(session: VsphereSession, vm: VmIdentity, disks: readonly VirtualDiskInfo[], key: number): VirtualDiskInfo {
  const disk = disks.find((d) => d.key === key);
  if (!disk) {
    const keys = disks.map((d) => `${d.key} (${d.label})`).join(', ') || 'none';
    throw new VsphereError('DISK_NOT_FOUND', `no disk with key ${key}; disks: ${keys}`, session.target({ vm: { name: vm.name, moref: vm.moref.value }, diskKey: key }));
  }
  return disk;
}

/** Name of the datacenter that holds `entity` (for datastore HTTP URLs' dcPath). */
export async function datacenterOf(session: VsphereSession, entity: MoRef): Promise<{ moref: MoRef; name: string }> {
  let current: MoRef | undefined = entity;
  while (current) {
    const props = await retrieveOne(session, current, ['name', 'parent'], { idempotent: true });
    if (current.type === 'Datacenter') return { moref: current, name: props.get('name')?.text ?? current.value };
    const parent = props.get('parent');
    current = parent ? asMoRef(parent) : undefined;
  }
  throw new VsphereError('VSPHERE_BAD_RESPONSE', `${entity.value} is not inside a datacenter`, session.target());
}

/** Name of a datastore moref (the `[name]` in file names). */
export async function datastoreName(session: VsphereSession, datastore: MoRef): Promise<string> {
  const props = await retrieveOne(session, datastore, ['name'], { idempotent: true });
  return props.get('name')?.text ?? datastore.value;
}
