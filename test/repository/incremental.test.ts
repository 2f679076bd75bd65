import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { union, type Extent } from '../../src/extents/extent.ts';
import { listFiles, storedChunks, memorySource, mixedImage, newRepository, restoreToBuffer, sha256, tempDir, vm } from './helpers.ts';

const chunkBytes = 64 * 1024;

function applyChanges(image: Buffer, changes: Extent[]): Buffer {
  const next = Buffer.from(image);
  for (const c of changes) randomBytes(c.lengthBytes).copy(next, c.offsetBytes);
  return next;
}

test('an incremental reads only changed areas and yields the same index as a full re-write', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir, { chunkBytes });
  t.after(() => repo.close());
  const capacity = 2 * 1024 * 1024 + 4321;
  const base = mixedImage(capacity);
  const w1 = await repo.beginRestorePoint({ vm });
  await w1.writeDisk({ deviceKey: 2000, label: 'a', capacityBytes: capacity, changeId: 'c1', reader: memorySource(base) });
  const p1 = await w1.commit();

  const changes = union([
    { offsetBytes: 10, lengthBytes: 5 }, // inside a chunk
    { offsetBytes: chunkBytes - 3, lengthBytes: 9 }, // across a boundary
    { offsetBytes: 5 * chunkBytes, lengthBytes: 2 * chunkBytes }, // whole chunks
    { offsetBytes: capacity - 100, lengthBytes: 100 }, // the short last chunk
  ]);
  const changed = applyChanges(base, changes);
  // Zero an area that used to hold data: the chunk must become the zero marker when all-zero.
  changed.fill(0, 20 * chunkBytes, 21 * chunkBytes);
  const allChanges = union([...changes, { offsetBytes: 20 * chunkBytes, lengthBytes: chunkBytes }]);

  const reads: Extent[] = [];
  const w2 = await repo.beginRestorePoint({ vm });
  const incremental = await w2.writeDisk({
    deviceKey: 2000, label: 'a', capacityBytes: capacity, changeId: 'c2',
    reader: memorySource(changed, reads), previous: { pointId: p1, deviceKey: 2000 }, changedAreas: allChanges,
  });
  const p2 = await w2.commit();
  assert.deepEqual(union(reads), allChanges, 'only the changed areas are read');
  assert.equal(incremental.kind, 'incremental');

  const w3 = await repo.beginRestorePoint({ vm });
  const full = await w3.writeDisk({ deviceKey: 2000, label: 'a', capacityBytes: capacity, changeId: 'c2', reader: memorySource(changed) });
  const p3 = await w3.commit();
  assert.equal(incremental.index.sha256, full.index.sha256, 'same index file, byte for byte');
  assert.equal(full.stats.chunksNew, 0);

  assert.equal(sha256(await restoreToBuffer(repo, p1, 2000)), sha256(base));
  assert.equal(sha256(await restoreToBuffer(repo, p2, 2000)), sha256(changed));
  assert.equal(sha256(await restoreToBuffer(repo, p3, 2000)), sha256(changed));
});

test('a capacity change against the previous restore point is refused (caller writes a full)', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir, { chunkBytes });
  t.after(() => repo.close());
  const image = randomBytes(200_000);
  const w1 = await repo.beginRestorePoint({ vm });
  await w1.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
  const p1 = await w1.commit();
  const w2 = await repo.beginRestorePoint({ vm });
  await assert.rejects(
    w2.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length + 4096, changeId: null, reader: memorySource(Buffer.alloc(image.length + 4096)), previous: { pointId: p1, deviceKey: 1 }, changedAreas: [] }),
    { code: 'REPO_INVALID_ARGUMENT' },
  );
  await w2.abort();
});

test('identical content is stored once across disks and restore points', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir, { chunkBytes });
  t.after(() => repo.close());
  const image = randomBytes(10 * chunkBytes);
  const copy = Buffer.concat([image.subarray(0, 4 * chunkBytes), randomBytes(chunkBytes), image.subarray(5 * chunkBytes)]);
  const w1 = await repo.beginRestorePoint({ vm });
  await w1.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
  const second = await w1.writeDisk({ deviceKey: 2, label: 'b', capacityBytes: copy.length, changeId: null, reader: memorySource(copy) });
  const p1 = await w1.commit();
  assert.equal((await storedChunks(repo)).size, 11, '10 chunks of disk a + 1 new chunk of disk b');
  assert.equal(second.stats.chunksNew, 1);
  assert.equal(second.stats.chunksReused, 9);

  const w2 = await repo.beginRestorePoint({ vm });
  const again = await w2.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
  const p2 = await w2.commit();
  assert.equal((await storedChunks(repo)).size, 11, 'a second full backup of the same data adds no chunk');
  assert.equal(again.stats.bytesStored, 0);
  assert.equal(listFiles(dir, 'indexes').length, 2, 'the identical index of disk a is stored once');
  assert.equal(sha256(await restoreToBuffer(repo, p1, 2)), sha256(copy));
  assert.equal(sha256(await restoreToBuffer(repo, p2, 1)), sha256(image));
});
