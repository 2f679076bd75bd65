// openReconnectingReader: reads in flight when the NBD server is killed complete once a
// server is back on the same socket; other errors pass straight through; a server that stays
// away is an error after the configured attempts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { rm } from 'node:fs/promises';
import { openReconnectingReader } from '../../src/transport/reconnecting-reader.ts';
import { openDisk } from '../../src/transport/open-disk.ts';
import { startNbdkit, tempDir } from '../nbd/peers.ts';

const MiB = 1024 * 1024;

/** nbdkit pattern plugin: each 8-byte word holds its own offset, big-endian. */
function pattern(offsetBytes: number, lengthBytes: number): Buffer {
  const out = Buffer.alloc(lengthBytes);
  for (let i = 0; i < lengthBytes; i += 8) out.writeBigUInt64BE(BigInt(offsetBytes + i), i);
  return out;
}

test('reads cut by a killed server finish on the restarted one, with the right bytes', async (t) => {
  const dir = await tempDir(t);
  const socketPath = path.join(dir, 'nbd.sock');
  const uri = `nbd+unix:///?socket=${socketPath}`;
  const first = await startNbdkit(['pattern', String(8 * MiB), 'delay-read=200ms'], { socketPath, readOnly: true, before: ['--filter=delay'] });
  const reconnects: unknown[] = [];
  const reader = await openReconnectingReader(() => openDisk(uri), { retryDelayMs: 50, attempts: 5, onReconnect: (cause) => reconnects.push(cause) });
  let second: Awaited<ReturnType<typeof startNbdkit>> | null = null;
  t.after(async () => {
    await reader.close();
    await second?.stop();
  });
  const reads = Array.from({ length: 40 }, async (_, i) => {
    const target = Buffer.alloc(65536);
    await reader.read(i * 131072, target);
    assert.ok(target.equals(pattern(i * 131072, 65536)), `read ${i}`);
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  await first.stop('SIGKILL');
  await rm(socketPath, { force: true }); // a killed nbdkit leaves its socket behind
  second = await startNbdkit(['pattern', String(8 * MiB)], { socketPath, readOnly: true });
  const results = await Promise.allSettled(reads);
  assert.deepEqual(results.filter((r) => r.status === 'rejected'), []);
  assert.ok(reconnects.length >= 1);
  assert.equal((reconnects[0] as { code: string }).code, 'NBD_DISCONNECTED');
});

test('errors that are not a cut connection pass through; a server that stays away fails after the attempts', async (t) => {
  const dir = await tempDir(t);
  const socketPath = path.join(dir, 'nbd.sock');
  const peer = await startNbdkit(['pattern', String(MiB)], { socketPath, readOnly: true });
  let reconnects = 0;
  const reader = await openReconnectingReader(() => openDisk(`nbd+unix:///?socket=${socketPath}`), { retryDelayMs: 10, attempts: 2, onReconnect: () => reconnects++ });
  t.after(() => reader.close());
  await assert.rejects(reader.read(MiB - 10, Buffer.alloc(512)), { code: 'DISK_RANGE' });
  assert.equal(reconnects, 0);
  await peer.stop('SIGKILL');
  await assert.rejects(reader.read(0, Buffer.alloc(512)), { code: /^NBD_(CONNECT|DISCONNECTED)$/ });
  assert.equal(reconnects, 2);
});
