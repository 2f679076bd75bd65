// The storage seam (src/repository/storage): one contract, run against the local directory
// and the in-memory storage, and a whole repository life (backup, incremental, restore,
// verify, prune) on the in-memory storage.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { prune } from '../../src/repository/prune.ts';
import { Repository } from '../../src/repository/repository.ts';
import { LocalStorage } from '../../src/repository/storage/local.ts';
import { MemoryStorage } from '../../src/repository/storage/memory.ts';
import type { Storage } from '../../src/repository/storage/storage.ts';
import { verifyRepository } from '../../src/repository/verify.ts';
import { memorySource, mixedImage, restoreToBuffer, sha256, tempDir, testScrypt, vm } from './helpers.ts';

const chunk = { kind: 'chunk', name: 'ab'.repeat(32) } as const;
const point = { kind: 'point', name: '20260101T000000Z-0123abcd' } as const;

async function names(storage: Storage, kind: Parameters<Storage['list']>[0]): Promise<string[]> {
  const found: string[] = [];
  for await (const name of storage.list(kind)) found.push(name);
  return found;
}

const storages: Array<[string, (t: { after(fn: () => void): void }) => Storage]> = [
  ['local', (t) => new LocalStorage(path.join(tempDir(t), 'repo'))],
  ['memory', () => new MemoryStorage()],
];

for (const [kind, make] of storages) {
  test(`storage contract (${kind}): put/get/stat/list/delete, names checked, staged blobs invisible until published, streams`, async (t) => {
    const storage = make(t);
    await storage.create();
    await storage.put({ kind: 'config', name: 'config' }, '{}');
    await assert.rejects(storage.create(), { code: 'REPO_EXISTS' });

    await storage.put(point, 'first');
    await storage.put(point, 'second'); // atomic replace
    assert.equal((await storage.get(point)).toString(), 'second');
    assert.equal((await storage.getRange(point, 1, 3)).toString(), 'eco');
    assert.equal((await storage.getRange(point, 4, 100)).toString(), 'nd');
    assert.equal((await storage.stat(point))?.sizeBytes, 6);
    await assert.rejects(storage.get(point, { maxBytes: 5 }), { code: 'REPO_CORRUPT' });
    assert.deepEqual(await names(storage, 'point'), [point.name]);

    for (const bad of ['../../../../etc/passwd', '../config', 'AB'.repeat(32), '']) {
      await assert.rejects(storage.get({ kind: 'index', name: bad }), { code: 'REPO_INVALID_NAME' }, bad);
      await assert.rejects(storage.put({ kind: 'point', name: bad }, 'x'), { code: 'REPO_INVALID_NAME' }, bad);
    }
    await assert.rejects(storage.get(chunk), { code: 'REPO_MISSING' });
    assert.equal(await storage.stat(chunk), undefined);

    const staged = await storage.stage([Buffer.from('chunk '), Buffer.from('bytes')]);
    assert.equal(staged.sizeBytes, 11);
    assert.equal(await storage.stat(chunk), undefined, 'a staged blob is not visible under any name');
    assert.deepEqual((await storage.listStaged()).map((s) => s.token), [staged.token]);
    const batch = storage.newPublishBatch();
    await storage.publish(staged.token, chunk, batch);
    await batch.sync();
    assert.equal((await storage.get(chunk)).toString(), 'chunk bytes');
    assert.deepEqual(await names(storage, 'chunk'), [chunk.name]);
    assert.deepEqual(await storage.listStaged(), []);
    const dropped = await storage.stage([Buffer.from('x')]);
    await storage.discard(dropped.token);
    assert.deepEqual(await storage.listStaged(), []);

    const stream = await storage.openStream();
    await stream.write(Buffer.from('index '));
    await stream.write(Buffer.from('content'));
    const index = { kind: 'index', name: 'cd'.repeat(32) } as const;
    assert.equal(await storage.stat(index), undefined);
    await stream.finish(index);
    assert.equal((await storage.get(index)).toString(), 'index content');
    const aborted = await storage.openStream();
    await aborted.write(Buffer.from('never'));
    await aborted.abort();
    assert.deepEqual(await storage.listStaged(), []);

    await storage.delete(chunk);
    await storage.delete(chunk); // absent is fine
    assert.deepEqual(await names(storage, 'chunk'), []);
  });
}

