// A damaged repository does not keep producing damaged restore points (no lab: the writer and
// verify directly). Stored chunks that fail their reuse check are rewritten; an incremental
// never carries over a missing chunk; verify quarantines, records per point and notices a
// manifest gone outside prune; --repair ends with clean or unrecoverable points with the exact
// byte ranges lost; latest never skips a damaged point silently.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { resolvePointId } from '../../src/jobs/restore-points.ts';
import { IndexReader } from '../../src/repository/disk-index.ts';
import { readCheckRecord } from '../../src/repository/point-records.ts';
import { prune } from '../../src/repository/prune.ts';
import type { Repository } from '../../src/repository/repository.ts';
import { verifyRepository } from '../../src/repository/verify.ts';
import { chunkRecord, flipChunkByte, manifestPath, removeChunk, memorySource, newRepository, restoreToBuffer, sha256, tempDir, vm } from './helpers.ts';

const chunkBytes = 64 * 1024;
const slots = 8;

async function chunkOfSlot(repo: Repository, pointId: string, slot: number): Promise<string> {
  const disk = (await repo.readManifest(pointId)).disks[0];
  const index = await IndexReader.open(repo.storage, disk.index, repo.keys);
  try {
    return Buffer.from(await index.entry(slot)).toString('hex');
  } finally {
    await index.close();
  }
}

let day = 1;
async function full(repo: Repository, image: Buffer): Promise<string> {
  const writer = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.UTC(2026, 0, day++)) });
  await writer.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: `c${day}`, reader: memorySource(image) });
  return writer.commit();
}

async function incremental(repo: Repository, image: Buffer, previous: string, changed: Array<{ offsetBytes: number; lengthBytes: number }>): Promise<string> {
  const writer = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.UTC(2026, 0, day++)) });
  try {
    await writer.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: `c${day}`, reader: memorySource(image), previous: { pointId: previous, deviceKey: 1 }, changedAreas: changed });
  } catch (error) {
    await writer.abort();
    throw error;
  }
  return writer.commit();
}

function flipByte(file: string, at: number): void {
  const bytes = fs.readFileSync(file);
  bytes[at] ^= 0x40;
  fs.writeFileSync(file, bytes);
}

async function setup(t: { after(fn: () => unknown): void }, encrypted = false): Promise<{ repo: Repository; image: Buffer; p1: string }> {
  const repo = await newRepository(tempDir(t), { chunkBytes, ...(encrypted ? { passphrase: 'pw' } : {}) }, { workers: 1 });
  t.after(() => repo.close());
  const image = randomBytes(slots * chunkBytes);
  return { repo, image, p1: await full(repo, image) };
}

for (const encrypted of [false, true]) {
  test(`a bit-flipped stored chunk is rewritten by the next full copy, not reused by name (${encrypted ? 'encrypted' : 'plain'}); both points then read back exactly`, async (t) => {
    const { repo, image, p1 } = await setup(t, encrypted);
    const id = await chunkOfSlot(repo, p1, 3);
    await flipChunkByte(repo, id, 40); // same size, same header: only a full check sees it
    const p2 = await full(repo, image);
    assert.equal((await repo.readManifest(p2)).disks[0].stats.chunksNew, 1, 'the damaged chunk was written again');
    assert.deepEqual((await verifyRepository(repo, { readData: true })).corruptions, []);
    assert.equal(sha256(await restoreToBuffer(repo, p1, 1)), sha256(image), 'the older point is healed too');
    assert.equal(sha256(await restoreToBuffer(repo, p2, 1)), sha256(image));
  });
}

test('a stored chunk whose header disagrees with its record length (truncated, extended) fails the header check and is rewritten by an incremental that writes the same chunk', async (t) => {
  const { repo, image, p1 } = await setup(t);
  const id = await chunkOfSlot(repo, p1, 2);
  await flipChunkByte(repo, id, 12); // payloadBytes: the record's length no longer fits its header
  // Slot 5 now holds slot 2's bytes: the incremental produces chunk `id` again.
  image.copy(image, 5 * chunkBytes, 2 * chunkBytes, 3 * chunkBytes);
  // Slot 2 itself is carried over (located, its pack exists): the carried check reads no record.
  const p2 = await incremental(repo, image, p1, [{ offsetBytes: 5 * chunkBytes, lengthBytes: chunkBytes }]);
  assert.deepEqual((await verifyRepository(repo, { readData: true })).corruptions, []);
  assert.equal(sha256(await restoreToBuffer(repo, p2, 1)), sha256(image));
});

test('an incremental never carries over a chunk whose file is missing: REPO_MISSING naming the chunk and slot, nothing committed', async (t) => {
  const { repo, image, p1 } = await setup(t);
  const id = await chunkOfSlot(repo, p1, 6);
  await removeChunk(repo, id);
  image[0] ^= 1;
  await assert.rejects(incremental(repo, image, p1, [{ offsetBytes: 0, lengthBytes: 512 }]), (error: Error & { code?: string; context?: Record<string, unknown> }) => {
    assert.equal(error.code, 'REPO_MISSING');
    assert.equal(error.context?.chunkId, id);
    assert.equal(error.context?.slot, 6);
    return true;
  });
  assert.deepEqual((await repo.listRestorePoints()).map((p) => p.id), [p1]);
});

