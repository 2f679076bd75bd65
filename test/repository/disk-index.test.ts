import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { IndexReader, IndexWriter, indexSegmentBytes } from '../../src/repository/disk-index.ts';
import { Repository } from '../../src/repository/repository.ts';
import { indexPath, local, tempDir, testScrypt } from './helpers.ts';

const zeroId = Buffer.alloc(32);

function idOf(slot: number): Buffer {
  return slot % 5 === 0 ? zeroId : createHash('sha256').update(String(slot)).digest();
}

// Entry counts around segment boundaries: the last id or the trailer ending exactly on 1 MiB,
// the trailer alone in the last segment, several segments.
const counts = [1, 32_765, 32_766, 32_767, 70_000];

for (const encrypted of [false, true]) {
  test(`index files round-trip at segment boundaries (${encrypted ? 'encrypted' : 'plain'})`, async (t) => {
    const dir = tempDir(t);
    await Repository.init(dir, { chunkBytes: 4096, ...(encrypted ? { passphrase: 'p', scryptCost: testScrypt } : {}) });
    const repo = await Repository.open(dir, { passphrase: encrypted ? 'p' : undefined });
    for (const entryCount of counts) {
      const capacityBytes = entryCount * 4096 - 100;
      const writer = await IndexWriter.create(local(dir), repo.keys, 4096, capacityBytes);
      for (let slot = 0; slot < entryCount; slot++) await writer.append(idOf(slot));
      const ref = await writer.finish();
      const logical = 64 + 32 * entryCount + 32;
      const segments = Math.ceil(logical / indexSegmentBytes);
      assert.equal(fs.statSync(indexPath(dir, ref.sha256)).size, logical + (encrypted ? 28 * segments : 0), `${entryCount} entries`);
      const reader = await IndexReader.open(local(dir), ref, repo.keys);
      assert.deepEqual(reader.header, { chunkBytes: 4096, capacityBytes, entryCount });
      for (const slot of [0, 1, entryCount - 1, Math.floor(entryCount / 2)].filter((s) => s < entryCount)) assert.ok((await reader.entry(slot)).equals(idOf(slot)), `slot ${slot} of ${entryCount}`);
      await assert.rejects(reader.entry(entryCount), { code: 'REPO_INVALID_ARGUMENT' });
      let slot = 0;
      let mismatches = 0;
      for await (const id of reader.entries()) if (!id.equals(idOf(slot++))) mismatches++;
      assert.deepEqual([slot, mismatches], [entryCount, 0]);
      await reader.close();
    }
    assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
  });
}

test('an index with a wrong entry count or a flipped trailer is refused', async (t) => {
  const dir = tempDir(t);
  await Repository.init(dir, { chunkBytes: 4096 });
  const writer = await IndexWriter.create(local(dir), undefined, 4096, 10 * 4096);
  await assert.rejects(writer.finish(), { code: 'REPO_INVALID_ARGUMENT' });
  await writer.abort();
  const good = await IndexWriter.create(local(dir), undefined, 4096, 3 * 4096);
  for (let slot = 0; slot < 3; slot++) await good.append(idOf(slot + 1));
  const ref = await good.finish();
  await assert.rejects(IndexReader.open(local(dir), { ...ref, entryCount: 4 }, undefined), { code: 'REPO_CORRUPT' });
  const file = indexPath(dir, ref.sha256);
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 1] ^= 1;
  fs.writeFileSync(file, bytes);
  await assert.rejects(IndexReader.open(local(dir), ref, undefined), { code: 'REPO_CORRUPT' });
  await assert.rejects(IndexReader.open(local(dir), { sha256: 'ab'.repeat(32), entryCount: 3 }, undefined), { code: 'REPO_MISSING' });
});
