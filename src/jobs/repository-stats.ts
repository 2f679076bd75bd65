// What a repository holds, for the service's API and its size history: bytes stored (chunk
// and index files as the storage reports them), logical bytes (what the restore points
// describe: the sum of their disks' capacities), chunk and point counts, and the locks held.
//
// Vocabulary
// - reduction ratio: logical / stored bytes; deduplication across points, zero chunks never
//   stored, and compression together (1 when nothing is stored).
// - lock held: a lock file of the repository (a backup, verify, prune or export at work), with
//   its kind, purpose, process and whether it looks stale.
import { chunkRef } from '../repository/chunk-store.ts';
import { indexRef } from '../repository/disk-index.ts';
import { listLocks } from '../repository/lock.ts';
import { packRef } from '../repository/pack.ts';
import type { Repository } from '../repository/repository.ts';
import type { BlobRef } from '../repository/storage/storage.ts';

const STAT_BATCH = 512;

export interface RepositoryStats {
  storedBytes: number;
  logicalBytes: number;
  chunks: number;
  indexes: number;
  points: number;
  reductionRatio: number;
  locks: Array<{ kind: string | null; purpose: string | null; host: string | null; pid: number | null; since: string | null; stale: boolean }>;
}

async function sizeOf(repo: Repository, refs: AsyncIterable<string>, refOf: (name: string) => BlobRef): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  let batch: BlobRef[] = [];
  const flush = async () => {
    for (const info of await repo.storage.statMany(batch)) bytes += info?.sizeBytes ?? 0;
    batch = [];
  };
  for await (const name of refs) {
    count++;
    batch.push(refOf(name));
    if (batch.length >= STAT_BATCH) await flush();
  }
  await flush();
  return { count, bytes };
}

export async function repositoryStats(repo: Repository): Promise<RepositoryStats> {
  // Format 2 keeps chunks in packs (their records counted by the pack indexes); format 1
  // chunk files not migrated yet are counted one by one.
  const chunkFiles = await sizeOf(repo, repo.storage.list('chunk'), chunkRef);
  const packs = await sizeOf(repo, repo.storage.list('pack'), packRef);
  const packIndexes = await sizeOf(repo, repo.storage.list('packindex'), (name) => ({ kind: 'packindex', name }));
  const chunks = { count: chunkFiles.count + (await repo.chunkTable()).size, bytes: chunkFiles.bytes + packs.bytes + packIndexes.bytes };
  const indexes = await sizeOf(repo, repo.storage.list('index'), indexRef);
  const points = await repo.listRestorePoints();
  const logicalBytes = points.reduce((sum, p) => sum + p.disks.reduce((s, d) => s + d.capacityBytes, 0), 0);
  const storedBytes = chunks.bytes + indexes.bytes;
  const locks = (await listLocks(repo.storage)).map((l) => ({
    kind: l.record?.kind ?? null,
    purpose: l.record?.purpose ?? null,
    host: l.record?.host ?? null,
    pid: l.record?.pid ?? null,
    since: l.record?.createdAt ?? null,
    stale: l.stale,
  }));
  return { storedBytes, logicalBytes, chunks: chunks.count, indexes: indexes.count, points: points.length, reductionRatio: storedBytes === 0 ? 1 : logicalBytes / storedBytes, locks };
}
