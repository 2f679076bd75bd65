// VM configuration capture: what a restore needs to rebuild a VM, read from a VM's or a
// snapshot's `config` (vim25 VirtualMachineConfigInfo) through the property collector.
//
// Vocabulary
// - VM configuration (VmConfiguration): hardware version (`vmx-19`), guest OS id, firmware
//   (`bios`/`efi`) and secure boot, CPUs and cores per socket, memory in MiB, annotation,
//   extraConfig, and the devices a rebuild needs: controllers, disks, NICs, CD-ROMs, floppies
//   and serial ports. Other devices (video card, keyboard, VMCI, ...) come with every new VM
//   and are not recorded.
// - Device type: the vim25 data object type of a device or backing (`VirtualLsiLogicController`,
//   `VirtualVmxnet3`, `VirtualDiskFlatVer2BackingInfo`), kept as vSphere spells it.
// - Provisioning: `thin` (thinProvisioned), `thick-eager` (eagerlyScrub) or `thick-lazy`.
// - Network: what a NIC is plugged into: a standard port group by name, a distributed port
//   group (key, switch UUID and name), an opaque network (NSX), or none.
// - MAC address type: `generated`/`assigned` (vSphere chose it) or `manual` (an administrator set it).
//
// The snapshot's `config` is the configuration as the snapshot froze it; backups read that.
import { child, children, optionalBoolean, optionalLong, optionalText, requireChild, withTarget, type MoRef } from './decode.ts';
import { decodeDiskDevices } from './inventory.ts';
import { retrieveAllOfType, retrieveOne } from './property-collector.ts';
import type { VsphereSession } from './session.ts';
import type { XmlElement } from './xml.ts';
import { VsphereError } from './errors.ts';

export type Firmware = 'bios' | 'efi';
export type DiskProvisioning = 'thin' | 'thick-lazy' | 'thick-eager';

export interface VmControllerConfig {
  key: number;
  /** vim25 type, e.g. VirtualLsiLogicController, ParaVirtualSCSIController, VirtualAHCIController. */
  type: string;
  /** scsi | ide | sata | nvme | usb | pci | other. */
  bus: 'scsi' | 'ide' | 'sata' | 'nvme' | 'usb' | 'pci' | 'other';
  busNumber: number;
  label: string;
  /** SCSI bus sharing (noSharing, virtualSharing, physicalSharing); null for other buses. */
  sharedBus: string | null;
}

export interface VmDiskConfig {
  key: number;
  label: string;
  capacityBytes: number;
  controllerKey: number | null;
  unitNumber: number | null;
  /** vim25 backing type (VirtualDiskFlatVer2BackingInfo, VirtualDiskSeSparseBackingInfo, ...). */
  backingType: string;
  fileName: string;
  provisioning: DiskProvisioning;
  /** sharingNone | sharingMultiWriter. */
  sharing: string;
  /** persistent | independent_persistent | independent_nonpersistent | nonpersistent | undoable | append. */
  mode: string;
}

export type VmNetworkRef =
  | { kind: 'network'; name: string }
  | { kind: 'distributed'; name: string | null; portgroupKey: string; switchUuid: string }
  | { kind: 'opaque'; name: string | null; opaqueNetworkId: string; opaqueNetworkType: string }
  | { kind: 'none' };

export interface VmNicConfig {
  key: number;
  label: string;
  /** vim25 type: VirtualVmxnet3, VirtualE1000, VirtualE1000e, ... */
  adapterType: string;
  network: VmNetworkRef;
  macAddress: string | null;
  /** generated | assigned | manual. */
  addressType: string;
  startConnected: boolean;
  controllerKey: number | null;
  unitNumber: number | null;
}

/** A CD-ROM, floppy or serial port: its backing type and what it points at. */
export interface VmOtherDeviceConfig {
  key: number;
  label: string;
  type: string;
  backingType: string | null;
  /** ISO/image/output file, host device, pipe or URI, whichever the backing names. */
  backingTarget: string | null;
  startConnected: boolean;
  controllerKey: number | null;
  unitNumber: number | null;
}

export interface VmConfiguration {
  name: string;
  /** `vmx-19`. */
  hardwareVersion: string;
  guestId: string;
  firmware: Firmware;
  secureBoot: boolean;
  numCpu: number;
  coresPerSocket: number;
  memoryMiB: number;
  annotation: string;
  /** `[datastore] dir/name.vmx`. */
  vmPathName: string;
  controllers: VmControllerConfig[];
  disks: VmDiskConfig[];
  nics: VmNicConfig[];
  cdroms: VmOtherDeviceConfig[];
  floppies: VmOtherDeviceConfig[];
  serialPorts: VmOtherDeviceConfig[];
  extraConfig: Array<{ key: string; value: string }>;
}

