// Proof that each documented QueryChangedDiskAreas fault arrives as the documented SOAP
// fault, that CBT disable voids ChangeIds, that the KB 2090639 resize defect shows, and that
// the cut faults hit the first data transfer longer than N (GET /faults shows what is armed).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { startLab, type GovmomiFault, type Lab } from './lab.ts';
import { folderGet, soapCall, login } from './raw-https.ts';

interface Snap {
  moref: string;
  disks: Array<{ key: number; changeId: string; capacityBytes: number }>;
}
interface Areas {
  areas: Array<{ start: number; length: number }>;
  capacityBytes: number;
}

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const block = 64 * KiB;
const on = 'DC0_C0_RP0_VM1'; // powered on
const off = 'DC0_H0_VM1'; // powered off

let lab: Lab;
before(async () => {
  lab = await startLab({ otherDiskBytes: 4 * MiB });
});
after(async () => {
  await lab?.stop();
});

function keyOf(vm: string): string {
  return String(lab.info.vms.find((v) => v.name === vm)!.disks[0].key);
}

function assertFault(result: unknown, fault: string, message?: RegExp): void {
  const f = result as GovmomiFault;
  assert.equal(f.fault, fault, JSON.stringify(result));
  if (message) assert.match(f.message, message);
}

test('faults: CBT off, missing snapshot, bad ChangeId, bad key, bad offset, injected', async () => {
  const key = keyOf(on);
  const s0 = (await lab.govmomi(['snapshot-create', on, 'no-cbt'])) as Snap;
  assert.equal(s0.disks[0].changeId, '');
  assertFault(await lab.govmomi(['query', on, key, s0.moref, '*']), 'FileFault', /Change tracking is not active/);
  await lab.govmomi(['snapshot-remove', on, s0.moref]);

  await lab.govmomi(['cbt', on, 'on']);
  const s1 = (await lab.govmomi(['snapshot-create', on, 's1'])) as Snap;
  const c1 = s1.disks[0].changeId;
  assert.notEqual(c1, '');
  assertFault(await lab.govmomi(['query', on, key, '-', c1]), 'InvalidState', /powered on.*needs a snapshot/);
  assertFault(await lab.govmomi(['query', on, key, s1.moref, '52 54 eb 64 13 82 bc 71-41 42 a2 b3 ba f4 96 2e/1']), 'FileFault', /unknown or no longer valid/);
  assertFault(await lab.govmomi(['query', on, key, s1.moref, `${c1.split('/')[0]}/999`]), 'FileFault');
  assertFault(await lab.govmomi(['query', on, key, s1.moref, 'not-a-change-id']), 'InvalidArgument', /malformed ChangeId/);
  assertFault(await lab.govmomi(['query-once', on, '4242', s1.moref, '*', '0']), 'InvalidArgument', /no virtual disk with device key 4242/);
  assertFault(await lab.govmomi(['query-once', on, key, s1.moref, '*', String(4 * MiB)]), 'InvalidArgument', /startOffset/);
  const otherVmSnap = (await lab.govmomi(['snapshot-create', off, 'elsewhere'])) as Snap;
  assertFault(await lab.govmomi(['query-once', on, key, otherVmSnap.moref, '*', '0']), 'InvalidArgument', /is not a snapshot of VM/);
  await lab.govmomi(['snapshot-remove', off, otherVmSnap.moref]);

  await lab.faults({ queryChangedDiskAreas: { fault: 'FileFault', count: 2 } });
  assertFault(await lab.govmomi(['query', on, key, s1.moref, c1]), 'FileFault', /injected/);
  assertFault(await lab.govmomi(['query', on, key, s1.moref, c1]), 'FileFault', /injected/);
  assert.deepEqual(((await lab.govmomi(['query', on, key, s1.moref, c1])) as Areas).areas, []);
  await lab.faults({ queryChangedDiskAreas: { fault: 'NotFound', count: 1 } });
  assertFault(await lab.govmomi(['query', on, key, s1.moref, c1]), 'NotFound');
  await lab.govmomi(['snapshot-remove', on, s1.moref]);
});

