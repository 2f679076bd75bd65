// The repository's chunk workers (chunk-worker.ts) through the generic pool: ingest hashes,
// zero-detects, compresses and writes temp files; decode reads back; incremental merges.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { test } from 'node:test';
import * as path from 'node:path';
import type { DecodeReply, IngestReply } from '../../src/repository/chunk-protocol.ts';
import { WorkerFailure } from '../../src/pipeline/worker-pool.ts';
import { Repository, type ChunkRunner } from '../../src/repository/repository.ts';
import { chunkPath, tempDir } from '../repository/helpers.ts';

const chunkBytes = 64 * 1024;

async function pool(t: { after(fn: () => Promise<void>): void }, dir: string): Promise<ChunkRunner> {
  await Repository.init(dir, { chunkBytes });
  const repo = await Repository.open(dir, { workers: 2 });
  t.after(() => repo.close());
  return repo.pool();
}

/** What the writer does with a staged chunk: publish it under its id. */
async function publish(dir: string, token: string, idHex: string): Promise<void> {
  const repo = await Repository.open(dir, { workers: 1 });
  try {
    const batch = repo.storage.newPublishBatch();
    await repo.storage.publish(token, { kind: 'chunk', name: idHex }, batch);
    await batch.sync();
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
  for (const [i, reply] of replies.entries()) {
    assert.equal(reply.buffer.byteLength, chunkBytes, 'the buffer came back');
    assert.equal(reply.zero, i === 1);
    if (i === 1) continue;
    const hex = Buffer.from(reply.id).toString('hex');
    assert.equal(hex, createHash('sha256').update(contents[i]).digest('hex'));
    assert.ok(reply.stagedToken && fs.statSync(path.join(dir, 'tmp', reply.stagedToken)).size === reply.storedBytes);
    assert.ok(!fs.existsSync(chunkPath(dir, hex)), 'the chunk name appears only once the caller made it durable');
    await publish(dir, reply.stagedToken, hex);
    assert.ok(fs.existsSync(chunkPath(dir, hex)));
  }
  assert.ok(replies[2].storedBytes < 100, `a run of "a" compresses (${replies[2].storedBytes} bytes)`);
  assert.equal(replies[0].storedBytes, chunkBytes + 16, 'random data is stored raw');

  const again = new ArrayBuffer(chunkBytes);
  new Uint8Array(again).set(contents[0]);
  const dedup = (await workers.run({ kind: 'ingest', buffer: again, lengthBytes: chunkBytes, merge: null }, [again])) as IngestReply;
  assert.deepEqual([dedup.storedBytes, dedup.stagedToken], [0, null], 'a stored chunk is not written again');

  const decoded = (await workers.run({ kind: 'decode', buffer: new ArrayBuffer(chunkBytes), id: replies[3].id })) as DecodeReply;
  assert.equal(decoded.lengthBytes, 1000);
  assert.ok(Buffer.from(decoded.buffer, 0, 1000).equals(contents[3]));

  await assert.rejects(workers.run({ kind: 'decode', buffer: new ArrayBuffer(chunkBytes), id: new Uint8Array(32).fill(7) }), (error: unknown) => {
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
  assert.ok(first.stagedToken);
  await publish(dir, first.stagedToken, Buffer.from(first.id).toString('hex'));
  const fresh = randomBytes(300);
  const next = new ArrayBuffer(chunkBytes);
  new Uint8Array(next).set(fresh, 1000); // only the fresh range is filled; the rest is garbage (zeros here)
  const merged = (await workers.run({ kind: 'ingest', buffer: next, lengthBytes: chunkBytes, merge: { previousId: first.id, freshRanges: [[1000, 300]] } }, [next])) as IngestReply;
  const expected = Buffer.from(previous);
  fresh.copy(expected, 1000);
  assert.equal(Buffer.from(merged.id).toString('hex'), createHash('sha256').update(expected).digest('hex'));
  const zeroBase = new ArrayBuffer(chunkBytes);
  new Uint8Array(zeroBase).fill(0xff);
  new Uint8Array(zeroBase).set(fresh, 0);
  const fromZero = (await workers.run({ kind: 'ingest', buffer: zeroBase, lengthBytes: chunkBytes, merge: { previousId: new Uint8Array(32), freshRanges: [[0, 300]] } }, [zeroBase])) as IngestReply;
  const expectedZero = Buffer.alloc(chunkBytes);
  fresh.copy(expectedZero);
  assert.equal(Buffer.from(fromZero.id).toString('hex'), createHash('sha256').update(expectedZero).digest('hex'));
});
