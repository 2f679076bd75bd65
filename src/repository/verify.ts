// verify: prove that restore points restore, record the result per point, and move damaged
// files aside.
//
// Structure check: every manifest decodes and its checksum holds, every committed point still
// has its manifest (committed records, point-records.ts), every referenced index exists and
// checks out (file checksum, trailer, sizes), every pack index checks out, every referenced
// chunk is located (pack indexes, or a v1 chunk file) and its record has the length its
// header announces, inside its pack, and every pack holding one has a sound trailer listing
// it there. With readData, every referenced chunk is also decoded and re-hashed against its
// id (on the chunk workers). Each problem is reported once with every restore point it affects.
//
// Then (docs/format.md, "Quarantine"):
// - quarantine: a chunk or index file that is present but damaged is moved aside (never
//   deleted), under the exclusive lock and after a second look (a backup may have rewritten it
//   meanwhile). The next backup finds the name free and writes the chunk again from its
//   source wherever the source still holds those bytes. A damaged chunk in a pack (or a pack
//   with a damaged trailer) moves its whole pack aside, after its sound records were copied
//   into a new pack (salvage.ts): only the damaged chunks are lost.
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
import { packFooterBytes, packRef, readPackTrailer } from './pack.ts';
import { salvagePack } from './salvage.ts';
import { IndexReader, indexRef, isZeroId, type IndexFileRef } from './disk-index.ts';
import { openPackIndex } from './pack-index.ts';
import { RepositoryError } from './errors.ts';
import type { RepositoryLock } from './lock.ts';
import type { DiskRecord } from './manifest.ts';
import { listCommitted, writeCheckRecord, writeCommittedRecord, type LostDisk, type PointCheck } from './point-records.ts';
import type { Repository } from './repository.ts';
import type { BlobRef } from './storage/storage.ts';

export interface Corruption {
  object: 'manifest' | 'index' | 'chunk' | 'pack' | 'packindex';
  /** Point id, index checksum, chunk id, pack name or pack index name. */
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

  const table = await repo.chunkTable();
  const badPackIndexes = new Map<string, Why>(table.damaged);
  const packs = new PackCheck(repo);
  const bad = new Map<string, Why>();
  const total = chunks.size;
  if (readData) {
    await decodeAll(repo, chunks, bad, packs, report, options.onProgress);
  } else {
    for (const hex of chunks) {
      const why = await checkChunk(repo, hex, packs);
      if (why) bad.set(hex, why);
      report.chunksChecked++;
      if (report.chunksChecked % 1024 === 0) options.onProgress?.({ chunks: report.chunksChecked, of: total });
    }
  }