test('verify quarantines damaged chunks and indexes, records each point, and --repair reports the exact byte ranges lost; the next full heals what the source still holds', async (t) => {
  const { repo, image, p1 } = await setup(t);
  const flipped = await chunkOfSlot(repo, p1, 1);
  const deleted2 = await chunkOfSlot(repo, p1, 2);
  const deleted3 = await chunkOfSlot(repo, p1, 3);
  const flippedPack = (await chunkRecord(repo, flipped)).file;
  await flipChunkByte(repo, flipped, 30);
  await removeChunk(repo, deleted2);
  await removeChunk(repo, deleted3);
  const report = await verifyRepository(repo, { readData: true });
  assert.deepEqual(report.corruptions.map((c) => [c.object, c.name, c.code, c.affectedPoints, c.quarantinedTo !== null]).sort(), [
    ['chunk', deleted2, 'REPO_MISSING', [p1], false],
    ['chunk', deleted3, 'REPO_MISSING', [p1], false],
    ['chunk', flipped, 'REPO_CORRUPT', [p1], true],
  ].sort());
  assert.ok(!fs.existsSync(flippedPack), 'its pack moved aside (its sound chunks copied first)');
  const lost = [{ deviceKey: 1, capacityBytes: image.length, lostRanges: [{ offsetBytes: chunkBytes, lengthBytes: 3 * chunkBytes }] }];
  assert.deepEqual(report.points.map((p) => [p.pointId, p.status, p.lostDisks]), [[p1, 'damaged', lost]]);
  assert.equal((await readCheckRecord(repo.storage, p1))?.status, 'damaged');

  const repaired = await verifyRepository(repo, { repair: true });
  assert.deepEqual(repaired.points.map((p) => [p.pointId, p.status, p.lostDisks]), [[p1, 'unrecoverable', lost]]);

  // The source changed slot 3 since: slots 1 and 2 come back, slot 3 of p1 is lost for good.
  randomBytes(chunkBytes).copy(image, 3 * chunkBytes);
  const p2 = await full(repo, image);
  const after = await verifyRepository(repo, { repair: true, readData: true });
  assert.deepEqual(after.points.map((p) => [p.pointId, p.status, p.lostDisks]), [
    [p1, 'unrecoverable', [{ deviceKey: 1, capacityBytes: image.length, lostRanges: [{ offsetBytes: 3 * chunkBytes, lengthBytes: chunkBytes }] }]],
    [p2, 'clean', []],
  ]);
  assert.equal(sha256(await restoreToBuffer(repo, p2, 1)), sha256(image));
});

test('a damaged index is quarantined and costs its disk whole; a deleted manifest of a committed point is named by verify and listed damaged; prune is not mistaken for it', async (t) => {
  const { repo, image, p1 } = await setup(t);
  const p2 = await full(repo, Buffer.concat([image.subarray(0, chunkBytes), Buffer.alloc(image.length - chunkBytes, 7)]));
  const p3 = await full(repo, randomBytes(image.length));
  const index2 = (await repo.readManifest(p2)).disks[0].index.sha256;
  flipByte(new (await import('../../src/repository/storage/local.ts')).LocalStorage(repo.path).pathOf({ kind: 'index', name: index2 }), 100);
  fs.rmSync(manifestPath(repo.path, p3));
  const report = await verifyRepository(repo, { repair: true });
  assert.deepEqual(report.corruptions.map((c) => [c.object, c.name, c.code, c.affectedPoints]), [
    ['manifest', p3, 'REPO_MISSING', [p3]],
    ['index', index2, 'REPO_CORRUPT', [p2]],
  ]);
  assert.deepEqual(report.points.map((p) => [p.pointId, p.status, p.manifestLost, p.lostDisks]), [
    [p1, 'clean', false, []],
    [p2, 'unrecoverable', false, [{ deviceKey: 1, capacityBytes: image.length, lostRanges: [{ offsetBytes: 0, lengthBytes: image.length }] }]],
    [p3, 'unrecoverable', true, []],
  ]);
  const listed = await repo.listPoints();
  assert.deepEqual(listed.map((p) => [p.id, p.damage?.code ?? null]), [[p1, null], [p2, null], [p3, 'REPO_MISSING']]);

  // latest never skips the damaged newest silently.
  await assert.rejects(resolvePointId(repo, 'latest', vm.name), { code: 'RESTORE_POINT_DAMAGED' });
  const skipped: string[] = [];
  assert.equal(await resolvePointId(repo, 'latest', vm.name, { deviceKey: 1, skipDamaged: true, onSkipped: (id) => skipped.push(id) }), p1);
  assert.deepEqual(skipped, [p3, p2]);

  // A point prune removes is not a lost manifest.
  await prune(repo, { keepLast: 1, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 });
  const afterPrune = await verifyRepository(repo);
  assert.ok(!afterPrune.corruptions.some((c) => c.object === 'manifest' && c.name !== p3), JSON.stringify(afterPrune.corruptions));
});

test('verify adds the committed record of a manifest that has none (older repositories, a crash after the manifest)', async (t) => {
  const { repo, p1 } = await setup(t);
  await repo.storage.delete({ kind: 'committed', name: p1 });
  const report = await verifyRepository(repo);
  assert.equal(report.committedRecordsAdded, 1);
  assert.ok(await repo.storage.stat({ kind: 'committed', name: p1 }));
  fs.rmSync(manifestPath(repo.path, p1));
  assert.deepEqual((await verifyRepository(repo)).corruptions.map((c) => [c.object, c.name, c.code]), [['manifest', p1, 'REPO_MISSING']]);
});
