// OVF descriptors: a VM configuration (vm-config.ts) as an OVF 1.x envelope (DMTF DSP0243,
// schema DSP8023) with VMware's extensions, the document vSphere's OvfManager turns into an
// import spec (CreateImportSpec) for ImportVApp.
//
// Vocabulary
// - Item: one virtual hardware element (CIM ResourceAllocationSettingData, `rasd:`), with a
//   ResourceType: 3 CPU, 4 memory, 5 IDE controller, 6 SCSI controller, 10 NIC, 14 floppy,
//   15 CD-ROM, 17 disk, 20 other storage controller (SATA, NVMe). Its `rasd:` children are
//   written in the schema's (alphabetical) order.
// - File / Disk: each disk is one `References/File` (the streamOptimized VMDK uploaded to the
//   lease) and one `DiskSection/Disk` (its capacity, in KiB: `byte * 2^10`).
// - Network: the port group a NIC connects to, by name; the import's network mapping turns
//   each name into a network of the target.
//
// What OVF carries here: hardware version, guest OS, CPUs (and cores per socket, `vmw:`),
// memory, controllers, disks, NICs (adapter type, network, MAC when kept), CD-ROMs on IDE,
// floppies, firmware (`vmw:Config firmware`), the annotation. What it does not (secure boot,
// extraConfig, the NVRAM file, serial ports) the restore sets afterwards (restore-vm).
import { escapeXml } from './xml.ts';
import type { VmConfiguration } from './vm-config.ts';

export const OVF_NAMESPACE = 'http://schemas.dmtf.org/ovf/envelope/1';
const RASD = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData';
const VSSD = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData';
const VMW = 'http://www.vmware.com/schema/ovf';
export const STREAM_OPTIMIZED_FORMAT = 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized';

export interface OvfDisk {
  /** Source device key. */
  key: number;
  /** `href` of the disk's file (the upload's name in the import spec's file items). */
  fileName: string;
}

export interface OvfOptions {
  /** The new VM's name. */
  name: string;
  /** Disks to carry, in the order they are uploaded; others of the configuration are left out. */
  disks: readonly OvfDisk[];
  /** Keep each NIC's MAC address (as a manual one). */
  keepMac: boolean;
  /** Network name per NIC key (after --network mapping); NICs absent here connect to nothing. */
  nicNetworks: ReadonlyMap<number, string>;
}

const scsiSubType: Record<string, string> = {
  VirtualLsiLogicController: 'lsilogic',
  VirtualLsiLogicSASController: 'lsilogicsas',
  ParaVirtualSCSIController: 'VirtualSCSI',
  VirtualBusLogicController: 'buslogic',
};

const nicSubType: Record<string, string> = {
  VirtualE1000: 'E1000',
  VirtualE1000e: 'E1000e',
  VirtualVmxnet: 'VmxNet',
  VirtualVmxnet2: 'VmxNet2',
  VirtualVmxnet3: 'VmxNet3',
  VirtualPCNet32: 'PCNet32',
};

type RasdFields = Partial<Record<'Address' | 'AddressOnParent' | 'AllocationUnits' | 'AutomaticAllocation' | 'Connection' | 'Description' | 'ElementName' | 'HostResource' | 'InstanceID' | 'Parent' | 'ResourceSubType' | 'ResourceType' | 'VirtualQuantity', string>>;
const rasdOrder: Array<keyof RasdFields> = ['Address', 'AddressOnParent', 'AllocationUnits', 'AutomaticAllocation', 'Connection', 'Description', 'ElementName', 'HostResource', 'InstanceID', 'Parent', 'ResourceSubType', 'ResourceType', 'VirtualQuantity'];

function item(fields: RasdFields, extra = ''): string {
  const inner = rasdOrder
    .filter((name) => fields[name] !== undefined)
    .map((name) => `<rasd:${name}>${escapeXml(fields[name] as string)}</rasd:${name}>`)
    .join('');
  return `<Item>${inner}${extra}</Item>`;
}

