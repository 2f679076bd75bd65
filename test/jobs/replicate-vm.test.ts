// `vcbt replicate --to-vm` against the lab: the seed's flow onto another VM's disks through
// the lab's writable live NBD endpoint. Rounds of guest writes leave DEST byte-identical to
// the source (the lab's sha256); rounds after the first write exactly the changed areas
// (bytes copied = their sum); the replica state lives in DEST's extraConfig, so it survives
// losing every local file; a DEST holding another source's replica gets a full copy with
// the reason, and a powered-on DEST is refused before any snapshot.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { randomGuestWrites } from '../lab/guest-writes.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { connect, findVm, readExtraConfig } from '../../src/vsphere/vsphere.ts';

const MiB = 1024 * 1024;
const source = 'DC0_C0_RP0_VM0';
const otherSource = 'DC0_C0_RP0_VM1';
const dest = 'DC0_H0_VM1'; // powered off, one disk 2000 of the same size
const key = 2000;

let lab: Lab;
let dir: string;
let connection: ReturnType<typeof labConnection>;

interface Summary {
  type: string;
  toVm: { name: string; moref: string } | null;
  disks: Array<{ deviceKey: number; mode: string; reasonCode: string; reason: string; statePath: string; areaBytes: number; bytesCopied: number; changeId: string }>;
}

