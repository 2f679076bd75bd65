// Moving a format-v1 repository's chunk files into packs (docs/format.md, "Versioning"). A v1
// repository already becomes version 2 with its first v2 write (config.ts upgradeConfig) and
// keeps its v1 chunk files readable; this moves them into packs, so the repository is made of
// packs only (and an object store copy of it needs 64 objects per GiB instead of 4,096).
//
// Under the exclusive lock: each chunk file is decoded on the chunk workers (a damaged one is
// left in place, for verify), its bytes appended unchanged to a pack (a v1 chunk file is a
// chunk record); every 16,384 chunks and at the end, the packs are closed (durable), their
// pack index written (durable), and only then are those chunk files deleted. A crash leaves
// chunks both in a pack and as a file (readers take the pack); running it again finds them
// located and deletes the files. Memory: one batch of entries and names.
import { chunkRef } from './chunk-store.ts';
import { upgradeConfig } from './config.ts';
import type { DecodeRequest } from './chunk-protocol.ts';
import { writePackIndex, type PackIndexEntry } from './pack-index.ts';
import { PackWriter, packTargetBytes } from './pack.ts';
import type { Repository } from './repository.ts';

const batchChunks = 16384;

export interface MigrateReport {
  chunkFilesPacked: number;
  /** Chunk files already in a pack (an interrupted migration): deleted. */
  chunkFilesAlreadyPacked: number;
  /** Chunk files that did not decode: left in place for verify. */
  chunkFilesDamaged: string[];
  packsWritten: number;
  bytesPacked: number;
}

export async function migrateChunkFiles(repo: Repository): Promise<MigrateReport> {
  const report: MigrateReport = { chunkFilesPacked: 0, chunkFilesAlreadyPacked: 0, chunkFilesDamaged: [], packsWritten: 0, bytesPacked: 0 };
  const lock = await repo.lock('exclusive', 'migrate');
  try {
    await upgradeConfig(repo.storage, repo.config);
    const storage = repo.storage;
    const table = await repo.chunkTable();
    let pack: PackWriter | undefined;
    let entries: PackIndexEntry[] = [];
    let names: string[] = [];
    const closePack = async () => {
      if (!pack) return;
      const closing = pack;
      pack = undefined;
      await closing.finish(repo.keys);
      report.packsWritten++;
      for (const e of closing.entries) entries.push({ id: e.id, pack: closing.name, offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes });
    };
    const commitBatch = async () => {
      await closePack();
      if (entries.length > 0) await writePackIndex(storage, repo.keys, repo.config.chunkBytes, entries);
      // Their records are durable in packs a pack index lists: the files can go.
      const batch = storage.newPublishBatch();
      for (const name of names) await storage.delete(chunkRef(name), batch);
      await batch.sync();
      await repo.chunkTable();
      entries = [];
      names = [];
    };
    const all: string[] = [];
    for await (const name of storage.list('chunk')) all.push(name);
    for (const name of all) {
      const id = Buffer.from(name, 'hex');
      if (await table.locate(id)) {
        report.chunkFilesAlreadyPacked++;
        names.push(name);
        continue;
      }
      const info = await storage.stat(chunkRef(name)).catch(() => undefined);
      const request: DecodeRequest = { kind: 'decode', buffer: new ArrayBuffer(repo.config.chunkBytes), id, location: { pack: null, offsetBytes: 0, lengthBytes: info?.sizeBytes ?? 0 } };
      try {
        await repo.pool().run(request, [request.buffer]);
      } catch {
        report.chunkFilesDamaged.push(name);
        continue;
      }
      const record = await storage.get(chunkRef(name));
      pack ??= await PackWriter.create(storage);
      await pack.append(id, record);
      names.push(name);
      report.chunkFilesPacked++;
      report.bytesPacked += record.length;
      if (pack.sizeBytes >= packTargetBytes) await closePack();
      if (names.length >= batchChunks) await commitBatch();
    }
    await commitBatch();
    return report;
  } finally {
    await lock.release();
  }
}
