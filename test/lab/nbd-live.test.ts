// Proof that the live NBD endpoint (lab.json's nbdLiveUriTemplate) serves a powered-off
// VM's disks writable by export name "<vm>/<disk>" through real nbdkit, refuses a powered-on
// VM as VDDK does, and tracks every write (WRITE, WRITE_ZEROES, TRIM) by CBT like a guest
// write: QueryChangedDiskAreas since an earlier ChangeId lists it, the control API's sha256
// and content show it, a live delta's extent holds it (qemu-img reads the chain), and the
// VM cannot be powered on or snapshotted while a writer is connected (FileLocked).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NbdClient } from '../../src/nbd/client.ts';
import { startLab, type Lab, type LabInfo } from './lab.ts';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const vm = 'DC0_H0_VM0';
const block = 64 * KiB;
const diskSizes = [4 * MiB + 3 * KiB, 2 * MiB];
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface VmDisks {
  powerState: string;
  disks: { key: number; changeId: string }[];
}
interface Areas {
  areas: { start: number; length: number }[];
}

let lab: Lab;
let work: string;
before(async () => {
  lab = await startLab({ diskSizes });
  work = await mkdtemp(join(tmpdir(), 'vcbt-lab-nbd-live-'));
});
after(async () => {
  await lab?.stop();
  await rm(work, { recursive: true, force: true });
});

function uriOf(vmName: string, diskKey: number): string {
  return lab.info.nbdLiveUriTemplate.replace('{vm}', vmName).replace('{disk}', String(diskKey));
}

async function power(state: 'on' | 'off'): Promise<void> {
  await lab.govmomi(['power', vm, state]);
}

test('a powered-on VM is refused; a powered-off VM is written, and CBT, sha256 and content see every write', async () => {
  assert.match(lab.info.nbdLiveUriTemplate, /^nbd:\/\/127\.0\.0\.1:\d+\/\{vm\}\/\{disk\}$/);
  const written = JSON.parse(await readFile(join(lab.stateDir, 'lab.json'), 'utf8')) as LabInfo;
  assert.equal(written.nbdLiveUriTemplate, lab.info.nbdLiveUriTemplate);

  // libnbd reports the policy refusal; vcbt's client shows the server's message.
  const refused = await run('nbdinfo', ['--size', uriOf(vm, 2000)]).then(
    () => '',
    (e: { stderr: string }) => e.stderr,
  );
  assert.match(refused, /server policy prevents NBD_OPT_GO/);
  await assert.rejects(NbdClient.connect(uriOf(vm, 2000)), /errPolicy\): VM DC0_H0_VM0 is powered on/);

  await lab.write(vm, 2000, 0, randomBytes(3 * block));
  await power('off');
  await lab.govmomi(['cbt', vm, 'on']);
  const since = ((await lab.govmomi(['vm-disks', vm])) as VmDisks).disks.find((d) => d.key === 2000)!.changeId;
  assert.notEqual(since, '');
  const expected = await lab.content(vm, 2000);

  const client = await NbdClient.connect(uriOf(vm, 2000));
  const writes: [number, Uint8Array][] = [
    [5 * block + 100, randomBytes(5000)],
    [20 * block, randomBytes(block)],
    [diskSizes[0] - 1000, randomBytes(1000)], // the odd-sized tail
  ];
  for (const [offsetBytes, data] of writes) {
    await client.write(offsetBytes, data);
    expected.set(data, offsetBytes);
  }
  await client.writeZeroes(40 * block, 2 * block);
  expected.fill(0, 40 * block, 42 * block);
  await client.trim(block, 4096); // inside the guest data written before: reads as zeros
  expected.fill(0, block, block + 4096);
  await client.flush();

  // While the writer is connected the VM cannot be powered on or snapshotted.
  for (const args of [
    ['power', vm, 'on'],
    ['snapshot-create', vm, 'locked'],
  ]) {
    const result = (await lab.govmomi(args)) as { fault?: string; message?: string };
    assert.equal(result.fault, 'FileLocked', JSON.stringify(result));
    assert.match(result.message ?? '', /open for writing through NBD/);
  }
  await client.close();

  assert.equal((await lab.sha256(vm, 2000)).sha256, sha256(expected));
  assert.equal(sha256(await lab.content(vm, 2000)), sha256(expected));
  const changed = (await lab.govmomi(['query', vm, '2000', '-', since])) as Areas;
  assert.deepEqual(changed.areas, [
    { start: block, length: block },
    { start: 5 * block, length: block },
    { start: 20 * block, length: block },
    { start: 40 * block, length: 2 * block },
    { start: Math.floor((diskSizes[0] - 1000) / block) * block, length: diskSizes[0] - Math.floor((diskSizes[0] - 1000) / block) * block },
  ]);
  // The other disk was not written.
  const other = ((await lab.govmomi(['vm-disks', vm])) as VmDisks).disks.find((d) => d.key === 2001)!.changeId;
  assert.deepEqual(((await lab.govmomi(['query', vm, '2001', '-', other])) as Areas).areas, []);

  // nbdcopy over several connections: the whole disk from a file, then the same bytes back.
  const image = join(work, 'image.raw');
  const source = randomBytes(diskSizes[1]);
  await import('node:fs/promises').then((fs) => fs.writeFile(image, source));
  await run('nbdcopy', ['--connections=4', image, uriOf(vm, 2001)]);
  assert.equal((await lab.sha256(vm, 2001)).sha256, sha256(source));
  assert.deepEqual(((await lab.govmomi(['query', vm, '2001', '-', other])) as Areas).areas, [{ start: 0, length: diskSizes[1] }]);

  await power('on'); // no writer left
  await power('off');
});

test('a write through the endpoint above a snapshot lands in the live delta (qemu-img reads the chain)', async () => {
  await lab.govmomi(['power', vm, 'off']); // a fault when already off: fine
  const snap = (await lab.govmomi(['snapshot-create', vm, 'base'])) as { moref: string };
  const frozen = await lab.sha256(vm, 2000, snap.moref);
  const client = await NbdClient.connect(uriOf(vm, 2000));
  const data = randomBytes(3 * 4096 + 17);
  await client.write(7 * block + 3, data);
  await client.close();
  const expected = await lab.content(vm, 2000, snap.moref);
  expected.set(data, 7 * block + 3);
  assert.equal((await lab.sha256(vm, 2000)).sha256, sha256(expected));
  assert.deepEqual(await lab.sha256(vm, 2000, snap.moref), frozen);

  const info = await lab.refreshInfo();
  const file = info.vms.find((v) => v.name === vm)!.disks.find((d) => d.key === 2000)!.file;
  const descriptor = await lab.localPath(file);
  const out = join(work, 'chain.raw');
  await run('qemu-img', ['convert', '-O', 'raw', descriptor, out]);
  assert.equal(sha256(await readFile(out)), sha256(expected));
  await lab.govmomi(['snapshot-remove', vm, snap.moref]);
  assert.equal((await lab.sha256(vm, 2000)).sha256, sha256(expected));
});

test('unknown VMs and disks are refused by name', async () => {
  for (const uri of [uriOf('no-such-vm', 2000), uriOf(vm, 2999)]) {
    const stderr = await run('nbdinfo', ['--size', uri]).then(
      () => '',
      (e: { stderr: string }) => e.stderr,
    );
    assert.match(stderr, /no export|no VM|no disk/);
  }
});