test('faults on the wire: SOAP Fault with detail/<Type>Fault and xsi:type, like vcsim encodes its own', async () => {
  const vm = lab.info.vms.find((v) => v.name === on)!;
  const call = `<QueryChangedDiskAreas xmlns="urn:vim25"><_this type="VirtualMachine">${vm.moref}</_this><deviceKey>${vm.disks[0].key}</deviceKey><startOffset>0</startOffset><changeId>*</changeId></QueryChangedDiskAreas>`;
  const anonymous = await soapCall(lab.info, call);
  assert.equal(anonymous.status, 500);
  assert.match(anonymous.body.toString(), /<detail><NotAuthenticatedFault xmlns="urn:vim25" xsi:type="NotAuthenticated">/);

  const cookie = await login(lab.info);
  const res = await soapCall(lab.info, call, cookie);
  assert.equal(res.status, 500);
  const text = res.body.toString();
  assert.match(text, /<soapenv:Envelope xmlns:soapenc="http:\/\/schemas.xmlsoap.org\/soap\/encoding\/" xmlns:soapenv="http:\/\/schemas.xmlsoap.org\/soap\/envelope\/"/);
  assert.match(text, /<soapenv:Fault><faultcode>ServerFaultCode<\/faultcode><faultstring>VM DC0_C0_RP0_VM1 is powered on: QueryChangedDiskAreas needs a snapshot<\/faultstring><detail><InvalidStateFault xmlns="urn:vim25" xsi:type="InvalidState"><\/InvalidStateFault><\/detail><\/soapenv:Fault>/);

  const missing = await soapCall(lab.info, call.replace(vm.moref, 'vm-99999'), cookie);
  assert.match(missing.body.toString(), /<ManagedObjectNotFoundFault xmlns="urn:vim25" xsi:type="ManagedObjectNotFound">/);

  // Expired sessions: SOAP says NotAuthenticated, /folder says 401.
  assert.equal((await folderGet(lab.info, vm.disks[0].file, cookie)).status, 200);
  assert.ok((await lab.expireSessions()) >= 1);
  assert.match((await soapCall(lab.info, call, cookie)).body.toString(), /<NotAuthenticatedFault xmlns="urn:vim25" xsi:type="NotAuthenticated">/);
  assert.equal((await folderGet(lab.info, vm.disks[0].file, cookie)).status, 401);
});

test('disabling CBT voids ChangeIds; re-enabling starts a new epoch (powered-off VM: no snapshot needed)', async () => {
  const key = keyOf(off);
  await lab.govmomi(['cbt', off, 'on']);
  // Powered off: CBT is active at once, and queries may omit the snapshot.
  const live = (await lab.govmomi(['vm-disks', off])) as { disks: Array<{ changeId: string }> };
  const c0 = live.disks[0].changeId;
  assert.notEqual(c0, '');
  await lab.write(off, Number(key), 100 * KiB, new Uint8Array(10).fill(1));
  const s = (await lab.govmomi(['snapshot-create', off, 'a'])) as Snap;
  assert.deepEqual(((await lab.govmomi(['query', off, key, '-', '*'])) as Areas).areas, [{ start: block, length: block }]);
  assert.deepEqual(((await lab.govmomi(['query', off, key, s.moref, c0])) as Areas).areas, [{ start: block, length: block }]);
  await lab.govmomi(['snapshot-remove', off, s.moref]);

  await lab.govmomi(['cbt', off, 'off']);
  assertFault(await lab.govmomi(['query', off, key, '-', c0]), 'FileFault', /not active/);
  await lab.govmomi(['cbt', off, 'on']);
  const c1 = ((await lab.govmomi(['vm-disks', off])) as { disks: Array<{ changeId: string }> }).disks[0].changeId;
  assert.notEqual(c1.split('/')[0], c0.split('/')[0], 'a new epoch');
  assertFault(await lab.govmomi(['query', off, key, '-', c0]), 'FileFault', /unknown or no longer valid/);
  assert.deepEqual(((await lab.govmomi(['query', off, key, '-', c1])) as Areas).areas, []);
});

