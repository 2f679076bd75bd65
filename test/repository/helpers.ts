// Shared test helpers: temp repositories, synthetic disk images held in memory, readers and
// targets over them, and a file census of a repository.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Extent } from '../../src/extents/extent.ts';
import type { DiskSource, DiskTarget } from '../../src/repository/disk-source.ts';
import { Repository, type InitOptions, type OpenOptions } from '../../src/repository/repository.ts';
import { writePackIndex, type PackIndexEntry } from '../../src/repository/pack-index.ts';
import { LocalStorage } from '../../src/repository/storage/local.ts';

/** Cheap scrypt for tests (the real default is N = 2^17). */
export const testScrypt = { N: 1024, r: 8, p: 1 };

export function tempDir(t: { after(fn: () => void): void }, prefix = 'vcbt-repo-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function newRepository(dir: string, init: InitOptions = {}, open: OpenOptions = {}): Promise<Repository> {
  await Repository.init(dir, { scryptCost: testScrypt, ...init });
  return Repository.open(dir, { passphrase: init.passphrase, ...open });
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift) so a child process can rebuild an image from a seed. */
export function seededBytes(seed: number, lengthBytes: number): Buffer {
  const out = Buffer.alloc(lengthBytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < lengthBytes; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** An image with random, text-like and zero regions, so chunks of every kind occur. */
export function mixedImage(lengthBytes: number, unitBytes = 40_000): Buffer {
  const image = Buffer.alloc(lengthBytes);
  for (let at = 0, k = 0; at < lengthBytes; at += unitBytes, k++) {
    const n = Math.min(unitBytes, lengthBytes - at);
    if (k % 3 === 0) randomBytes(n).copy(image, at);
    else if (k % 3 === 1) Buffer.from(`line ${k} of some compressible text `.repeat(Math.ceil(n / 30))).copy(image, at, 0, n);
  }
  return image;
}

export function memorySource(image: Uint8Array, reads: Extent[] = []): DiskSource {
  return {
    async read(offsetBytes, target) {
      if (offsetBytes + target.length > image.length) throw new Error(`read past end: ${offsetBytes}+${target.length}`);
      reads.push({ offsetBytes, lengthBytes: target.length });
      target.set(image.subarray(offsetBytes, offsetBytes + target.length));
    },
  };
}

export function memoryTarget(image: Buffer): DiskTarget {
  return {
    async write(offsetBytes, data) {
      image.set(data, offsetBytes);
    },
  };
}

export async function restoreToBuffer(repo: Repository, pointId: string, deviceKey: number): Promise<Buffer> {
  const disk = await repo.openDisk(pointId, deviceKey);
  try {
    const image = Buffer.alloc(disk.sizeBytes);
    await disk.restoreTo(memoryTarget(image));
    return image;
  } finally {
    await disk.close();
  }
}

/** Every file under dir/sub (none when sub is absent: format v2 makes chunks/, packs/ fan-outs lazily). */
export function listFiles(dir: string, sub: string): string[] {
  const root = path.join(dir, sub);
  const found: string[] = [];
  if (!fs.existsSync(root)) return found;
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else found.push(p);
    }
  };
  walk(root);
  return found.sort();
}

export const vm = { id: 'vm-uuid-1', name: 'test-vm' };

/** Files of a local repository, for tests that damage or plant them. A format-v1 chunk file: */
export function chunkPath(dir: string, idHex: string): string {
  return new LocalStorage(dir).pathOf({ kind: 'chunk', name: idHex });
}

/** Distinct chunk ids stored (format v2: listed by a pack index, its pack present; plus v1 chunk files). */
export async function storedChunks(repo: Repository): Promise<Set<string>> {
  const table = await repo.chunkTable();
  const ids = new Set<string>();
  const packs = new Set<string>();
  for await (const name of repo.storage.list('pack')) packs.add(name);
  for await (const e of table.entries()) if (packs.has(e.pack)) ids.add(Buffer.from(e.id).toString('hex'));
  for await (const name of repo.storage.list('chunk')) ids.add(name);
  return ids;
}

/** Where chunk `idHex` is stored: its pack file and its record's place in it (format v2). */
export async function chunkRecord(repo: Repository, idHex: string): Promise<{ file: string; offsetBytes: number; lengthBytes: number; pack: string }> {
  await repo.chunkTable();
  const location = await repo.locate(Buffer.from(idHex, 'hex'));
  if (!location || location.pack === null) throw new Error(`chunk ${idHex} is in no pack`);
  return { file: new LocalStorage(repo.path).pathOf({ kind: 'pack', name: location.pack }), offsetBytes: location.offsetBytes, lengthBytes: location.lengthBytes, pack: location.pack };
}

/** Runs `fn` on a plain repository at `dir` opened for it (tests that hold only a path). */
export async function withRepository<T>(dir: string, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await Repository.open(dir, { workers: 1 });
  try {
    return await fn(repo);
  } finally {
    await repo.close();
  }
}

/** chunkRecord of a closed plain repository at `dir`. */
export function chunkRecordIn(dir: string, idHex: string): Promise<{ file: string; offsetBytes: number; lengthBytes: number; pack: string }> {
  return withRepository(dir, (repo) => chunkRecord(repo, idHex));
}

/** XORs one byte of chunk `idHex`'s record (at `at` within the record). */
export async function flipChunkByte(repo: Repository, idHex: string, at: number): Promise<void> {
  const record = await chunkRecord(repo, idHex);
  const bytes = fs.readFileSync(record.file);
  bytes[record.offsetBytes + at] ^= 0x40;
  fs.writeFileSync(record.file, bytes);
}

/**
 * Makes one chunk missing (format v2): every pack index entry naming it is dropped (each pack
 * index that lists it is replaced by one without it); the record's bytes stay in its pack.
 */
export async function removeChunk(repo: Repository, idHex: string): Promise<void> {
  const table = await repo.chunkTable();
  const affected = new Set<string>();
  for await (const e of table.entries()) if (Buffer.from(e.id).toString('hex') === idHex) affected.add(e.file);
  for (const file of affected) {
    const kept: PackIndexEntry[] = [];
    for await (const e of table.entries(file)) if (Buffer.from(e.id).toString('hex') !== idHex) kept.push({ id: Buffer.from(e.id), pack: e.pack, offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes });
    if (kept.length > 0) await writePackIndex(repo.storage, repo.keys, repo.config.chunkBytes, kept, table.createdAtMs(file));
    fs.rmSync(new LocalStorage(repo.path).pathOf({ kind: 'packindex', name: file }));
  }
  await repo.chunkTable();
}

export function indexPath(dir: string, sha256: string): string {
  return new LocalStorage(dir).pathOf({ kind: 'index', name: sha256 });
}

export function manifestPath(dir: string, pointId: string): string {
  return new LocalStorage(dir).pathOf({ kind: 'point', name: pointId });
}

export function local(dir: string): LocalStorage {
  return new LocalStorage(dir);
}
