// Rewriting a pack (format v2): its records that are still wanted and decode are copied into a
// new pack, which is made durable and listed in a new pack index before the old pack is
// touched; then the old pack is moved aside (verify's quarantine of a damaged pack: only its
// damaged chunks are lost) or deleted (GC's repack of a partly dead pack). Records are copied
// byte for byte (a record does not depend on its pack: chunk-codec.ts), after a decode on the
// chunk workers proves each one sound, so damage is never copied.
//
// Crash safety: a crash before the new pack index is durable leaves an unreferenced new pack
// (GC removes it) and the old pack in place; after it, both copies are listed and the newer
// entry wins, until GC drops the entries of the old pack once it is gone.
import type { DecodeRequest } from './chunk-protocol.ts';
import { chunkIdHex } from './chunk-store.ts';
import { writePackIndex, type PackIndexEntry } from './pack-index.ts';
import { PackWriter, packRef, type PackEntry } from './pack.ts';
import type { Repository } from './repository.ts';

export interface RewriteResult {
  /** The new pack, or null when nothing was copied. */
  newPack: string | null;
  chunksCopied: number;
  bytesCopied: number;
  /** Records that did not decode (left behind). */
  chunksDropped: number;
}

/** The records of `pack` the pack indexes list (one pass over the table): what the repository knows of it. */
export async function recordsOf(repo: Repository, pack: string): Promise<PackEntry[]> {
  const records: PackEntry[] = [];
  const table = await repo.chunkTable();
  for await (const e of table.entries()) if (e.pack === pack) records.push({ id: Buffer.from(e.id), offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes });
  return records;
}

/**
 * Copies the records of `pack` (`records`: as the pack indexes list them; default: looked up)
 * for which `keep(idHex)` holds and that decode into a new pack
 * and pack index (both durable on return). The old pack is left for the caller to move aside
 * or delete.
 */
export async function rewritePack(repo: Repository, pack: string, keep: (idHex: string) => boolean, records?: readonly PackEntry[]): Promise<RewriteResult> {
  const result: RewriteResult = { newPack: null, chunksCopied: 0, bytesCopied: 0, chunksDropped: 0 };
  records ??= await recordsOf(repo, pack);
  let writer: PackWriter | undefined;
  const copied = new Set<string>();
  try {
    for (const record of records) {
      const hex = chunkIdHex(record.id);
      if (!keep(hex) || copied.has(hex)) continue;
      const location = { pack, offsetBytes: record.offsetBytes, lengthBytes: record.lengthBytes };
      const buffer = new ArrayBuffer(repo.config.chunkBytes);
      const request: DecodeRequest = { kind: 'decode', buffer, id: record.id, location };
      try {
        await repo.pool().run(request, [buffer]);
      } catch {
        result.chunksDropped++;
        continue;
      }
      const bytes = await repo.storage.getRange(packRef(pack), record.offsetBytes, record.lengthBytes);
      writer ??= await PackWriter.create(repo.storage);
      await writer.append(record.id, bytes);
      copied.add(hex);
      result.chunksCopied++;
      result.bytesCopied += bytes.length;
    }
    if (!writer) return result;
    await writer.finish(repo.keys);
  } catch (error) {
    await writer?.abort();
    throw error;
  }
  const entries: PackIndexEntry[] = writer.entries.map((e) => ({ id: e.id, pack: writer.name, offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes }));
  await writePackIndex(repo.storage, repo.keys, repo.config.chunkBytes, entries);
  await repo.chunkTable();
  result.newPack = writer.name;
  return result;
}

/** verify's quarantine of a damaged pack: its sound records (except `bad`) copied, then the pack moved aside; returns where. */
export async function salvagePack(repo: Repository, pack: string, bad: ReadonlySet<string>): Promise<string> {
  await rewritePack(repo, pack, (hex) => !bad.has(hex));
  return repo.storage.quarantine(packRef(pack));
}
