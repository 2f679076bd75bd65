import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { IndexReader } from '../../src/repository/disk-index.ts';
import type { Repository } from '../../src/repository/repository.ts';
import { verifyRepository, type Corruption } from '../../src/repository/verify.ts';
import { chunkRecord, flipChunkByte, indexPath, removeChunk, manifestPath, memorySource, newRepository, restoreToBuffer, tempDir, vm } from './helpers.ts';

const chunkBytes = 64 * 1024;

/** P1: full of disk 1; P2: incremental of disk 1 (chunk 0 shared with P1); P3: another VM. */
async function fixture(dir: string): Promise<{ repo: Repository; p1: string; p2: string; p3: string }> {
  const repo = await newRepository(dir, { chunkBytes });
  const image = randomBytes(8 * chunkBytes);
  const w1 = await repo.beginRestorePoint({ vm, createdAt: new Date('2026-01-01T00:00:00Z') });
  await w1.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: 'c1', reader: memorySource(image) });
  const p1 = await w1.commit();
  randomBytes(100).copy(image, 5 * chunkBytes);
  const w2 = await repo.beginRestorePoint({ vm, createdAt: new Date('2026-01-02T00:00:00Z') });
  await w2.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: 'c2', reader: memorySource(image), previous: { pointId: p1, deviceKey: 1 }, changedAreas: [{ offsetBytes: 5 * chunkBytes, lengthBytes: 100 }] });
  const p2 = await w2.commit();
  const other = randomBytes(3 * chunkBytes + 5);
  const w3 = await repo.beginRestorePoint({ vm: { id: 'vm-2', name: 'other' }, createdAt: new Date('2026-01-03T00:00:00Z') });
  await w3.writeDisk({ deviceKey: 7, label: 'b', capacityBytes: other.length, changeId: null, reader: memorySource(other) });
  const p3 = await w3.commit();
  return { repo, p1, p2, p3 };
}

async function chunkOfSlot(repo: Repository, pointId: string, deviceKey: number, slot: number): Promise<string> {
  const disk = (await repo.readManifest(pointId)).disks.find((d) => d.deviceKey === deviceKey);
  assert.ok(disk);
  const index = await IndexReader.open(repo.storage, disk.index, repo.keys);
  try {
    return Buffer.from(await index.entry(slot)).toString('hex');
  } finally {
    await index.close();
  }
}

function flipByte(file: string, at: number): void {
  const bytes = fs.readFileSync(file);
  bytes[at] ^= 0x40;
  fs.writeFileSync(file, bytes);
}

function only(corruptions: Corruption[]): Corruption {
  assert.equal(corruptions.length, 1, JSON.stringify(corruptions));
  return corruptions[0];
}

test('a clean repository verifies clean, with and without --read-data', async (t) => {
  const { repo } = await fixture(tempDir(t));
  t.after(() => repo.close());
  const structure = await verifyRepository(repo);
  assert.deepEqual(structure.corruptions, []);
  assert.equal(structure.pointsChecked, 3);
  const data = await verifyRepository(repo, { readData: true });
  assert.deepEqual(data.corruptions, []);
  assert.equal(data.chunksChecked, 13); // 8 of P1, 1 new in P2, 4 of P3
  assert.equal(data.bytesDecoded, 12 * chunkBytes + 5);
});

