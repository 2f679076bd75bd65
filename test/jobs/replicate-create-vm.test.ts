// `vcbt replicate --to-vm NEW --create` against the lab: the first run makes the replica VM
// (CreateVM_Task from the source's configuration: same disk keys and capacities, powered
// off, annotated, its source in extraConfig) and copies only the allocated areas (a new disk
// reads as zeros); rounds of guest writes keep every disk byte-identical, later rounds
// copying only the changed areas. CreateVM's faults: a name in use (DuplicateName ->
// VM_EXISTS, and --create never adopts a VM that is not a replica), no space (DATASTORE_SPACE).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { randomGuestWrites } from '../lab/guest-writes.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { connect, createVm, findVm, readExtraConfig, readVmConfig, resolvePlacementNear, type VsphereSession } from '../../src/vsphere/vsphere.ts';

const MiB = 1024 * 1024;
const source = 'DC0_H0_VM0';
const replica = 'DC0_H0_VM0-replica';

let lab: Lab;
let connection: ReturnType<typeof labConnection>;

interface Summary {
  toVm: { name: string; moref: string; created: boolean } | null;
  disks: Array<{ deviceKey: number; capacityBytes: number; mode: string; reasonCode: string; areaBytes: number; bytesCopied: number; bytesZeroed: number }>;
}

before(async () => {
  lab = await startLab({ diskSizes: [5 * MiB + 3 * 1024, 3 * MiB] });
  connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', source, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
});

after(async () => {
  await lab?.stop();
});

function replicate(to: string, extra: string[] = []) {
  return runCli(['replicate', '--vm', source, '--to-vm', to, '--create', '--to-nbd-uri', lab.info.nbdLiveUriTemplate, '--json', ...extra, ...connection.flags], connection.env);
}

async function session(): Promise<VsphereSession> {
  return connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
}

async function assertIdentical(): Promise<void> {
  for (const disk of lab.info.vms.find((v) => v.name === source)!.disks) {
    assert.equal((await lab.sha256(replica, disk.key)).sha256, (await lab.sha256(source, disk.key)).sha256, `disk ${disk.key} of the replica`);
  }
}

test('replicate --to-vm --create: the first run makes the replica VM; rounds of guest writes stay byte-identical, copying only what changed', async () => {
  await randomGuestWrites(lab, source, 5, { count: 4, maxWriteBytes: 120_000 });
  const first = await replicate(replica, ['--datastore', 'LocalDS_0', '--host', 'DC0_H0']);
  assert.equal(first.code, 0, first.stderr);
  const summary = JSON.parse(first.stdout) as Summary;
  assert.equal(summary.toVm?.name, replica);
  assert.equal(summary.toVm?.created, true);
  for (const d of summary.disks) {
    assert.equal(d.mode, 'full');
    assert.equal(d.reasonCode, 'FIRST_COPY');
    assert.equal(d.bytesZeroed, 0, 'a disk this run created is empty already');
    assert.equal(d.bytesCopied, d.areaBytes);
  }
  await lab.refreshInfo();
  const made = lab.info.vms.find((v) => v.name === replica);
  assert.ok(made, 'the replica is a lab VM');
  assert.equal(made.powerState, 'poweredOff');
  const sourceDisks = lab.info.vms.find((v) => v.name === source)!.disks;
  assert.deepEqual(
    made.disks.map((d) => [d.key, d.capacityBytes]),
    sourceDisks.map((d) => [d.key, d.capacityBytes]),
    'same device keys and capacities',
  );
  await assertIdentical();

  const s = await session();
  try {
    const vm = await findVm(s, { name: replica });
    const config = await readVmConfig(s, vm.moref, vm);
    const original = await readVmConfig(s, (await findVm(s, { name: source })).moref, { name: source, moref: (await findVm(s, { name: source })).moref });
    assert.match(config.annotation, new RegExp(`Replica of VM "${source}"`));
    assert.equal(config.numCpu, original.numCpu);
    assert.equal(config.memoryMiB, original.memoryMiB);
    assert.equal(config.nics.length, original.nics.length);
    const options = await readExtraConfig(s, vm, 'vcbt.replica.');
    assert.equal((JSON.parse(options.get('vcbt.replica.source') ?? '{}') as { vm: { name: string } }).vm.name, source);
    assert.deepEqual([...options.keys()].filter((k) => k.startsWith('vcbt.replica.disk.')).sort(), sourceDisks.map((d) => `vcbt.replica.disk.${d.key}`));
  } finally {
    await s.logout();
  }

  for (let round = 2; round <= 3; round++) {
    await randomGuestWrites(lab, source, round * 31, { count: 3, maxWriteBytes: 40_000 });
    const next = await replicate(replica);
    assert.equal(next.code, 0, next.stderr);
    const again = JSON.parse(next.stdout) as Summary;
    assert.equal(again.toVm?.created, false, 'the replica is found, not made again');
    for (const d of again.disks) {
      assert.equal(d.mode, 'incremental');
      assert.equal(d.bytesCopied, d.areaBytes, 'bytes written = the sum of the changed areas');
      assert.ok(d.areaBytes < d.capacityBytes / 2, `disk ${d.deviceKey}: only the changed areas (${d.areaBytes} bytes)`);
    }
    await assertIdentical();
  }
});

