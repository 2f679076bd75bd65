// NbdClient against real servers: nbdkit (memory, pattern, data, filters) and qemu-nbd, over
// unix sockets and TCP. Bytes are checked against a model of what was written and against
// the server's own view (nbdcopy out + sha256, nbdinfo --map).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { NbdClient } from '../../src/nbd/client.ts';
import { openDisk } from '../../src/transport/open-disk.ts';
import { sha256, sha256File, startNbdkit, startQemuNbd, tempDir, tool } from './peers.ts';

const MiB = 1024 * 1024;

/** Deterministic pseudo-random generator so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** nbdkit pattern plugin: each 8-byte word holds its own offset, big-endian. */
function pattern(offsetBytes: number, lengthBytes: number): Buffer {
  const start = offsetBytes - (offsetBytes % 8);
  const words = Buffer.alloc(Math.ceil((offsetBytes + lengthBytes - start) / 8) * 8 + 8);
  for (let i = 0; i < words.length; i += 8) words.writeBigUInt64BE(BigInt(start + i), i);
  return words.subarray(offsetBytes - start, offsetBytes - start + lengthBytes);
}

/** Parse `nbdinfo --map` (offset, length, type, description per line). */
function parseMap(text: string): { offsetBytes: number; lengthBytes: number; hole: boolean; zero: boolean }[] {
  return text.trim().split('\n').map((line) => {
    const [offset, length, type] = line.trim().split(/\s+/);
    return { offsetBytes: Number(offset), lengthBytes: Number(length), hole: (Number(type) & 1) !== 0, zero: (Number(type) & 2) !== 0 };
  });
}

test('random concurrent writes and reads on nbdkit memory match the model and the export sha256', async (t) => {
  const sizeBytes = 16 * MiB;
  const peer = await startNbdkit(['memory', String(sizeBytes)]);
  const client = await NbdClient.connect(peer.uri);
  t.after(async () => {
    await client.close();
    await peer.stop();
  });
  assert.equal(client.sizeBytes, sizeBytes);
  assert.equal(client.canMultiConn, true);
  assert.equal(client.connectionCount, 4, 'multi-conn export gets a pool of connections');

  const model = Buffer.alloc(sizeBytes);
  const random = rng(42);
  for (let round = 0; round < 8; round++) {
    // Non-overlapping writes within a round, so completion order cannot matter.
    const writes: Promise<void>[] = [];
    const slotBytes = sizeBytes / 32;
    for (let slot = 0; slot < 32; slot++) {
      const lengthBytes = 1 + Math.floor(random() * 200_000);
      const offsetBytes = slot * slotBytes + Math.floor(random() * (slotBytes - lengthBytes));
      const data = randomBytes(lengthBytes);
      data.copy(model, offsetBytes);
      writes.push(random() < 0.2 ? client.writeZeroes(offsetBytes, lengthBytes).then(() => void model.fill(0, offsetBytes, offsetBytes + lengthBytes)) : client.write(offsetBytes, data));
    }
    await Promise.all(writes);
  }
  await client.flush();

  const reads = Array.from({ length: 200 }, async () => {
    const lengthBytes = 1 + Math.floor(random() * 300_000);
    const offsetBytes = Math.floor(random() * (sizeBytes - lengthBytes));
    const target = Buffer.alloc(lengthBytes);
    await client.read(offsetBytes, target);
    assert.ok(target.equals(model.subarray(offsetBytes, offsetBytes + lengthBytes)), `read at ${offsetBytes}+${lengthBytes}`);
  });
  await Promise.all(reads);

  const dir = await tempDir(t);
  const copy = path.join(dir, 'copy.raw');
  await tool('nbdcopy', [peer.uri, copy]);
  assert.equal(await sha256File(copy), sha256(model));
});

test('block status matches nbdinfo --map on a sparse nbdkit export', async (t) => {
  const peer = await startNbdkit(['memory', String(8 * MiB)]);
  const client = await NbdClient.connect(peer.uri);
  t.after(async () => {
    await client.close();
    await peer.stop();
  });
  assert.equal(client.canBlockStatus, true);
  await client.write(1 * MiB, randomBytes(256 * 1024));
  await client.write(5 * MiB + 4096, randomBytes(8192));
  const whole = await client.allocation({ offsetBytes: 0, lengthBytes: client.sizeBytes });
  const expected = parseMap(await tool('nbdinfo', ['--map', peer.uri]));
  assert.deepEqual(whole, expected);
  assert.ok(whole.some((e) => !e.hole) && whole.some((e) => e.hole), 'both data and holes present');
  // Covers exactly an unaligned sub-range.
  const part = await client.allocation({ offsetBytes: 1 * MiB - 100, lengthBytes: 300_000 });
  assert.equal(part[0].offsetBytes, 1 * MiB - 100);
  assert.equal(part.reduce((n, e) => n + e.lengthBytes, 0), 300_000);
  assert.deepEqual(part.map((e) => e.hole), [true, false, true]);
});

