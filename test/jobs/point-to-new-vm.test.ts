// The `--transport nbd` building block of restore-vm against the lab: a two-disk VM with guest
// data backed up, a new VM made from the configuration stored in the restore point
// (CreateVM_Task: empty disks of the same keys and capacities), then the point written onto
// it through the lab's writable live NBD endpoint, data chunks only: every disk hashes like
// the restore point, and the bytes written are the point's data, not its capacity.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { writePointToNewVm } from '../../src/jobs/point-to-new-vm.ts';
import { storedVmCapture } from '../../src/jobs/vm-capture.ts';
import { Repository } from '../../src/repository/repository.ts';
import { connect, createVm, readVm, resolvePlacement } from '../../src/vsphere/vsphere.ts';

const MiB = 1024 * 1024;
const vm = 'DC0_H0_VM0';

let lab: Lab;
let dir: string;

before(async () => {
  lab = await startLab({ diskSizes: [4 * MiB + 3 * 1024, 2 * MiB] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-point-to-vm-'));
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a restore point written onto a VM made from its stored configuration (the building block and restore-vm --transport nbd): byte-identical, data chunks only', async () => {
  const connection = labConnection(lab);
  const repo = join(dir, 'repo');
  assert.equal((await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env)).code, 0);
  assert.equal((await runCli(['init', '--repo', repo])).code, 0);
  const data = new Uint8Array(300_000).map((_, i) => (i * 7 + 1) & 0xff);
  await lab.write(vm, 2000, 1_000_000, data);
  await lab.write(vm, 2001, 65_536 * 3, data.subarray(0, 70_000));
  const backup = await runCli(['backup', '--vm', vm, '--repo', repo, '--json', ...connection.flags], connection.env);
  assert.equal(backup.code, 0, backup.stderr);
  const { pointId } = JSON.parse(backup.stdout) as { pointId: string };
  const expected = new Map<number, string>();
  for (const key of [2000, 2001]) expected.set(key, (await lab.sha256(vm, key)).sha256);

  const session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  const repository = await Repository.open(repo);
  try {
    const capture = storedVmCapture(await repository.readManifest(pointId));
    assert.ok(capture, 'the restore point holds the VM configuration');
    const placement = await resolvePlacement(session, { datastore: 'LocalDS_0' });
    const made = await readVm(session, await createVm(session, placement, { name: 'restored', config: capture.configuration, thin: true }));
    const written = await writePointToNewVm({ session, repository, pointId, vm: made, nbdUriTemplate: lab.info.nbdLiveUriTemplate });
    assert.deepEqual(written.map((d) => d.key), [2000, 2001]);
    for (const d of written) {
      assert.equal((await lab.sha256('restored', d.key)).sha256, expected.get(d.key), `disk ${d.key} of the new VM`);
      assert.ok(d.bytesWritten < d.capacityBytes / 4, `disk ${d.key}: only data chunks written (${d.bytesWritten} of ${d.capacityBytes} bytes)`);
    }
    // The restore point's chunks are 1 MiB by default: the written bytes are whole chunks holding data.
    const content = await lab.content('restored', 2000);
    assert.equal(createHash('sha256').update(content).digest('hex'), expected.get(2000));
  } finally {
    await repository.close();
    await session.logout();
  }

  // The same through the command: restore-vm --transport nbd creates the VM and writes it.
  const cli = await runCli(['restore-vm', '--repo', repo, '--point', pointId, '--name', 'restored-nbd', '--datastore', 'LocalDS_0', '--transport', 'nbd', '--nbd-uri', lab.info.nbdLiveUriTemplate, '--json', ...connection.flags], connection.env);
  assert.equal(cli.code, 0, cli.stderr);
  const result = JSON.parse(cli.stdout) as { transport: string; vm: { name: string }; disks: Array<{ key: number; sourceKey: number; capacityBytes: number; bytesWritten: number }> };
  assert.equal(result.transport, 'nbd');
  assert.deepEqual(result.disks.map((d) => d.sourceKey), [2000, 2001]);
  for (const d of result.disks) {
    assert.equal((await lab.sha256('restored-nbd', d.key)).sha256, expected.get(d.sourceKey), `disk ${d.sourceKey} of the VM restore-vm --transport nbd made`);
    assert.ok(d.bytesWritten <= d.capacityBytes / 4, `disk ${d.sourceKey}: only data chunks written (${d.bytesWritten} of ${d.capacityBytes})`);
  }
  const refused = await runCli(['restore-vm', '--repo', repo, '--point', pointId, '--name', 'restored-nbd-2', '--transport', 'nbd', ...connection.flags], connection.env);
  assert.equal(refused.code, 2, 'a usage error without --nbd-uri');
  assert.match(refused.stderr, /--nbd-uri TEMPLATE/);
});
