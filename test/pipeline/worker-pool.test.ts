// The generic worker pool on its own (no repository): requests queue beyond the pool size,
// transferred buffers move and come back, a thrown error keeps its code and context, and a
// worker that dies breaks the pool for every later request.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkerFailure, WorkerPool } from '../../src/pipeline/worker-pool.ts';

type Request = { buffer?: ArrayBuffer; fail?: boolean; exit?: boolean };
const script = new URL('./echo-worker.ts', import.meta.url);

test('worker pool: queues beyond its size, buffers are transferred both ways, errors keep code and context', async () => {
  const pool = new WorkerPool<Request, { buffer: ArrayBuffer }>(script, 2, null);
  try {
    const sent = Array.from({ length: 5 }, (_, i) => new Uint8Array([i, 1, 2]).buffer);
    const replies = await Promise.all(sent.map((buffer) => pool.run({ buffer }, [buffer])));
    assert.deepEqual(sent.map((b) => b.byteLength), [0, 0, 0, 0, 0], 'transferred, not copied');
    assert.deepEqual(replies.map((r) => [...new Uint8Array(r.buffer)]), [0, 1, 2, 3, 4].map((i) => [i * 2, 2, 4]));
    await assert.rejects(pool.run({ fail: true }), (error: unknown) => {
      assert.ok(error instanceof WorkerFailure);
      assert.deepEqual([error.code, error.message, error.context], ['TEST_CODE', 'asked to fail', { why: 'test' }]);
      return true;
    });
  } finally {
    await pool.close();
  }
});

test('worker pool: a worker that exits fails its request and every later one', async () => {
  const pool = new WorkerPool<Request, { buffer: ArrayBuffer }>(script, 1, null);
  try {
    await assert.rejects(pool.run({ exit: true }), /exited with code 3/);
    await assert.rejects(pool.run({ buffer: new ArrayBuffer(1) }), /exited with code 3/);
  } finally {
    await pool.close();
  }
});
