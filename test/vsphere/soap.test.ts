import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildEnvelope, encodeValue, parseResponse, ref, xsdString } from '../../src/vsphere/soap.ts';
import { moRef, parseLong, SoapDecodeError } from '../../src/vsphere/decode.ts';
import { parseXml } from '../../src/vsphere/xml.ts';
import { decodeDisks, listVms, findVm } from '../../src/vsphere/inventory.ts';
import { enableCbt } from '../../src/vsphere/cbt.ts';
import { createSnapshot, removeSnapshot, findLeftoverSnapshots } from '../../src/vsphere/snapshots.ts';
import { waitForTask } from '../../src/vsphere/tasks.ts';
import { VsphereFault } from '../../src/vsphere/errors.ts';
import { bodyOf, fakeSession, faultReply, reply } from './fake-session.ts';

const XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"';
const vm = { moref: moRef('VirtualMachine', 'vm-57'), name: 'web "01"' };

test('envelope: _this first, params in order, escaping, morefs with type, no xsi:type unless asked', () => {
  const xml = buildEnvelope('QueryChangedDiskAreas', moRef('VirtualMachine', 'vm-57'), {
    snapshot: ref(moRef('VirtualMachineSnapshot', 'snapshot-9')),
    deviceKey: 2000,
    startOffset: 9007199254740991,
    changeId: '52 54 eb 64 13 82 bc 71-41 42 a2 b3 ba f4 96 2e/102',
  });
  assert.equal(
    xml,
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" ' +
      XSI +
      '><soapenv:Body><QueryChangedDiskAreas xmlns="urn:vim25"><_this type="VirtualMachine">vm-57</_this><snapshot type="VirtualMachineSnapshot">snapshot-9</snapshot>' +
      '<deviceKey>2000</deviceKey><startOffset>9007199254740991</startOffset><changeId>52 54 eb 64 13 82 bc 71-41 42 a2 b3 ba f4 96 2e/102</changeId></QueryChangedDiskAreas></soapenv:Body></soapenv:Envelope>',
  );
  // The document we send is well-formed by our own strict parser.
  assert.equal(parseXml(xml).name, 'Envelope');
});

test('encodeValue: arrays repeat, undefined is omitted, bigint exact, non-integers refused, text escaped', () => {
  assert.equal(encodeValue('pathSet', ['name', 'config.hardware.device']), '<pathSet>name</pathSet><pathSet>config.hardware.device</pathSet>');
  assert.equal(encodeValue('x', { $type: 'T', a: undefined, b: true, c: 2n ** 64n }), '<x xsi:type="T"><b>true</b><c>18446744073709551616</c></x>');
  assert.equal(encodeValue('password', `a<b&"c'`), '<password>a&lt;b&amp;&quot;c&apos;</password>');
  assert.equal(
    encodeValue('extraConfig', { $type: 'OptionValue', key: 'vcbt.replica.disk.2000', value: xsdString('{"a":"<b>"}') }),
    '<extraConfig xsi:type="OptionValue"><key>vcbt.replica.disk.2000</key><value xsi:type="xsd:string">{&quot;a&quot;:&quot;&lt;b&gt;&quot;}</value></extraConfig>',
  );
  assert.throws(() => encodeValue('n', 1.5), RangeError);
  assert.throws(() => encodeValue('n', 2 ** 53), RangeError);
});

test('longs are exact or refused, never rounded', () => {
  assert.equal(parseLong('9007199254740991', 'x'), Number.MAX_SAFE_INTEGER);
  assert.equal(parseLong('-42', 'x'), -42);
  for (const bad of ['9007199254740992', '18446744073709551615', '1.5', '1e3', '', '0x10']) {
    assert.throws(() => parseLong(bad, 'x'), (e: unknown) => e instanceof SoapDecodeError && e.code === 'VSPHERE_BAD_RESPONSE', bad);
  }
});