before(async () => {
  lab = await startLab({ otherDiskBytes: 6 * MiB + 3 * 1024 });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-replicate-vm-'));
  connection = labConnection(lab);
  for (const vm of [source, otherSource]) {
    const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
    assert.equal(enabled.code, 0, enabled.stderr);
  }
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A fresh, empty home for each run: nothing local survives between runs. */
async function freshEnv(): Promise<NodeJS.ProcessEnv> {
  const home = await mkdtemp(join(dir, 'home-'));
  return { ...connection.env, HOME: home, XDG_STATE_HOME: join(home, 'state') };
}

async function replicateOnto(vm: string, extra: string[] = []) {
  const env = await freshEnv();
  const result = await runCli(
    ['replicate', '--vm', vm, '--to-vm', dest, '--to-nbd-uri', lab.info.nbdLiveUriTemplate, '--transport', 'nbd', '--nbd-uri', lab.info.nbdUriTemplate, '--json', ...extra, ...connection.flags],
    env,
  );
  const home = env.HOME as string;
  assert.deepEqual(await readdir(home), [], 'nothing is written on the vcbt host');
  await rm(home, { recursive: true, force: true });
  return result;
}

async function replicated(vm: string, extra: string[] = []): Promise<Summary> {
  const result = await replicateOnto(vm, extra);
  assert.equal(result.code, 0, result.stderr);
  const summary = JSON.parse(result.stdout) as Summary;
  assert.equal(summary.toVm?.name, dest);
  assert.equal((await lab.sha256(dest, key)).sha256, (await lab.sha256(vm, key)).sha256, `${dest} is byte-identical to ${vm}`);
  assert.deepEqual(await lab.snapshots(vm), [], 'the replication snapshot is removed');
  return summary;
}

/** The changed areas a write set makes: 64 KiB CBT blocks, merged, clipped at the capacity. */
function blockBytes(writes: Array<[number, number]>, capacityBytes: number): number {
  const block = 64 * 1024;
  const blocks = new Set<number>();
  for (const [offset, length] of writes) for (let b = Math.floor(offset / block); b * block < offset + length; b++) blocks.add(b);
  let bytes = 0;
  for (const b of blocks) bytes += Math.min(block, capacityBytes - b * block);
  return bytes;
}

test('replicate --to-vm: rounds stay byte-identical, later rounds copy only the changed areas, the state lives on DEST', async () => {
  await randomGuestWrites(lab, source, 3, { count: 5, maxWriteBytes: 150_000 });
  const first = await replicated(source);
  assert.equal(first.type, 'replicate');
  assert.equal(first.disks[0].mode, 'full');
  assert.equal(first.disks[0].reasonCode, 'FIRST_COPY');
  assert.match(first.disks[0].statePath, new RegExp(`VM "${dest}" \\(vm-\\d+\\) extraConfig vcbt\\.replica\\.disk\\.${key}`));

  // The state is on DEST, as one JSON document per disk.
  const session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  try {
    const options = await readExtraConfig(session, await findVm(session, { name: dest }), 'vcbt.replica.');
    assert.deepEqual([...options.keys()], [`vcbt.replica.disk.${key}`], 'one key, replaced in place on every run');
    const state = JSON.parse(options.get(`vcbt.replica.disk.${key}`) ?? '') as { vm: { name: string }; changeId: string; inProgress: unknown };
    assert.equal(state.vm.name, source);
    assert.equal(state.changeId, first.disks[0].changeId);
    assert.equal(state.inProgress, null);
  } finally {
    await session.logout();
  }

  const capacityBytes = lab.info.vms.find((v) => v.name === source)!.disks[0].capacityBytes;
  for (let round = 2; round <= 3; round++) {
    const writes: Array<[number, number]> = [
      [round * 700_000, 5000],
      [capacityBytes - 10, 10],
      [65536 * round - 1, 2],
    ];
    for (const [offset, length] of writes) await lab.write(source, key, offset, new Uint8Array(length).fill(round));
    const summary = await replicated(source);
    const [disk] = summary.disks;
    assert.equal(disk.mode, 'incremental', disk.reason);
    assert.equal(disk.reasonCode, 'CHANGES_SINCE');
    assert.equal(disk.areaBytes, blockBytes(writes, capacityBytes), 'only the areas CBT lists');
    assert.equal(disk.bytesCopied, disk.areaBytes, 'bytes written = the sum of the changed areas');
  }
});

test('replicate --to-vm: another source on DEST gets a full copy with the reason; a powered-on DEST is refused', async () => {
  await randomGuestWrites(lab, otherSource, 9, { count: 3, maxWriteBytes: 100_000 });
  const other = await replicated(otherSource);
  if (other.disks[0].reasonCode === 'FIRST_COPY') {
    // This test ran alone: DEST held nothing yet. Replicate the first source to make it hold one.
    await replicated(source);
    const again = await replicated(otherSource);
    assert.equal(again.disks[0].reasonCode, 'OTHER_VM');
  } else {
    assert.equal(other.disks[0].reasonCode, 'OTHER_VM');
  }
  assert.equal(other.disks[0].mode, 'full');

  await lab.govmomi(['power', dest, 'on']);
  try {
    const refused = await replicateOnto(source);
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, /VM_POWERED_ON/);
    assert.deepEqual(await lab.snapshots(source), [], 'refused before any snapshot');
  } finally {
    await lab.govmomi(['power', dest, 'off']);
  }
});

test('replicate --to-vm: a source disk that grew grows DEST\'s disk (full, CAPACITY_CHANGED); after a CBT reset the copy is full (CHANGEID_REFUSED)', async () => {
  await replicated(source);
  const capacityBytes = (await lab.refreshInfo()).vms.find((v) => v.name === source)!.disks[0].capacityBytes;
  const grownBytes = capacityBytes + 1024 * 1024;
  await lab.resize(source, key, grownBytes);
  await lab.write(source, key, grownBytes - 4096, new Uint8Array(4096).fill(0xab));
  const grown = await replicated(source);
  assert.equal(grown.disks[0].mode, 'full');
  assert.equal(grown.disks[0].reasonCode, 'CAPACITY_CHANGED');
  assert.equal((await lab.refreshInfo()).vms.find((v) => v.name === dest)!.disks[0].capacityBytes, grownBytes, "DEST's disk follows its source");

  const reset = await runCli(['cbt', 'reset', '--vm', source, ...connection.flags], connection.env);
  assert.equal(reset.code, 0, reset.stderr);
  await lab.write(source, key, 4096, new Uint8Array(100).fill(5));
  const afterReset = await replicated(source);
  assert.equal(afterReset.disks[0].mode, 'full');
  assert.equal(afterReset.disks[0].reasonCode, 'CHANGEID_REFUSED');
  const next = await replicated(source);
  assert.equal(next.disks[0].mode, 'incremental', 'incremental again in the new epoch');
});
