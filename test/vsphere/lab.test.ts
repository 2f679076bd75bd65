// The vSphere client against the lab: inventory look-ups, snapshots, and every failure the
// issue names (injected FileFault, voided ChangeId, CBT off, wrong password, unreachable
// server, expired session) each with its own, specific outcome.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { startLab, type Lab } from '../lab/lab.ts';
import {
  connect,
  createSnapshot,
  findLeftoverSnapshots,
  findVm,
  listSnapshots,
  queryChangedAreas,
  removeSnapshot,
  runTask,
  withSnapshot,
  ChangeIdInvalidError,
  type VsphereSession,
  type VmInfo,
} from '../../src/vsphere/vsphere.ts';
import { postXml } from '../../src/vsphere/http.ts';
import { buildEnvelope } from '../../src/vsphere/soap.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { login, soapCall } from '../lab/raw-https.ts';

const VM = 'DC0_H0_VM0';
let lab: Lab;
let session: VsphereSession;
let flags: string[];
let env: NodeJS.ProcessEnv;

before(async () => {
  lab = await startLab({ diskSizes: [4 * 1048576 + 3072, 2 * 1048576] });
  ({ flags, env } = labConnection(lab));
  session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  const enabled = await runCli(['cbt', 'enable', '--vm', VM, ...flags], env);
  assert.equal(enabled.code, 0, enabled.stderr);
});

after(async () => {
  await session?.logout();
  await lab?.stop();
});

async function changeIdNow(vm: VmInfo, diskKey: number): Promise<string> {
  const out = await runCli(['changes', '--vm', vm.moref.value, '--disk', String(diskKey), '--all', '--take-snapshot', ...flags], env);
  assert.equal(out.code, 0, out.stderr);
  return (JSON.parse(out.stdout) as { changeIds: Array<{ key: number; changeId: string }> }).changeIds.find((c) => c.key === diskKey)!.changeId;
}

test('findVm by name, inventory path, moref and instance UUID agree; unknown ones are VM_NOT_FOUND', async () => {
  const labVm = lab.info.vms.find((v) => v.name === VM)!;
  const byName = await findVm(session, { name: VM });
  assert.equal(byName.moref.value, labVm.moref);
  assert.deepEqual(byName.disks.map((d) => [d.key, d.capacityBytes, d.fileName]), labVm.disks.map((d) => [d.key, d.capacityBytes, d.file]));
  assert.equal(byName.cbtEnabled, true);
  for (const selector of [{ path: `${lab.info.datacenter}/vm/${VM}` }, { moref: labVm.moref }, { instanceUuid: labVm.instanceUuid }]) {
    assert.equal((await findVm(session, selector)).moref.value, labVm.moref, JSON.stringify(selector));
  }
  for (const selector of [{ name: 'nope' }, { path: `${lab.info.datacenter}/vm/nope` }, { moref: 'vm-99999' }, { instanceUuid: '00000000-0000-0000-0000-000000000000' }]) {
    await assert.rejects(findVm(session, selector), { code: 'VM_NOT_FOUND' }, JSON.stringify(selector));
  }
});

test('snapshots: leftovers of ours are found (prefix and marker), an operator snapshot is not; withSnapshot removes on error', async () => {
  const vm = await findVm(session, { name: VM });
  const ours = await createSnapshot(session, vm, { purpose: 'crashed-run' });
  const theirs = await runTask(session, 'CreateSnapshot_Task', vm.moref, { name: 'vcbt-looks-like-ours', description: 'operator', memory: false, quiesce: false });
  assert.ok(theirs);
  try {
    assert.deepEqual((await findLeftoverSnapshots(session, vm)).map((s) => s.moref.value), [ours.value]);
    assert.equal((await listSnapshots(session, vm)).length, 2);
  } finally {
    // Newest first: the lab mis-tracks removing a parent snapshot of a CBT disk and then
    // its child (reported; the real server does not care about the order).
    const operator = (await listSnapshots(session, vm)).find((s) => s.name === 'vcbt-looks-like-ours')!;
    await removeSnapshot(session, vm, operator.moref);
    await removeSnapshot(session, vm, ours);
  }
  await assert.rejects(
    withSnapshot(session, vm, { purpose: 'failing-work' }, () => Promise.reject(new Error('work failed'))),
    /work failed/,
  );
  assert.deepEqual(await lab.snapshots(VM), []);
  // Ctrl-C during the query: the query stops with VSPHERE_CANCELLED, the snapshot still goes.
  const interrupted = AbortSignal.abort(new Error('interrupted by SIGINT'));
  await assert.rejects(
    withSnapshot(session, vm, { purpose: 'interrupted' }, (snapshot) =>
      queryChangedAreas(session, { vm, snapshot, deviceKey: 2000, capacityBytes: vm.disks[0].capacityBytes, changeId: '*', signal: interrupted }),
    ),
    { code: 'VSPHERE_CANCELLED' },
  );
  assert.deepEqual(await lab.snapshots(VM), []);
});