test('resize defect (KB 2090639): a ChangeId from before the growth yields incomplete areas; the capacity change is visible', async () => {
  const vm = 'DC0_C0_RP0_VM0';
  const key = keyOf(vm);
  await lab.govmomi(['cbt', vm, 'on']);
  const s1 = (await lab.govmomi(['snapshot-create', vm, 'before'])) as Snap;
  await lab.write(vm, Number(key), 2 * block, new Uint8Array(1).fill(1)); // before the growth
  // ESXi refuses to extend a disk that has snapshots.
  assertFault(await lab.govmomi(['resize', vm, key, String(6 * MiB)]), 'InvalidState', /has snapshots/);
  await assert.rejects(lab.resize(vm, Number(key), 6 * MiB), /has snapshots/);
  const s2 = (await lab.govmomi(['snapshot-create', vm, 'middle'])) as Snap;
  await lab.govmomi(['snapshot-remove', vm, s1.moref]);
  await lab.govmomi(['snapshot-remove', vm, s2.moref]);
  assert.deepEqual(await lab.govmomi(['resize', vm, key, String(6 * MiB)]), { ok: true });
  assertFault(await lab.govmomi(['resize', vm, key, String(5 * MiB)]), 'InvalidArgument', /shrinking/);
  await lab.write(vm, Number(key), 0, new Uint8Array(1).fill(1)); // after the growth, inside the old size
  await lab.write(vm, Number(key), 5 * MiB, new Uint8Array(1).fill(1)); // beyond the old size
  const s3 = (await lab.govmomi(['snapshot-create', vm, 'after'])) as Snap;
  assert.equal(s1.disks[0].capacityBytes, 4 * MiB);
  assert.equal(s3.disks[0].capacityBytes, 6 * MiB);
  assert.equal((await lab.sha256(vm, Number(key), s3.moref)).capacityBytes, 6 * MiB);

  // Truth: blocks 0, 2 and the one at 5 MiB changed since s1; the old ChangeId reports only block 2.
  const stale = (await lab.govmomi(['query', vm, key, s3.moref, s1.disks[0].changeId])) as Areas;
  assert.deepEqual(stale.areas, [{ start: 2 * block, length: block }]);
  // A ChangeId taken after the growth is complete again, beyond the old size too.
  await lab.write(vm, Number(key), 4 * MiB + 1, new Uint8Array(1).fill(1));
  const s4 = (await lab.govmomi(['snapshot-create', vm, 'later'])) as Snap;
  const fresh = (await lab.govmomi(['query', vm, key, s4.moref, s3.disks[0].changeId])) as Areas;
  assert.deepEqual(fresh.areas, [{ start: 4 * MiB, length: block }]);
  await lab.govmomi(['snapshot-remove', vm, s4.moref]);
  await lab.govmomi(['snapshot-remove', vm, s3.moref]);
});

test('reverting is refused; RemoveAllSnapshots consolidates every level', async () => {
  const vm = 'DC0_H0_VM0';
  const key = 2001;
  const before = await lab.sha256(vm, key);
  const a = (await lab.govmomi(['snapshot-create', vm, 'a'])) as Snap;
  await lab.write(vm, key, 0, new Uint8Array(4096).fill(3));
  const b = (await lab.govmomi(['snapshot-create', vm, 'b'])) as Snap;
  await lab.write(vm, key, MiB, new Uint8Array(4096).fill(4));
  const live = await lab.sha256(vm, key);
  assert.notEqual(live.sha256, before.sha256);
  assertFault(await lab.govmomi(['revert', vm, a.moref]), 'NotSupported', /reverting/);
  assert.equal((await lab.sha256(vm, key, a.moref)).sha256, before.sha256);
  assert.deepEqual((await lab.snapshots(vm)).map((s) => s.moref), [a.moref, b.moref]);
  assert.deepEqual(await lab.govmomi(['snapshot-remove-all', vm]), { ok: true });
  assert.deepEqual(await lab.snapshots(vm), []);
  assert.deepEqual(await lab.sha256(vm, key), live);
  const disks = ((await lab.govmomi(['vm-disks', vm])) as { disks: Array<{ key: number; file: string; parent?: string }> }).disks;
  assert.deepEqual(
    disks.map((d) => [d.file, d.parent]),
    [
      ['[LocalDS_0] DC0_H0_VM0/disk1.vmdk', undefined],
      ['[LocalDS_0] DC0_H0_VM0/disk2.vmdk', undefined],
    ],
  );
});