test('many reads in flight across connections return the right bytes (nbdkit pattern, TCP)', async (t) => {
  const peer = await startNbdkit(['pattern', String(64 * MiB)], { tcp: true, readOnly: true });
  const client = await NbdClient.connect(peer.uri, { connections: 3 });
  t.after(async () => {
    await client.close();
    await peer.stop();
  });
  assert.equal(client.readOnly, true);
  assert.equal(client.connectionCount, 3);
  const random = rng(7);
  await Promise.all(Array.from({ length: 600 }, async () => {
    const lengthBytes = 1 + Math.floor(random() * 65536);
    const offsetBytes = Math.floor(random() * (client.sizeBytes - lengthBytes));
    const target = Buffer.alloc(lengthBytes);
    await client.read(offsetBytes, target);
    assert.ok(target.equals(pattern(offsetBytes, lengthBytes)), `read at ${offsetBytes}+${lengthBytes}`);
  }));
  // One read larger than the 32 MiB maximum payload is split and still lands whole.
  const big = Buffer.alloc(40 * MiB + 12);
  await client.read(3 * MiB + 4, big);
  assert.ok(big.equals(pattern(3 * MiB + 4, big.length)));
});

test('honours the server block sizes: unaligned reads widen, oversize requests split, unaligned writes refused', async (t) => {
  const peer = await startNbdkit(['memory', String(4 * MiB), 'blocksize-minimum=4096', 'blocksize-maximum=65536', 'blocksize-error-policy=error'], {
    before: ['--filter=blocksize-policy'],
  });
  const client = await NbdClient.connect(peer.uri);
  t.after(async () => {
    await client.close();
    await peer.stop();
  });
  assert.deepEqual(client.blockSizes, { minimumBytes: 4096, preferredBytes: 4096, maximumPayloadBytes: 65536 });
  const data = randomBytes(1 * MiB);
  await client.write(0, data);
  const piece = Buffer.alloc(1000);
  await client.read(4097, piece);
  assert.ok(piece.equals(data.subarray(4097, 5097)));
  const whole = Buffer.alloc(1 * MiB);
  await client.read(0, whole);
  assert.ok(whole.equals(data));
  await assert.rejects(client.write(100, Buffer.alloc(4096)), { code: 'DISK_RANGE' });
});

test('qemu-nbd over TCP: writes land in the served file; a read-only export refuses writes', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'disk.raw');
  const model = randomBytes(8 * MiB);
  await writeFile(file, model);
  const peer = await startQemuNbd(file, { tcp: true });
  const disk = await openDisk(peer.uri, { writable: true });
  const random = rng(3);
  await Promise.all(Array.from({ length: 64 }, (_, slot) => {
    const offsetBytes = slot * 131072 + Math.floor(random() * 60000);
    const data = randomBytes(1 + Math.floor(random() * 60000));
    data.copy(model, offsetBytes);
    return disk.write(offsetBytes, data);
  }));
  await disk.writeZeroes(7 * MiB, 65536);
  model.fill(0, 7 * MiB, 7 * MiB + 65536);
  await disk.flush();
  await disk.close();
  await peer.stop();
  assert.equal(sha256(await readFile(file)), sha256(model));

  const readOnly = await startQemuNbd(file, { readOnly: true });
  await assert.rejects(openDisk(readOnly.uri, { writable: true }), { code: 'NBD_UNSUPPORTED' });
  const client = await NbdClient.connect(readOnly.uri);
  t.after(async () => {
    await client.close();
    await readOnly.stop();
  });
  await assert.rejects(client.write(0, Buffer.alloc(512)), { code: 'NBD_UNSUPPORTED', message: /read-only/ });
  const head = Buffer.alloc(4096);
  await client.read(0, head);
  assert.ok(head.equals(model.subarray(0, 4096)));
});

test('without server WRITE_ZEROES support, writeZeroes writes zero buffers', async (t) => {
  const peer = await startNbdkit(['memory', String(2 * MiB), 'zeromode=none'], { before: ['--filter=nozero'] });
  const client = await NbdClient.connect(peer.uri);
  t.after(async () => {
    await client.close();
    await peer.stop();
  });
  assert.equal(client.canWriteZeroes, false);
  await client.write(0, Buffer.alloc(2 * MiB, 0xaa));
  await client.writeZeroes(4096, 1 * MiB);
  const back = Buffer.alloc(2 * MiB);
  await client.read(0, back);
  const expected = Buffer.alloc(2 * MiB, 0xaa).fill(0, 4096, 4096 + MiB);
  assert.ok(back.equals(expected));
});
