// Proof that removing any snapshot of a line - the oldest, one in the middle, or all at once -
// consolidates as ESXi does: every remaining snapshot keeps its frozen bytes, its ChangeIds
// and its place in vSphere's tree; the live disk is untouched; CBT queries against the
// remaining snapshots keep working; and the last removal leaves only the base files.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startLab, type Lab } from './lab.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const block = 64 * KiB;
const vm = 'DC0_H0_VM0';
const key = 2000;
const capacityBytes = 4 * MiB + 3 * KiB;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface Disk {
  key: number;
  changeId: string;
  file: string;
  parent?: string;
}
interface Snap {
  moref: string;
  disks: Disk[];
}
interface Areas {
  areas: Array<{ start: number; length: number }>;
}

let lab: Lab;
before(async () => {
  lab = await startLab({ diskSizes: [capacityBytes, 2 * MiB] });
  assert.deepEqual(await lab.govmomi(['cbt', vm, 'on']), { ok: true });
  // The stun cycle `vcbt cbt enable` does on a powered-on VM. It matters: vcsim renumbers
  // its file keys on every removal, and the lab once let a later removal delete a disk file.
  await remove(await snapshot('stun'));
});
after(async () => {
  await lab?.stop();
});

/** The guest's disk as the test itself keeps it, and the 64 KiB blocks written per interval. */
class Guest {
  bytes: Buffer = Buffer.alloc(capacityBytes);
  blocks = new Set<number>();
  async write(offsetBytes: number, lengthBytes: number): Promise<void> {
    const data = randomBytes(lengthBytes);
    data.copy(this.bytes, offsetBytes);
    for (let b = Math.floor(offsetBytes / block); b * block < offsetBytes + lengthBytes; b++) this.blocks.add(b);
    await lab.write(vm, key, offsetBytes, data);
  }
  /** Ends an interval: the blocks written in it, as CBT areas (merged, clipped at capacity). */
  interval(): Array<{ start: number; length: number }> {
    const out: Array<{ start: number; length: number }> = [];
    for (const b of [...this.blocks].sort((x, y) => x - y)) {
      const start = b * block;
      const length = Math.min(block, capacityBytes - start);
      const last = out.at(-1);
      if (last && last.start + last.length === start) last.length += length;
      else out.push({ start, length });
    }
    this.blocks.clear();
    return out;
  }
}

async function snapshot(name: string): Promise<Snap> {
  return (await lab.govmomi(['snapshot-create', vm, name])) as Snap;
}

async function remove(s: Snap): Promise<void> {
  assert.deepEqual(await lab.govmomi(['snapshot-remove', vm, s.moref]), { ok: true });
}

async function query(s: Snap, changeId: string): Promise<Areas['areas']> {
  const result = (await lab.govmomi(['query', vm, String(key), s.moref, changeId])) as Areas & { fault?: string; message?: string };
  assert.equal(result.fault, undefined, result.message);
  return result.areas;
}

function diskOf(s: Snap): Disk {
  return s.disks.find((d) => d.key === key)!;
}

async function vmFiles(): Promise<string[]> {
  const dsDir = (await readdir(join(lab.stateDir, 'datastores')))[0];
  return (await readdir(join(lab.stateDir, 'datastores', dsDir, vm))).filter((f) => /\.(vmdk|vmsn)$/.test(f)).sort();
}

/** Every view of snapshot `s` agrees with what it froze: name, ChangeIds, bytes, vSphere's config. */
async function assertIntact(s: Snap, name: string, frozenSha256: string, file: string, parent: string | undefined): Promise<void> {
  const listed = (await lab.snapshots(vm)).find((x) => x.moref === s.moref);
  assert.ok(listed, `${name} (${s.moref}) is still listed`);
  assert.equal(listed.name, name);
  assert.deepEqual(
    listed.disks.map((d) => d.changeId),
    s.disks.map((d) => d.changeId),
  );
  assert.equal(listed.disks.find((d) => d.key === key)!.file, file);
  assert.equal((await lab.sha256(vm, key, s.moref)).sha256, frozenSha256);
  const config = (await lab.govmomi(['snapshot-disks', vm, s.moref])) as Snap;
  assert.deepEqual(
    config.disks.map((d) => d.changeId),
    s.disks.map((d) => d.changeId),
  );
  assert.equal(diskOf(config).file, file);
  assert.equal(diskOf(config).parent, parent);
}

