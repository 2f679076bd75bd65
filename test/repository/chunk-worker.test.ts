// The repository's chunk workers (chunk-worker.ts) through the generic pool: ingest hashes,
// zero-detects, compresses and encodes chunk records; decode reads one back from its pack;
// incremental merges.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { DecodeReply, IngestReply } from '../../src/repository/chunk-protocol.ts';
import { WorkerFailure } from '../../src/pipeline/worker-pool.ts';
import { PackWriter, type ChunkLocation } from '../../src/repository/pack.ts';
import { Repository, type ChunkRunner } from '../../src/repository/repository.ts';
import { listFiles, tempDir } from '../repository/helpers.ts';

const chunkBytes = 64 * 1024;

async function pool(t: { after(fn: () => Promise<void>): void }, dir: string): Promise<ChunkRunner> {
  await Repository.init(dir, { chunkBytes });
  const repo = await Repository.open(dir, { workers: 2 });
  t.after(() => repo.close());
  return repo.pool();
}

/** What the writer does with new chunk records: append them to a pack and make it durable. */
async function storeInPack(dir: string, records: Array<{ id: Uint8Array; record: ArrayBuffer }>): Promise<ChunkLocation[]> {
  const repo = await Repository.open(dir, { workers: 1 });
  try {
    const pack = await PackWriter.create(repo.storage);
    const locations: ChunkLocation[] = [];
    for (const { id, record } of records) locations.push(await pack.append(id, new Uint8Array(record)));
    assert.equal(listFiles(dir, 'packs').length, 0, 'the pack appears only once it is durable');
    await pack.finish(undefined);
    return locations;
  } finally {
    await repo.close();
  }
}

test('chunk workers hash, store, zero-detect and decode; buffers travel and come back', async (t) => {
  const dir = tempDir(t);
  const workers = await pool(t, dir);
  const contents = [randomBytes(chunkBytes), Buffer.alloc(chunkBytes), Buffer.alloc(chunkBytes, 'a'), randomBytes(1000)];
  // More requests than workers: the rest queue.
  const sentBuffers = contents.map(() => new ArrayBuffer(chunkBytes));
  const replies = await Promise.all(
    contents.map((content, i) => {
      new Uint8Array(sentBuffers[i]).set(content);
      return workers.run({ kind: 'ingest', buffer: sentBuffers[i], lengthBytes: content.length, merge: null }, [sentBuffers[i]]) as Promise<IngestReply>;
    }),
  );
  assert.deepEqual(sentBuffers.map((b) => b.byteLength), [0, 0, 0, 0], 'transferred, not copied');
  const records: Array<{ id: Uint8Array; record: ArrayBuffer }> = [];
  for (const [i, reply] of replies.entries()) {
    assert.equal(reply.buffer.byteLength, chunkBytes, 'the buffer came back');
    assert.equal(reply.zero, i === 1);
    if (i === 1) {
      assert.equal(reply.record, null, 'a zero chunk has no record');
      continue;
    }
    const hex = Buffer.from(reply.id).toString('hex');
    assert.equal(hex, createHash('sha256').update(contents[i]).digest('hex'));
    assert.ok(reply.record);
    records.push({ id: reply.id, record: reply.record });
  }
  assert.ok((replies[2].record?.byteLength ?? 0) < 100, `a run of "a" compresses (${replies[2].record?.byteLength} bytes)`);
  assert.equal(replies[0].record?.byteLength, chunkBytes + 16, 'random data is stored raw');
  const locations = await storeInPack(dir, records);

  const decoded = (await workers.run({ kind: 'decode', buffer: new ArrayBuffer(chunkBytes), id: replies[3].id, location: locations[2] })) as DecodeReply;
  assert.equal(decoded.lengthBytes, 1000);
  assert.ok(Buffer.from(decoded.buffer, 0, 1000).equals(contents[3]));

  await assert.rejects(workers.run({ kind: 'decode', buffer: new ArrayBuffer(chunkBytes), id: new Uint8Array(32).fill(7), location: { pack: null, offsetBytes: 0, lengthBytes: 0 } }), (error: unknown) => {
    assert.ok(error instanceof WorkerFailure);
    assert.equal(error.code, 'REPO_MISSING');
    return true;
  });
});

test('an incremental merge takes the untouched bytes from the previous chunk', async (t) => {
  const dir = tempDir(t);
  const workers = await pool(t, dir);
  const previous = randomBytes(chunkBytes);
  const buffer = new ArrayBuffer(chunkBytes);
  new Uint8Array(buffer).set(previous);
  const first = (await workers.run({ kind: 'ingest', buffer, lengthBytes: chunkBytes, merge: null }, [buffer])) as IngestReply;
  assert.ok(first.record);
  const [previousLocation] = await storeInPack(dir, [{ id: first.id, record: first.record }]);
  const fresh = randomBytes(300);
  const next = new ArrayBuffer(chunkBytes);
  new Uint8Array(next).set(fresh, 1000); // only the fresh range is filled; the rest is garbage (zeros here)
  const merged = (await workers.run({ kind: 'ingest', buffer: next, lengthBytes: chunkBytes, merge: { previousId: first.id, previous: previousLocation, freshRanges: [[1000, 300]] } }, [next])) as IngestReply;
  const expected = Buffer.from(previous);
  fresh.copy(expected, 1000);
  assert.equal(Buffer.from(merged.id).toString('hex'), createHash('sha256').update(expected).digest('hex'));
  const zeroBase = new ArrayBuffer(chunkBytes);
  new Uint8Array(zeroBase).fill(0xff);
  new Uint8Array(zeroBase).set(fresh, 0);
  const fromZero = (await workers.run({ kind: 'ingest', buffer: zeroBase, lengthBytes: chunkBytes, merge: { previousId: new Uint8Array(32), previous: null, freshRanges: [[0, 300]] } }, [zeroBase])) as IngestReply;
  const expectedZero = Buffer.alloc(chunkBytes);
  fresh.copy(expectedZero);
  assert.equal(Buffer.from(fromZero.id).toString('hex'), createHash('sha256').update(expectedZero).digest('hex'));
});