test('SOAP faults keep the vim25 type (from xsi:type, else element name) and message', () => {
  const parsed = parseResponse(faultReply('FileFault', 'Error: ChangeId &quot;x&quot; is unknown', '<file>[ds] vm/vm.vmdk</file>'));
  assert.equal(parsed.kind, 'fault');
  if (parsed.kind !== 'fault') return;
  assert.equal(parsed.fault.faultType, 'FileFault');
  assert.equal(parsed.fault.faultMessage, 'Error: ChangeId "x" is unknown');
  assert.equal(parsed.fault.detail?.children[0].text, '[ds] vm/vm.vmdk');
  const byName = parseResponse(
    '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultcode>e:Server</faultcode><faultstring>no</faultstring><detail><InvalidLoginFault xmlns="urn:vim25"/></detail></e:Fault></e:Body></e:Envelope>',
  );
  assert.equal(byName.kind === 'fault' && byName.fault.faultType, 'InvalidLogin');
  for (const [type, code] of [
    ['NotAuthenticated', 'VSPHERE_NOT_AUTHENTICATED'],
    ['InvalidLogin', 'VSPHERE_INVALID_LOGIN'],
    ['ManagedObjectNotFound', 'VSPHERE_OBJECT_NOT_FOUND'],
    ['FileFault', 'VSPHERE_FAULT'],
  ]) {
    const fault = new VsphereFault({ faultType: type, faultMessage: 'm' }, 'M', { server: 's:1', vm: { name: 'v', moref: 'vm-1' }, diskKey: 2000 });
    assert.equal(fault.code, code);
    assert.equal(fault.faultType, type);
    assert.match(fault.message, /M failed with .*: m \(server s:1, VM "v" \(vm-1\), disk 2000\)/);
  }
});

test('a non-envelope or empty body is a VSPHERE_BAD_RESPONSE', () => {
  assert.throws(() => parseResponse('<html/>'), { code: 'VSPHERE_BAD_RESPONSE' });
  assert.throws(() => parseResponse('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>'), { code: 'VSPHERE_BAD_RESPONSE' });
});

const devicesXml = `<val xsi:type="ArrayOfVirtualDevice" ${XSI}>
  <VirtualDevice xsi:type="VirtualIDEController"><key>200</key><deviceInfo><label>IDE 0</label></deviceInfo><busNumber>0</busNumber></VirtualDevice>
  <VirtualDevice xsi:type="VirtualDisk"><key>2000</key><deviceInfo><label>Hard disk 1</label></deviceInfo>
    <backing xsi:type="VirtualDiskSparseVer2BackingInfo"><fileName>[ds1] web/web-000002.vmdk</fileName><datastore type="Datastore">datastore-11</datastore>
      <changeId>52 54 eb 64 13 82 bc 71-41 42 a2 b3 ba f4 96 2e/102</changeId>
      <parent xsi:type="VirtualDiskSparseVer2BackingInfo"><fileName>[ds1] web/web-000001.vmdk</fileName>
        <parent xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>[ds1] web/web.vmdk</fileName></parent></parent>
    </backing><controllerKey>1000</controllerKey><unitNumber>0</unitNumber><capacityInKB>20483</capacityInKB><capacityInBytes>20974595</capacityInBytes></VirtualDevice>
  <VirtualDevice xsi:type="VirtualDisk"><key>2001</key><deviceInfo><label>Hard disk 2</label></deviceInfo>
    <backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>[ds1] web/web_1.vmdk</fileName></backing><capacityInKB>9007199254740</capacityInKB></VirtualDevice>
</val>`;

test('disks: polymorphic devices filtered by xsi:type, backing chain through parent, capacityInKB fallback', () => {
  const disks = decodeDisks(parseXml(devicesXml));
  assert.deepEqual(
    disks.map((d) => [d.key, d.label, d.capacityBytes, d.backingType, d.changeId, d.backingChain, d.datastore?.value]),
    [
      [2000, 'Hard disk 1', 20974595, 'VirtualDiskSparseVer2BackingInfo', '52 54 eb 64 13 82 bc 71-41 42 a2 b3 ba f4 96 2e/102', ['[ds1] web/web-000002.vmdk', '[ds1] web/web-000001.vmdk', '[ds1] web/web.vmdk'], 'datastore-11'],
      [2001, 'Hard disk 2', 9007199254740 * 1024, 'VirtualDiskFlatVer2BackingInfo', undefined, ['[ds1] web/web_1.vmdk'], undefined],
    ],
  );
});

function objectContent(moref: string, props: Record<string, string>): string {
  const propSet = Object.entries(props)
    .map(([name, val]) => `<propSet><name>${name}</name>${val.startsWith('<val') ? val : `<val xsi:type="xsd:string">${val}</val>`}</propSet>`)
    .join('');
  return `<objects><obj type="VirtualMachine">${moref}</obj>${propSet}</objects>`;
}