/** A network of the inventory (a standard network or a distributed port group). */
export interface NetworkInfo {
  moref: MoRef;
  name: string;
}

const controllerBus: Record<string, VmControllerConfig['bus']> = {
  VirtualLsiLogicController: 'scsi',
  VirtualLsiLogicSASController: 'scsi',
  ParaVirtualSCSIController: 'scsi',
  VirtualBusLogicController: 'scsi',
  VirtualSCSIController: 'scsi',
  VirtualIDEController: 'ide',
  VirtualAHCIController: 'sata',
  VirtualSATAController: 'sata',
  VirtualNVMEController: 'nvme',
  VirtualUSBController: 'usb',
  VirtualUSBXHCIController: 'usb',
  VirtualPCIController: 'pci',
};

const nicTypes = new Set([
  'VirtualE1000',
  'VirtualE1000e',
  'VirtualVmxnet',
  'VirtualVmxnet2',
  'VirtualVmxnet3',
  'VirtualVmxnet3Vrdma',
  'VirtualPCNet32',
  'VirtualSriovEthernetCard',
]);

function labelOf(device: XmlElement): string {
  const info = child(device, 'deviceInfo');
  return info ? (optionalText(info, 'label') ?? '') : '';
}

function startConnectedOf(device: XmlElement): boolean {
  const connectable = child(device, 'connectable');
  return connectable ? (optionalBoolean(connectable, 'startConnected') ?? false) : false;
}

function placeOf(device: XmlElement): { controllerKey: number | null; unitNumber: number | null } {
  return { controllerKey: optionalLong(device, 'controllerKey') ?? null, unitNumber: optionalLong(device, 'unitNumber') ?? null };
}

function decodeController(device: XmlElement, type: string): VmControllerConfig {
  return {
    key: optionalLong(device, 'key') ?? 0,
    type,
    bus: controllerBus[type] ?? 'other',
    busNumber: optionalLong(device, 'busNumber') ?? 0,
    label: labelOf(device),
    sharedBus: optionalText(device, 'sharedBus')?.trim() ?? null,
  };
}

function decodeNetwork(backing: XmlElement | undefined, networks: ReadonlyMap<string, string>): VmNetworkRef {
  if (!backing) return { kind: 'none' };
  if (backing.xsiType === 'VirtualEthernetCardDistributedVirtualPortBackingInfo') {
    const port = requireChild(backing, 'port');
    const portgroupKey = optionalText(port, 'portgroupKey') ?? '';
    return { kind: 'distributed', name: networks.get(portgroupKey) ?? null, portgroupKey, switchUuid: optionalText(port, 'switchUuid') ?? '' };
  }
  if (backing.xsiType === 'VirtualEthernetCardOpaqueNetworkBackingInfo') {
    const id = optionalText(backing, 'opaqueNetworkId') ?? '';
    return { kind: 'opaque', name: networks.get(id) ?? null, opaqueNetworkId: id, opaqueNetworkType: optionalText(backing, 'opaqueNetworkType') ?? '' };
  }
  const name = optionalText(backing, 'deviceName');
  return name === undefined ? { kind: 'none' } : { kind: 'network', name };
}

function decodeOther(device: XmlElement, type: string): VmOtherDeviceConfig {
  const backing = child(device, 'backing');
  const target = backing ? (optionalText(backing, 'fileName') ?? optionalText(backing, 'deviceName') ?? optionalText(backing, 'pipeName') ?? optionalText(backing, 'serviceURI')) : undefined;
  return { key: optionalLong(device, 'key') ?? 0, label: labelOf(device), type, backingType: backing?.xsiType ?? null, backingTarget: target ?? null, startConnected: startConnectedOf(device), ...placeOf(device) };
}

/**
 * Decodes a VirtualMachineConfigInfo element. `networks` maps a network's moref value (which
 * for a distributed port group is its key) to its name, for NICs on distributed port groups.
 */