  // Quarantine what is present but damaged, under the exclusive lock, after a second look.
  // Chunks in packs move with their pack (salvaged first); v1 chunk files move alone.
  const quarantined = new Map<string, string>();
  const movable = (why: Why) => why.code === 'REPO_CORRUPT' || why.code === 'REPO_NOT_REGULAR_FILE';
  const movableChunks = [...bad].filter(([, why]) => movable(why)).map(([hex]) => hex);
  const movablePacks = [...packs.bad].filter(([, why]) => movable(why)).map(([name]) => name);
  const toMove = [
    ...[...badIndexes].filter(([, why]) => movable(why)).map(([sha]) => ({ key: `index:${sha}`, ref: indexRef(sha) })),
    ...[...badPackIndexes].filter(([, why]) => movable(why)).map(([name]) => ({ key: `packindex:${name}`, ref: { kind: 'packindex', name } as BlobRef })),
  ];
  if (toMove.length + movableChunks.length + movablePacks.length > 0) {
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
      await repo.chunkTable(); // a backup may have written packs meanwhile
      for (const { key, ref } of toMove) {
        const [kind, name] = key.split(':');
        const still = kind === 'index' ? await recheckIndex(repo, indexes.get(name) as IndexEntry) : await recheckPackIndex(repo, name);
        if (!still) {
          // Rewritten by a backup between the two looks: sound now.
          if (kind === 'index') badIndexes.delete(name);
          else badPackIndexes.delete(name);
          continue;
        }
        quarantined.set(key, await repo.storage.quarantine(ref));
      }
      // Chunks: a second look (located afresh: a backup may have stored a sound copy since).
      const byPack = new Map<string, Set<string>>(movablePacks.map((name) => [name, new Set<string>()]));
      for (const hex of movableChunks) {
        const recheck = new PackCheck(repo);
        const why = readData ? await decodeOne(repo, hex, recheck) : await checkChunk(repo, hex, recheck);
        if (why === undefined || why.code === 'REPO_MISSING') {
          if (why === undefined) bad.delete(hex);
          continue;
        }
        const location = await repo.locate(Buffer.from(hex, 'hex'));
        if (location?.pack) {
          const set = byPack.get(location.pack) ?? new Set<string>();
          set.add(hex);
          byPack.set(location.pack, set);
        } else if (location) {
          quarantined.set(`chunk:${hex}`, await repo.storage.quarantine(chunkRef(hex)));
        }
      }
      for (const [pack, hexes] of byPack) {
        if (hexes.size === 0 && !(await packs.trailerStillBad(pack))) {
          packs.bad.delete(pack);
          continue;
        }
        const aside = await salvagePack(repo, pack, hexes);
        quarantined.set(`pack:${pack}`, aside);
        for (const hex of hexes) quarantined.set(`chunk:${hex}`, aside);
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
  // A pack index or a pack trailer holds no disk's bytes: the chunks it lists are reported on their own.
  for (const [name, why] of badPackIndexes) problem('packindex', name, why, [], quarantined.get(`packindex:${name}`) ?? null);
  for (const [name, why] of packs.bad) problem('pack', name, why, [], quarantined.get(`pack:${name}`) ?? null);
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

async function recheckPackIndex(repo: Repository, name: string): Promise<boolean> {
  try {
    await (await openPackIndex(repo.storage, name, repo.keys)).close();
    return false;
  } catch (error) {
    if (error instanceof RepositoryError && error.code !== 'REPO_IO' && error.code !== 'REPO_MISSING') return true;
    if (error instanceof RepositoryError && error.code === 'REPO_MISSING') return false;
    throw error;
  }
}

/** Per pack, once: its size and whether its trailer is sound (bad: why not). */
class PackCheck {
  readonly #repo: Repository;
  readonly #sizes = new Map<string, number | undefined>();
  readonly bad = new Map<string, Why>();

  constructor(repo: Repository) {
    this.#repo = repo;
  }

  readonly #unreadable = new Map<string, Why>();

  /** The pack's size (undefined: missing), its trailer checked the first time; a pack that cannot be read at all: why. */
  async sizeOf(pack: string): Promise<number | undefined | Why> {
    const unreadable = this.#unreadable.get(pack);
    if (unreadable) return unreadable;
    if (this.#sizes.has(pack)) return this.#sizes.get(pack);
    let size: number | undefined;
    try {
      size = (await readPackTrailer(this.#repo.storage, pack, this.#repo.keys)).sizeBytes;
    } catch (error) {
      if (!(error instanceof RepositoryError) || error.code === 'REPO_IO') throw error;
      if (error.code === 'REPO_NOT_REGULAR_FILE') {
        const why = { code: error.code, message: error.message };
        this.bad.set(pack, why);
        this.#unreadable.set(pack, why);
        return why;
      }
      size = (await this.#repo.storage.stat(packRef(pack)).catch(() => undefined))?.sizeBytes;
      if (size !== undefined) this.bad.set(pack, { code: error.code, message: error.message });
    }
    this.#sizes.set(pack, size);
    return size;
  }

  async trailerStillBad(pack: string): Promise<boolean> {
    try {
      await readPackTrailer(this.#repo.storage, pack, this.#repo.keys);
      return false;
    } catch (error) {
      if (error instanceof RepositoryError && error.code === 'REPO_CORRUPT') return true;
      if (error instanceof RepositoryError && error.code !== 'REPO_IO') return false;
      throw error;
    }
  }
}

/** Structure check of one chunk: located, its record inside its pack (or v1 file) with the length its header says. */
async function checkChunk(repo: Repository, hex: string, packs: PackCheck): Promise<Why | undefined> {
  const id = Buffer.from(hex, 'hex');
  const location = await repo.locate(id);
  if (!location) return { code: 'REPO_MISSING', message: `chunk ${hex} is in no pack (no pack index lists it) and has no chunk file` };
  if (location.pack === null) return checkChunkFile(repo, hex);
  const ref = packRef(location.pack);
  const file = repo.storage.describe(ref);
  try {
    const size = await packs.sizeOf(location.pack);
    if (size === undefined) return { code: 'REPO_MISSING', message: `chunk ${hex}: pack ${file} is missing` };
    if (typeof size === 'object') return { code: size.code, message: `chunk ${hex}: ${size.message}` };
    if (location.offsetBytes + location.lengthBytes > size - packFooterBytes) return { code: 'REPO_CORRUPT', message: `chunk ${hex}: its record at ${location.offsetBytes} ends past pack ${file} (truncated)` };
    const parsed = parseChunkHeader(await repo.storage.getRange(ref, location.offsetBytes, chunkHeaderBytes));
    if (location.lengthBytes !== chunkHeaderBytes + parsed.payloadBytes) {
      return { code: 'REPO_CORRUPT', message: `chunk ${hex}: its record in ${file} is ${location.lengthBytes} bytes, its header says ${chunkHeaderBytes + parsed.payloadBytes}` };
    }
    if (parsed.plaintextBytes > repo.config.chunkBytes) return { code: 'REPO_CORRUPT', message: `chunk ${hex}: header claims ${parsed.plaintextBytes} bytes, more than a chunk` };
    return undefined;
  } catch (error) {
    if (error instanceof ChunkDecodeError) return { code: 'REPO_CORRUPT', message: `chunk ${hex} in ${file}: ${error.message}` };
    if (error instanceof RepositoryError && error.code !== 'REPO_IO') return { code: error.code, message: `chunk ${hex}: ${error.message}` };
    throw error;
  }
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

async function decodeOne(repo: Repository, hex: string, packs: PackCheck): Promise<Why | undefined> {
  const id = Buffer.from(hex, 'hex');
  const location = await repo.locate(id);
  if (!location) return { code: 'REPO_MISSING', message: `chunk ${hex} is in no pack (no pack index lists it) and has no chunk file` };
  if (location.pack !== null) await packs.sizeOf(location.pack);
  const request: DecodeRequest = { kind: 'decode', buffer: new ArrayBuffer(repo.config.chunkBytes), id, location };
  try {
    await repo.pool().run(request, [request.buffer]);
    return undefined;
  } catch (error) {
    const e = repo.workerError(error, 'verify') as { code?: string; message: string };
    if (!e.code || e.code === 'REPO_IO') throw error;
    return { code: e.code, message: e.message.replace(/^verify: /, '') };
  }
}

async function decodeAll(repo: Repository, chunks: Set<string>, bad: Map<string, Why>, packs: PackCheck, report: VerifyReport, onProgress: VerifyOptions['onProgress']): Promise<void> {
  const pool = repo.pool();
  const inFlight = new Set<Promise<void>>();
  const spare: ArrayBuffer[] = [];
  for (const hex of chunks) {
    const id = Buffer.from(hex, 'hex');
    const location = await repo.locate(id);
    if (location?.pack) await packs.sizeOf(location.pack);
    if (!location) {
      bad.set(hex, { code: 'REPO_MISSING', message: `chunk ${hex} is in no pack (no pack index lists it) and has no chunk file` });
      report.chunksChecked++;
      continue;
    }
    const buffer = spare.pop() ?? new ArrayBuffer(repo.config.chunkBytes);
    const request: DecodeRequest = { kind: 'decode', buffer, id, location };    const job = pool
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
