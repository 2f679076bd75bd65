// `vcbt restore-vm` against the lab: a two-disk VM with guest data, backed up, comes back as a
// new VM whose disks hash (lab sha256) like the restore point and whose hardware matches the
// stored configuration; the lab decodes every upload with its own decoder and qemu-img and
// would fail the lease if they disagreed. An upload cut mid-way leaves no VM behind; a taken
// name, an unknown network and a full datastore are refused before anything is created.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, findVm, readVmConfig, type VmConfiguration, type VsphereSession } from '../../src/vsphere/vsphere.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { randomGuestWrites } from '../lab/guest-writes.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';

const vm = 'DC0_H0_VM0';
let lab: Lab;
let dir: string;
let repo: string;
let connection: ReturnType<typeof labConnection>;
let session: VsphereSession;
let pointId: string;
/** Source disk key -> sha256 at the restore point. */
const expected = new Map<number, string>();
const nvram = Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 7 + 3) & 0xff));

before(async () => {
  lab = await startLab({ diskSizes: [3 * 1048576 + 3072, 2 * 1048576] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-restore-vm-'));
  repo = join(dir, 'repo');
  connection = labConnection(lab);
  assert.equal((await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env)).code, 0);
  assert.equal((await runCli(['init', '--repo', repo])).code, 0);
  await randomGuestWrites(lab, vm, 13, { count: 6, maxWriteBytes: 200_000 });
  await writeFile(await lab.localPath(`[LocalDS_0] ${vm}/${vm}.nvram`), nvram);
  const out = await runCli(['backup', '--vm', vm, '--repo', repo, '--json', ...connection.flags], connection.env);
  assert.equal(out.code, 0, out.stderr);
  pointId = (JSON.parse(out.stdout) as { pointId: string }).pointId;
  for (const disk of lab.info.vms.find((v) => v.name === vm)!.disks) expected.set(disk.key, (await lab.sha256(vm, disk.key)).sha256);
  session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
});

after(async () => {
  await session?.logout();
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function restoreVm(args: string[]) {
  return runCli(['restore-vm', '--repo', repo, '--point', pointId, ...args, ...connection.flags], connection.env);
}

async function configOf(name: string): Promise<VmConfiguration> {
  const found = await findVm(session, { name });
  return readVmConfig(session, found.moref, found);
}

const hardware = (c: VmConfiguration) => ({
  hardwareVersion: c.hardwareVersion,
  guestId: c.guestId,
  firmware: c.firmware,
  secureBoot: c.secureBoot,
  numCpu: c.numCpu,
  coresPerSocket: c.coresPerSocket,
  memoryMiB: c.memoryMiB,
  controllers: c.controllers.filter((ctl) => ctl.bus === 'scsi').map((ctl) => [ctl.type, ctl.busNumber]),
  disks: c.disks.map((d) => d.capacityBytes),
  nics: c.nics.map((n) => [n.adapterType, n.network.kind === 'distributed' ? n.network.name : n.network.kind === 'network' ? n.network.name : null]),
});

test('restore-vm: a new VM whose disks hash like the restore point and whose hardware matches the stored configuration', async () => {
  await lab.clearSoapCalls();
  const out = await restoreVm(['--name', 'restored-1', '--json']);
  assert.equal(out.code, 0, out.stderr);
  const doc = JSON.parse(out.stdout) as { type: string; transport: string; vm: { name: string; moref: string; instanceUuid: string }; disks: Array<{ key: number; sourceKey: number; capacityBytes: number; bytesWritten: number }> };
  assert.equal(doc.type, 'restore-vm');
  assert.equal(doc.transport, 'nfc');
  assert.equal(doc.vm.name, 'restored-1');
  assert.match(doc.vm.moref, /^vm-\d+$/);
  assert.equal(doc.disks.length, 2);
  for (const disk of doc.disks) {
    const got = await lab.sha256('restored-1', disk.key);
    assert.equal(got.sha256, expected.get(disk.sourceKey), `disk ${disk.sourceKey} -> ${disk.key}`);
    assert.ok(disk.bytesWritten > 0 && disk.bytesWritten < disk.capacityBytes, 'zero grains were not sent');
  }
  const source = await configOf(vm);
  const restored = await configOf('restored-1');
  assert.deepEqual(hardware(restored), hardware(source));
  assert.deepEqual(await readFile(await lab.localPath('[LocalDS_0] restored-1/restored-1.nvram')), nvram, 'the NVRAM file came back');
  assert.notEqual(doc.vm.instanceUuid, lab.info.vms.find((v) => v.name === vm)!.instanceUuid, 'a new instance UUID');
  assert.notEqual(restored.nics[0].macAddress, source.nics[0].macAddress, 'a new MAC without --keep-mac');
  const calls = await lab.soapCalls();
  for (const method of ['CreateImportSpec', 'ImportVApp', 'HttpNfcLeaseProgress', 'HttpNfcLeaseComplete', 'ReconfigVM_Task']) assert.ok(calls.includes(method), method);
  assert.ok(!calls.includes('HttpNfcLeaseAbort'));
  // The restored VM is a lab VM like the others: backed up with CBT, its disks read the same.
  assert.equal((await runCli(['cbt', 'enable', '--vm', 'restored-1', ...connection.flags], connection.env)).code, 0);
  const again = await runCli(['backup', '--vm', 'restored-1', '--repo', repo, '--json', ...connection.flags], connection.env);
  assert.equal(again.code, 0, again.stderr);
});

test('restore-vm --keep-mac --power-on keeps the MAC addresses and powers the VM on', async () => {
  const out = await restoreVm(['--name', 'restored-mac', '--keep-mac', '--power-on', '--json']);
  assert.equal(out.code, 0, out.stderr);
  const source = await configOf(vm);
  const restored = await configOf('restored-mac');
  assert.deepEqual(restored.nics.map((n) => [n.macAddress, n.addressType]), source.nics.map((n) => [n.macAddress, 'manual']));
  assert.equal((await findVm(session, { name: 'restored-mac' })).powerState, 'poweredOn');
});

test('restore-vm: an upload cut mid-way aborts the lease and leaves no VM behind', async () => {
  await lab.faults({ nfcUploadCutAfterBytes: 20_000 });
  const out = await restoreVm(['--name', 'restored-cut', '--json']);
  assert.equal(out.code, 1, out.stdout);
  const error = JSON.parse(out.stdout) as { code: string };
  assert.equal(error.code, 'NFC_UPLOAD');
  const names = (await lab.refreshInfo()).vms.map((v) => v.name);
  assert.ok(!names.includes('restored-cut'), names.join(', '));
  await assert.rejects(findVm(session, { name: 'restored-cut' }), { code: 'VM_NOT_FOUND' });
});

test('restore-vm refuses a taken name, an unknown network and a full datastore before creating anything', async () => {
  await lab.clearSoapCalls();
  const taken = await restoreVm(['--name', vm, '--json']);
  assert.equal(taken.code, 1);
  assert.equal((JSON.parse(taken.stdout) as { code: string }).code, 'VM_EXISTS');

  const network = await restoreVm(['--name', 'restored-net', '--network', 'DC0_DVPG0=no-such-network', '--json']);
  assert.equal(network.code, 1);
  const networkError = JSON.parse(network.stdout) as { code: string; message: string };
  assert.equal(networkError.code, 'NETWORK_NOT_FOUND');
  assert.match(networkError.message, /no-such-network.*networks found: .*DC0_DVPG0/);

  await lab.config({ datastoreFreeBytes: 1048576 });
  try {
    const space = await restoreVm(['--name', 'restored-space', '--json']);
    assert.equal(space.code, 1);
    assert.equal((JSON.parse(space.stdout) as { code: string }).code, 'DATASTORE_SPACE');
  } finally {
    await lab.config({ datastoreFreeBytes: -1 });
  }
  const calls = await lab.soapCalls();
  assert.ok(!calls.includes('ImportVApp') && !calls.includes('CreateImportSpec'), calls.join(' '));
});
