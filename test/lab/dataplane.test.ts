// Proof that snapshots freeze disk contents for every reader (control API, datastore HTTP
// /folder with Range, NBD through real nbdkit/nbdcopy) and that removal consolidates.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startLab, type Lab } from './lab.ts';
import { folderGet, login } from './raw-https.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const vm = 'DC0_H0_VM0';
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let lab: Lab;
let work: string;
before(async () => {
  lab = await startLab();
  work = await mkdtemp(join(tmpdir(), 'vcbt-lab-test-'));
});
after(async () => {
  await lab?.stop();
  await rm(work, { recursive: true, force: true });
});

/** The guest's view, kept by the test itself: the expected bytes at every point. */
class Model {
  bytes: Buffer;
  constructor(capacityBytes: number) {
    this.bytes = Buffer.alloc(capacityBytes);
  }
  async write(lab: Lab, key: number, offset: number, length: number): Promise<void> {
    const data = randomBytes(length);
    data.copy(this.bytes, offset);
    await lab.write(vm, key, offset, data);
  }
}

interface Snap {
  moref: string;
  disks: Array<{ key: number; changeId: string; file: string; parent?: string }>;
}

/** Reads a snapshot's disk the way a datastore-HTTP client does: descriptor, then the extent in Range pieces. */
async function readThroughFolder(lab: Lab, cookie: string, descriptorPath: string, capacityBytes: number): Promise<Buffer> {
  const descriptor = await folderGet(lab.info, descriptorPath, cookie);
  assert.equal(descriptor.status, 200);
  const text = descriptor.body.toString();
  assert.match(text, /createType="vmfs"/, 'a snapshot of a disk without earlier snapshots names a flat base disk');
  const extent = /^RW (\d+) VMFS "([^"]+)"$/m.exec(text);
  assert.ok(extent, text);
  assert.equal(Number(extent[1]) * 512, capacityBytes);
  const extentPath = descriptorPath.replace(/[^/\]]+\.vmdk$/, extent[2]);
  const pieces: Buffer[] = [];
  const pieceBytes = 3 * MiB + 512;
  for (let offset = 0; offset < capacityBytes; offset += pieceBytes) {
    const last = Math.min(offset + pieceBytes, capacityBytes) - 1;
    const res = await folderGet(lab.info, extentPath, cookie, `${offset}-${last}`);
    assert.equal(res.status, 206);
    assert.equal(res.body.length, last - offset + 1);
    pieces.push(res.body);
  }
  return Buffer.concat(pieces);
}

