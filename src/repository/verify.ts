// verify: prove that restore points restore. Structure check: every manifest decodes and
// its checksum holds, every referenced index exists and checks out (file checksum, trailer,
// sizes), every referenced chunk file exists and has the length its header announces.
// With readData, every referenced chunk is also decoded and re-hashed against its id (on the
// chunk workers). Each problem is reported once with every restore point it affects.
//
// Memory: the set of distinct referenced chunk ids (one string per chunk) is held while
// checking; chunk -> restore point attribution is computed in a second pass over the indexes
// only when some chunk is bad, so no chunk x point table is ever built.
import type { DecodeRequest } from './chunk-protocol.ts';
import { chunkHeaderBytes, ChunkDecodeError, parseChunkHeader } from './chunk-codec.ts';
import { chunkIdHex, chunkRef } from './chunk-store.ts';
import { IndexReader, isZeroId, type IndexFileRef } from './disk-index.ts';
import { RepositoryError } from './errors.ts';
import type { Repository } from './repository.ts';

export interface Corruption {
  object: 'manifest' | 'index' | 'chunk';
  /** Point id, index checksum or chunk id. */
  name: string;
  code: string;
  message: string;
  affectedPoints: string[];
}

export interface VerifyReport {
  pointsChecked: number;
  indexesChecked: number;
  chunksChecked: number;
  bytesDecoded: number;
  readData: boolean;
  corruptions: Corruption[];
}

export interface VerifyOptions {
  pointIds?: readonly string[];
  readData?: boolean;
  onProgress?: (done: { chunks: number; of: number }) => void;
}

export async function verifyRepository(repo: Repository, options: VerifyOptions = {}): Promise<VerifyReport> {
  const lock = await repo.lock('shared', 'verify');
  try {
    return await verifyUnderLock(repo, options);
  } finally {
    await lock.release();
  }
}

async function verifyUnderLock(repo: Repository, options: VerifyOptions): Promise<VerifyReport> {
  const all = await repo.listPointIds();
  for (const id of options.pointIds ?? []) {
    if (!all.includes(id)) throw new RepositoryError('REPO_POINT_NOT_FOUND', `no restore point ${id} in ${repo.path}`, { pointId: id });
  }
  const pointIds = options.pointIds ? [...options.pointIds].sort() : all;
  const report: VerifyReport = { pointsChecked: 0, indexesChecked: 0, chunksChecked: 0, bytesDecoded: 0, readData: options.readData ?? false, corruptions: [] };
  const problem = (object: Corruption['object'], name: string, error: unknown, affected: Iterable<string>) => {
    const e = error as { code?: string; message: string };
    report.corruptions.push({ object, name, code: e.code ?? 'REPO_CORRUPT', message: e.message, affectedPoints: [...new Set(affected)].sort() });
  };

  const indexes = new Map<string, { ref: IndexFileRef; points: Set<string>; chunkBytes: number; capacityBytes: number }>();
  for (const pointId of pointIds) {
    report.pointsChecked++;
    try {
      const manifest = await repo.readManifest(pointId);
      for (const disk of manifest.disks) {
        const entry = indexes.get(disk.index.sha256) ?? { ref: disk.index, points: new Set<string>(), chunkBytes: disk.chunkBytes, capacityBytes: disk.capacityBytes };
        entry.points.add(pointId);
        indexes.set(disk.index.sha256, entry);
      }
    } catch (error) {
      if (!(error instanceof RepositoryError)) throw error;
      problem('manifest', pointId, error, [pointId]);
    }
  }

  const goodIndexes: IndexFileRef[] = [];
  const chunks = new Set<string>();
  for (const [sha, entry] of indexes) {
    report.indexesChecked++;
    let index: IndexReader;
    try {
      index = await IndexReader.open(repo.storage, entry.ref, repo.keys);
      if (index.header.chunkBytes !== entry.chunkBytes || index.header.capacityBytes !== entry.capacityBytes) {
        await index.close();
        throw new RepositoryError('REPO_CORRUPT', `index ${sha} disagrees with its manifest on disk or chunk size`, {});
      }
    } catch (error) {
      if (!(error instanceof RepositoryError)) throw error;
      problem('index', sha, error, entry.points);
      continue;
    }
    try {
      for await (const id of index.entries()) if (!isZeroId(id)) chunks.add(chunkIdHex(id));
    } finally {
      await index.close();
    }
    goodIndexes.push(entry.ref);
  }

  const bad = new Map<string, { code: string; message: string }>();
  const total = chunks.size;
  if (options.readData) {
    await decodeAll(repo, chunks, bad, report, options.onProgress);
  } else {
    for (const hex of chunks) {
      const why = await checkChunkFile(repo, hex);
      if (why) bad.set(hex, why);
      report.chunksChecked++;
      if (report.chunksChecked % 1024 === 0) options.onProgress?.({ chunks: report.chunksChecked, of: total });
    }
  }

  if (bad.size > 0) {
    const affected = new Map<string, Set<string>>([...bad.keys()].map((hex) => [hex, new Set<string>()]));
    for (const ref of goodIndexes) {
      const points = indexes.get(ref.sha256)?.points ?? new Set<string>();
      const index = await IndexReader.open(repo.storage, ref, repo.keys);
      try {
        for await (const id of index.entries()) {
          const set = isZeroId(id) ? undefined : affected.get(chunkIdHex(id));
          if (set) for (const p of points) set.add(p);
        }
      } finally {
        await index.close();
      }
    }
    for (const [hex, why] of bad) problem('chunk', hex, why, affected.get(hex) ?? []);
  }
  return report;
}