test('removing the older of two snapshots keeps the newer one whole; then removing it leaves no snapshot', async () => {
  const guest = new Guest();
  await guest.write(0, 70_000);
  await guest.write(3 * MiB, 5000);
  const a = await snapshot('A');
  guest.interval();
  await guest.write(10, 100_000); // overlaps what A froze
  await guest.write(2 * MiB, 4096);
  const b = await snapshot('B');
  const sinceA = guest.interval();
  const frozenB = sha256(guest.bytes);
  await guest.write(20, 50);
  await guest.write(capacityBytes - 1000, 1000);
  const live = sha256(guest.bytes);
  assert.equal((await lab.sha256(vm, key, b.moref)).sha256, frozenB);
  assert.equal((await lab.sha256(vm, key)).sha256, live);

  await remove(a);
  assert.deepEqual((await lab.snapshots(vm)).map((s) => s.moref), [b.moref]);
  // A's frozen state merged into B's: B now names the base disk.
  await assertIntact(b, 'B', frozenB, `[LocalDS_0] ${vm}/disk1.vmdk`, undefined);
  assert.equal((await lab.sha256(vm, key)).sha256, live);
  const liveDisk = ((await lab.govmomi(['vm-disks', vm])) as { disks: Disk[] }).disks.find((d) => d.key === key)!;
  assert.equal(liveDisk.parent, `[LocalDS_0] ${vm}/disk1.vmdk`);
  // A's ChangeId stays a valid starting point (it is an epoch and a sequence, not a file).
  assert.deepEqual(await query(b, diskOf(a).changeId), sinceA);
  assert.deepEqual(await query(b, '*'), [
    { start: 0, length: 2 * block },
    { start: 2 * MiB, length: block },
    { start: 3 * MiB, length: block },
  ]);

  await remove(b);
  assert.deepEqual(await lab.snapshots(vm), []);
  assert.equal((await lab.sha256(vm, key)).sha256, live);
  assert.deepEqual(await vmFiles(), ['disk1-flat.vmdk', 'disk1.vmdk', 'disk2-flat.vmdk', 'disk2.vmdk']);
  // The line goes on: a new snapshot and a query with B's ChangeId work.
  const c = await snapshot('C');
  guest.interval();
  assert.deepEqual(await query(c, diskOf(b).changeId), [
    { start: 0, length: block },
    { start: capacityBytes - (capacityBytes % block), length: capacityBytes % block },
  ]);
  await remove(c);
});

test('removing the middle of three snapshots keeps the others whole', async () => {
  const guest = new Guest();
  guest.bytes = await lab.content(vm, key);
  await guest.write(MiB, 8192);
  const a = await snapshot('A');
  const frozenA = sha256(guest.bytes);
  guest.interval();
  await guest.write(MiB + 4096, 200_000);
  const b = await snapshot('B');
  guest.interval();
  await guest.write(0, 1);
  const c = await snapshot('C');
  const sinceB = guest.interval();
  const frozenC = sha256(guest.bytes);
  await guest.write(2 * MiB, 1);
  const live = sha256(guest.bytes);

  await remove(b);
  assert.deepEqual((await lab.snapshots(vm)).map((s) => s.moref), [a.moref, c.moref]);
  await assertIntact(a, 'A', frozenA, `[LocalDS_0] ${vm}/disk1.vmdk`, undefined);
  // C's state took over the file names of B's.
  await assertIntact(c, 'C', frozenC, diskOf(b).file, `[LocalDS_0] ${vm}/disk1.vmdk`);
  assert.equal((await lab.sha256(vm, key)).sha256, live);
  assert.deepEqual(await query(c, diskOf(b).changeId), sinceB);
  assert.deepEqual(await query(c, diskOf(a).changeId), [
    { start: 0, length: block },
    { start: MiB, length: 4 * block },
  ]);

  await remove(a);
  await assertIntact(c, 'C', frozenC, `[LocalDS_0] ${vm}/disk1.vmdk`, undefined);
  await remove(c);
  assert.deepEqual(await lab.snapshots(vm), []);
  assert.equal((await lab.sha256(vm, key)).sha256, live);
});

test('RemoveAllSnapshots_Task on three snapshots leaves the live disk and only the base files', async () => {
  const guest = new Guest();
  guest.bytes = await lab.content(vm, key);
  for (const name of ['A', 'B', 'C']) {
    await guest.write(randomBytes(2).readUInt16LE() * 32, 3000);
    await snapshot(name);
  }
  await guest.write(0, 10);
  assert.deepEqual(await lab.govmomi(['snapshot-remove-all', vm]), { ok: true });
  assert.deepEqual(await lab.snapshots(vm), []);
  assert.equal((await lab.sha256(vm, key)).sha256, sha256(guest.bytes));
  assert.deepEqual(await vmFiles(), ['disk1-flat.vmdk', 'disk1.vmdk', 'disk2-flat.vmdk', 'disk2.vmdk']);
  const liveDisk = ((await lab.govmomi(['vm-disks', vm])) as { disks: Disk[] }).disks.find((d) => d.key === key)!;
  assert.equal(liveDisk.file, `[LocalDS_0] ${vm}/disk1.vmdk`);
  assert.equal(liveDisk.parent, undefined);
});