test('listVms: ContainerView + TraversalSpec with xsi:type, paging via token, view destroyed, values decoded', async () => {
  const { session, calls } = fakeSession((call) => {
    if (call.method === 'CreateContainerView') return reply(call.method, '<returnval type="ContainerView">session[1]view-1</returnval>');
    if (call.method === 'RetrievePropertiesEx') {
      return reply(call.method, `<returnval><token>page-2</token>${objectContent('vm-57', { name: 'b', 'runtime.powerState': 'poweredOn', 'config.changeTrackingEnabled': 'true', 'config.hardware.device': devicesXml })}</returnval>`);
    }
    if (call.method === 'ContinueRetrievePropertiesEx') return reply(call.method, `<returnval>${objectContent('vm-60', { name: 'a', 'runtime.powerState': 'poweredOff' })}</returnval>`);
    if (call.method === 'DestroyView') return reply(call.method, '');
    throw new Error(`unexpected ${call.method}`);
  });
  const vms = await listVms(session);
  assert.deepEqual(calls.map((c) => c.method), ['CreateContainerView', 'RetrievePropertiesEx', 'ContinueRetrievePropertiesEx', 'DestroyView']);
  assert.equal(
    bodyOf(calls[0]),
    '<_this type="ViewManager">ViewManager</_this><container type="Folder">group-d1</container><type>VirtualMachine</type><recursive>true</recursive>',
  );
  assert.equal(
    bodyOf(calls[1]),
    '<_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>VirtualMachine</type><all>false</all>' +
      '<pathSet>name</pathSet><pathSet>config.instanceUuid</pathSet><pathSet>runtime.powerState</pathSet><pathSet>config.changeTrackingEnabled</pathSet><pathSet>config.hardware.device</pathSet><pathSet>runtime.consolidationNeeded</pathSet>' +
      '</propSet><objectSet><obj type="ContainerView">session[1]view-1</obj><skip>true</skip><selectSet xsi:type="TraversalSpec"><name>view</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet>' +
      '<options><maxObjects>100</maxObjects></options>',
  );
  assert.equal(bodyOf(calls[2]), '<_this type="PropertyCollector">propertyCollector</_this><token>page-2</token>');
  assert.deepEqual(
    vms.map((v) => [v.name, v.moref.value, v.powerState, v.cbtEnabled, v.disks.length]),
    [
      ['a', 'vm-60', 'poweredOff', false, 0],
      ['b', 'vm-57', 'poweredOn', true, 2],
    ],
  );
});

test('findVm by instance UUID and by inventory path use SearchIndex; not found is VM_NOT_FOUND', async () => {
  const { session, calls } = fakeSession((call) => {
    if (call.method === 'FindByUuid' || call.method === 'FindByInventoryPath') return reply(call.method, '');
    throw new Error(`unexpected ${call.method}`);
  });
  await assert.rejects(findVm(session, { instanceUuid: 'b4689bed-97f0-5bcd-8a4c-07477cc8f06f' }), { code: 'VM_NOT_FOUND' });
  await assert.rejects(findVm(session, { path: 'DC0/vm/x' }), { code: 'VM_NOT_FOUND' });
  assert.equal(bodyOf(calls[0]), '<_this type="SearchIndex">SearchIndex</_this><uuid>b4689bed-97f0-5bcd-8a4c-07477cc8f06f</uuid><vmSearch>true</vmSearch><instanceUuid>true</instanceUuid>');
  assert.equal(bodyOf(calls[1]), '<_this type="SearchIndex">SearchIndex</_this><inventoryPath>DC0/vm/x</inventoryPath>');
});

function taskInfo(state: string, extra = ''): string {
  return `<returnval><objects><obj type="Task">task-1</obj><propSet><name>info</name><val xsi:type="TaskInfo"><key>task-1</key><task type="Task">task-1</task><state>${state}</state>${extra}</val></propSet></objects></returnval>`;
}

test('tasks: ReconfigVM_Task sends VirtualMachineConfigSpec with xsi:type; a task error becomes the same fault class', async () => {
  let polls = 0;
  const { session, calls } = fakeSession((call) => {
    if (call.method === 'ReconfigVM_Task') return reply(call.method, '<returnval type="Task">task-1</returnval>');
    if (call.method === 'RetrievePropertiesEx' && call.envelope.includes('<type>Task</type>')) {
      polls++;
      if (polls === 1) return reply(call.method, taskInfo('running', '<progress>40</progress>'));
      return reply(
        call.method,
        taskInfo('error', `<error><fault xsi:type="InvalidState"><faultMessage><key>k</key></faultMessage></fault><localizedMessage>The operation is not allowed in the current state.</localizedMessage></error>`),
      );
    }
    throw new Error(`unexpected ${call.method}`);
  });
  const progress: Array<number | undefined> = [];
  await assert.rejects(enableCbt(session, vm, { onProgress: (p) => progress.push(p.percent) }), (e: unknown) => {
    assert.ok(e instanceof VsphereFault);
    assert.equal(e.code, 'VSPHERE_FAULT');
    assert.equal(e.faultType, 'InvalidState');
    assert.equal(e.method, 'ReconfigVM_Task');
    assert.match(e.message, /ReconfigVM_Task failed with InvalidState: The operation is not allowed in the current state\. \(server fake\.example:443, VM "web "01"" \(vm-57\)\)/);
    return true;
  });
  assert.equal(bodyOf(calls[0]), '<_this type="VirtualMachine">vm-57</_this><spec xsi:type="VirtualMachineConfigSpec"><changeTrackingEnabled>true</changeTrackingEnabled></spec>');
  assert.deepEqual(progress, [40, undefined]);
});

