// `vcbt changes` against the lab: random write patterns (block-straddling writes, the last
// byte of a disk whose size is not a multiple of the CBT block) must come back exactly as
// the written blocks (--since) and the allocated blocks (--all), with the lab forced to
// answer one area per QueryChangedDiskAreas reply (or a few bytes of disk per reply).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab, type Lab } from '../lab/lab.ts';
import { alignOutward, extent, type Extent } from '../../src/extents/extent.ts';
import { formatCsv } from '../../src/extents/csv.ts';
import { connect, createSnapshot, findVm, removeSnapshot } from '../../src/vsphere/vsphere.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { seededRandom } from '../helpers/seeded-random.ts';

const VM = 'DC0_H0_VM0';
let lab: Lab;
let flags: string[];
let env: NodeJS.ProcessEnv;

before(async () => {
  lab = await startLab();
  ({ flags, env } = labConnection(lab));
  await lab.config({ maxAreasPerReply: 1 });
  const enabled = await runCli(['cbt', 'enable', '--vm', VM, ...flags], env);
  assert.equal(enabled.code, 0, enabled.stderr);
});

after(async () => {
  await lab?.stop();
});

interface TakeSnapshotOutput {
  server: string;
  vm: { name: string; moref: string };
  disk: { key: number; label: string; capacityBytes: number };
  snapshot: string;
  areas: Extent[];
  changedBytes: number;
  changeIds: Array<{ key: number; label: string; changeId: string }>;
}

async function takeChanges(diskKey: number, since: string | undefined): Promise<TakeSnapshotOutput> {
  const selection = since === undefined ? ['--all'] : ['--since', since];
  const result = await runCli(['changes', '--vm', VM, '--disk', String(diskKey), ...selection, '--take-snapshot', ...flags], env);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(await lab.snapshots(VM), [], 'the snapshot --take-snapshot created is removed');
  return JSON.parse(result.stdout) as TakeSnapshotOutput;
}

/** Writes a random pattern plus the edge cases; returns what was written. */
async function writeRandomPattern(diskKey: number, capacityBytes: number, seed: number, blockBytes: number): Promise<Extent[]> {
  const random = seededRandom(seed);
  const writes: Extent[] = [];
  const write = async (offsetBytes: number, lengthBytes: number) => {
    const data = new Uint8Array(lengthBytes);
    for (let i = 0; i < lengthBytes; i++) data[i] = 1 + Math.floor(random() * 255);
    await lab.write(VM, diskKey, offsetBytes, data);
    writes.push(extent(offsetBytes, lengthBytes));
  };
  for (let i = 0; i < 10; i++) {
    const lengthBytes = 1 + Math.floor(random() * 150_000);
    await write(Math.floor(random() * (capacityBytes - lengthBytes)), lengthBytes);
  }
  const boundary = blockBytes * (1 + Math.floor(random() * (capacityBytes / blockBytes - 2)));
  await write(boundary - 1, 2); // straddles a block boundary by one byte each side
  await write(capacityBytes - 1, 1); // the disk's very last byte
  return writes;
}

test('--since returns exactly the written blocks and --all exactly the allocated ones, over rounds and block sizes', async () => {
  const vm = lab.info.vms.find((v) => v.name === VM)!;
  for (const disk of vm.disks) {
    const capacityBytes = disk.capacityBytes;
    const first = await takeChanges(disk.key, undefined);
    assert.deepEqual(first.areas, [], `disk ${disk.key} starts unallocated`);
    assert.equal(first.disk.capacityBytes, capacityBytes);
    let changeId = first.changeIds.find((c) => c.key === disk.key)!.changeId;
    const everWritten: Extent[] = [];
    const rounds = [
      { blockBytes: 65536, seed: 1 },
      { blockBytes: 8192, seed: 2 },
      { blockBytes: 262144, seed: 3, maxBytesPerReply: 1 << 20 },
    ];
    for (const round of rounds) {
      await lab.config({ cbtBlockBytes: round.blockBytes, maxAreasPerReply: round.maxBytesPerReply ? 0 : 1, maxBytesPerReply: round.maxBytesPerReply ?? 0 });
      const writes = await writeRandomPattern(disk.key, capacityBytes, round.seed * 100 + disk.key, round.blockBytes);
      everWritten.push(...writes);
      const since = await takeChanges(disk.key, changeId);
      const expected = alignOutward(writes, round.blockBytes, capacityBytes);
      assert.deepEqual(since.areas, expected, `disk ${disk.key} round ${JSON.stringify(round)}`);
      assert.equal(since.changedBytes, expected.reduce((n, e) => n + e.lengthBytes, 0));
      const last = since.areas[since.areas.length - 1];
      assert.equal(last.offsetBytes + last.lengthBytes, capacityBytes, 'the last (short) block is covered');
      const next = since.changeIds.find((c) => c.key === disk.key)!.changeId;
      assert.notEqual(next, changeId);
      changeId = next;
      const all = await takeChanges(disk.key, undefined);
      assert.deepEqual(all.areas, alignOutward(everWritten, round.blockBytes, capacityBytes), `disk ${disk.key} allocated after ${JSON.stringify(round)}`);
      changeId = all.changeIds.find((c) => c.key === disk.key)!.changeId;
    }
  }
});

test('--snapshot MOREF with --format csv prints exactly the seed CSV of the changes at that snapshot', async () => {
  await lab.config({ cbtBlockBytes: 65536, maxAreasPerReply: 1, maxBytesPerReply: 0 });
  const session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.fingerprintSha256 });
  try {
    const vm = await findVm(session, { name: VM });
    const disk = vm.disks[0];
    const base = await createSnapshot(session, vm);
    const baseChangeId = (await lab.snapshots(VM))[0].disks.find((d) => d.key === disk.key)!.changeId;
    await removeSnapshot(session, vm, base);
    await lab.write(VM, disk.key, 65536 * 7 + 10, new Uint8Array(65536).fill(7));
    await lab.write(VM, disk.key, 0, new Uint8Array(1).fill(7));
    const snapshot = await createSnapshot(session, vm);
    try {
      const result = await runCli(['changes', '--vm', `moref:${vm.moref.value}`, '--disk', String(disk.key), '--since', baseChangeId, '--snapshot', snapshot.value, '--format', 'csv', ...flags], env);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, formatCsv([extent(0, 65536), extent(65536 * 7, 2 * 65536)]));
      assert.equal(result.stdout, '0,65536\n458752,131072\n');
    } finally {
      await removeSnapshot(session, vm, snapshot);
    }
  } finally {
    await session.logout();
  }
});

test('usage errors: --since and --all together, csv with --take-snapshot, no password', async () => {
  const both = await runCli(['changes', '--vm', VM, '--disk', '2000', '--since', 'x/1', '--all', ...flags], env);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /exactly one of --since CHANGEID and --all/);
  const csv = await runCli(['changes', '--vm', VM, '--disk', '2000', '--all', '--take-snapshot', '--format', 'csv', ...flags], env);
  assert.equal(csv.code, 2);
  const noPassword = await runCli(['vms', ...flags], {});
  assert.equal(noPassword.code, 2);
  assert.match(noPassword.stderr, /VCBT_PASSWORD/);
});