test('injected method faults: snapshot create/remove tasks fail once; consolidationNeeded until ConsolidateVMDisks', async () => {
  const vm = 'DC0_H0_VM0';
  await lab.faults({ methods: { CreateSnapshot_Task: { fault: 'SnapshotFault', count: 1 }, RemoveSnapshot_Task: { fault: 'TaskInProgress', count: 1 } } });
  assertFault(await lab.govmomi(['snapshot-create', vm, 'fails']), 'SnapshotFault', /injected SnapshotFault for CreateSnapshot_Task/);
  assert.deepEqual(await lab.snapshots(vm), []);
  const s = (await lab.govmomi(['snapshot-create', vm, 'works'])) as Snap;
  assertFault(await lab.govmomi(['snapshot-remove', vm, s.moref]), 'TaskInProgress');
  assert.deepEqual((await lab.snapshots(vm)).map((x) => x.moref), [s.moref]);

  await lab.faults({ consolidationNeeded: true });
  assert.deepEqual(await lab.govmomi(['snapshot-remove', vm, s.moref]), { ok: true });
  assert.equal(((await lab.govmomi(['vm-disks', vm])) as { consolidationNeeded: boolean }).consolidationNeeded, true);
  assert.deepEqual(await lab.govmomi(['consolidate', vm]), { ok: true });
  assert.equal(((await lab.govmomi(['vm-disks', vm])) as { consolidationNeeded: boolean }).consolidationNeeded, false);
});

test('cut faults pass shorter transfers, cut the first /folder response or NBD connection longer than N at N, then disarm', async () => {
  const disk = lab.info.vms.find((v) => v.name === off)!.disks[0];
  const data = randomBytes(MiB);
  await lab.write(off, disk.key, 0, data);
  const extentPath = disk.file.replace(/\.vmdk$/, '-flat.vmdk');
  const cookie = await login(lab.info);

  await lab.faults({ httpCutAfterBytes: 4096, queryChangedDiskAreas: { fault: 'NotFound', count: 1 } });
  assert.deepEqual(await lab.faultsArmed(), { httpCutAfterBytes: 4096, queryChangedDiskAreas: { fault: 'NotFound', count: 1 } });
  assertFault(await lab.govmomi(['query', off, String(disk.key), '-', '*']), 'NotFound');
  // What a datastore reader fetches first - the descriptor - and a response of exactly N bytes pass whole.
  const descriptor = await folderGet(lab.info, disk.file, cookie);
  assert.equal(descriptor.status, 200);
  assert.equal(descriptor.truncated, false);
  assert.match(descriptor.body.toString(), /createType="vmfs"/);
  const exact = await folderGet(lab.info, extentPath, cookie, '0-4095');
  assert.equal(exact.truncated, false);
  assert.ok(exact.body.equals(data.subarray(0, 4096)));
  assert.deepEqual(await lab.faultsArmed(), { httpCutAfterBytes: 4096 });
  // The first data read longer than N is cut after exactly N bytes, under a full Content-Length.
  const cut = await folderGet(lab.info, extentPath, cookie, `0-${MiB - 1}`);
  assert.equal(cut.status, 206);
  assert.equal(cut.headers['content-length'], String(MiB));
  assert.equal(cut.truncated, true);
  assert.ok(cut.body.equals(data.subarray(0, 4096)));
  assert.deepEqual(await lab.faultsArmed(), {});
  const whole = await folderGet(lab.info, extentPath, cookie, `0-${MiB - 1}`);
  assert.equal(whole.truncated, false);
  assert.ok(whole.body.equals(data));

  const exp = await lab.nbdExport(off, disk.key);
  try {
    await lab.faults({ nbdCutAfterBytes: 64 * KiB });
    // A size probe is a handshake of a few hundred bytes: not cut, the fault stays armed.
    assert.equal(Number((await run('nbdinfo', ['--size', exp.uri])).stdout.trim()), disk.capacityBytes);
    assert.deepEqual(await lab.faultsArmed(), { nbdCutAfterBytes: 64 * KiB });
    await assert.rejects(run('nbdcopy', ['--connections=1', exp.uri, 'null:']));
    assert.deepEqual(await lab.faultsArmed(), {});
    await run('nbdcopy', ['--connections=1', exp.uri, 'null:']);
  } finally {
    await lab.closeExport(exp.id);
  }
});
