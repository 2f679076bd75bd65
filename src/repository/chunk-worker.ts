// The chunk worker thread: runs ChunkWork (chunk-work.ts) on the repository's storage, opened
// again in this thread from its descriptor. The generic pool (src/pipeline/worker-pool.ts)
// keeps one request per worker. Messages: chunk-protocol.ts.
import { parentPort, workerData } from 'node:worker_threads';
import type { WorkerReply } from '../pipeline/worker-pool.ts';
import type { ChunkRequest, ChunkWorkerData } from './chunk-protocol.ts';
import { ChunkWork } from './chunk-work.ts';
import { LocalStorage } from './storage/local.ts';
import { S3Storage } from './storage/s3.ts';

const data = workerData as ChunkWorkerData;
const keys = data.keyMaterial
  ? { dataKey: Buffer.from(data.keyMaterial.subarray(0, 32)), idKey: Buffer.from(data.keyMaterial.subarray(32, 64)) }
  : undefined;
function openStorage(descriptor: ChunkWorkerData['storage']): LocalStorage | S3Storage {
  if (descriptor.type === 'local') return new LocalStorage(descriptor.root);
  const storage = new S3Storage(descriptor.settings);
  storage.retentionDays = descriptor.retentionDays;
  return storage;
}
const work = new ChunkWork(openStorage(data.storage), keys, data.compressionLevel, data.chunkBytes);

parentPort?.on('message', (request: ChunkRequest) => {
  work.handle(request).then(
    (result) => parentPort?.postMessage({ ok: true, result } satisfies WorkerReply, [result.buffer]),
    (error: unknown) => {
      const e = error as Error & { code?: string; context?: Record<string, unknown> };
      parentPort?.postMessage({ ok: false, error: { name: e.name, message: e.message, code: e.code, context: e.context ? { ...e.context } : undefined } } satisfies WorkerReply);
    },
  );
});
