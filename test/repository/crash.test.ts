import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { test } from 'node:test';
import { seededRandom } from '../helpers/seeded-random.ts';
import { fileURLToPath } from 'node:url';
import { listLocks } from '../../src/repository/lock.ts';
import { prune } from '../../src/repository/prune.ts';
import { Repository } from '../../src/repository/repository.ts';
import { verifyRepository } from '../../src/repository/verify.ts';
import { crashChunkBytes, imageOf } from './fixtures/crash-history.ts';
import { local, restoreToBuffer, sha256, tempDir } from './helpers.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const node = path.join(root, 'node_modules/.bin/node');
const writerScript = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url));
// Without the runner's NODE_TEST_CONTEXT the child is a plain program, not a test file.
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NODE_TEST')));

/**
 * Runs a writer and kills it `delayMs` after it printed `trigger` ("ready": anywhere from the
 * first chunk on; "committed": somewhere in the next restore point). Machine load changes
 * how far a writer gets, not whether the kill lands inside a backup.
 */
async function runAndKill(repoPath: string, trigger: 'ready' | 'committed', delayMs: number): Promise<string[]> {
  const child = spawn(node, [writerScript, repoPath], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
  let out = '';
  let err = '';
  let timer: NodeJS.Timeout | undefined;
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (!timer && out.split('\n').some((l) => l.startsWith(trigger))) timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  clearTimeout(timer);
  assert.equal(signal, 'SIGKILL', `writer died on its own (code ${code}): ${err}`);
  return out.split('\n').filter((l) => l.startsWith('committed '));
}

test('SIGKILL at random moments never damages committed restore points; the next backup works', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t, 'vcbt-crash-');
  await Repository.init(dir, { chunkBytes: crashChunkBytes });
  const committed: string[] = [];
  const kills = 16;
  // Seeded kill delays, logged, so that a failure replays: VCBT_CRASH_SEED=<seed> npm run test:unit.
  const seed = Number(process.env.VCBT_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const random = seededRandom(seed);
  const delays = Array.from({ length: kills }, () => Math.floor(random() * 400));
  t.diagnostic(`kill delays (seed ${seed}): ${delays.join(', ')} ms`);
  for (let k = 0; k < kills; k++) {
    committed.push(...(await runAndKill(dir, k % 2 ? 'committed' : 'ready', delays[k])));
  }
  const repo = await Repository.open(dir);
  t.after(() => repo.close());
  const points = await repo.listRestorePoints();
  assert.ok(points.length >= 5, `only ${points.length} restore points committed in ${kills} runs`);
  t.diagnostic(`${points.length} restore points survived ${kills} SIGKILLs`);
  // Everything the writers reported is there (a point may also have landed just before a kill, unreported).
  for (const line of committed) assert.ok(points.some((p) => p.id === line.split(' ')[1]), line);
  for (const p of points) {
    const generation = ((await repo.readManifest(p.id)).vmConfig as { generation: number }).generation;
    assert.equal(sha256(await restoreToBuffer(repo, p.id, 2000)), sha256(imageOf(generation)), `restore point ${p.id} (generation ${generation})`);
  }
  assert.deepEqual((await verifyRepository(repo, { readData: true })).corruptions, []);
  assert.ok((await listLocks(local(dir))).every((l) => l.stale), 'only dead writers\' locks remain');

  // The next backup succeeds, then GC collects what the killed writers left behind.
  const next = await runAndKill(dir, 'committed', 0);
  assert.ok(next.length >= 1);
  const report = await prune(repo, { keepLast: 1000, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 });
  assert.equal(report.gc.skippedReason, null);
  assert.deepEqual(report.remove, []);
  const after = await verifyRepository(repo, { readData: true });
  assert.deepEqual(after.corruptions, []);
  assert.equal(after.pointsChecked, points.length + 1);
});
