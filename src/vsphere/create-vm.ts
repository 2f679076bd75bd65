// Creating a VM (Folder.CreateVM_Task) from a VM configuration (vm-config.ts): the same
// hardware with **empty** disks of the recorded capacities, on the same controllers (bus and
// unit, so vSphere gives every disk the same device key), and the NICs on their networks.
// What fills the disks is the caller's business (replicate --to-vm --create, restore-vm
// with --transport nbd|vddk).
//
// Vocabulary
// - placement: the folder the VM goes into, its resource pool, optionally a host, and the
//   datastore of its files and disks (`[datastore]`: vSphere names the files).
// - the spec: a vim25 VirtualMachineConfigSpec; fields in the schema's order (soap.ts).
//   Controllers, disks and NICs keep their device keys; IDE controllers, which every VM has,
//   are not added (devices on them use the built-in ones, keys 200 and 201). CD-ROMs,
//   floppies and serial ports are not created.
// - space: the datastore's free space must hold every disk at full capacity (a thin disk
//   may grow to it) before anything is created: DATASTORE_SPACE; a server that still finds
//   no space (NoDiskSpace, InsufficientDiskSpace) is reported with the same code.
// - a name a VM already has: DuplicateName, as VM_EXISTS.
import { asMoRef, optionalLong, withTarget, type MoRef } from './decode.ts';
import { VsphereError, isVsphereFault } from './errors.ts';
import { extraConfigSpec } from './extra-config.ts';
import { retrieveAllOfType, retrieveOne } from './property-collector.ts';
import type { VsphereSession } from './session.ts';
import { ref, returnValues, type SoapObject } from './soap.ts';
import type { XmlElement } from './xml.ts';
import { runTask } from './tasks.ts';
import type { VmConfiguration, VmControllerConfig, VmDiskConfig, VmNicConfig } from './vm-config.ts';

export interface VmPlacementSpec {
  folder: MoRef;
  pool: MoRef;
  host?: MoRef;
  /** Datastore name for the VM's files and disks. */
  datastore: string;
}

export interface NewVmOptions {
  name: string;
  config: VmConfiguration;
  /** Replaces the configuration's annotation. */
  annotation?: string;
  /** extraConfig options of the new VM (the configuration's own are not copied). */
  extraConfig?: ReadonlyMap<string, string>;
  /** Keep each NIC's MAC address (manual); otherwise vSphere generates new ones. */
  keepMac?: boolean;
  /** Thin disks whatever the configuration says. */
  thin?: boolean;
  /** A NIC's network name -> the name to use instead. */
  networkMap?: ReadonlyMap<string, string>;
}

const ideBuiltIn = [200, 201];

function controllerDevice(controller: VmControllerConfig): SoapObject {
  const base = { $type: controller.type, key: controller.key, deviceInfo: { label: controller.label, summary: controller.label } };
  if (controller.bus === 'scsi') return { ...base, busNumber: controller.busNumber, hotAddRemove: true, sharedBus: controller.sharedBus ?? 'noSharing' };
  return { ...base, busNumber: controller.busNumber };
}

function diskDevice(disk: VmDiskConfig, datastore: string, thin: boolean): SoapObject {
  const provisioning = thin ? 'thin' : disk.provisioning;
  return {
    $type: 'VirtualDisk',
    key: disk.key,
    deviceInfo: { label: disk.label, summary: disk.label },
    backing: {
      $type: 'VirtualDiskFlatVer2BackingInfo',
      fileName: `[${datastore}]`,
      diskMode: disk.mode,
      thinProvisioned: provisioning === 'thin',
      eagerlyScrub: provisioning === 'thick-eager',
      sharing: disk.sharing,
    },
    controllerKey: disk.controllerKey ?? undefined,
    unitNumber: disk.unitNumber ?? undefined,
    capacityInKB: Math.ceil(disk.capacityBytes / 1024),
    capacityInBytes: disk.capacityBytes,
  };
}

function nicBacking(nic: VmNicConfig, networkMap: ReadonlyMap<string, string>): SoapObject | undefined {
  const network = nic.network;
  switch (network.kind) {
    case 'network': {
      const name = networkMap.get(network.name) ?? network.name;
      return { $type: 'VirtualEthernetCardNetworkBackingInfo', deviceName: name };
    }
    case 'distributed':
      return { $type: 'VirtualEthernetCardDistributedVirtualPortBackingInfo', port: { switchUuid: network.switchUuid, portgroupKey: network.portgroupKey } };
    case 'opaque':
      return { $type: 'VirtualEthernetCardOpaqueNetworkBackingInfo', opaqueNetworkId: network.opaqueNetworkId, opaqueNetworkType: network.opaqueNetworkType };
    default:
      return undefined;
  }
}

