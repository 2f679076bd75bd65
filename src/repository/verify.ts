// verify: prove that restore points restore, record the result per point, and move damaged
// files aside.
//
// Structure check: every manifest decodes and its checksum holds, every committed point still
// has its manifest (committed records, point-records.ts), every referenced index exists and
// checks out (file checksum, trailer, sizes), every referenced chunk file exists and has the
// length its header announces. With readData, every referenced chunk is also decoded and
// re-hashed against its id (on the chunk workers). Each problem is reported once with every
// restore point it affects.
//
// Then (docs/format.md, "Quarantine"):
// - quarantine: a chunk or index file that is present but damaged is moved aside (never
//   deleted), under the exclusive lock and after a second look (a backup may have rewritten it
//   meanwhile). The next backup finds the name free and writes the chunk again from its
//   source wherever the source still holds those bytes.
// - per restore point, a check record: clean, or damaged with the exact byte ranges lost per
//   disk (the slots whose chunk is missing or damaged; a whole disk when its index is lost).
//   `repair` reads every chunk, insists on quarantining (exclusive lock from the start) and
//   reports every point as clean or `unrecoverable` with those ranges: nothing in the
//   repository can bring those bytes back.
// - committed records missing for manifests that exist (a crash between the two writes, or a
//   repository older than the records) are added.
//
// Memory: the set of distinct referenced chunk ids (one string per chunk) is held while
// checking; chunk -> restore point attribution and lost ranges are computed in a second pass
// over the indexes only when some chunk is bad, so no chunk x point table is ever built.
import { union, type Extent } from '../extents/extent.ts';
import type { DecodeRequest } from './chunk-protocol.ts';
import { chunkHeaderBytes, ChunkDecodeError, parseChunkHeader } from './chunk-codec.ts';
import { chunkIdHex, chunkRef } from './chunk-store.ts';
import { IndexReader, indexRef, isZeroId, type IndexFileRef } from './disk-index.ts';
import { RepositoryError } from './errors.ts';
import type { RepositoryLock } from './lock.ts';
import type { DiskRecord } from './manifest.ts';
import { listCommitted, writeCheckRecord, writeCommittedRecord, type LostDisk, type PointCheck } from './point-records.ts';
import type { Repository } from './repository.ts';
import type { BlobRef } from './storage/storage.ts';

export interface Corruption {
  object: 'manifest' | 'index' | 'chunk';
  /** Point id, index checksum or chunk id. */
  name: string;
  code: string;
  message: string;
  affectedPoints: string[];
  /** Where the damaged file was moved (quarantine), or null when it was absent or left in place. */
  quarantinedTo: string | null;
}

export interface VerifyReport {
  pointsChecked: number;
  indexesChecked: number;
  chunksChecked: number;
  bytesDecoded: number;
  readData: boolean;
  repair: boolean;
  corruptions: Corruption[];
  /** Per restore point checked, what was found (also written as its check record). */
  points: PointCheck[];
  /** Why damaged files were left in place (the exclusive lock was not available), or null. */
  quarantineSkipped: string | null;
  /** Committed records added for manifests that had none. */
  committedRecordsAdded: number;
}

export interface VerifyOptions {
  pointIds?: readonly string[];
  readData?: boolean;
  /** Read every chunk, quarantine under the exclusive lock, report clean or unrecoverable. */
  repair?: boolean;
  onProgress?: (done: { chunks: number; of: number }) => void;
}

type Why = { code: string; message: string };

export async function verifyRepository(repo: Repository, options: VerifyOptions = {}): Promise<VerifyReport> {
  const held = { lock: await repo.lock(options.repair ? 'exclusive' : 'shared', options.repair ? 'verify --repair' : 'verify') };
  try {
    return await verifyUnderLock(repo, options, held);
  } finally {
    await held.lock?.release();
  }
}

interface IndexEntry {
  ref: IndexFileRef;
  points: Set<string>;
  chunkBytes: number;
  capacityBytes: number;
}