/** The OVF descriptor of `config` as a new VM named `options.name`. */
export function buildOvfDescriptor(config: VmConfiguration, options: OvfOptions): string {
  let nextId = 1;
  const id = () => String(nextId++);
  const items: string[] = [];
  items.push(item({ AllocationUnits: 'hertz * 10^6', Description: 'Number of Virtual CPUs', ElementName: `${config.numCpu} virtual CPU(s)`, InstanceID: id(), ResourceType: '3', VirtualQuantity: String(config.numCpu) }, `<vmw:CoresPerSocket ovf:required="false">${config.coresPerSocket}</vmw:CoresPerSocket>`));
  items.push(item({ AllocationUnits: 'byte * 2^20', Description: 'Memory Size', ElementName: `${config.memoryMiB}MB of memory`, InstanceID: id(), ResourceType: '4', VirtualQuantity: String(config.memoryMiB) }));

  const controllerIds = new Map<number, string>();
  for (const controller of config.controllers) {
    const instance = String(nextId);
    if (controller.bus === 'scsi' && scsiSubType[controller.type]) {
      items.push(item({ Address: String(controller.busNumber), Description: 'SCSI Controller', ElementName: controller.label || `SCSI controller ${controller.busNumber}`, InstanceID: id(), ResourceSubType: scsiSubType[controller.type], ResourceType: '6' }));
    } else if (controller.bus === 'ide') {
      items.push(item({ Address: String(controller.busNumber), Description: 'IDE Controller', ElementName: controller.label || `IDE ${controller.busNumber}`, InstanceID: id(), ResourceType: '5' }));
    } else if (controller.bus === 'sata') {
      items.push(item({ Address: String(controller.busNumber), Description: 'SATA Controller', ElementName: controller.label || `SATA controller ${controller.busNumber}`, InstanceID: id(), ResourceSubType: 'vmware.sata.ahci', ResourceType: '20' }));
    } else if (controller.bus === 'nvme') {
      items.push(item({ Address: String(controller.busNumber), Description: 'NVMe Controller', ElementName: controller.label || `NVME controller ${controller.busNumber}`, InstanceID: id(), ResourceSubType: 'vmware.nvme.controller', ResourceType: '20' }));
    } else {
      continue;
    }
    controllerIds.set(controller.key, instance);
  }

  const files: string[] = [];
  const disks: string[] = [];
  for (const [i, wanted] of options.disks.entries()) {
    const disk = config.disks.find((d) => d.key === wanted.key);
    if (!disk) throw new RangeError(`disk ${wanted.key} is not in the configuration`);
    const parent = disk.controllerKey === null ? undefined : controllerIds.get(disk.controllerKey);
    if (parent === undefined) throw new RangeError(`disk ${disk.key} is on controller ${disk.controllerKey}, which OVF cannot describe`);
    const fileId = `file${i + 1}`;
    const diskId = `vmdisk${i + 1}`;
    files.push(`<File ovf:href="${escapeXml(wanted.fileName)}" ovf:id="${fileId}"/>`);
    disks.push(`<Disk ovf:capacity="${Math.ceil(disk.capacityBytes / 1024)}" ovf:capacityAllocationUnits="byte * 2^10" ovf:diskId="${diskId}" ovf:fileRef="${fileId}" ovf:format="${STREAM_OPTIMIZED_FORMAT}"/>`);
    items.push(item({ AddressOnParent: String(disk.unitNumber ?? 0), ElementName: disk.label || `Hard disk ${i + 1}`, HostResource: `ovf:/disk/${diskId}`, InstanceID: id(), Parent: parent, ResourceType: '17' }));
  }

  const networks = new Set<string>();
  for (const nic of config.nics) {
    const network = options.nicNetworks.get(nic.key);
    const subType = nicSubType[nic.adapterType];
    if (network === undefined || subType === undefined) continue;
    networks.add(network);
    items.push(
      item({
        Address: options.keepMac && nic.macAddress ? nic.macAddress : undefined,
        AddressOnParent: nic.unitNumber === null ? undefined : String(nic.unitNumber),
        AutomaticAllocation: String(nic.startConnected),
        Connection: network,
        Description: `${subType} ethernet adapter on "${network}"`,
        ElementName: nic.label || 'Network adapter',
        InstanceID: id(),
        ResourceSubType: subType,
        ResourceType: '10',
      }),
    );
  }

  for (const cdrom of config.cdroms) {
    const parent = cdrom.controllerKey === null ? undefined : controllerIds.get(cdrom.controllerKey);
    const onIde = config.controllers.find((c) => c.key === cdrom.controllerKey)?.bus === 'ide';
    if (parent === undefined || !onIde) continue;
    items.push(item({ AddressOnParent: String(cdrom.unitNumber ?? 0), AutomaticAllocation: 'false', ElementName: cdrom.label || 'CD/DVD drive', InstanceID: id(), Parent: parent, ResourceType: '15' }));
  }
  for (const floppy of config.floppies) {
    items.push(item({ AddressOnParent: String(floppy.unitNumber ?? 0), AutomaticAllocation: 'false', ElementName: floppy.label || 'Floppy drive', InstanceID: id(), ResourceType: '14' }));
  }

  const vmwConfig = `<vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="${config.firmware}"/>`;
  const networkSection = networks.size === 0 ? '' : `<NetworkSection><Info>The networks the VM's adapters connect to</Info>${[...networks].map((n) => `<Network ovf:name="${escapeXml(n)}"><Description>${escapeXml(n)}</Description></Network>`).join('')}</NetworkSection>`;
  const annotation = config.annotation ? `<AnnotationSection><Info>A human-readable annotation</Info><Annotation>${escapeXml(config.annotation)}</Annotation></AnnotationSection>` : '';
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Envelope xmlns="${OVF_NAMESPACE}" xmlns:ovf="${OVF_NAMESPACE}" xmlns:rasd="${RASD}" xmlns:vssd="${VSSD}" xmlns:vmw="${VMW}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">` +
    `<References>${files.join('')}</References>` +
    `<DiskSection><Info>Virtual disk information</Info>${disks.join('')}</DiskSection>` +
    networkSection +
    `<VirtualSystem ovf:id="${escapeXml(options.name)}">` +
    '<Info>A virtual machine restored by vcbt</Info>' +
    `<Name>${escapeXml(options.name)}</Name>` +
    annotation +
    `<OperatingSystemSection ovf:id="1" vmw:osType="${escapeXml(config.guestId || 'otherGuest')}"><Info>The kind of installed guest operating system</Info></OperatingSystemSection>` +
    '<VirtualHardwareSection><Info>Virtual hardware requirements</Info>' +
    `<System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemIdentifier>${escapeXml(options.name)}</vssd:VirtualSystemIdentifier><vssd:VirtualSystemType>${escapeXml(config.hardwareVersion || 'vmx-13')}</vssd:VirtualSystemType></System>` +
    items.join('') +
    vmwConfig +
    '</VirtualHardwareSection>' +
    '</VirtualSystem>' +
    '</Envelope>\n'
  );
}
