// Guest disks for the file-level restore tests, built without mounting anything and stored as
// restore points with the repository API (the same writer `vcbt backup` uses).
//
// - `gptPoints`: a GPT disk (sfdisk) with partition 1 = ext4 populated from a directory
//   (`mkfs.ext4 -d`), partition 2 = FAT (`mkfs.vfat` + `mcopy -s`), partition 3 = no file system. Two versions: the
//   second restore point changes and adds files, so a test can tell the points apart.
// - `wholeDiskPoint`: ext4 on the whole disk, no partition table (paths without `N:`).
// - `blankPoint`: zeroes only: no partition table, no file system.
// `files` maps every regular file the fixture wrote (as `N:/path` or `/path`) to its bytes.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { Extent } from '../../src/extents/extent.ts';
import { Repository } from '../../src/repository/repository.ts';
import { memorySource, seededBytes, testScrypt } from '../repository/helpers.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
export const DEVICE_KEY = 2000;
export const fixtureVm = { id: 'files-vm-uuid', name: 'files-vm' };
/** A fixed time for every fixture file, so tests can check that `get` keeps it. */
export const FIXTURE_MTIME_S = 1_700_000_000;

export type GuestFiles = Record<string, Buffer>;

async function populate(root: string, files: Record<string, Buffer>): Promise<void> {
  for (const [path, data] of Object.entries(files)) {
    const target = join(root, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, data, { mode: 0o640 });
    await utimes(target, FIXTURE_MTIME_S, FIXTURE_MTIME_S);
  }
}

async function ext4Image(work: string, name: string, sizeBytes: number, files: Record<string, Buffer>): Promise<Buffer> {
  const tree = join(work, `${name}-tree`);
  await mkdir(tree, { recursive: true });
  await populate(tree, files);
  const image = join(work, `${name}.img`);
  await run('mkfs.ext4', ['-q', '-F', '-L', name, '-E', 'root_owner=0:0', '-d', tree, image, `${sizeBytes / 1024}k`]);
  return readFile(image);
}

