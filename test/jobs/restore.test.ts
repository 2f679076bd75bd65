// The restore job on its own (no lab): an existing target full of old bytes ends up exactly
// the restore point (zero chunks overwrite old data; they are not skipped), a larger target
// keeps its bytes past the disk, a cancelled restore stops, and `--point latest` picks the
// newest point of the VM named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { restore } from '../../src/jobs/restore.ts';
import { resolvePointId } from '../../src/jobs/restore-points.ts';
import { IndexReader } from '../../src/repository/disk-index.ts';
import { chunkRecord, flipChunkByte, memorySource, mixedImage, newRepository, sha256, tempDir } from '../repository/helpers.ts';

const chunkBytes = 64 * 1024;
const vm = { id: 'uuid-1', name: 'web01', moref: 'vm-10', instanceUuid: 'uuid-1', server: 'vc:443' };

test('restore over an existing, larger file: old bytes are overwritten everywhere, bytes past the disk kept', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(join(dir, 'repo'), { chunkBytes });
  try {
    const image = mixedImage(1024 * 1024 + 512); // data and all-zero runs, odd tail
    const writer = await repo.beginRestorePoint({ vm });
    await writer.writeDisk({ deviceKey: 2000, label: 'Hard disk 1', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
    const pointId = await writer.commit();

    const tail = randomBytes(4096);
    const target = join(dir, 'existing.raw');
    await writeFile(target, Buffer.concat([randomBytes(image.length), tail]));
    const result = await restore({ repository: repo, pointId, deviceKey: 2000, target });
    assert.equal(result.created, false);
    assert.ok(result.bytesZero > 0, 'the image has zero chunks');
    const after = await readFile(target);
    assert.equal(sha256(after.subarray(0, image.length)), sha256(image));
    assert.ok(after.subarray(image.length).equals(tail));

    const aborted = restore({ repository: repo, pointId, deviceKey: 2000, target: join(dir, 'aborted.raw'), signal: AbortSignal.abort(new Error('interrupted by SIGINT')) });
    await assert.rejects(aborted, /interrupted by SIGINT/);
  } finally {
    await repo.close();
  }
});

test('--point latest: the newest point of the VM named by name, moref or uuid; unknown VM is a clear error', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(join(dir, 'repo'), { chunkBytes });
  try {
    const image = randomBytes(3 * chunkBytes);
    const ids: string[] = [];
    for (const [i, who] of [vm, { ...vm, id: 'uuid-2', name: 'db01', moref: 'vm-11', instanceUuid: 'uuid-2' }, vm].entries()) {
      const writer = await repo.beginRestorePoint({ vm: who, createdAt: new Date(Date.UTC(2026, 0, 1 + i)) });
      await writer.writeDisk({ deviceKey: 2000, label: 'Hard disk 1', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
      ids.push(await writer.commit());
    }
    assert.equal(await resolvePointId(repo, 'latest', 'web01'), ids[2]);
    assert.equal(await resolvePointId(repo, 'latest', 'moref:vm-11'), ids[1]);
    assert.equal(await resolvePointId(repo, 'latest', 'uuid-1'), ids[2]);
    assert.equal(await resolvePointId(repo, ids[0]), ids[0]);
    await assert.rejects(resolvePointId(repo, 'latest', 'nope'), { code: 'REPO_POINT_NOT_FOUND' });
    await assert.rejects(resolvePointId(repo, 'latest'), { code: 'RESTORE_POINT_AMBIGUOUS' });
  } finally {
    await repo.close();
  }
});

test('a failing restore removes the file it created; an existing target is reported as partially written; new files are 0600', async (t) => {
  const dir = tempDir(t);
  const repo = await newRepository(join(dir, 'repo'), { chunkBytes, passphrase: 'secret' });
  try {
    const image = randomBytes(6 * chunkBytes);
    const writer = await repo.beginRestorePoint({ vm });
    await writer.writeDisk({ deviceKey: 2000, label: 'Hard disk 1', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
    const pointId = await writer.commit();

    const good = join(dir, 'good.raw');
    await restore({ repository: repo, pointId, deviceKey: 2000, target: good });
    assert.equal(statSync(good).mode & 0o777, 0o600, 'a restored disk (here from an encrypted repository) is owner-only');
    assert.equal(sha256(await readFile(good)), sha256(image));

    const disk = (await repo.readManifest(pointId)).disks[0];
    const index = await IndexReader.open(repo.storage, disk.index, repo.keys);
    const victim = Buffer.from(await index.entry(4)).toString('hex');
    await index.close();
    const record = await chunkRecord(repo, victim);
    await flipChunkByte(repo, victim, record.lengthBytes - 1); // the last byte of its record

    const fresh = join(dir, 'fresh.raw');
    await assert.rejects(restore({ repository: repo, pointId, deviceKey: 2000, target: fresh }), { code: 'REPO_CORRUPT' });
    assert.ok(!existsSync(fresh), 'no full-size file with partial content is left behind');

    const existing = join(dir, 'existing.raw');
    await writeFile(existing, Buffer.alloc(image.length, 0xee));
    await assert.rejects(restore({ repository: repo, pointId, deviceKey: 2000, target: existing }), (error: Error & { code?: string; context?: Record<string, unknown> }) => {
      assert.equal(error.code, 'RESTORE_TARGET_PARTIAL');
      assert.match(error.message, /existing\.raw .*partially written: REPO_CORRUPT/);
      assert.equal(error.context?.causeCode, 'REPO_CORRUPT');
      return true;
    });
    assert.ok(existsSync(existing), 'an existing target is never removed');
  } finally {
    await repo.close();
  }
});