test('a repository on the in-memory storage: full and incremental backups restore byte for byte, verify is clean, prune collects', async () => {
  const storage = new MemoryStorage();
  await Repository.init(storage, { chunkBytes: 64 * 1024, passphrase: 'memory', scryptCost: testScrypt });
  const repo = await Repository.open(storage, { passphrase: 'memory' });
  try {
    const first = mixedImage(700_000);
    const second = Buffer.from(first);
    second.fill(7, 100_000, 140_000);
    const ids: string[] = [];
    const w1 = await repo.beginRestorePoint({ vm, createdAt: new Date('2026-01-01T00:00:00Z') });
    await w1.writeDisk({ deviceKey: 2000, label: 'disk', capacityBytes: first.length, changeId: null, reader: memorySource(first) });
    ids.push(await w1.commit());
    const w2 = await repo.beginRestorePoint({ vm, createdAt: new Date('2026-01-02T00:00:00Z') });
    await w2.writeDisk({ deviceKey: 2000, label: 'disk', capacityBytes: second.length, changeId: null, reader: memorySource(second), previous: { pointId: ids[0], deviceKey: 2000 }, changedAreas: [{ offsetBytes: 100_000, lengthBytes: 40_000 }] });
    ids.push(await w2.commit());
    assert.equal(sha256(await restoreToBuffer(repo, ids[0], 2000)), sha256(first));
    assert.equal(sha256(await restoreToBuffer(repo, ids[1], 2000)), sha256(second));
    const report = await verifyRepository(repo, { readData: true });
    assert.deepEqual(report.corruptions, []);
    assert.equal(report.pointsChecked, 2);
    assert.ok([...storage.files.keys()].every((k) => !k.startsWith('config') || !storage.files.get(k)?.bytes.includes('memory')), 'the passphrase is not stored');

    const pruned = await prune(repo, { keepLast: 1, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 });
    assert.deepEqual(pruned.remove.map((p) => p.id), [ids[0]]);
    // The superseded chunk is dead in a pack below the repack threshold: kept, counted.
    assert.ok(pruned.gc.indexesDeleted > 0 && pruned.gc.chunksDeleted + pruned.gc.deadBytesKept > 0);
    assert.deepEqual(await repo.listPointIds(), [ids[1]]);
    assert.equal(sha256(await restoreToBuffer(repo, ids[1], 2000)), sha256(second));
    assert.deepEqual((await verifyRepository(repo, { readData: true })).corruptions, []);
  } finally {
    await repo.close();
  }
});

test('local storage: the on-disk layout and modes are those of docs/format.md', async (t) => {
  const dir = path.join(tempDir(t), 'repo');
  const storage = new LocalStorage(dir);
  await storage.create();
  await storage.put(point, 'x');
  assert.deepEqual(fs.readdirSync(dir).sort(), ['indexes', 'keys', 'locks', 'packindexes', 'packs', 'points', 'tmp']);
  assert.equal(fs.readdirSync(path.join(dir, 'packs')).length, 0, 'fan-out directories are made with their first pack');
  assert.equal(fs.statSync(path.join(dir, 'points', `${point.name}.json`)).mode & 0o777, 0o600);
  const pack = { kind: 'pack', name: 'ab'.repeat(16) } as const;
  const stream = await storage.openStream();
  await stream.write(Buffer.from('pack bytes'));
  await stream.finish(pack);
  assert.equal(storage.pathOf(pack), path.join(dir, 'packs', 'ab', pack.name));
  assert.equal(fs.statSync(path.join(dir, 'packs', 'ab')).mode & 0o777, 0o700);
  assert.equal(fs.statSync(storage.pathOf(pack)).mode & 0o777, 0o600);
  assert.equal(storage.pathOf({ kind: 'packindex', name: 'cd'.repeat(32) }), path.join(dir, 'packindexes', `${'cd'.repeat(32)}.pix`));
  // Format v1 chunk files (read, never written by v2): chunks/<2 hex>/<64 hex>.
  assert.equal(storage.pathOf(chunk), path.join(dir, 'chunks', 'ab', chunk.name));
});

for (const [kind, make] of storages) {
  test(`storage contract (${kind}): records of points (committed, check), statMany, quarantine moves a blob aside keeping its bytes`, async (t) => {
    const storage = make(t);
    await storage.create();
    const committed = { kind: 'committed', name: point.name } as const;
    assert.deepEqual(await names(storage, 'committed'), [], 'absent directory lists empty');
    await storage.put(committed, '{}');
    await storage.put({ kind: 'check', name: point.name }, '{"a":1}');
    assert.deepEqual(await names(storage, 'committed'), [point.name]);
    await assert.rejects(storage.put({ kind: 'committed', name: '../config' }, 'x'), { code: 'REPO_INVALID_NAME' });

    await storage.put(chunk, 'chunk bytes');
    const [present, absent] = await storage.statMany([chunk, { kind: 'chunk', name: 'cd'.repeat(32) }]);
    assert.deepEqual([present?.sizeBytes, absent], [11, undefined]);

    const aside = await storage.quarantine(chunk);
    assert.ok(aside.includes('quarantine'), aside);
    assert.equal(await storage.stat(chunk), undefined, 'the name is free');
    if (kind === 'local') assert.equal(fs.readFileSync(aside, 'utf8'), 'chunk bytes');
    else assert.equal((storage as MemoryStorage).quarantined.size, 1);
    await assert.rejects(storage.quarantine(chunk), { code: 'REPO_MISSING' });
  });
}
