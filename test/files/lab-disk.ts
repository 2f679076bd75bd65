// A guest disk with every kind of file system `vcbt files` reads, put into a lab VM's disk the
// way a guest would have written it (through the lab's control API), then backed up with
// `vcbt backup` like any VM. Nothing is mounted on this machine.
//
// Layout of the 64 MiB GPT disk (partition numbers as the table numbers them):
//   1: XFS   (mkfs.xfs -p PROTOFILE, populated from a directory)
//   2: NTFS  (mkntfs + ntfscp)
//   3: Btrfs (mkfs.btrfs --mixed --rootdir DIR)
//   4: an LVM physical volume holding volume group `vgdata` with logical volume `home` (ext4,
//      populated by libguestfs itself: LVM cannot be made on a file without it or loop devices)
// `nextVersion` then changes a file on NTFS the way a guest would (only that partition's
// blocks change), so that two restore points of the same disk differ; `files` names every
// regular file as the guest path `files` takes.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { seededBytes } from '../repository/helpers.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
export const LAB_DISK_BYTES = 64 * MiB;
/** Partition starts and sizes in MiB (GPT needs the first and last MiB). */
const partitions = [
  { number: 1, startMiB: 1, sizeMiB: 16 },
  { number: 2, startMiB: 17, sizeMiB: 12 },
  { number: 3, startMiB: 29, sizeMiB: 16 },
  { number: 4, startMiB: 45, sizeMiB: 18 },
] as const;
export const FIXTURE_MTIME_S = 1_700_000_000;

export interface LabDiskVersion {
  image: Buffer;
  /** Every regular file: guest path (`N:/...` or `vgdata/home:/...`) to its bytes. */
  files: Record<string, Buffer>;
}

function labDiskFiles(version: 1 | 2): { xfs: Record<string, Buffer>; ntfs: Record<string, Buffer>; btrfs: Record<string, Buffer>; lvm: Record<string, Buffer> } {
  return {
    xfs: { 'srv/www/index.html': Buffer.from('<h1>xfs</h1>\n'), 'srv/data.bin': seededBytes(41, 200_000) },
    ntfs: { 'report.txt': Buffer.from(`quarterly report, version ${version}\r\n`.repeat(40)), 'Ümlaut café.txt': Buffer.from('unicode name\r\n') },
    btrfs: { 'etc/fstab': Buffer.from('# btrfs root\n'), 'var/lib/db.bin': seededBytes(43, 150_000) },
    lvm: { 'alice/thesis.txt': Buffer.from(`chapter one, draft ${version}\n`.repeat(100)), 'bob/photo.raw': seededBytes(44, 120_000) },
  };
}

async function populate(root: string, files: Record<string, Buffer>): Promise<void> {
  for (const [path, data] of Object.entries(files)) {
    const target = join(root, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, data, { mode: 0o640 });
    await utimes(target, FIXTURE_MTIME_S, FIXTURE_MTIME_S);
  }
}

/** An XFS proto file (mkfs.xfs -p) describing `files` under `tree`. */
function xfsProto(tree: string, files: Record<string, Buffer>): string {
  interface Dir { dirs: Map<string, Dir>; files: string[] }
  const top: Dir = { dirs: new Map(), files: [] };
  for (const path of Object.keys(files)) {
    const parts = path.split('/');
    let dir = top;
    for (const part of parts.slice(0, -1)) {
      if (!dir.dirs.has(part)) dir.dirs.set(part, { dirs: new Map(), files: [] });
      dir = dir.dirs.get(part)!;
    }
    dir.files.push(path);
  }
  const lines: string[] = ['boot', '0 0', 'd--755 0 0'];
  const walk = (dir: Dir) => {
    for (const path of dir.files) lines.push(`${path.split('/').at(-1)} ---640 0 0 ${join(tree, path)}`);
    for (const [name, sub] of dir.dirs) {
      lines.push(`${name} d--755 0 0`);
      walk(sub);
      lines.push('$');
    }
  };
  walk(top);
  lines.push('$', '');
  return lines.join('\n');
}

async function image(work: string, name: string, sizeMiB: number): Promise<string> {
  const path = join(work, `${name}.img`);
  await writeFile(path, Buffer.alloc(0));
  await run('truncate', ['-s', `${sizeMiB}M`, path]);
  return path;
}

