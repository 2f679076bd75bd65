// Child processes of test/s3/writers.slow-test.ts, one per role, run as
//   node test/s3/workers.ts writer '{"url":..., "vmId":..., "seed":..., "count":...}'
//   node test/s3/workers.ts pruner '{"url":..., "stopFile":...}'
// with the object store's endpoint and credentials in the environment. A writer makes one full
// and count-1 incrementals of its VM's synthetic disk (imageOf: deterministic, so the parent can
// check every restore) and prints {"committed":[{"id","generation"}]}; the pruner runs
// prune --keep-last 2 in a loop until stopFile exists, then once more, and prints its reports.
// Both wait and retry while the other side holds a conflicting lock (REPO_LOCKED).
import { existsSync } from 'node:fs';
import { prune } from '../../src/repository/prune.ts';
import { Repository } from '../../src/repository/repository.ts';
import { RepositoryError } from '../../src/repository/errors.ts';
import { memorySource, seededBytes } from '../repository/helpers.ts';

export const diskBytes = 2 * 1024 * 1024;
export const areaBytes = 65_536;

/** The disk of `seed` after `generation` incrementals: area g (at g * 256 KiB) rewritten by generation g. */
export function imageOf(seed: number, generation: number): Buffer {
  const image = seededBytes(seed, diskBytes);
  for (let g = 1; g <= generation; g++) seededBytes(seed * 1000 + g, areaBytes).copy(image, g * 262_144);
  return image;
}

async function retryLocked<T>(work: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await work();
    } catch (error) {
      if (!(error instanceof RepositoryError && error.code === 'REPO_LOCKED')) throw error;
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 200));
    }
  }
}

async function writer(options: { url: string; vmId: string; seed: number; count: number }): Promise<void> {
  const repo = await Repository.open(options.url, { workers: 1 });
  const committed: Array<{ id: string; generation: number }> = [];
  try {
    for (let generation = 0; generation < options.count; generation++) {
      const image = imageOf(options.seed, generation);
      const previous = committed.at(-1);
      const id = await retryLocked(async () => {
        const writer = await repo.beginRestorePoint({ vm: { id: options.vmId, name: options.vmId } });
        try {
          await writer.writeDisk({
            deviceKey: 1,
            label: 'disk',
            capacityBytes: image.length,
            changeId: null,
            reader: memorySource(image),
            ...(previous ? { previous: { pointId: previous.id, deviceKey: 1 }, changedAreas: [{ offsetBytes: generation * 262_144, lengthBytes: areaBytes }] } : {}),
          });
          return await writer.commit();
        } catch (error) {
          await writer.abort().catch(() => undefined);
          throw error;
        }
      });
      committed.push({ id, generation });
    }
  } finally {
    await repo.close();
  }
  process.stdout.write(`${JSON.stringify({ committed })}\n`);
}

async function pruner(options: { url: string; stopFile: string }): Promise<void> {
  const repo = await Repository.open(options.url, { workers: 1 });
  const removed: string[] = [];
  let runs = 0;
  try {
    for (let last = false; !last; ) {
      last = existsSync(options.stopFile);
      const report = await retryLocked(() => prune(repo, { keepLast: 2, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 }));
      removed.push(...report.remove.map((p) => p.id));
      runs++;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await repo.close();
  }
  process.stdout.write(`${JSON.stringify({ runs, removed })}\n`);
}

if (import.meta.main) {
  const [role, json] = process.argv.slice(2);
  const options = JSON.parse(json) as never;
  await (role === 'writer' ? writer(options) : pruner(options));
}
