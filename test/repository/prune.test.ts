import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { prune } from '../../src/repository/prune.ts';
import { applyRetention, type RetentionCandidate } from '../../src/repository/retention.ts';
import { verifyRepository } from '../../src/repository/verify.ts';
import { storedChunks, memorySource, newRepository, restoreToBuffer, sha256, tempDir, vm } from './helpers.ts';

const day = 86_400_000;

test('retention keeps exactly last, daily, weekly and monthly picks (synthetic times, per VM)', () => {
  // Two points a day at 06:00 and 18:00 from Mon 2026-01-05 for 70 days, for one VM; one point for another VM.
  const points: RetentionCandidate[] = [];
  const start = Date.parse('2026-01-05T06:00:00Z');
  for (let d = 0; d < 70; d++) {
    for (const h of [0, 12]) {
      const at = new Date(start + d * day + h * 3_600_000).toISOString();
      points.push({ id: `p-${at}`, createdAt: at, vmId: 'a' });
    }
  }
  points.push({ id: 'other', createdAt: '2025-01-01T00:00:00.000Z', vmId: 'b' });
  const decision = applyRetention(points, { keepLast: 3, keepDaily: 4, keepWeekly: 3, keepMonthly: 3 });
  const kept = new Map(decision.keep.map((k) => [k.createdAt.slice(0, 13), k.reasons]));
  // Last day: 2026-03-15 (Sunday). Newest three: 03-15T18, 03-15T06, 03-14T18.
  assert.deepEqual(Object.fromEntries(kept), {
    '2026-03-15T18': ['last', 'daily 2026-03-15', 'weekly 2026-W11', 'monthly 2026-03'],
    '2026-03-15T06': ['last'],
    '2026-03-14T18': ['last', 'daily 2026-03-14'],
    '2026-03-13T18': ['daily 2026-03-13'],
    '2026-03-12T18': ['daily 2026-03-12'],
    '2026-03-08T18': ['weekly 2026-W10'],
    '2026-03-01T18': ['weekly 2026-W09'],
    '2026-02-28T18': ['monthly 2026-02'],
    '2026-01-31T18': ['monthly 2026-01'],
    '2025-01-01T00': ['last', 'daily 2025-01-01', 'weekly 2025-W01', 'monthly 2025-01'],
  });
  assert.equal(decision.remove.length, points.length - 10);
  assert.throws(() => applyRetention(points, { keepLast: 0, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 }), { code: 'REPO_INVALID_ARGUMENT' });
});

test('prune deletes what the policy drops, GC frees exactly their chunks, and everything kept restores', async (t) => {
  const dir = tempDir(t);
  const chunkBytes = 64 * 1024;
  const repo = await newRepository(dir, { chunkBytes });
  t.after(() => repo.close());
  const image = randomBytes(6 * chunkBytes);
  const expected = new Map<string, string>();
  let previous: string | undefined;
  for (let d = 0; d < 6; d++) {
    // Each day rewrites chunk d, so each point owns one chunk no later point shares.
    randomBytes(chunkBytes).copy(image, d * chunkBytes);
    const writer = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.parse('2026-02-01T12:00:00Z') + d * day) });
    const change = [{ offsetBytes: d * chunkBytes, lengthBytes: chunkBytes }];
    await writer.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: `c${d}`, reader: memorySource(image), ...(previous ? { previous: { pointId: previous, deviceKey: 1 }, changedAreas: change } : {}) });
    previous = await writer.commit();
    expected.set(previous, sha256(image));
  }
  const ids = [...expected.keys()];
  assert.equal((await storedChunks(repo)).size, 6 + 5);

  const dry = await prune(repo, { keepLast: 2, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 }, { dryRun: true });
  assert.deepEqual(dry.remove.map((p) => p.id), ids.slice(0, 4).reverse());
  assert.equal(dry.gc.chunksDeleted, 4);
  assert.equal((await repo.listPointIds()).length, 6, 'a dry run deletes nothing');
  assert.equal((await storedChunks(repo)).size, 11);

  const report = await prune(repo, { keepLast: 2, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 });
  assert.deepEqual(report.keep.map((p) => p.id), ids.slice(4).reverse());
  assert.deepEqual(await repo.listPointIds(), ids.slice(4));
  // Point 1..4 each owned the superseded version of chunk 0..3 (point 0 owned its chunk 0 and 1..5 the originals).
  assert.equal(report.gc.chunksDeleted, 4);
  assert.equal(report.gc.indexesDeleted, 4);
  assert.equal((await storedChunks(repo)).size, 7);
  assert.equal(report.gc.skippedReason, null);
  for (const id of ids.slice(4)) assert.equal(sha256(await restoreToBuffer(repo, id, 1)), expected.get(id));
  assert.deepEqual((await verifyRepository(repo, { readData: true })).corruptions, []);
});