test('an injected FileFault: --since gives CBT_CHANGEID_INVALID (never "no changes"), --all a VSPHERE_FAULT; snapshot removed', async () => {
  const vm = await findVm(session, { name: VM });
  const changeId = await changeIdNow(vm, 2000);
  await lab.write(VM, 2000, 0, new Uint8Array(4096).fill(9));
  await lab.faults({ queryChangedDiskAreas: { fault: 'FileFault', count: 1 } });
  const since = await runCli(['changes', '--vm', VM, '--disk', '2000', '--since', changeId, '--take-snapshot', ...flags], env);
  assert.equal(since.code, 1);
  assert.equal(since.stdout, '');
  assert.match(since.stderr, /CBT_CHANGEID_INVALID: ChangeId ".*" is not usable: the server answered FileFault: injected FileFault/);
  assert.match(since.stderr, new RegExp(`server 127\\.0\\.0\\.1:\\d+, VM "${VM}" \\(${vm.moref.value}\\), disk 2000`));
  assert.deepEqual(await lab.snapshots(VM), []);

  await lab.faults({ queryChangedDiskAreas: { fault: 'FileFault', count: 1 } });
  const all = await runCli(['changes', '--vm', VM, '--disk', '2000', '--all', '--take-snapshot', ...flags], env);
  assert.equal(all.code, 1);
  assert.match(all.stderr, /VSPHERE_FAULT: QueryChangedDiskAreas failed with FileFault/);
  assert.deepEqual(await lab.snapshots(VM), []);

  // The fault fired once; the same ChangeId now answers with the write.
  const retry = await runCli(['changes', '--vm', VM, '--disk', '2000', '--since', changeId, '--take-snapshot', ...flags], env);
  assert.equal(retry.code, 0, retry.stderr);
  assert.deepEqual((JSON.parse(retry.stdout) as { areas: unknown }).areas, [{ offsetBytes: 0, lengthBytes: 65536 }]);
});

test('a ChangeId voided by a CBT reset is CBT_CHANGEID_INVALID, from our epoch check and from the server', async () => {
  const vm = await findVm(session, { name: VM });
  const old = await changeIdNow(vm, 2001);
  const reset = await runCli(['cbt', 'reset', '--vm', VM, '--json', ...flags], env);
  assert.equal(reset.code, 0, reset.stderr);
  assert.equal((JSON.parse(reset.stdout) as { cbtEnabled: boolean }).cbtEnabled, true);
  const cli = await runCli(['changes', '--vm', VM, '--disk', '2001', '--since', old, '--take-snapshot', ...flags], env);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /CBT_CHANGEID_INVALID: .*epoch differs/);
  // Asked without our epoch check, the server itself refuses it (FileFault).
  await withSnapshot(session, vm, { purpose: 'test' }, async (snapshot) => {
    await assert.rejects(queryChangedAreas(session, { vm, snapshot, deviceKey: 2001, capacityBytes: 2 * 1048576, changeId: old }), (e: unknown) => {
      assert.ok(e instanceof ChangeIdInvalidError);
      assert.match(e.message, /FileFault/);
      return true;
    });
  });
  // The fallback works: allocated areas after the reset.
  assert.match(await changeIdNow(vm, 2001), /\/\d+$/);
});

test('CBT off: CBT_NOT_ENABLED from `changes`, and `cbt disable`/`enable` switch it', async () => {
  const off = 'DC0_C0_RP0_VM0';
  const result = await runCli(['changes', '--vm', off, '--disk', '2000', '--all', '--take-snapshot', ...flags], env);
  assert.equal(result.code, 1);
  assert.match(result.stderr, new RegExp(`CBT_NOT_ENABLED: Changed Block Tracking is off on VM "${off}" .*vcbt cbt enable`));
  assert.deepEqual(await lab.snapshots(off), []);
  const disabled = await runCli(['cbt', 'disable', '--vm', VM, '--json', ...flags], env);
  assert.equal(disabled.code, 0, disabled.stderr);
  assert.equal((JSON.parse(disabled.stdout) as { cbtEnabled: boolean }).cbtEnabled, false);
  const refused = await runCli(['changes', '--vm', VM, '--disk', '2000', '--all', '--take-snapshot', ...flags], env);
  assert.match(refused.stderr, /CBT_NOT_ENABLED/);
  const enabled = await runCli(['cbt', 'enable', '--vm', VM, ...flags], env);
  assert.equal(enabled.code, 0, enabled.stderr);
});