async function verifyUnderLock(repo: Repository, options: VerifyOptions, held: { lock: RepositoryLock | undefined }): Promise<VerifyReport> {
  const readData = (options.readData ?? false) || (options.repair ?? false);
  const manifests = await repo.listPointIds();
  const committed = await listCommitted(repo.storage);
  const all = [...new Set([...manifests, ...committed])].sort();
  for (const id of options.pointIds ?? []) {
    if (!all.includes(id)) throw new RepositoryError('REPO_POINT_NOT_FOUND', `no restore point ${id} in ${repo.path}`, { pointId: id });
  }
  const pointIds = options.pointIds ? [...new Set(options.pointIds)].sort() : all;
  const report: VerifyReport = { pointsChecked: 0, indexesChecked: 0, chunksChecked: 0, bytesDecoded: 0, readData, repair: options.repair ?? false, corruptions: [], points: [], quarantineSkipped: null, committedRecordsAdded: 0 };
  const problem = (object: Corruption['object'], name: string, error: Why, affected: Iterable<string>, quarantinedTo: string | null = null) => {
    report.corruptions.push({ object, name, code: error.code, message: error.message, affectedPoints: [...new Set(affected)].sort(), quarantinedTo });
  };

  // Committed records for manifests that have none (a crash after the manifest; older repositories).
  const manifestSet = new Set(manifests);
  for (const id of manifests) {
    if (committed.has(id)) continue;
    await writeCommittedRecord(repo.storage, id);
    report.committedRecordsAdded++;
  }

  const indexes = new Map<string, IndexEntry>();
  const pointDisks = new Map<string, DiskRecord[] | undefined>();
  for (const pointId of pointIds) {
    report.pointsChecked++;
    if (!manifestSet.has(pointId)) {
      const file = repo.storage.describe({ kind: 'point', name: pointId });
      problem('manifest', pointId, { code: 'REPO_MISSING', message: `manifest ${file} is missing: the restore point was committed and not removed by prune` }, [pointId]);
      pointDisks.set(pointId, undefined);
      continue;
    }
    try {
      const manifest = await repo.readManifest(pointId);
      pointDisks.set(pointId, manifest.disks);
      for (const disk of manifest.disks) {
        const entry = indexes.get(disk.index.sha256) ?? { ref: disk.index, points: new Set<string>(), chunkBytes: disk.chunkBytes, capacityBytes: disk.capacityBytes };
        entry.points.add(pointId);
        indexes.set(disk.index.sha256, entry);
      }
    } catch (error) {
      if (!(error instanceof RepositoryError) || error.code === 'REPO_IO') throw error;
      problem('manifest', pointId, error, [pointId]);
      pointDisks.set(pointId, undefined);
    }
  }

  const badIndexes = new Map<string, Why>();
  const goodIndexes: IndexEntry[] = [];
  const chunks = new Set<string>();
  for (const [sha, entry] of indexes) {
    report.indexesChecked++;
    let index: IndexReader;
    try {
      index = await openIndex(repo, entry);
    } catch (error) {
      if (!(error instanceof RepositoryError) || error.code === 'REPO_IO') throw error;
      badIndexes.set(sha, error);
      continue;
    }
    try {
      for await (const id of index.entries()) if (!isZeroId(id)) chunks.add(chunkIdHex(id));
    } finally {
      await index.close();
    }
    goodIndexes.push(entry);
  }

  const bad = new Map<string, Why>();
  const total = chunks.size;
  if (readData) {
    await decodeAll(repo, chunks, bad, report, options.onProgress);
  } else {
    for (const hex of chunks) {
      const why = await checkChunkFile(repo, hex);
      if (why) bad.set(hex, why);
      report.chunksChecked++;
      if (report.chunksChecked % 1024 === 0) options.onProgress?.({ chunks: report.chunksChecked, of: total });
    }
  }

  // Quarantine what is present but damaged, under the exclusive lock, after a second look.
  const quarantined = new Map<string, string>();
  const movable = (why: Why) => why.code === 'REPO_CORRUPT' || why.code === 'REPO_NOT_REGULAR_FILE';
  const toMove = [...[...badIndexes].filter(([, why]) => movable(why)).map(([sha]) => ({ key: `index:${sha}`, ref: indexRef(sha) })), ...[...bad].filter(([, why]) => movable(why)).map(([hex]) => ({ key: `chunk:${hex}`, ref: chunkRef(hex) }))];
  if (toMove.length > 0) {
    if (!options.repair) {
      await held.lock?.release();
      held.lock = undefined;
      try {
        held.lock = await repo.lock('exclusive', 'verify quarantine');
      } catch (error) {
        if (!(error instanceof RepositoryError) || error.code !== 'REPO_LOCKED') throw error;
        report.quarantineSkipped = `damaged files left in place: ${error.message}; run vcbt verify --repair when no backup runs`;
        held.lock = await repo.lock('shared', 'verify');
      }
    }
    if (report.quarantineSkipped === null) {
      for (const { key, ref } of toMove) {
        const [kind, name] = key.split(':');
        const still = kind === 'chunk' ? await recheckChunk(repo, name, readData) : await recheckIndex(repo, indexes.get(name) as IndexEntry);
        if (!still) {
          // Rewritten by a backup between the two looks: sound now.
          if (kind === 'chunk') bad.delete(name);
          else badIndexes.delete(name);
          continue;
        }
        quarantined.set(key, await quarantine(repo, ref));
      }
    }
  }

  // Lost ranges per index, and the points every bad chunk affects (a second pass, only on damage).
  const lostByIndex = new Map<string, Extent[]>();
  const affected = new Map<string, Set<string>>([...bad.keys()].map((hex) => [hex, new Set<string>()]));
  if (bad.size > 0) {
    for (const entry of goodIndexes) {
      if (badIndexes.has(entry.ref.sha256)) continue;
      const index = await IndexReader.open(repo.storage, entry.ref, repo.keys);
      const lost: Extent[] = [];
      try {
        let slot = 0;
        for await (const id of index.entries()) {
          const set = isZeroId(id) ? undefined : affected.get(chunkIdHex(id));
          if (set) {
            for (const p of entry.points) set.add(p);
            const offsetBytes = slot * entry.chunkBytes;
            lost.push({ offsetBytes, lengthBytes: Math.min(entry.chunkBytes, entry.capacityBytes - offsetBytes) });
          }
          slot++;
        }
      } finally {
        await index.close();
      }
      if (lost.length > 0) lostByIndex.set(entry.ref.sha256, union(lost));
    }
  }
  for (const [sha, why] of badIndexes) problem('index', sha, why, indexes.get(sha)?.points ?? [], quarantined.get(`index:${sha}`) ?? null);
  for (const [hex, why] of bad) problem('chunk', hex, why, affected.get(hex) ?? [], quarantined.get(`chunk:${hex}`) ?? null);

  const checkedAt = new Date().toISOString();
  for (const pointId of pointIds) {
    const disks = pointDisks.get(pointId);
    const lostDisks: LostDisk[] = [];
    for (const disk of disks ?? []) {
      const whole = badIndexes.has(disk.index.sha256);
      const ranges = whole ? [{ offsetBytes: 0, lengthBytes: disk.capacityBytes }] : lostByIndex.get(disk.index.sha256);
      if (ranges) lostDisks.push({ deviceKey: disk.deviceKey, capacityBytes: disk.capacityBytes, lostRanges: ranges });
    }
    const manifestLost = disks === undefined;
    const status = !manifestLost && lostDisks.length === 0 ? 'clean' : options.repair ? 'unrecoverable' : 'damaged';
    const record: PointCheck = { pointId, checkedAt, readData, status, manifestLost, lostDisks };
    report.points.push(record);
    await writeCheckRecord(repo.storage, record);
  }
  return report;
}

