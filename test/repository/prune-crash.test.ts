// SIGKILL in the middle of prune/GC. This file is also its own child process: with
// VCBT_PRUNE_CRASH_REPO set it runs one prune of that repository with every fs.promises.rm
// announced on stdout ("rm <path relative to the repository>") and held until the parent
// answers "go". So the parent can kill it exactly before the n-th manifest, index or pack
// deletion (format v2: chunks live in packs; GC deletes whole packs and repacks partly dead
// ones first), or at a random time while answering everything at once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { promises as fsPromises } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { union, type Extent } from '../../src/extents/extent.ts';
import { collectGarbage } from '../../src/repository/gc.ts';
import { listLocks, RepositoryLock } from '../../src/repository/lock.ts';
import { prune } from '../../src/repository/prune.ts';
import type { RetentionPolicy } from '../../src/repository/retention.ts';
import { Repository } from '../../src/repository/repository.ts';
import { verifyRepository } from '../../src/repository/verify.ts';
import { listFiles, local, memorySource, restoreToBuffer, sha256, tempDir, vm } from './helpers.ts';

const policy: RetentionPolicy = { keepLast: 4, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 };
const chunkBytes = 4096;
// Odd sizes: the last chunk of each disk is short.
const disks = [
  { deviceKey: 2000, label: 'Hard disk 1', capacityBytes: 301_057 },
  { deviceKey: 2001, label: 'Hard disk 2', capacityBytes: 190_777 },
];

async function runPruneChild(repoPath: string): Promise<void> {
  const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const realRm = fsPromises.rm;
  fsPromises.rm = async (file, options) => {
    process.stdout.write(`rm ${path.relative(repoPath, String(file))}\n`);
    await answers.next();
    return realRm(file, options);
  };
  // The repository's `import * as fsp from 'node:fs/promises'` now sees the wrapper too.
  syncBuiltinESMExports();
  const repo = await Repository.open(repoPath, { workers: 1 });
  process.stdout.write('ready\n');
  const report = await prune(repo, policy);
  process.stdout.write(`done ${JSON.stringify(report.gc)}\n`);
  // Wait for the kill, so every run ends the same way.
  setInterval(() => undefined, 60_000);
}

const childRepo = process.env.VCBT_PRUNE_CRASH_REPO;
if (childRepo !== undefined) await runPruneChild(childRepo);
else registerTest();

type KillAt = { category: 'points' | 'indexes' | 'packs'; n: number } | { afterMs: number };

interface KilledPrune {
  pid: number;
  /** The last operation the child announced before it died. */
  lastLine: string;
  finished: boolean;
}

/** Runs a prune child and SIGKILLs it before the n-th deletion of a kind, or `afterMs` after it started. */
async function runAndKill(repoPath: string, killAt: KillAt): Promise<KilledPrune> {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  // Without the runner's NODE_TEST_CONTEXT the child is a plain program, not a test file.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NODE_TEST')));
  const child = spawn(path.join(root, 'node_modules/.bin/node'), [fileURLToPath(import.meta.url)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...env, VCBT_PRUNE_CRASH_REPO: repoPath },
  });
  // An answer can race the kill; the child is gone either way.
  child.stdin.on('error', () => undefined);
  const counts = new Map<string, number>();
  let err = '';
  let lastLine = '';
  let finished = false;
  let timer: NodeJS.Timeout | undefined;
  const kill = () => child.kill('SIGKILL');
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    if (child.killed) return;
    lastLine = line;
    if (line === 'ready') {
      if ('afterMs' in killAt) timer = setTimeout(kill, killAt.afterMs);
    } else if (line.startsWith('done ')) {
      finished = true;
      kill();
    } else if (line.startsWith('rm ')) {
      const category = line.slice(3).split(path.sep)[0];
      const n = (counts.get(category) ?? 0) + 1;
      counts.set(category, n);
      if ('category' in killAt && killAt.category === category && killAt.n === n) kill();
      else child.stdin.write('go\n');
    }
  });
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  clearTimeout(timer);
  assert.equal(signal, 'SIGKILL', `prune child died on its own (code ${code}): ${err}`);
  assert.ok(child.pid !== undefined);
  return { pid: child.pid, lastLine, finished };
}

