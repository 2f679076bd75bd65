// The local file transport: positional reads and writes, range checks, and sparse-aware
// zero writes (a new file stays a hole where only zeroes were written), plus openDisk's
// choice of transport.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FileDisk, openFileDisk } from '../../src/transport/file-disk.ts';
import { openDisk } from '../../src/transport/open-disk.ts';
import { sha256, startNbdkit, tempDir } from '../nbd/peers.ts';

const MiB = 1024 * 1024;

test('reads and writes at offsets, concurrently, and the file holds exactly the model', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'disk.raw');
  const model = randomBytes(4 * MiB + 512);
  await writeFile(file, model);
  const disk = await openFileDisk(file, { writable: true });
  assert.equal(disk.sizeBytes, model.length);
  await Promise.all(Array.from({ length: 50 }, (_, i) => {
    const data = randomBytes(1000 + i * 17);
    const offsetBytes = i * 80_000 + 3;
    data.copy(model, offsetBytes);
    return disk.write(offsetBytes, data);
  }));
  await disk.writeZeroes(MiB + 5, 70_000);
  model.fill(0, MiB + 5, MiB + 70_005);
  const reads = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
    const target = Buffer.alloc(100_000);
    await disk.read(i * 130_000 + 1, target);
    return target.equals(model.subarray(i * 130_000 + 1, i * 130_000 + 100_001));
  }));
  assert.ok(reads.every(Boolean));
  await disk.flush();
  await disk.close();
  assert.equal(sha256(await readFile(file)), sha256(model));
});

test('outside the disk is DISK_RANGE; a read-only disk refuses writes; a missing file is FILE_OPEN', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'disk.raw');
  await writeFile(file, Buffer.alloc(8192, 1));
  const disk = await openFileDisk(file);
  t.after(() => disk.close());
  await assert.rejects(disk.read(8000, Buffer.alloc(512)), { code: 'DISK_RANGE', message: /read of 512 bytes at offset 8000 is outside the disk \(8192 bytes\)/ });
  const writer = disk as FileDisk;
  await assert.rejects(writer.write(0, Buffer.alloc(1)), { code: 'DISK_READ_ONLY' });
  await assert.rejects(openFileDisk(path.join(dir, 'missing.raw')), { code: 'FILE_OPEN', message: /missing\.raw/ });
  await assert.rejects(openFileDisk(file, { writable: true, sizeBytes: 4096 }), { code: 'DISK_SIZE' });
});

test('a created file stays sparse where only zeroes were written; zeroes over data really zero it', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'target.raw');
  const sizeBytes = 64 * MiB;
  const disk = (await FileDisk.open(file, { writable: true, create: true, sizeBytes }));
  await disk.write(0, Buffer.alloc(MiB, 0xab));
  await disk.writeZeroes(MiB, sizeBytes - MiB); // a full copy's zero areas: nothing written
  assert.deepEqual(disk.knownZeroRanges(), [{ offsetBytes: MiB, lengthBytes: sizeBytes - MiB }]);
  await disk.writeZeroes(4096, 8192); // over written data: real zeroes
  await disk.flush();
  await disk.close();
  const info = await stat(file);
  assert.equal(info.size, sizeBytes);
  assert.equal(info.mode & 0o777, 0o600, 'a created disk holds VM data: owner only, whatever the umask');
  assert.ok(info.blocks * 512 <= 2 * MiB, `allocated ${info.blocks * 512} bytes, expected about 1 MiB`);
  const expected = Buffer.alloc(sizeBytes);
  expected.fill(0xab, 0, MiB).fill(0, 4096, 12288);
  assert.equal(sha256(await readFile(file)), sha256(expected));
});

test('zeroes over a long run of existing data deallocate it (punched hole), short runs are written', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'old-replica.raw');
  const data = randomBytes(24 * MiB);
  await writeFile(file, data);
  const disk = await FileDisk.open(file, { writable: true });
  await disk.writeZeroes(2 * MiB, 16 * MiB); // an old replica's unallocated area in a full copy
  await disk.writeZeroes(20 * MiB, 4096);
  await disk.flush();
  await disk.close();
  const info = await stat(file);
  assert.equal(info.size, 24 * MiB);
  // Where the file system can punch holes (ext4, xfs, tmpfs, btrfs), the zeroed run takes no space.
  const probe = path.join(dir, 'probe');
  await writeFile(probe, randomBytes(MiB));
  const canPunch = await new Promise<boolean>((resolve) => execFile('fallocate', ['--punch-hole', '--keep-size', '--offset', '0', '--length', String(MiB), probe], (error) => resolve(!error)));
  if (canPunch) assert.ok(info.blocks * 512 <= 9 * MiB, `allocated ${info.blocks * 512} bytes, expected about 8 MiB after the punch`);
  const expected = Buffer.from(data);
  expected.fill(0, 2 * MiB, 18 * MiB).fill(0, 20 * MiB, 20 * MiB + 4096);
  assert.equal(sha256(await readFile(file)), sha256(expected));
});

test('openDisk picks the transport from the URI or path', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'disk.raw');
  await writeFile(file, Buffer.alloc(65536, 3));
  const fileDisk = await openDisk(file);
  assert.ok(fileDisk instanceof FileDisk);
  await fileDisk.close();
  const peer = await startNbdkit(['memory', '1M']);
  const nbdDisk = await openDisk(peer.uri, { writable: true });
  await nbdDisk.write(0, Buffer.alloc(512, 9));
  const back = Buffer.alloc(512);
  await nbdDisk.read(0, back);
  assert.ok(back.equals(Buffer.alloc(512, 9)));
  assert.deepEqual(await nbdDisk.allocation!({ offsetBytes: 0, lengthBytes: 512 }), [{ offsetBytes: 0, lengthBytes: 512, hole: false, zero: false }]);
  await nbdDisk.close();
  await peer.stop();
  await assert.rejects(openDisk('ftp://host/disk'), { code: 'DISK_URI', message: /unsupported scheme/ });
  await assert.rejects(openDisk('nbd+unix:///x'), { code: 'NBD_BAD_URI' });
});