test('a flipped byte in a chunk is found by --read-data and names both restore points using it', async (t) => {
  const { repo, p1, p2 } = await fixture(tempDir(t));
  t.after(() => repo.close());
  const id = await chunkOfSlot(repo, p1, 1, 0);
  const record = await chunkRecord(repo, id);
  await flipChunkByte(repo, id, 100);
  const c = only((await verifyRepository(repo, { readData: true })).corruptions);
  assert.deepEqual({ object: c.object, name: c.name, code: c.code, affectedPoints: c.affectedPoints }, { object: 'chunk', name: id, code: 'REPO_CORRUPT', affectedPoints: [p1, p2].sort() });
  // Its pack moved aside (quarantine) after its sound chunks were copied to a new pack: bytes
  // kept, the chunk free for a backup to write again, every other chunk still there.
  assert.ok(c.quarantinedTo && fs.existsSync(c.quarantinedTo) && !fs.existsSync(record.file));
  await assert.rejects(restoreToBuffer(repo, p2, 1), { code: 'REPO_MISSING' });
  const again = await verifyRepository(repo, { readData: true });
  assert.deepEqual(again.corruptions.map((x) => [x.object, x.name, x.code]), [['chunk', id, 'REPO_MISSING']], 'only the damaged chunk is lost');
});

test('a missing chunk is found by the structure check', async (t) => {
  const { repo, p1, p2 } = await fixture(tempDir(t));
  t.after(() => repo.close());
  const id = await chunkOfSlot(repo, p1, 1, 2);
  await removeChunk(repo, id);
  const c = only((await verifyRepository(repo)).corruptions);
  assert.deepEqual([c.object, c.name, c.code, c.affectedPoints], ['chunk', id, 'REPO_MISSING', [p1, p2].sort()]);
  await assert.rejects(restoreToBuffer(repo, p1, 1), { code: 'REPO_MISSING' });
});

test('a truncated chunk is found by the structure check; a chunk only the newer point uses names only it', async (t) => {
  const { repo, p2 } = await fixture(tempDir(t));
  t.after(() => repo.close());
  const id = await chunkOfSlot(repo, p2, 1, 5);
  const record = await chunkRecord(repo, id);
  // The pack is cut inside the chunk's record (its trailer and footer go too).
  fs.truncateSync(record.file, record.offsetBytes + record.lengthBytes - 1);
  const corruptions = (await verifyRepository(repo)).corruptions;
  const c = only(corruptions.filter((x) => x.object === 'chunk'));
  assert.deepEqual([c.object, c.name, c.code, c.affectedPoints], ['chunk', id, 'REPO_CORRUPT', [p2]]);
  const pack = only(corruptions.filter((x) => x.object === 'pack'));
  assert.deepEqual([pack.name, pack.code, pack.affectedPoints], [record.pack, 'REPO_CORRUPT', []]);
});

test('a damaged index is reported with its restore point', async (t) => {
  const { repo, p3 } = await fixture(tempDir(t));
  t.after(() => repo.close());
  const disk = (await repo.readManifest(p3)).disks[0];
  flipByte(indexPath(repo.path, disk.index.sha256), 70);
  const c = only((await verifyRepository(repo)).corruptions);
  assert.deepEqual([c.object, c.name, c.code, c.affectedPoints], ['index', disk.index.sha256, 'REPO_CORRUPT', [p3]]);
  assert.ok(c.quarantinedTo && fs.existsSync(c.quarantinedTo));
  await assert.rejects(repo.openDisk(p3, 7), { code: 'REPO_MISSING' });
});

test('a damaged manifest is reported as its restore point', async (t) => {
  const { repo, p1, p2 } = await fixture(tempDir(t));
  t.after(() => repo.close());
  const file = manifestPath(repo.path, p2);
  const text = fs.readFileSync(file, 'utf8');
  fs.writeFileSync(file, text.replace('"label":"a"', '"label":"b"')); // still valid JSON
  const c = only((await verifyRepository(repo, { readData: true })).corruptions);
  assert.deepEqual([c.object, c.name, c.code, c.affectedPoints], ['manifest', p2, 'REPO_CORRUPT', [p2]]);
  assert.deepEqual((await repo.listRestorePoints()).map((p) => p.id).includes(p1), true);
  assert.deepEqual(only((await verifyRepository(repo, { pointIds: [p2] })).corruptions).name, p2);
  assert.deepEqual((await verifyRepository(repo, { pointIds: [p1] })).corruptions, []);
});