interface Point {
  id: string;
  createdAt: string;
  sha256: Map<number, string>;
}

// Disk images evolve between points: a few random areas rewritten, so points share most
// chunks and own some, and GC has both kinds to tell apart.
function registerTest(): void {
  test('SIGKILL during prune/GC leaves every remaining restore point intact; the stale lock never blocks', { timeout: 120_000 }, async (t) => {
    const dir = tempDir(t, 'vcbt-prune-crash-');
    await Repository.init(dir, { chunkBytes });
    const repo = await Repository.open(dir, { workers: 2 });
    t.after(() => repo.close());

    const images = disks.map((d) => {
      const image = randomBytes(d.capacityBytes);
      image.fill(0, 40_000, 90_000); // a zero region
      return image;
    });
    const points: Point[] = [];
    let clockMs = Date.parse('2026-03-01T00:00:00Z');
    const addPoint = async () => {
      const previous = points.at(-1);
      const writer = await repo.beginRestorePoint({ vm, createdAt: new Date((clockMs += 3_600_000)) });
      const digests = new Map<number, string>();
      for (const [i, disk] of disks.entries()) {
        const image = images[i];
        const changed: Extent[] = [];
        for (let a = 0; a < 5; a++) {
          const lengthBytes = randomInt(1, 9000);
          const offsetBytes = randomInt(0, disk.capacityBytes - lengthBytes);
          randomBytes(lengthBytes).copy(image, offsetBytes);
          changed.push({ offsetBytes, lengthBytes });
        }
        // Alternate fulls and incrementals: both share chunks with earlier points.
        const incremental = previous && points.length % 2 === 1 ? { previous: { pointId: previous.id, deviceKey: disk.deviceKey }, changedAreas: union(changed) } : {};
        await writer.writeDisk({ ...disk, changeId: `c${points.length}`, reader: memorySource(image), ...incremental });
        digests.set(disk.deviceKey, sha256(image));
      }
      const id = await writer.commit();
      points.push({ id, createdAt: (await repo.readManifest(id)).createdAt, sha256: digests });
    };
    const expectIntact = async (ids: string[]) => {
      for (const id of ids) {
        const point = points.find((p) => p.id === id);
        assert.ok(point, `unknown restore point ${id}`);
        for (const disk of disks) assert.equal(sha256(await restoreToBuffer(repo, id, disk.deviceKey)), point.sha256.get(disk.deviceKey), `restore point ${id} disk ${disk.deviceKey}`);
      }
      const report = await verifyRepository(repo, { readData: true });
      assert.deepEqual(report.corruptions, []);
      assert.equal(report.pointsChecked, ids.length);
    };
    const packFiles = () => listFiles(dir, 'packs').length;

    for (let i = 0; i < 8; i++) await addPoint();
    const modes = ['points', 'packs', 'timed', 'indexes'] as const;
    const landed = new Map<string, number>();
    const iterations = 10;
    for (let k = 0; k < iterations; k++) {
      await addPoint();
      await addPoint();
      const before = await repo.listPointIds();
      const keep = before.slice(-policy.keepLast); // ids start with their (hourly increasing) time
      const drop = before.slice(0, -policy.keepLast);
      // What a complete prune would delete, to aim the kill inside each phase.
      const probe = await repo.lock('shared', 'test probe');
      const garbage = await collectGarbage(repo, { dryRun: true, excludePoints: new Set(drop) }).finally(() => probe.release());
      assert.ok(garbage.chunksDeleted > 0 && garbage.indexesDeleted > 0 && garbage.packsDeleted > 0, `nothing to collect: ${JSON.stringify(garbage)}`);
      const packsBefore = packFiles();

      const mode = modes[k % modes.length];
      const killAt: KillAt =
        mode === 'points' ? { category: 'points', n: randomInt(1, drop.length + 1) }
        : mode === 'indexes' ? { category: 'indexes', n: randomInt(1, garbage.indexesDeleted + 1) }
        : mode === 'packs' ? { category: 'packs', n: randomInt(1, garbage.packsDeleted + 1) }
        : { afterMs: randomInt(0, 60) };
      const killed = await runAndKill(dir, killAt);
      const where = killed.finished ? 'after completion' : `before "${killed.lastLine}"`;
      const phase = killed.finished ? 'done' : killed.lastLine === '' ? 'startup' : killed.lastLine === 'ready' ? 'lock and mark' : killed.lastLine.split(/[ /]/).slice(0, 2).join(' ');
      landed.set(phase, (landed.get(phase) ?? 0) + 1);
      t.diagnostic(`kill ${k + 1} (${JSON.stringify(killAt)}): ${where}`);

      // The dead prune's exclusive lock is left behind, seen as stale, and blocks nobody.
      const locks = await listLocks(local(dir));
      assert.ok(locks.every((l) => l.stale), `live lock after the kill: ${JSON.stringify(locks)}`);
      const own = locks.find((l) => l.record?.pid === killed.pid);
      if ('category' in killAt) assert.ok(own, `the killed prune (pid ${killed.pid}) left no lock`);
      if (own) {
        assert.equal(own.record?.kind, 'exclusive');
        assert.match(own.reason, new RegExp(`process ${killed.pid} .* no longer exists`));
      }
      const next = await RepositoryLock.acquire(local(dir), 'exclusive', 'test: the next prune');
      assert.deepEqual(next.staleLocks.map((l) => l.file).sort(), locks.map((l) => l.file).sort());
      await next.release();

      // Only dropped points went; exactly the deletions the child was allowed happened.
      const after = await repo.listPointIds();
      assert.ok(keep.every((id) => after.includes(id)), 'prune deleted a point the policy keeps');
      assert.ok(after.every((id) => before.includes(id)));
      if ('category' in killAt && !killed.finished) {
        if (killAt.category === 'points') {
          // Retention lists the dropped points newest first, and prune deletes them in that order.
          assert.deepEqual(after, [...drop.slice(0, drop.length - (killAt.n - 1)), ...keep]);
          assert.equal(packFiles(), packsBefore);
        } else if (killAt.category === 'indexes') {
          assert.deepEqual(after, keep);
          assert.equal(packFiles(), packsBefore, 'disk indexes go before any pack is written or deleted');
        } else {
          // Pack deletions come last, after every repack wrote its new pack (one per repacked pack).
          assert.deepEqual(after, keep);
          assert.equal(packFiles(), packsBefore + garbage.packsRepacked - (killAt.n - 1));
        }
      }
      await expectIntact(after);
    }
    t.diagnostic(`kills landed before: ${JSON.stringify(Object.fromEntries(landed))}`);

    // A prune run to completion removes the dead prunes' locks and leaves exactly what the policy keeps.
    const staleBefore = (await listLocks(local(dir))).map((l) => l.name).sort();
    const report = await prune(repo, policy);
    assert.deepEqual(report.staleLocks.map((s) => s.split(' ')[0]).sort(), staleBefore);
    assert.equal(report.gc.skippedReason, null);
    assert.deepEqual(await listLocks(local(dir)), []);
    const kept = points.slice(-policy.keepLast).map((p) => p.id);
    assert.deepEqual(await repo.listPointIds(), kept);
    assert.deepEqual(report.keep.map((p) => p.id).sort(), kept);
    await expectIntact(kept);
    // Nothing unreferenced is left behind.
    const probe = await repo.lock('shared', 'test probe');
    const rest = await collectGarbage(repo, { dryRun: true }).finally(() => probe.release());
    assert.deepEqual([rest.chunksDeleted, rest.indexesDeleted, rest.tempFilesDeleted], [0, 0, 0]);
  });
}