test('snapshots: create/remove requests, task result moref, consolidation when still needed, leftovers need name prefix AND marker', async () => {
  const { session, calls } = fakeSession((call) => {
    if (call.method.endsWith('_Task')) return reply(call.method, '<returnval type="Task">task-1</returnval>');
    if (call.method === 'CurrentTime') return reply('CurrentTime', '<returnval>2026-01-01T00:00:00Z</returnval>');
    if (call.envelope.includes('<type>Task</type>')) {
      return reply('RetrievePropertiesEx', taskInfo('success', '<result type="VirtualMachineSnapshot" xsi:type="ManagedObjectReference">snapshot-20</result>'));
    }
    if (call.envelope.includes('<pathSet>runtime.consolidationNeeded</pathSet>')) {
      return reply('RetrievePropertiesEx', `<returnval>${objectContent('vm-57', { 'runtime.consolidationNeeded': '<val xsi:type="xsd:boolean">true</val>' })}</returnval>`);
    }
    if (call.envelope.includes('<pathSet>snapshot</pathSet>')) {
      const tree = (moref: string, name: string, description: string, childXml = '') =>
        `<rootSnapshotList><snapshot type="VirtualMachineSnapshot">${moref}</snapshot><vm type="VirtualMachine">vm-57</vm><name>${name}</name><description>${description}</description><createTime>2026-01-01T00:00:00Z</createTime><quiesced>false</quiesced>${childXml}</rootSnapshotList>`;
      const child = `<childSnapshotList><snapshot type="VirtualMachineSnapshot">snapshot-3</snapshot><name>vcbt-backup-x</name><description>[vcbt-owned] backup</description><quiesced>true</quiesced></childSnapshotList>`;
      const val = `<val xsi:type="VirtualMachineSnapshotInfo"><currentSnapshot type="VirtualMachineSnapshot">snapshot-3</currentSnapshot>${tree('snapshot-1', 'vcbt-manual', 'operator snapshot', child)}${tree('snapshot-2', 'nightly', '[vcbt-owned] but renamed')}</val>`;
      return reply('RetrievePropertiesEx', `<returnval>${objectContent('vm-57', { snapshot: val })}</returnval>`);
    }
    throw new Error(`unexpected ${call.method}: ${call.envelope}`);
  });
  const snapshot = await createSnapshot(session, vm, { name: 'vcbt-backup-1', quiesce: true });
  assert.deepEqual(snapshot, moRef('VirtualMachineSnapshot', 'snapshot-20'));
  // The server's time comes first: the owner record's lease is written in it.
  assert.equal(calls[0].method, 'CurrentTime');
  assert.match(bodyOf(calls[1]), /^<_this type="VirtualMachine">vm-57<\/_this><name>vcbt-backup-1<\/name><description>\[vcbt-owned\] owner=\{&quot;host&quot;:[^<]*&quot;lease&quot;:&quot;2026-01-01T00:10:00\.000Z&quot;\} backup snapshot[^<]*<\/description><memory>false<\/memory><quiesce>true<\/quiesce>$/);
  calls.length = 0;
  assert.deepEqual(await removeSnapshot(session, vm, snapshot), { consolidated: true });
  assert.deepEqual(calls.filter((c) => c.method.endsWith('_Task')).map((c) => bodyOf(c)), [
    '<_this type="VirtualMachineSnapshot">snapshot-20</_this><removeChildren>false</removeChildren><consolidate>true</consolidate>',
    '<_this type="VirtualMachine">vm-57</_this>',
  ]);
  const leftovers = await findLeftoverSnapshots(session, vm);
  assert.deepEqual(leftovers.map((s) => [s.moref.value, s.name, s.quiesced]), [['snapshot-3', 'vcbt-backup-x', true]]);
});

test('waitForTask: an unknown task state is VSPHERE_BAD_RESPONSE', async () => {
  const { session } = fakeSession(() => reply('RetrievePropertiesEx', taskInfo('exploded')));
  await assert.rejects(waitForTask(session, moRef('Task', 'task-1'), { method: 'X_Task' }), { code: 'VSPHERE_BAD_RESPONSE' });
});