test('a powered-on VM without a snapshot is SNAPSHOT_REQUIRED; an unknown disk is DISK_NOT_FOUND', async () => {
  const noSnapshot = await runCli(['changes', '--vm', VM, '--disk', '2000', '--all', ...flags], env);
  assert.match(noSnapshot.stderr, /SNAPSHOT_REQUIRED/);
  const noDisk = await runCli(['changes', '--vm', VM, '--disk', '2999', '--all', '--take-snapshot', ...flags], env);
  assert.match(noDisk.stderr, /DISK_NOT_FOUND: no disk with key 2999; disks: 2000 \(Hard disk 1\), 2001 \(Hard disk 2\)/);
  assert.deepEqual(await lab.snapshots(VM), []);
});

test('wrong password is VSPHERE_INVALID_LOGIN and the password appears nowhere', async () => {
  const secret = 'not-the-password-0123';
  const result = await runCli(['vms', ...flags], { VCBT_PASSWORD: secret });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /VSPHERE_INVALID_LOGIN: Login failed with InvalidLogin/);
  assert.ok(!result.stderr.includes(secret) && !result.stdout.includes(secret));
  await assert.rejects(connect({ server: lab.info.sdk, username: lab.info.username, password: secret, thumbprint: lab.info.thumbprintSha1 }), (e: unknown) => {
    assert.ok(!JSON.stringify((e as { context: unknown }).context).includes(secret));
    return true;
  });
});

test('serverFingerprints() reports the certificate the lab presents (for nbdkit-vddk)', async () => {
  assert.deepEqual(await session.serverFingerprints(), { sha1: lab.info.thumbprintSha1, sha256: lab.info.fingerprintSha256 });
});

test('wrong thumbprint and no thumbprint fail on TLS, naming the fingerprints the lab presented', async () => {
  const wrong = await runCli(['vms', '--server', lab.info.sdk, '--user', lab.info.username, '--thumbprint', '00:' + lab.info.thumbprintSha1.slice(3)], env);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /TLS_FINGERPRINT_MISMATCH/);
  assert.ok(wrong.stderr.includes(lab.info.thumbprintSha1) && wrong.stderr.includes(lab.info.fingerprintSha256));
  const none = await runCli(['vms', '--server', lab.info.sdk, '--user', lab.info.username], env);
  assert.match(none.stderr, /TLS_UNTRUSTED/);
});

test('an unreachable server is VSPHERE_UNREACHABLE naming it', async () => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const result = await runCli(['vms', '--server', `127.0.0.1:${port}`, '--user', 'u', '--thumbprint', lab.info.thumbprintSha1], env);
  assert.equal(result.code, 1);
  assert.match(result.stderr, new RegExp(`VSPHERE_UNREACHABLE: .*ECONNREFUSED.*\\(server 127\\.0\\.0\\.1:${port}\\)`));
});

test('an expired session (logged out elsewhere) re-logs in transparently; so does NotAuthenticated mid-query', async () => {
  const own = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  try {
    const cookie = own.cookieHeader();
    // Another client ends this session, as an idle timeout or a server restart would.
    const logout = await postXml(own.sdkUrl, buildEnvelope('Logout', own.serviceContent.sessionManager), { agent: own.agent, headers: { Cookie: cookie }, signal: AbortSignal.timeout(10_000), maxResponseBytes: 1 << 20, inactivityTimeoutMs: 10_000 });
    assert.equal(logout.status, 200);
    const vm = await findVm(own, { name: VM });
    assert.equal(vm.name, VM);
    assert.equal(own.reloginCount, 1);
    assert.notEqual(own.cookieHeader(), cookie);

    await lab.write(VM, 2001, 5 * 65536, new Uint8Array(100).fill(3));
    await withSnapshot(own, vm, { purpose: 'test' }, async (snapshot) => {
      await lab.faults({ queryChangedDiskAreas: { fault: 'NotAuthenticated', count: 1 } });
      const areas = await queryChangedAreas(own, { vm, snapshot, deviceKey: 2001, capacityBytes: 2 * 1048576, changeId: '*' });
      assert.ok(areas.some((a) => a.offsetBytes <= 5 * 65536 && a.offsetBytes + a.lengthBytes > 5 * 65536));
    });
    assert.equal(own.reloginCount, 2);
  } finally {
    await own.logout();
  }
});