/** Builds version 1 of the disk in `work` (a private directory). */
export async function buildLabDisk(work: string, env: NodeJS.ProcessEnv): Promise<LabDiskVersion> {
  const version = 1;
  const fs = labDiskFiles(version);
  const trees = join(work, `trees-v${version}`);
  for (const [name, files] of Object.entries(fs)) await populate(join(trees, name), files);

  const xfs = await image(work, `xfs-v${version}`, partitions[0].sizeMiB);
  await writeFile(join(work, 'xfs.proto'), xfsProto(join(trees, 'xfs'), fs.xfs));
  // mkfs.xfs refuses file systems under 300 MB unless it is told it runs inside a test suite.
  await run('mkfs.xfs', ['-q', '-f', '-L', 'srv', '-p', join(work, 'xfs.proto'), xfs], { env: { ...process.env, TEST_DIR: '1', TEST_DEV: '1', QA_CHECK_FS: '1' } });

  const ntfs = await image(work, `ntfs-v${version}`, partitions[1].sizeMiB);
  await run('mkntfs', ['-Q', '-F', '-q', '-s', '512', '-p', '0', '-H', '0', '-S', '0', '-L', 'data', ntfs]);
  for (const name of Object.keys(fs.ntfs)) await run('ntfscp', ['-q', ntfs, join(trees, 'ntfs', name), name]);

  const btrfs = await image(work, `btrfs-v${version}`, partitions[2].sizeMiB);
  await run('mkfs.btrfs', ['-q', '--mixed', '-L', 'root', '--rootdir', join(trees, 'btrfs'), '-f', btrfs]);

  // The disk itself, its GPT, the three images and the LVM volume: one libguestfs run.
  const disk = join(work, `disk-v${version}.img`);
  const script = [
    `sparse ${disk} ${LAB_DISK_BYTES / MiB}M`,
    'run',
    'part-init /dev/sda gpt',
    ...partitions.map((p) => `part-add /dev/sda p ${(p.startMiB * MiB) / 512} ${((p.startMiB + p.sizeMiB) * MiB) / 512 - 1}`),
    'part-set-gpt-type /dev/sda 4 E6D6D379-F507-44C2-A23C-238F2A3DF928',
    `upload ${xfs} /dev/sda1`,
    `upload ${ntfs} /dev/sda2`,
    `upload ${btrfs} /dev/sda3`,
    'pvcreate /dev/sda4',
    'vgcreate vgdata /dev/sda4',
    'lvcreate home vgdata 12',
    'mkfs ext4 /dev/vgdata/home',
    'mount /dev/vgdata/home /',
    ...Object.keys(fs.lvm).map((p) => `mkdir-p /${dirname(p)}`),
    ...Object.keys(fs.lvm).map((p) => `upload ${join(trees, 'lvm', p)} /${p}`),
    'umount-all',
    'vg-activate-all false',
    '',
  ].join('\n');
  await new Promise<void>((resolve, reject) => {
    const child = execFile('guestfish', [], { env: { ...process.env, ...env } }, (error, _stdout, stderr) => (error ? reject(new Error(`guestfish could not build the test disk: ${stderr}`)) : resolve()));
    child.stdin?.end(script);
  });
  const bytes = await readFile(disk);
  await rm(trees, { recursive: true, force: true });
  const prefixed = (prefix: string, files: Record<string, Buffer>) => Object.fromEntries(Object.entries(files).map(([p, d]) => [`${prefix}:/${p}`, d]));
  return {
    image: bytes,
    files: { ...prefixed('1', fs.xfs), ...prefixed('2', fs.ntfs), ...prefixed('3', fs.btrfs), ...prefixed('vgdata/home', fs.lvm) },
  };
}

/** Version 2: version 1 with the NTFS file `report.txt` rewritten in place (ntfscp on partition 2). */
export async function nextVersion(work: string, v1: LabDiskVersion): Promise<LabDiskVersion> {
  const { startMiB, sizeMiB } = partitions[1];
  const slice = join(work, 'ntfs-v2.img');
  await writeFile(slice, v1.image.subarray(startMiB * MiB, (startMiB + sizeMiB) * MiB));
  const report = labDiskFiles(2).ntfs['report.txt'];
  await writeFile(join(work, 'report-v2.txt'), report);
  await run('ntfscp', ['-q', '-f', slice, join(work, 'report-v2.txt'), 'report.txt']);
  const image = Buffer.from(v1.image);
  (await readFile(slice)).copy(image, startMiB * MiB);
  return { image, files: { ...v1.files, '2:/report.txt': report } };
}

/** The 64 KiB blocks of `image` that differ from `previous` (all non-zero blocks without one). */
export function changedBlocks(image: Buffer, previous: Buffer | null, blockBytes = 64 * 1024): Array<{ offsetBytes: number; data: Buffer }> {
  const out: Array<{ offsetBytes: number; data: Buffer }> = [];
  for (let at = 0; at < image.length; at += blockBytes) {
    const block = image.subarray(at, at + blockBytes);
    const same = previous ? previous.subarray(at, at + blockBytes).equals(block) : block.every((b) => b === 0);
    if (same) continue;
    const last = out.at(-1);
    if (last && last.offsetBytes + last.data.length === at) last.data = Buffer.concat([last.data, block]);
    else out.push({ offsetBytes: at, data: Buffer.from(block) });
  }
  return out;
}