function nicDevice(nic: VmNicConfig, keepMac: boolean, networkMap: ReadonlyMap<string, string>): SoapObject {
  const manual = keepMac && nic.macAddress !== null;
  return {
    $type: nic.adapterType,
    key: nic.key,
    deviceInfo: { label: nic.label, summary: nic.label },
    backing: nicBacking(nic, networkMap),
    connectable: { startConnected: nic.startConnected, allowGuestControl: true, connected: false },
    addressType: manual ? 'manual' : 'generated',
    macAddress: manual ? (nic.macAddress ?? undefined) : undefined,
  };
}

const add = (device: SoapObject, fileOperation?: 'create'): SoapObject => ({ $type: 'VirtualDeviceConfigSpec', operation: 'add', fileOperation, device });

/** The VirtualMachineConfigSpec of a new VM with the configuration's hardware and empty disks. */
export function newVmSpec(options: NewVmOptions, datastore: string): SoapObject {
  const { config } = options;
  const networkMap = options.networkMap ?? new Map<string, string>();
  const controllers = config.controllers.filter((c) => c.bus !== 'ide' && c.bus !== 'pci' && c.bus !== 'other');
  const deviceChange = [
    ...controllers.map((c) => add(controllerDevice(c))),
    ...config.disks.map((d) => add(diskDevice(d, datastore, options.thin ?? false), 'create')),
    ...config.nics.map((n) => add(nicDevice(n, options.keepMac ?? false, networkMap))),
  ];
  return {
    $type: 'VirtualMachineConfigSpec',
    name: options.name,
    version: config.hardwareVersion || undefined,
    guestId: config.guestId || undefined,
    annotation: options.annotation ?? config.annotation,
    files: { $type: 'VirtualMachineFileInfo', vmPathName: `[${datastore}]` },
    numCPUs: config.numCpu,
    numCoresPerSocket: config.coresPerSocket,
    memoryMB: config.memoryMiB,
    deviceChange,
    extraConfig: options.extraConfig && options.extraConfig.size > 0 ? extraConfigSpec(options.extraConfig) : undefined,
    bootOptions: config.firmware === 'efi' ? { $type: 'VirtualMachineBootOptions', efiSecureBootEnabled: config.secureBoot } : undefined,
    firmware: config.firmware,
  };
}

/** Disk controllers a configuration's disks sit on that the new VM will not have. */
export function missingControllers(config: VmConfiguration): number[] {
  const keys = new Set([...config.controllers.filter((c) => c.bus !== 'ide').map((c) => c.key), ...ideBuiltIn]);
  return [...new Set(config.disks.map((d) => d.controllerKey).filter((k): k is number => k !== null && !keys.has(k)))];
}

/** A datastore by name with its free space. */
export async function datastoreFreeSpace(session: VsphereSession, name: string): Promise<{ moref: MoRef; freeBytes: number }> {
  const all = await retrieveAllOfType(session, 'Datastore', ['name', 'summary']);
  const found = all.find((o) => o.props.get('name')?.text === name);
  if (!found) {
    const names = all.map((o) => o.props.get('name')?.text ?? o.obj.value).sort();
    throw new VsphereError('PLACEMENT_NOT_FOUND', `no datastore named "${name}" (found: ${names.join(', ') || 'none'})`, session.target(), { datastore: name });
  }
  const summary = found.props.get('summary');
  return { moref: found.obj, freeBytes: summary ? (optionalLong(summary, 'freeSpace') ?? 0) : 0 };
}

/**
 * Creates the VM (powered off) and resolves to its moref. Refuses before anything is created
 * when the datastore cannot hold every disk at full capacity (DATASTORE_SPACE).
 */
