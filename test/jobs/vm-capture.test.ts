// A backup records the VM's configuration and its .vmx/.nvram files with the restore point:
// `vcbt points --json` shows the hardware summary, the manifest holds the configuration as
// the vSphere API reports it and the files byte for byte (read through /folder), encrypted
// in an encrypted repository; points written before the capture existed still list.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repository } from '../../src/repository/repository.ts';
import { storedVmCapture } from '../../src/jobs/vm-capture.ts';
import { nvramPathOf } from '../../src/jobs/vm-capture.ts';
import { connect, findVm, readVmConfig } from '../../src/vsphere/vsphere.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';

const vm = 'DC0_H0_VM0';
const testScrypt = { N: 1024, r: 8, p: 1 };
const vmxText = 'config.version = "8"\nvirtualHW.version = "13"\nnvram = "custom-name.nvram"\nannotation = "vcbt capture marker 7f3a"\n';
const nvramBytes = Buffer.from(Array.from({ length: 9000 }, (_, i) => (i * 31) & 0xff));
let lab: Lab;
let dir: string;
let connection: ReturnType<typeof labConnection>;

before(async () => {
  lab = await startLab({ diskSizes: [2 * 1048576, 1048576] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-capture-'));
  connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
  await writeFile(await lab.localPath(`[LocalDS_0] ${vm}/${vm}.vmx`), vmxText);
  await writeFile(await lab.localPath(`[LocalDS_0] ${vm}/custom-name.nvram`), nvramBytes);
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('nvramPathOf: the .vmx nvram entry, or <name>.nvram beside the .vmx', () => {
  assert.equal(nvramPathOf('[ds1] web/web.vmx', 'nvram = "web.nvram"\n'), '[ds1] web/web.nvram');
  assert.equal(nvramPathOf('[ds1] web/web.vmx', 'memsize = "4"\n'), '[ds1] web/web.nvram');
  assert.equal(nvramPathOf('[ds1] web.vmx', ''), '[ds1] web.nvram');
  assert.equal(nvramPathOf('[ds1] web/web.vmx', 'nvram = "/vmfs/volumes/x/y.nvram"'), '/vmfs/volumes/x/y.nvram');
});

test('backup stores the configuration and the .vmx/.nvram; points --json summarizes it; encrypted in an encrypted repository', async () => {
  const repo = join(dir, 'enc');
  await Repository.init(repo, { passphrase: 'capture pass', scryptCost: testScrypt });
  const env = { ...connection.env, VCBT_PASSPHRASE: 'capture pass' };
  const out = await runCli(['backup', '--vm', vm, '--repo', repo, '--json', ...connection.flags], env);
  assert.equal(out.code, 0, out.stderr);
  const pointId = (JSON.parse(out.stdout) as { pointId: string }).pointId;

  const session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  let live;
  try {
    const found = await findVm(session, { name: vm });
    live = await readVmConfig(session, found.moref, found);
  } finally {
    await session.logout();
  }

  const repository = await Repository.open(repo, { passphrase: 'capture pass' });
  let capture;
  try {
    capture = storedVmCapture(await repository.readManifest(pointId));
  } finally {
    await repository.close();
  }
  assert.ok(capture, 'the manifest holds the capture');
  // The snapshot froze the configuration; nothing changed it since, so it equals the live one
  // (but for the disk files, which the snapshot names as they were frozen).
  const withoutFiles = (c: typeof live) => ({ ...c, disks: c.disks.map((d) => ({ ...d, fileName: '' })) });
  assert.deepEqual(withoutFiles(capture.configuration), withoutFiles(live));
  assert.deepEqual(capture.configuration.disks.map((d) => [d.key, d.capacityBytes]), [[2000, 2 * 1048576], [2001, 1048576]]);
  assert.equal(capture.files.problem, null);
  assert.equal(capture.files.vmx?.path, `[LocalDS_0] ${vm}/${vm}.vmx`);
  assert.equal(Buffer.from(capture.files.vmx.base64, 'base64').toString(), vmxText);
  assert.equal(capture.files.nvram?.path, `[LocalDS_0] ${vm}/custom-name.nvram`);
  assert.equal(capture.files.nvram.sha256, sha(nvramBytes));
  assert.deepEqual(Buffer.from(capture.files.nvram.base64, 'base64'), nvramBytes);

  const listed = await runCli(['points', '--repo', repo, '--json'], env);
  assert.equal(listed.code, 0, listed.stderr);
  const [point] = (JSON.parse(listed.stdout) as { points: Array<{ hardware: Record<string, unknown> & { disks: unknown[]; nics: Array<{ adapterType: string; network: string }> } }> }).points;
  assert.equal(point.hardware.numCpu, live.numCpu);
  assert.equal(point.hardware.memoryMiB, live.memoryMiB);
  assert.equal(point.hardware.firmware, 'bios');
  assert.equal(point.hardware.disks.length, 2);
  assert.deepEqual(point.hardware.nics.map((n) => n.adapterType), live.nics.map((n) => n.adapterType));
  assert.equal(point.hardware.nvramStored, true);
  const text = await runCli(['points', '--repo', repo], env);
  assert.match(text.stdout, /hardware: 1 CPU \(1 per socket\), 32 MiB, bios/);

  // Encrypted: neither the .vmx text nor the configuration appears in any file of the repository.
  const files = await readdir(repo, { recursive: true, withFileTypes: true });
  for (const f of files.filter((e) => e.isFile())) {
    const bytes = await readFile(join(f.parentPath, f.name));
    assert.equal(bytes.includes('capture marker 7f3a'), false, f.name);
    assert.equal(bytes.includes('ParaVirtualSCSIController'), false, f.name);
  }
});
