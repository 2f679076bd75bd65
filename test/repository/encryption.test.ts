import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Repository } from '../../src/repository/repository.ts';
import { verifyRepository } from '../../src/repository/verify.ts';
import { listFiles, memorySource, newRepository, restoreToBuffer, sha256, tempDir } from './helpers.ts';

const chunkBytes = 64 * 1024;

test('encrypted repository: round trip, wrong or missing passphrase, nothing readable in any file', async (t) => {
  const dir = tempDir(t);
  const passphrase = 'correct horse battery staple';
  const repo = await newRepository(dir, { chunkBytes, passphrase });
  t.after(() => repo.close());
  const marker = 'SECRET-GUEST-DATA-MARKER';
  const text = Buffer.from(`${marker} `.repeat(Math.ceil(chunkBytes / (marker.length + 1)))).subarray(0, chunkBytes);
  const image = Buffer.concat([text, text, text, randomBytes(chunkBytes), Buffer.alloc(chunkBytes)]);
  const writer = await repo.beginRestorePoint({ vm: { id: 'vm-uuid', name: 'SECRET-VM-NAME' }, vmConfig: { note: marker } });
  await writer.writeDisk({ deviceKey: 1, label: 'SECRET-LABEL', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
  const inProgress = [...listFiles(dir, 'locks'), ...listFiles(dir, 'tmp')].map((f) => fs.readFileSync(f));
  assert.ok(inProgress.length >= 1 && inProgress.every((b) => !b.includes('SECRET-VM-NAME')), 'the lock of a running backup names no VM');
  const pointId = await writer.commit();
  assert.equal(sha256(await restoreToBuffer(repo, pointId, 1)), sha256(image));
  assert.deepEqual((await verifyRepository(repo, { readData: true })).corruptions, []);

  await assert.rejects(Repository.open(dir, { passphrase: 'wrong' }), { code: 'REPO_WRONG_PASSPHRASE' });
  await assert.rejects(Repository.open(dir), { code: 'REPO_PASSPHRASE_REQUIRED' });

  // Unkeyed hashes of every chunk's plaintext, in hex and raw form, must appear nowhere.
  const unkeyed = [0, 1, 2, 3].map((i) => createHash('sha256').update(image.subarray(i * chunkBytes, (i + 1) * chunkBytes)).digest());
  const files = ['chunks', 'indexes', 'points'].flatMap((sub) => listFiles(dir, sub));
  files.push(path.join(dir, 'config.json'));
  assert.equal(listFiles(dir, 'chunks').length, 2, 'the repeated text chunk and the random chunk');
  for (const file of files) {
    const bytes = fs.readFileSync(file);
    const name = path.basename(file);
    for (const needle of [marker, 'SECRET-VM-NAME', 'SECRET-LABEL', 'vm-uuid']) assert.ok(!bytes.includes(needle), `${needle} in ${file}`);
    for (const h of unkeyed) {
      assert.ok(!bytes.includes(h) && !bytes.includes(h.toString('hex')) && name !== h.toString('hex'), `unkeyed hash in ${file}`);
    }
  }
});
