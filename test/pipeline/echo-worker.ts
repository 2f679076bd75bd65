// Worker script of worker-pool.test.ts: doubles every byte of the buffer it is sent (and
// gives the buffer back), throws a coded error for { fail: true }, exits for { exit: true }.
import { parentPort } from 'node:worker_threads';
import type { WorkerReply } from '../../src/pipeline/worker-pool.ts';

parentPort?.on('message', (request: { buffer?: ArrayBuffer; fail?: boolean; exit?: boolean }) => {
  if (request.exit) process.exit(3);
  let reply: WorkerReply;
  if (request.fail) {
    reply = { ok: false, error: { name: 'Error', message: 'asked to fail', code: 'TEST_CODE', context: { why: 'test' } } };
    parentPort?.postMessage(reply);
    return;
  }
  const bytes = new Uint8Array(request.buffer as ArrayBuffer);
  for (let i = 0; i < bytes.length; i++) bytes[i] *= 2;
  reply = { ok: true, result: { buffer: request.buffer } };
  parentPort?.postMessage(reply, [request.buffer as ArrayBuffer]);
});