test('an ended session on the wire: property reads answer HTTP 200 with NotAuthenticated per property in missingSet; other methods a SOAP fault', async () => {
  const moref = lab.info.vms.find((v) => v.name === VM)!.moref;
  const read =
    '<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>VirtualMachine</type>' +
    `<pathSet>name</pathSet><pathSet>runtime.powerState</pathSet></propSet><objectSet><obj type="VirtualMachine">${moref}</obj></objectSet></specSet><options></options></RetrievePropertiesEx>`;
  const cookie = await login(lab.info);
  const live = await soapCall(lab.info, read, cookie);
  assert.equal(live.status, 200);
  assert.match(live.body.toString(), new RegExp(`<propSet><name>name</name><val [^>]*>${VM}</val>`));
  assert.ok((await lab.expireSessions()) >= 1);
  const ended = await soapCall(lab.info, read, cookie);
  assert.equal(ended.status, 200, 'not a SOAP fault');
  const text = ended.body.toString();
  for (const path of ['name', 'runtime.powerState']) {
    const missing = `<missingSet><path>${path}</path><fault><fault xsi:type="NotAuthenticated"><object type="VirtualMachine">${moref}</object><privilegeId>System.View</privilegeId></fault>`;
    assert.ok(text.includes(missing), `${path} in missingSet: ${text}`);
  }
  assert.doesNotMatch(text, /<propSet>/);
  const other = await soapCall(lab.info, '<CurrentTime xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></CurrentTime>', cookie);
  assert.equal(other.status, 500);
  assert.match(other.body.toString(), /<NotAuthenticatedFault xmlns="urn:vim25" xsi:type="NotAuthenticated">/);
});

test('the client re-logs in on NotAuthenticated in missingSet, and a re-login in the middle of a ContainerView read starts over with a fresh view', async () => {
  const causes: string[] = [];
  const own = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1, onRelogin: (cause) => causes.push(cause) });
  try {
    const vm = await findVm(own, { moref: lab.info.vms.find((v) => v.name === VM)!.moref });
    await lab.expireSessions();
    assert.equal((await findVm(own, { moref: vm.moref.value })).name, VM, 'a property read (HTTP 200, missingSet) healed');
    assert.deepEqual(causes, ['RetrievePropertiesEx answered NotAuthenticated']);

    // By name: CreateContainerView, then the session ends before the read of the view.
    await lab.clearSoapCalls();
    await lab.faults({ expireSessionsBeforeCall: 2 });
    assert.equal((await findVm(own, { name: VM })).moref.value, vm.moref.value);
    assert.deepEqual(await lab.faultsArmed(), {});
    assert.equal(own.reloginCount, 2);
    const calls = await lab.soapCalls();
    assert.deepEqual(calls.slice(0, 5), ['CreateContainerView', 'RetrievePropertiesEx', 'Login', 'CreateContainerView', 'RetrievePropertiesEx'], 'a fresh view in the new login');
  } finally {
    await own.logout();
  }
});

test("another VM's snapshot is SNAPSHOT_NOT_FOUND; an InvalidArgument about the snapshot is not a ChangeId problem", async () => {
  const vm = await findVm(session, { name: VM });
  const other = await findVm(session, { name: 'DC0_H0_VM1' });
  const changeId = await changeIdNow(vm, 2000);
  const snapshot = await createSnapshot(session, other);
  try {
    const result = await runCli(['changes', '--vm', VM, '--disk', '2000', '--since', changeId, '--snapshot', snapshot.value, ...flags], env);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`SNAPSHOT_NOT_FOUND: snapshot ${snapshot.value} belongs to ${other.moref.value}, not to this VM`));
    // Straight to the server, the lab answers InvalidArgument(invalidProperty=snapshot).
    await assert.rejects(queryChangedAreas(session, { vm, snapshot, deviceKey: 2000, capacityBytes: vm.disks[0].capacityBytes, changeId }), {
      code: 'VSPHERE_FAULT',
      faultType: 'InvalidArgument',
    });
  } finally {
    await removeSnapshot(session, other, snapshot);
  }
});
