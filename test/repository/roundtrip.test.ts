import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { storedChunks, memorySource, mixedImage, newRepository, restoreToBuffer, sha256, tempDir, vm } from './helpers.ts';

test('random images of odd sizes round-trip byte for byte (restoreTo and random reads)', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir, { chunkBytes: 64 * 1024 });
  t.after(() => repo.close());
  const sizes = [1, 4095, 64 * 1024 - 1, 64 * 1024 + 1, 3 * 1024 * 1024 + 12_345];
  const images = sizes.map((n, i) => (i % 2 ? randomBytes(n) : mixedImage(n)));
  const writer = await repo.beginRestorePoint({ vm, source: { server: 'test' } });
  for (const [i, image] of images.entries()) {
    await writer.writeDisk({ deviceKey: 2000 + i, label: `disk ${i}`, capacityBytes: image.length, changeId: null, reader: memorySource(image) });
  }
  const pointId = await writer.commit();
  for (const [i, image] of images.entries()) {
    const restored = await restoreToBuffer(repo, pointId, 2000 + i);
    assert.equal(sha256(restored), sha256(image), `disk ${i} of ${image.length} bytes`);
  }
  const big = images[4];
  const disk = await repo.openDisk(pointId, 2004);
  t.after(() => disk.close());
  for (const [offset, length] of [[0, 1], [65_535, 2], [100_000, 200_000], [big.length - 7, 7], [3 * 65_536 - 100, 65_536 * 3]]) {
    const target = new Uint8Array(length);
    await disk.read(offset, target);
    assert.ok(Buffer.from(target).equals(big.subarray(offset, offset + length)), `read ${offset}+${length}`);
  }
  await assert.rejects(disk.read(big.length - 1, new Uint8Array(2)), { code: 'REPO_INVALID_ARGUMENT' });
  assert.deepEqual((await repo.listRestorePoints()).map((p) => p.id), [pointId]);
  assert.ok((await storedChunks(repo)).size > 0);
});

test('a full backup reads only the allocated areas; zero chunks are not stored and show as holes', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir, { chunkBytes: 64 * 1024 });
  t.after(() => repo.close());
  const capacity = 1024 * 1024 + 100;
  const image = Buffer.alloc(capacity);
  const allocated = [{ offsetBytes: 70_000, lengthBytes: 10_000 }, { offsetBytes: capacity - 50, lengthBytes: 50 }];
  for (const a of allocated) randomBytes(a.lengthBytes).copy(image, a.offsetBytes);
  const reads: { offsetBytes: number; lengthBytes: number }[] = [];
  const writer = await repo.beginRestorePoint({ vm });
  const record = await writer.writeDisk({ deviceKey: 1, label: 'd', capacityBytes: capacity, changeId: '52 1/2', reader: memorySource(image, reads), allocatedAreas: allocated });
  const pointId = await writer.commit();
  assert.deepEqual(reads, allocated);
  assert.equal(record.stats.chunksNew, 2);
  assert.equal(record.stats.chunksZero, 15);
  assert.equal((await storedChunks(repo)).size, 2);
  assert.equal(sha256(await restoreToBuffer(repo, pointId, 1)), sha256(image));
  const disk = await repo.openDisk(pointId, 1);
  t.after(() => disk.close());
  assert.deepEqual(await disk.allocation({ offsetBytes: 0, lengthBytes: capacity }), [
    { offsetBytes: 0, lengthBytes: 65_536, zero: true, hole: true },
    { offsetBytes: 65_536, lengthBytes: 65_536, zero: false, hole: false },
    { offsetBytes: 131_072, lengthBytes: 1024 * 1024 - 131_072, zero: true, hole: true },
    { offsetBytes: 1024 * 1024, lengthBytes: 100, zero: false, hole: false },
  ]);
  assert.deepEqual(await disk.allocation({ offsetBytes: 70_000, lengthBytes: 100 }), [{ offsetBytes: 70_000, lengthBytes: 100, zero: false, hole: false }]);
});

test('restoreTo calls zero() for all-zero chunks when the target has it; an aborted signal stops a backup', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(dir, { chunkBytes: 64 * 1024 });
  t.after(() => repo.close());
  const image = Buffer.alloc(5 * 65_536 + 10);
  randomBytes(100).copy(image, 65_536 * 2);
  const writer = await repo.beginRestorePoint({ vm });
  await writer.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
  const pointId = await writer.commit();
  const disk = await repo.openDisk(pointId, 1);
  t.after(() => disk.close());
  const zeroed: Array<[number, number]> = [];
  const written: Array<[number, number]> = [];
  const stats = await disk.restoreTo({
    async write(offsetBytes, data) {
      written.push([offsetBytes, data.length]);
    },
    async zero(offsetBytes, lengthBytes) {
      zeroed.push([offsetBytes, lengthBytes]);
    },
  });
  assert.deepEqual(written, [[131_072, 65_536]]);
  assert.deepEqual(zeroed.sort((a, b) => a[0] - b[0]), [[0, 65_536], [65_536, 65_536], [196_608, 65_536], [262_144, 65_536], [327_680, 10]]);
  assert.deepEqual(stats, { bytesWritten: 65_536, bytesZero: image.length - 65_536 });

  const controller = new AbortController();
  controller.abort(new Error('interrupted by SIGINT'));
  const second = await repo.beginRestorePoint({ vm });
  await assert.rejects(second.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: null, reader: memorySource(image), signal: controller.signal }), /interrupted by SIGINT/);
  await second.abort();
  assert.deepEqual(await repo.listPointIds(), [pointId]);
});