export function decodeVmConfig(config: XmlElement, networks: ReadonlyMap<string, string> = new Map()): VmConfiguration {
  const hardware = requireChild(config, 'hardware');
  const devices = children(hardware, 'device');
  const boot = child(config, 'bootOptions');
  const result: VmConfiguration = {
    name: optionalText(config, 'name') ?? '',
    hardwareVersion: optionalText(config, 'version')?.trim() ?? '',
    guestId: optionalText(config, 'guestId')?.trim() ?? '',
    firmware: optionalText(config, 'firmware')?.trim() === 'efi' ? 'efi' : 'bios',
    secureBoot: boot ? (optionalBoolean(boot, 'efiSecureBootEnabled') ?? false) : false,
    numCpu: optionalLong(hardware, 'numCPU') ?? 1,
    coresPerSocket: optionalLong(hardware, 'numCoresPerSocket') ?? 1,
    memoryMiB: optionalLong(hardware, 'memoryMB') ?? 0,
    annotation: optionalText(config, 'annotation') ?? '',
    vmPathName: (() => {
      const files = child(config, 'files');
      return files ? (optionalText(files, 'vmPathName') ?? '') : '';
    })(),
    controllers: [],
    disks: [],
    nics: [],
    cdroms: [],
    floppies: [],
    serialPorts: [],
    extraConfig: children(config, 'extraConfig').map((option) => ({ key: optionalText(option, 'key') ?? '', value: optionalText(option, 'value') ?? '' })),
  };
  for (const disk of decodeDiskDevices(devices)) {
    const element = devices.find((d) => optionalLong(d, 'key') === disk.key) as XmlElement;
    const backing = requireChild(element, 'backing');
    const thin = optionalBoolean(backing, 'thinProvisioned') ?? disk.backingType === 'VirtualDiskSeSparseBackingInfo';
    result.disks.push({
      key: disk.key,
      label: disk.label,
      capacityBytes: disk.capacityBytes,
      controllerKey: disk.controllerKey ?? null,
      unitNumber: disk.unitNumber ?? null,
      backingType: disk.backingType,
      fileName: disk.fileName,
      provisioning: thin ? 'thin' : optionalBoolean(backing, 'eagerlyScrub') ? 'thick-eager' : 'thick-lazy',
      sharing: optionalText(backing, 'sharing')?.trim() || 'sharingNone',
      mode: optionalText(backing, 'diskMode')?.trim() || 'persistent',
    });
  }
  for (const device of devices) {
    const type = device.xsiType ?? '';
    if (type in controllerBus || type.endsWith('Controller')) {
      if (type === 'VirtualPS2Controller' || type === 'VirtualSIOController' || type === 'VirtualPCIController') continue; // every VM has these
      result.controllers.push(decodeController(device, type));
    } else if (nicTypes.has(type)) {
      result.nics.push({
        key: optionalLong(device, 'key') ?? 0,
        label: labelOf(device),
        adapterType: type,
        network: decodeNetwork(child(device, 'backing'), networks),
        macAddress: optionalText(device, 'macAddress')?.trim() || null,
        addressType: optionalText(device, 'addressType')?.trim() || 'generated',
        startConnected: startConnectedOf(device),
        ...placeOf(device),
      });
    } else if (type === 'VirtualCdrom') {
      result.cdroms.push(decodeOther(device, type));
    } else if (type === 'VirtualFloppy') {
      result.floppies.push(decodeOther(device, type));
    } else if (type === 'VirtualSerialPort') {
      result.serialPorts.push(decodeOther(device, type));
    }
  }
  return result;
}

/** Every network of the inventory (standard networks, distributed port groups, opaque networks). */
export async function listNetworks(session: VsphereSession): Promise<NetworkInfo[]> {
  return withTarget(session.target(), async () => {
    const all = await retrieveAllOfType(session, 'Network', ['name']);
    return all.map((o) => ({ moref: o.obj, name: o.props.get('name')?.text ?? o.obj.value })).sort((a, b) => a.name.localeCompare(b.name));
  });
}

/**
 * The configuration of a VM or of a snapshot (`VirtualMachineSnapshot`: as it froze the VM).
 * `vm` names the VM in messages.
 */
export async function readVmConfig(session: VsphereSession, entity: MoRef, vm: { name: string; moref: MoRef }): Promise<VmConfiguration> {
  const target = { vm: { name: vm.name, moref: vm.moref.value } };
  return withTarget(session.target(target), async () => {
    const props = await retrieveOne(session, entity, ['config'], { target, idempotent: true });
    const config = props.get('config');
    if (!config) throw new VsphereError('VSPHERE_BAD_RESPONSE', `${entity.value} has no configuration`, session.target(target));
    const networks = new Map((await listNetworks(session)).map((n) => [n.moref.value, n.name]));
    return decodeVmConfig(config, networks);
  });
}