export async function createVm(session: VsphereSession, placement: VmPlacementSpec, options: NewVmOptions, signal?: AbortSignal): Promise<MoRef> {
  const target = { vm: { name: options.name, moref: '(new)' } };
  return withTarget(session.target(target), async () => {
    const missing = missingControllers(options.config);
    if (missing.length > 0) {
      throw new VsphereError('VSPHERE_BAD_RESPONSE', `the configuration's disks sit on controllers ${missing.join(', ')}, which it does not list`, session.target(target));
    }
    const neededBytes = options.config.disks.reduce((sum, d) => sum + d.capacityBytes, 0);
    const { freeBytes } = await datastoreFreeSpace(session, placement.datastore);
    if (neededBytes > freeBytes) {
      throw new VsphereError(
        'DATASTORE_SPACE',
        `datastore "${placement.datastore}" has ${freeBytes} bytes free, less than the ${neededBytes} bytes of the VM's disks; nothing was created (choose another with --datastore)`,
        session.target(target),
        { datastore: placement.datastore, freeBytes, neededBytes },
      );
    }
    const spec = newVmSpec(options, placement.datastore);
    try {
      const result = await runTask(session, 'CreateVM_Task', placement.folder, { config: spec, pool: ref(placement.pool), host: placement.host ? ref(placement.host) : undefined }, { target, signal });
      if (!result) throw new VsphereError('VSPHERE_BAD_RESPONSE', 'CreateVM_Task succeeded without naming the new VM', session.target(target));
      return asMoRef(result);
    } catch (error) {
      if (isVsphereFault(error, 'DuplicateName')) {
        throw new VsphereError('VM_EXISTS', `a VM named "${options.name}" already exists; choose another name`, session.target(), { name: options.name }, { cause: error });
      }
      if (isVsphereFault(error, 'NoDiskSpace') || isVsphereFault(error, 'InsufficientDiskSpace')) {
        throw new VsphereError('DATASTORE_SPACE', `datastore "${placement.datastore}" has no space for the VM's disks: ${(error as Error).message}`, session.target(), { datastore: placement.datastore }, { cause: error });
      }
      throw error;
    }
  });
}

/** Where a new VM goes, as the placement flags give it (`--folder --resource-pool|--host --datastore`). */
export interface PlacementRequest {
  /** Inventory path of a VM folder (`DC0/vm/Replicas`). */
  folder?: string;
  /** Inventory path of a resource pool (`DC0/host/Cluster/Resources/Pool`). */
  resourcePool?: string;
  /** Host name; its compute resource's root pool. */
  host?: string;
  datastore: string;
}

function placementNotFound(session: VsphereSession, what: string, value: string): VsphereError {
  return new VsphereError('PLACEMENT_NOT_FOUND', `no ${what} "${value}"`, session.target(), { [what.replace(/ /g, '')]: value });
}

async function byInventoryPath(session: VsphereSession, path: string, type: string, what: string): Promise<MoRef> {
  const response = await session.call('FindByInventoryPath', session.serviceContent.searchIndex, { inventoryPath: path }, { idempotent: true });
  const found = returnValues(response)[0];
  if (!found || asMoRef(found).type !== type) throw placementNotFound(session, what, path);
  return asMoRef(found);
}

/**
 * The placement of a new VM: each flag given, otherwise as `near` (the VM it is made from)
 * is placed: its folder, its resource pool (its host when `--host` names none).
 */
export async function resolvePlacement(session: VsphereSession, near: MoRef, request: PlacementRequest): Promise<VmPlacementSpec> {
  return withTarget(session.target(), async () => {
    const props = await retrieveOne(session, near, ['parent', 'resourcePool'], { idempotent: true });
    const folder = request.folder ? await byInventoryPath(session, request.folder, 'Folder', 'folder') : props.get('parent') && asMoRef(props.get('parent') as XmlElement);
    let pool: MoRef | undefined;
    let host: MoRef | undefined;
    if (request.resourcePool) pool = await byInventoryPath(session, request.resourcePool, 'ResourcePool', 'resource pool');
    else if (request.host) {
      const hosts = await retrieveAllOfType(session, 'HostSystem', ['name', 'parent']);
      const found = hosts.find((h) => h.props.get('name')?.text === request.host);
      if (!found) throw placementNotFound(session, 'host', request.host);
      host = found.obj;
      const compute = asMoRef(found.props.get('parent') as XmlElement);
      const computeProps = await retrieveOne(session, compute, ['resourcePool'], { idempotent: true });
      pool = computeProps.get('resourcePool') && asMoRef(computeProps.get('resourcePool') as XmlElement);
    } else {
      pool = props.get('resourcePool') && asMoRef(props.get('resourcePool') as XmlElement);
    }
    if (!folder || !pool) throw new VsphereError('PLACEMENT_NOT_FOUND', `VM ${near.value} has no ${folder ? 'resource pool' : 'folder'} to place the new VM next to; give --folder and --resource-pool`, session.target());
    return { folder, pool, host, datastore: request.datastore };
  });
}