async function openIndex(repo: Repository, entry: IndexEntry): Promise<IndexReader> {
  const index = await IndexReader.open(repo.storage, entry.ref, repo.keys);
  if (index.header.chunkBytes !== entry.chunkBytes || index.header.capacityBytes !== entry.capacityBytes) {
    await index.close();
    throw new RepositoryError('REPO_CORRUPT', `index ${entry.ref.sha256} disagrees with its manifest on disk or chunk size`, {});
  }
  return index;
}

async function recheckIndex(repo: Repository, entry: IndexEntry): Promise<boolean> {
  try {
    await (await openIndex(repo, entry)).close();
    return false;
  } catch (error) {
    if (error instanceof RepositoryError && error.code !== 'REPO_IO' && error.code !== 'REPO_MISSING') return true;
    if (error instanceof RepositoryError && error.code === 'REPO_MISSING') return false; // nothing left to move
    throw error;
  }
}

async function recheckChunk(repo: Repository, hex: string, readData: boolean): Promise<boolean> {
  const why = readData ? await decodeOne(repo, hex) : await checkChunkFile(repo, hex);
  return why !== undefined && why.code !== 'REPO_MISSING';
}

async function quarantine(repo: Repository, ref: BlobRef): Promise<string> {
  return repo.storage.quarantine(ref);
}

async function checkChunkFile(repo: Repository, hex: string): Promise<Why | undefined> {
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
    if (error instanceof RepositoryError && error.code !== 'REPO_IO') return { code: error.code, message: `chunk ${hex}: ${error.message}` };
    throw error;
  }
}

async function decodeOne(repo: Repository, hex: string): Promise<Why | undefined> {
  const request: DecodeRequest = { kind: 'decode', buffer: new ArrayBuffer(repo.config.chunkBytes), id: Buffer.from(hex, 'hex') };
  try {
    await repo.pool().run(request, [request.buffer]);
    return undefined;
  } catch (error) {
    const e = repo.workerError(error, 'verify') as { code?: string; message: string };
    if (!e.code || e.code === 'REPO_IO') throw error;
    return { code: e.code, message: e.message.replace(/^verify: /, '') };
  }
}

async function decodeAll(repo: Repository, chunks: Set<string>, bad: Map<string, Why>, report: VerifyReport, onProgress: VerifyOptions['onProgress']): Promise<void> {
  const pool = repo.pool();
  const inFlight = new Set<Promise<void>>();
  const spare: ArrayBuffer[] = [];
  for (const hex of chunks) {
    const buffer = spare.pop() ?? new ArrayBuffer(repo.config.chunkBytes);
    const request: DecodeRequest = { kind: 'decode', buffer, id: Buffer.from(hex, 'hex') };
    const job = pool
      .run(request, [buffer])
      .then(
        (reply) => {
          spare.push(reply.buffer);
          report.bytesDecoded += (reply as { lengthBytes: number }).lengthBytes;
        },
        (error: unknown) => {
          const e = repo.workerError(error, 'verify') as { code?: string; message: string };
          if (!e.code) throw error;
          bad.set(hex, { code: e.code, message: e.message.replace(/^verify: /, '') });
        },
      )
      .finally(() => {
        inFlight.delete(job);
        report.chunksChecked++;
        if (report.chunksChecked % 256 === 0) onProgress?.({ chunks: report.chunksChecked, of: chunks.size });
      });
    inFlight.add(job);
    if (inFlight.size >= repo.windowChunks) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
}
