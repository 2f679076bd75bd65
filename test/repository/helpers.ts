// Shared test helpers: temp repositories, synthetic disk images held in memory, readers and
// targets over them, and a file census of a repository.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Extent } from '../../src/extents/extent.ts';
import type { DiskSource, DiskTarget } from '../../src/repository/disk-source.ts';
import { Repository, type InitOptions, type OpenOptions } from '../../src/repository/repository.ts';
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

export function listFiles(dir: string, sub: string): string[] {
  const root = path.join(dir, sub);
  const found: string[] = [];
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

/** Files of a local repository, for tests that damage or plant them. */
export function chunkPath(dir: string, idHex: string): string {
  return new LocalStorage(dir).pathOf({ kind: 'chunk', name: idHex });
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
