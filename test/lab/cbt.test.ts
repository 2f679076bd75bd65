// Proof that the lab's CBT behaves like ESXi's, seen through a real govmomi client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab, type Lab } from './lab.ts';

interface Area {
  start: number;
  length: number;
}
interface QueryResult {
  capacityBytes: number;
  calls: number;
  areas: Area[];
}
interface SnapshotResult {
  moref: string;
  disks: Array<{ key: number; changeId: string; file: string; parent?: string; capacityBytes: number }>;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const block = 64 * KiB;
const vm = 'DC0_H0_VM0';

let lab: Lab;
before(async () => {
  lab = await startLab();
});
after(async () => {
  await lab?.stop();
});

/** Expected CBT areas: the blocks touched by the writes, merged, clipped at capacity. */
function blocksOf(writes: Array<[number, number]>, capacityBytes: number): Area[] {
  const blocks = new Set<number>();
  for (const [offset, length] of writes) for (let b = Math.floor(offset / block); b * block < offset + length; b++) blocks.add(b);
  const out: Area[] = [];
  for (const b of [...blocks].sort((x, y) => x - y)) {
    const start = b * block;
    const length = Math.min(block, capacityBytes - start);
    const last = out.at(-1);
    if (last && last.start + last.length === start) last.length += length;
    else out.push({ start, length });
  }
  return out;
}

test('the govmomi client gets exactly the blocks written since a snapshot ChangeId, with paging forced', async () => {
  const [disk1, disk2] = lab.info.vms.find((v) => v.name === vm)!.disks;
  assert.equal(disk1.capacityBytes % MiB !== 0, true, 'a disk size that is not a multiple of 1 MiB');

  await lab.config({ cbtBlockBytes: block, maxAreasPerReply: 1, maxBytesPerReply: 0 });
  assert.deepEqual(await lab.govmomi(['cbt', vm, 'on']), { ok: true });
  // Powered on: enabling takes effect only at the next stun (the snapshot below).
  const before = (await lab.govmomi(['vm-disks', vm])) as { changeTrackingEnabled: boolean; disks: SnapshotResult['disks'] };
  assert.equal(before.changeTrackingEnabled, true);
  assert.deepEqual(before.disks.map((d) => d.changeId), ['', '']);

  const s1 = (await lab.govmomi(['snapshot-create', vm, 'base'])) as SnapshotResult;
  const c1 = s1.disks[0].changeId;
  assert.match(c1, /^([0-9a-f]{2} ){7}[0-9a-f]{2}-([0-9a-f]{2} ){7}[0-9a-f]{2}\/\d+$/);
  assert.equal(s1.disks[0].file, disk1.file, 'the snapshot names the base disk');

  const writes1: Array<[number, number]> = [
    [0, 10],
    [3 * block + 100, block],
    [9 * block - 1, 2],
    [disk1.capacityBytes - 5, 5],
  ];
  for (const [offset, length] of writes1) await lab.write(vm, disk1.key, offset, new Uint8Array(length).fill(0xa5));
  await lab.write(vm, disk2.key, MiB + 7, new Uint8Array([1]));

  const s2 = (await lab.govmomi(['snapshot-create', vm, 'next'])) as SnapshotResult;
  assert.equal(s2.disks[0].parent, disk1.file, 'the second snapshot sees a delta whose parent is the base');
  assert.match(s2.disks[0].file, /disk1-000001\.vmdk$/);

  const expected = blocksOf(writes1, disk1.capacityBytes);
  assert.equal(expected.at(-1)!.start + expected.at(-1)!.length, disk1.capacityBytes, 'the last block is short');
  const changed = (await lab.govmomi(['query', vm, String(disk1.key), s2.moref, c1])) as QueryResult;
  assert.deepEqual(changed.areas, expected);
  assert.ok(changed.calls >= expected.length, `paging forced: ${changed.calls} calls`);

  // One call from offset 0 describes only part of the disk: a client that does not loop misses changes.
  const once = (await lab.govmomi(['query-once', vm, String(disk1.key), s2.moref, c1, '0'])) as { startOffset: number; length: number; areas: Area[] };
  assert.equal(once.areas.length, 1);
  assert.ok(once.length > 0 && once.length < disk1.capacityBytes);

  assert.deepEqual(((await lab.govmomi(['query', vm, String(disk2.key), s2.moref, s1.disks[1].changeId])) as QueryResult).areas, [{ start: 16 * block, length: block }]);
  assert.deepEqual(((await lab.govmomi(['query', vm, String(disk1.key), s2.moref, s2.disks[0].changeId])) as QueryResult).areas, []);
  assert.deepEqual(((await lab.govmomi(['query', vm, String(disk1.key), s1.moref, c1])) as QueryResult).areas, []);

  // A byte limit per reply pages too, and changes nothing in the result.
  await lab.config({ maxAreasPerReply: 0, maxBytesPerReply: MiB });
  const byBytes = (await lab.govmomi(['query', vm, String(disk1.key), s2.moref, c1])) as QueryResult;
  assert.deepEqual(byBytes.areas, expected);
  assert.equal(byBytes.calls, Math.ceil(disk1.capacityBytes / MiB));
  await lab.config({ maxBytesPerReply: 0 });

  // Writes after the snapshot never show up in queries at it.
  await lab.write(vm, disk1.key, 5 * MiB, new Uint8Array(100).fill(1));
  assert.deepEqual(((await lab.govmomi(['query', vm, String(disk1.key), s2.moref, c1])) as QueryResult).areas, expected);
  const s3 = (await lab.govmomi(['snapshot-create', vm, 'third'])) as SnapshotResult;
  assert.deepEqual(((await lab.govmomi(['query', vm, String(disk1.key), s3.moref, s2.disks[0].changeId])) as QueryResult).areas, [
    { start: 5 * MiB, length: block },
  ]);
  for (const s of [s3, s2, s1]) assert.deepEqual(await lab.govmomi(['snapshot-remove', vm, s.moref]), { ok: true });
});

test('"*" returns the allocated blocks of a fresh write pattern, at the snapshot', async () => {
  const other = 'DC0_C0_RP0_VM0';
  const disk = lab.info.vms.find((v) => v.name === other)!.disks[0];
  await lab.config({ cbtBlockBytes: 128 * KiB, maxAreasPerReply: 1 });
  const writes: Array<[number, number]> = [
    [0, 1],
    [130 * KiB, 300 * KiB],
    [3 * MiB + 1, 4 * KiB],
  ];
  for (const [offset, length] of writes) await lab.write(other, disk.key, offset, new Uint8Array(length).fill(7));
  await lab.govmomi(['cbt', other, 'on']);
  const s = (await lab.govmomi(['snapshot-create', other, 'full'])) as SnapshotResult;
  await lab.write(other, disk.key, 2 * MiB, new Uint8Array(10).fill(9)); // after the snapshot: not at it
  const all = (await lab.govmomi(['query', other, String(disk.key), s.moref, '*'])) as QueryResult;
  assert.deepEqual(all.areas, [
    { start: 0, length: 512 * KiB },
    { start: 3 * MiB, length: 128 * KiB },
  ]);
  assert.ok(all.calls >= 2);
  await lab.config({ cbtBlockBytes: block, maxAreasPerReply: 0 });
  await lab.govmomi(['snapshot-remove', other, s.moref]);
});