async function checkChunkFile(repo: Repository, hex: string): Promise<{ code: string; message: string } | undefined> {
  const ref = chunkRef(hex);
  const file = repo.storage.describe(ref);
  try {
    const info = await repo.storage.stat(ref);
    if (!info) return { code: 'REPO_MISSING', message: `chunk ${hex}: chunk file ${file} is missing` };
    const size = info.sizeBytes;
    const parsed = parseChunkHeader(await repo.storage.getRange(ref, 0, chunkHeaderBytes));
    if (size !== chunkHeaderBytes + parsed.payloadBytes) {
      return { code: 'REPO_CORRUPT', message: `chunk ${hex}: file is ${size} bytes, its header says ${chunkHeaderBytes + parsed.payloadBytes} (truncated or extended)` };
    }
    if (parsed.plaintextBytes > repo.config.chunkBytes) return { code: 'REPO_CORRUPT', message: `chunk ${hex}: header claims ${parsed.plaintextBytes} bytes, more than a chunk` };
    return undefined;
  } catch (error) {
    if (error instanceof ChunkDecodeError) return { code: 'REPO_CORRUPT', message: `chunk ${hex}: ${error.message}` };
    if (error instanceof RepositoryError) return { code: error.code, message: `chunk ${hex}: ${error.message}` };
    throw error;
  }
}

async function decodeAll(
  repo: Repository,
  chunks: Set<string>,
  bad: Map<string, { code: string; message: string }>,
  report: VerifyReport,
  onProgress: VerifyOptions['onProgress'],
): Promise<void> {
  const pool = repo.pool();
  const inFlight = new Set<Promise<void>>();
  const spare: ArrayBuffer[] = [];
  for (const hex of chunks) {
    const buffer = spare.pop() ?? new ArrayBuffer(repo.config.chunkBytes);
    const request: DecodeRequest = { kind: 'decode', buffer, id: Buffer.from(hex, 'hex') };
    const job = pool.run(request, [buffer]).then(
      (reply) => {
        spare.push(reply.buffer);
        report.bytesDecoded += (reply as { lengthBytes: number }).lengthBytes;
      },
      (error: unknown) => {
        const e = repo.workerError(error, 'verify') as { code?: string; message: string };
        if (!e.code) throw error;
        bad.set(hex, { code: e.code, message: e.message.replace(/^verify: /, '') });
      },
    ).finally(() => {
      inFlight.delete(job);
      report.chunksChecked++;
      if (report.chunksChecked % 256 === 0) onProgress?.({ chunks: report.chunksChecked, of: chunks.size });
    });
    inFlight.add(job);
    if (inFlight.size >= repo.windowChunks) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
}