test('snapshot contents stay frozen over control API, /folder Range reads and NBD; removal consolidates', async () => {
  const disk = lab.info.vms.find((v) => v.name === vm)!.disks[0];
  const model = new Model(disk.capacityBytes);
  await model.write(lab, disk.key, 0, 70_000);
  await model.write(lab, disk.key, 5 * MiB + 3, 200_000);
  await model.write(lab, disk.key, disk.capacityBytes - 1000, 1000);
  const atS1 = Buffer.from(model.bytes);

  const s1 = (await lab.govmomi(['snapshot-create', vm, 's1'])) as Snap;
  await model.write(lab, disk.key, 10, 100_000); // overlaps data frozen in s1
  await model.write(lab, disk.key, 9 * MiB, 4096);
  const atS2 = Buffer.from(model.bytes);
  const s2 = (await lab.govmomi(['snapshot-create', vm, 's2'])) as Snap;
  const refreshed = await lab.refreshInfo();
  assert.equal(refreshed.vms.find((v) => v.name === vm)!.disks[0].file, '[LocalDS_0] DC0_H0_VM0/disk1-000002.vmdk');
  await model.write(lab, disk.key, 20, 50);
  await model.write(lab, disk.key, 15 * MiB, 3 * MiB);

  // Ground truth from the lab matches the test's model.
  assert.equal((await lab.sha256(vm, disk.key, s1.moref)).sha256, sha256(atS1));
  assert.equal((await lab.sha256(vm, disk.key, s2.moref)).sha256, sha256(atS2));
  assert.equal((await lab.sha256(vm, disk.key)).sha256, sha256(model.bytes));
  assert.ok((await lab.content(vm, disk.key, s1.moref)).equals(atS1));

  // /folder requires a session, then serves the frozen base extent with Range.
  assert.equal((await folderGet(lab.info, s1.disks[0].file, undefined)).status, 401);
  const cookie = await login(lab.info);
  assert.equal(s1.disks[0].file, disk.file);
  assert.equal(sha256(await readThroughFolder(lab, cookie, s1.disks[0].file, disk.capacityBytes)), sha256(atS1));
  const delta = await folderGet(lab.info, s2.disks[0].file, cookie);
  assert.match(delta.body.toString(), /createType="vmfsSparse"[\s\S]*parentFileNameHint="disk1.vmdk"/);

  // httpCutAfterBytes: the first /folder response longer than N stops after N body bytes.
  await lab.faults({ httpCutAfterBytes: 1000 });
  const cut = await folderGet(lab.info, '[LocalDS_0] DC0_H0_VM0/disk1-flat.vmdk', cookie, '0-99999');
  assert.equal(cut.body.length, 1000);
  assert.equal(cut.truncated, true);

  // NBD export of each snapshot, read with nbdcopy.
  for (const [snap, expected] of [
    [s1, atS1],
    [s2, atS2],
  ] as const) {
    const exp = await lab.nbdExport(vm, disk.key, snap.moref);
    const out = join(work, `${snap.moref}.raw`);
    await run('nbdcopy', [exp.uri, out]);
    assert.equal(sha256(await readFile(out)), sha256(expected));
    const info = await run('nbdinfo', ['--size', exp.uri]);
    assert.equal(Number(info.stdout.trim()), disk.capacityBytes);
    await lab.closeExport(exp.id);
  }

  // nbdCutAfterBytes: the first NBD connection that passes N bytes dies at N.
  const exp = await lab.nbdExport(vm, disk.key, s1.moref);
  await lab.faults({ nbdCutAfterBytes: 64 * 1024 });
  await assert.rejects(run('nbdcopy', ['--connections=1', exp.uri, join(work, 'cut.raw')]));
  await run('nbdcopy', [exp.uri, join(work, 'again.raw')]); // only one connection is cut
  assert.equal(sha256(await readFile(join(work, 'again.raw'))), sha256(atS1));
  await lab.closeExport(exp.id);

  // Removing the newer snapshot consolidates into the older one's delta; the live disk is unchanged.
  const liveBefore = await lab.sha256(vm, disk.key);
  await lab.govmomi(['snapshot-remove', vm, s2.moref]);
  assert.deepEqual(await lab.sha256(vm, disk.key), liveBefore);
  assert.equal((await lab.sha256(vm, disk.key, s1.moref)).sha256, sha256(atS1));
  const live1 = (await lab.govmomi(['vm-disks', vm])) as { disks: Snap['disks'] };
  assert.match(live1.disks[0].file, /disk1-000001\.vmdk$/);
  assert.equal(live1.disks[0].parent, disk.file);
  assert.deepEqual((await lab.snapshots(vm)).map((s) => s.moref), [s1.moref]);

  await lab.govmomi(['snapshot-remove', vm, s1.moref]);
  assert.deepEqual(await lab.sha256(vm, disk.key), liveBefore);
  const live0 = (await lab.govmomi(['vm-disks', vm])) as { consolidationNeeded: boolean; disks: Snap['disks'] };
  assert.equal(live0.consolidationNeeded, false);
  assert.deepEqual(await lab.govmomi(['consolidate', vm]), { ok: true });
  assert.equal(live0.disks[0].file, disk.file);
  assert.equal(live0.disks[0].parent, undefined);
  assert.deepEqual(await lab.snapshots(vm), []);
  const dsDir = (await readdir(join(lab.stateDir, 'datastores')))[0];
  const files = (await readdir(join(lab.stateDir, 'datastores', dsDir, vm))).filter((f) => f.includes('.vmdk')).sort();
  assert.deepEqual(files, ['disk1-flat.vmdk', 'disk1.vmdk', 'disk2-flat.vmdk', 'disk2.vmdk']);
  assert.equal(sha256(await readThroughFolder(lab, cookie, disk.file, disk.capacityBytes)), sha256(model.bytes));
});

test('a scratch export is a writable NBD disk backed by a local file', async () => {
  const scratch = await lab.scratchExport(2 * MiB + 4096);
  const data = randomBytes(2 * MiB + 4096);
  const input = join(work, 'scratch-in.raw');
  await writeFile(input, data);
  await run('nbdcopy', [input, scratch.uri]);
  await lab.closeExport(scratch.id);
  assert.ok((await readFile(scratch.path)).equals(data));
  // Read-only exports refuse writes.
  const ro = await lab.nbdExport('DC0_H0_VM1', lab.info.vms.find((v) => v.name === 'DC0_H0_VM1')!.disks[0].key);
  const small = join(work, 'small.raw');
  await writeFile(small, randomBytes(4096));
  await assert.rejects(run('nbdcopy', [small, ro.uri]));
  await lab.closeExport(ro.id);
});