test('replicate --to-vm --create never writes over a VM that is not a replica (VM_EXISTS)', async () => {
  const result = await replicate('DC0_H0_VM1');
  assert.equal(result.code, 1, result.stdout);
  assert.match(result.stderr, /VM_EXISTS/);
  assert.match(result.stderr, /not a vcbt replica/);
});

test('CreateVM_Task: DuplicateName is VM_EXISTS; no space is DATASTORE_SPACE, checked before anything is created', async () => {
  const s = await session();
  try {
    const vm = await findVm(s, { name: source });
    const config = await readVmConfig(s, vm.moref, vm);
    const placement = await resolvePlacementNear(s, vm.moref, { datastore: 'LocalDS_0' });
    await assert.rejects(createVm(s, placement, { name: 'DC0_H0_VM1', config }), (error: Error & { code?: string }) => error.code === 'VM_EXISTS');

    await lab.faults({ methods: { CreateVM_Task: { fault: 'NoDiskSpace', count: 1 } } });
    await assert.rejects(createVm(s, placement, { name: 'no-space', config }), (error: Error & { code?: string }) => error.code === 'DATASTORE_SPACE');

    const huge = { ...config, disks: config.disks.map((d) => ({ ...d, capacityBytes: 2 ** 50 })) };
    await lab.clearSoapCalls();
    await assert.rejects(createVm(s, placement, { name: 'too-big', config: huge }), (error: Error & { code?: string }) => error.code === 'DATASTORE_SPACE' && /nothing was created/.test(error.message));
    assert.ok(!(await lab.soapCalls()).includes('CreateVM_Task'), 'refused before CreateVM_Task');
    await assert.rejects(findVm(s, { name: 'too-big' }), (error: Error & { code?: string }) => error.code === 'VM_NOT_FOUND');
  } finally {
    await s.logout();
  }
});

test('replicate --create: placement flags need --create, --create needs --to-vm', async () => {
  const lonely = await runCli(['replicate', '--vm', source, '--to-vm', 'x', '--to-nbd-uri', 'nbd://h/{vm}/{disk}', '--datastore', 'LocalDS_0', ...connection.flags], connection.env);
  assert.equal(lonely.code, 2);
  assert.match(lonely.stderr, /add --create/);
  const noVm = await runCli(['replicate', '--vm', source, '--to', '/tmp/x.raw', '--create', ...connection.flags], connection.env);
  assert.equal(noVm.code, 2);
  assert.match(noVm.stderr, /--create goes with --to-vm/);
});