async function vfatImage(work: string, name: string, sizeBytes: number, files: Record<string, Buffer>): Promise<Buffer> {
  const tree = join(work, `${name}-tree`);
  await mkdir(tree, { recursive: true });
  await populate(tree, files);
  const image = join(work, `${name}.img`);
  await run('mkfs.vfat', ['-C', '-n', name.toUpperCase(), image, String(sizeBytes / 1024)]);
  const top = (await readdir(tree)).map((entry) => join(tree, entry));
  await run('mcopy', ['-s', '-m', '-i', image, ...top, '::/'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  return readFile(image);
}

/** The allocated areas of an image: every 64 KiB block that is not all zero, merged. */
function allocatedAreas(image: Buffer, blockBytes = 64 * 1024): Extent[] {
  const areas: Array<{ offsetBytes: number; lengthBytes: number }> = [];
  for (let at = 0; at < image.length; at += blockBytes) {
    const n = Math.min(blockBytes, image.length - at);
    if (image.subarray(at, at + n).every((b) => b === 0)) continue;
    const last = areas.at(-1);
    if (last && last.offsetBytes + last.lengthBytes === at) last.lengthBytes += n;
    else areas.push({ offsetBytes: at, lengthBytes: n });
  }
  return areas;
}

async function storePoint(repo: Repository, image: Buffer, createdAt: Date): Promise<string> {
  const writer = await repo.beginRestorePoint({ vm: fixtureVm, createdAt });
  await writer.writeDisk({ deviceKey: DEVICE_KEY, label: 'Hard disk 1', capacityBytes: image.length, changeId: null, reader: memorySource(image), allocatedAreas: allocatedAreas(image) });
  return writer.commit();
}

/** Version 1 or 2 of the two-partition disk's files. */
export function gptFiles(version: 1 | 2): { ext4: Record<string, Buffer>; fat: Record<string, Buffer> } {
  const ext4: Record<string, Buffer> = {
    'etc/hostname': Buffer.from(`guest-v${version}\n`),
    'home/alice/notes.txt': Buffer.from(`notes, version ${version}\n`.repeat(50)),
    'home/alice/data.bin': seededBytes(version === 1 ? 11 : 12, 300_000),
    'var/log/empty.log': Buffer.alloc(0),
  };
  const fat: Record<string, Buffer> = {
    'EFI/BOOT/BOOTX64.EFI': seededBytes(21, 70_000),
    'README.TXT': Buffer.from(`fat partition v${version}\r\n`),
  };
  if (version === 2) ext4['home/alice/new-in-v2.txt'] = Buffer.from('added later\n');
  return { ext4, fat };
}

async function gptImage(work: string, version: 1 | 2): Promise<Buffer> {
  const sizeBytes = 24 * MiB;
  const { ext4, fat } = gptFiles(version);
  const disk = join(work, `gpt-v${version}.img`);
  await writeFile(disk, Buffer.alloc(0));
  await run('truncate', ['-s', String(sizeBytes), disk]);
  // Partition 1: 1 MiB .. 13 MiB (ext4), partition 2: 13 MiB .. 23 MiB (FAT), partition 3:
  // 512 KiB of zeroes (no file system).
  const script = 'label: gpt\nstart=2048, size=24576, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\nstart=26624, size=20480, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\nstart=47104, size=1024, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n';
  await new Promise<void>((resolve, reject) => {
    const child = execFile('sfdisk', ['--quiet', disk], (error) => (error ? reject(error) : resolve()));
    child.stdin?.end(script);
  });
  const image = await readFile(disk);
  (await ext4Image(work, `root${version}`, 12 * MiB, ext4)).copy(image, 1 * MiB);
  (await vfatImage(work, `efi${version}`, 10 * MiB, fat)).copy(image, 13 * MiB);
  return image;
}

export interface Fixture {
  dir: string;
  repoPath: string;
  repository: Repository;
  /** Restore points of the two-partition disk, older first. */
  gptPoints: [string, string];
  wholeDiskPoint: string;
  blankPoint: string;
  /** The regular files each point holds: `N:/path` (two-partition) or `/path` (whole disk). */
  filesOf: Map<string, GuestFiles>;
  close(): Promise<void>;
}

export async function buildFixture(): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-files-'));
  const work = join(dir, 'work');
  await mkdir(work);
  const repoPath = join(dir, 'repo');
  await Repository.init(repoPath, { scryptCost: testScrypt, chunkBytes: 64 * 1024 });
  const repository = await Repository.open(repoPath);
  const filesOf = new Map<string, GuestFiles>();
  const gptPoints: string[] = [];
  for (const version of [1, 2] as const) {
    const id = await storePoint(repository, await gptImage(work, version), new Date(Date.UTC(2026, 0, version)));
    const { ext4, fat } = gptFiles(version);
    filesOf.set(id, {
      ...Object.fromEntries(Object.entries(ext4).map(([p, d]) => [`1:/${p}`, d])),
      ...Object.fromEntries(Object.entries(fat).map(([p, d]) => [`2:/${p}`, d])),
    });
    gptPoints.push(id);
  }
  const wholeFiles = { 'hello.txt': Buffer.from('whole disk\n'), 'dir/sub/deep.bin': seededBytes(31, 100_000) };
  const wholeDiskPoint = await storePoint(repository, await ext4Image(work, 'whole', 8 * MiB, wholeFiles), new Date(Date.UTC(2026, 0, 3)));
  filesOf.set(wholeDiskPoint, Object.fromEntries(Object.entries(wholeFiles).map(([p, d]) => [`/${p}`, d])));
  const blankPoint = await storePoint(repository, Buffer.alloc(4 * MiB), new Date(Date.UTC(2026, 0, 4)));
  await rm(work, { recursive: true, force: true });
  return {
    dir,
    repoPath,
    repository,
    gptPoints: gptPoints as [string, string],
    wholeDiskPoint,
    blankPoint,
    filesOf,
    async close() {
      await repository.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
