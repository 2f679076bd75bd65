// The OVF descriptor built from a stored configuration: well-formed, in the OVF 1.x envelope
// namespace, sections in the envelope's order, each Item's rasd elements in the CIM schema's
// (alphabetical) order, one File/Disk/Item per disk with its capacity, NICs on their
// networks (MAC only when kept), controllers by type; names are escaped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildOvfDescriptor, OVF_NAMESPACE, type VmConfiguration } from '../../src/vsphere/vsphere.ts';
import { parseXml, type XmlElement } from '../../src/vsphere/xml.ts';

const config: VmConfiguration = {
  name: 'web01',
  hardwareVersion: 'vmx-19',
  guestId: 'ubuntu64Guest',
  firmware: 'efi',
  secureBoot: true,
  numCpu: 4,
  coresPerSocket: 2,
  memoryMiB: 8192,
  annotation: 'owner <ops> & co',
  vmPathName: '[ds1] web01/web01.vmx',
  controllers: [
    { key: 200, type: 'VirtualIDEController', bus: 'ide', busNumber: 0, label: 'IDE 0', sharedBus: null },
    { key: 1000, type: 'ParaVirtualSCSIController', bus: 'scsi', busNumber: 0, label: 'SCSI controller 0', sharedBus: 'noSharing' },
    { key: 15000, type: 'VirtualAHCIController', bus: 'sata', busNumber: 0, label: 'SATA controller 0', sharedBus: null },
  ],
  disks: [
    { key: 2000, label: 'Hard disk 1', capacityBytes: 16 * 2 ** 30, controllerKey: 1000, unitNumber: 0, backingType: 'VirtualDiskFlatVer2BackingInfo', fileName: '[ds1] web01/web01.vmdk', provisioning: 'thin', sharing: 'sharingNone', mode: 'persistent' },
    { key: 16000, label: 'Hard disk 2', capacityBytes: 1 << 30, controllerKey: 15000, unitNumber: 1, backingType: 'VirtualDiskFlatVer2BackingInfo', fileName: '[ds1] web01/web01_1.vmdk', provisioning: 'thick-lazy', sharing: 'sharingNone', mode: 'persistent' },
  ],
  nics: [{ key: 4000, label: 'Network adapter 1', adapterType: 'VirtualVmxnet3', network: { kind: 'network', name: 'VM Network' }, macAddress: '00:50:56:01:02:03', addressType: 'assigned', startConnected: true, controllerKey: 100, unitNumber: 7 }],
  cdroms: [{ key: 3000, label: 'CD/DVD drive 1', type: 'VirtualCdrom', backingType: 'VirtualCdromRemotePassthroughBackingInfo', backingTarget: '', startConnected: false, controllerKey: 200, unitNumber: 0 }],
  floppies: [],
  serialPorts: [],
  extraConfig: [],
};

const kids = (e: XmlElement, name: string) => e.children.filter((c) => c.name === name);
const text = (e: XmlElement, name: string) => e.children.find((c) => c.name === name)?.text;

test('ovf: envelope, sections and items as the OVF 1.x schema orders them', () => {
  const xml = buildOvfDescriptor(config, { name: 'web01 <restored>', disks: [{ key: 2000, fileName: 'a.vmdk' }, { key: 16000, fileName: 'b.vmdk' }], keepMac: false, nicNetworks: new Map([[4000, 'VM Network']]) });
  const envelope = parseXml(xml);
  assert.equal(envelope.name, 'Envelope');
  assert.equal(envelope.namespace, OVF_NAMESPACE);
  assert.deepEqual(envelope.children.map((c) => c.name), ['References', 'DiskSection', 'NetworkSection', 'VirtualSystem']);
  assert.deepEqual(kids(kids(envelope, 'References')[0], 'File').map((f) => f.attributes.get(`{${OVF_NAMESPACE}}href`)), ['a.vmdk', 'b.vmdk']);
  const disks = kids(kids(envelope, 'DiskSection')[0], 'Disk');
  assert.deepEqual(disks.map((d) => [d.attributes.get(`{${OVF_NAMESPACE}}capacity`), d.attributes.get(`{${OVF_NAMESPACE}}capacityAllocationUnits`)]), [[String(16 * 2 ** 20), 'byte * 2^10'], [String(1 << 20), 'byte * 2^10']]);
  const system = kids(envelope, 'VirtualSystem')[0];
  assert.equal(text(system, 'Name'), 'web01 <restored>');
  assert.equal(system.children[0].name, 'Info');
  const hardware = kids(system, 'VirtualHardwareSection')[0];
  const items = kids(hardware, 'Item');
  for (const item of items) {
    const names = item.children.filter((c) => c.namespace.includes('CIM_ResourceAllocationSettingData')).map((c) => c.name);
    assert.deepEqual(names, [...names].sort(), `rasd elements in schema order: ${names.join(' ')}`);
  }
  const byType = (type: string) => items.filter((i) => text(i, 'ResourceType') === type);
  assert.equal(text(byType('3')[0], 'VirtualQuantity'), '4');
  assert.equal(byType('3')[0].children.find((c) => c.name === 'CoresPerSocket')?.text, '2');
  assert.equal(text(byType('4')[0], 'VirtualQuantity'), '8192');
  assert.equal(text(byType('6')[0], 'ResourceSubType'), 'VirtualSCSI');
  assert.equal(text(byType('20')[0], 'ResourceSubType'), 'vmware.sata.ahci');
  const diskItems = byType('17');
  assert.deepEqual(diskItems.map((d) => [text(d, 'HostResource'), text(d, 'Parent'), text(d, 'AddressOnParent')]), [
    ['ovf:/disk/vmdisk1', text(byType('6')[0], 'InstanceID'), '0'],
    ['ovf:/disk/vmdisk2', text(byType('20')[0], 'InstanceID'), '1'],
  ]);
  const nic = byType('10')[0];
  assert.deepEqual([text(nic, 'Connection'), text(nic, 'ResourceSubType'), text(nic, 'Address')], ['VM Network', 'VmxNet3', undefined]);
  assert.equal(text(byType('15')[0], 'Parent'), text(byType('5')[0], 'InstanceID'));
  const firmware = hardware.children.find((c) => c.name === 'Config');
  assert.equal(firmware?.attributes.get('{http://www.vmware.com/schema/ovf}value'), 'efi');
  assert.match(xml, /owner &lt;ops&gt; &amp; co/);
});

test('ovf: --keep-mac puts the MAC in the NIC item; disks left out are not described', () => {
  const xml = buildOvfDescriptor(config, { name: 'x', disks: [{ key: 16000, fileName: 'b.vmdk' }], keepMac: true, nicNetworks: new Map([[4000, 'Prod']]) });
  assert.match(xml, /<rasd:Address>00:50:56:01:02:03<\/rasd:Address>/);
  assert.match(xml, /<rasd:Connection>Prod<\/rasd:Connection>/);
  assert.equal((xml.match(/<rasd:ResourceType>17<\/rasd:ResourceType>/g) ?? []).length, 1);
  assert.throws(() => buildOvfDescriptor(config, { name: 'x', disks: [{ key: 9, fileName: 'z.vmdk' }], keepMac: false, nicNetworks: new Map() }), RangeError);
});
