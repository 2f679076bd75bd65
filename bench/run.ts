// `npm run bench`: every path of the performance table (issue "Performance", bench/README.md)
// against its peers in one run, on one lab disk, alternating the order of contenders between
// repetitions, and bench/results.json.
//
// Terms: a *path* is one kind of work (full backup, incremental, restore, replicate, ...); a
// *contender* is a program doing it (vcbt, or a *peer*: borg, restic, zstd, nbdcopy,
// qemu-img, bare node); the *subject* of a path is the vcbt contender its ratios are taken
// for (vcbt time / peer time, per repetition, so both ran on the same disk state in the same
// minute; below 1 = vcbt faster). Each contender is one child process (vcbt is bin/vcbt.ts
// under this Node), timed whole: vcbt's times include login, the lab's snapshot (which copies
// every allocated byte; ESXi does not) and its removal; peers read a copy of the same disk
// bytes (`disk.raw`, refreshed whenever the guest writes) or the same snapshot export.
//
// One repetition, in this order (each round in a rotated order of its contenders):
//   1. full backups into fresh repositories: vcbt (file transport; http transport), borg
//      (lz4; zstd,3), restic, and `zstd -1` of disk.raw (each + fsync of what it wrote);
//   2. the guest rewrites 2 % of the disk in single 64 KiB writes (random data, on blocks
//      that hold data, so the allocation stays the same);
//   3. incrementals: vcbt (file), borg lz4, restic into the repositories of 1;
//   4. the same again with nothing changed (the fixed cost of a backup run);
//   5. restores of the newest point + fsync: vcbt, restic, borg lz4; each checked by sha256
//      against the lab's own sha256 of the disk;
//   6. full replicas over NBD into fresh sparse files: vcbt (--transport nbd, the lab's
//      endpoint), nbdcopy and qemu-img convert (+ sync) of the same export of a snapshot made
//      for them; each checked by sha256; then vcbt again onto its replica with nothing changed
//      (the fixed cost of a replicate run);
//   7. startup: `vcbt help` against bare `node -e 0`.
//
// Usage: npm run bench [-- --quick] [--reps N] [--size-mib N] [--out FILE]
//   full: 2 GiB disk, 984 MiB allocated, 3 repetitions; --quick: 256 MiB disk (123 MiB
//   allocated), 2 repetitions. Work files go under $BENCH_DIR (default the system temp dir).
import { execFileSync } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLab } from '../test/lab/lab.ts';
import { labConnection } from '../test/helpers/cli-runner.ts';
import { allocatedBytes, apparentBytes, fileSha256, fillDisk, measure, median, MiB, rewriteBlocks, rotated, run, sparseFile, vcbtCommand, type MeasuredRun } from './harness.ts';

const { values: options } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string' },
    'size-mib': { type: 'string' },
    out: { type: 'string', default: join(import.meta.dirname, 'results.json') },
  },
});
const quick = options.quick;
const repetitions = Number(options.reps ?? (quick ? 2 : 3));
const sizeBytes = Number(options['size-mib'] ?? (quick ? 256 : 2048)) * MiB;
/** 984 MiB of 2 GiB, as in the issue's table; the same share of smaller disks. */
const allocatedTargetBytes = Math.round((sizeBytes * 984) / 2048 / (64 * 1024)) * 64 * 1024;
const incrementalPercent = 2;
const vm = 'DC0_H0_VM0';
const diskKey = 2000;
const disk = { vm, key: diskKey, sizeBytes };
if (!(repetitions >= 2)) throw new Error(`--reps ${options.reps}: at least 2 repetitions`);

const paths = {
  full: 'full backup, file transport',
  http: 'full backup, http transport',
  incremental: 'incremental, 2 % in 64 KiB writes',
  fixedBackup: 'fixed cost, backup with nothing changed',
  restore: 'restore, + fsync',
  replicate: 'replicate full, nbd',
  fixedReplicate: 'fixed cost, replicate with nothing changed',
  startup: 'startup, vcbt help',
} as const;
type PathName = (typeof paths)[keyof typeof paths];
/** Per path: the vcbt contender and the peers its ratios are taken against. */
const pathPeers: Record<PathName, { subject: string; peers: string[] }> = {
  [paths.full]: { subject: 'vcbt', peers: ['borg lz4', 'borg zstd,3', 'restic', 'zstd -1'] },
  [paths.http]: { subject: 'vcbt http', peers: ['vcbt file'] },
  [paths.incremental]: { subject: 'vcbt', peers: ['borg lz4', 'restic'] },
  [paths.fixedBackup]: { subject: 'vcbt', peers: ['borg lz4', 'restic'] },
  [paths.restore]: { subject: 'vcbt', peers: ['restic', 'borg lz4'] },
  [paths.replicate]: { subject: 'vcbt', peers: ['nbdcopy', 'qemu-img convert'] },
  [paths.fixedReplicate]: { subject: 'vcbt', peers: [] },
  [paths.startup]: { subject: 'vcbt', peers: ['node -e 0'] },
};

interface RunRecord {
  path: PathName;
  contender: string;
  seconds: number[];
  peakRssMiB: number;
  storedBytes: number | null;
}
const records = new Map<string, RunRecord>();
function record(path: PathName, contender: string, measured: MeasuredRun, storedBytes: number | null): void {
  const key = `${path}\u0000${contender}`;
  const r = records.get(key) ?? { path, contender, seconds: [], peakRssMiB: 0, storedBytes: null };
  r.seconds.push(measured.seconds);
  r.peakRssMiB = Math.max(r.peakRssMiB, measured.peakRssMiB);
  r.storedBytes = storedBytes;
  records.set(key, r);
  const stored = storedBytes === null ? '' : `, ${(storedBytes / MiB).toFixed(1)} MiB stored`;
  console.error(`  ${path} / ${contender}: ${measured.seconds.toFixed(2)} s, ${measured.peakRssMiB.toFixed(0)} MiB RSS${stored}`);
}

async function requireTools(): Promise<void> {
  for (const tool of ['/usr/bin/time', '/usr/bin/restic', '/usr/bin/borg', '/usr/bin/nbdcopy', '/usr/bin/qemu-img', '/usr/bin/zstd']) {
    await access(tool).catch(() => {
      throw new Error(`${tool} is missing: run scripts/install-bench-packages.sh`);
    });
  }
}

function versionOf(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0];
  } catch {
    return 'unknown';
  }
}

function machine(dir: string): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    memoryMiB: Math.round(totalmem() / MiB),
    kernel: release(),
    fileSystem: versionOf('findmnt', ['-no', 'FSTYPE,OPTIONS', '-T', dir]),
    node: process.version,
    commit: versionOf('git', ['-C', import.meta.dirname, 'rev-parse', '--short', 'HEAD']),
    mode: quick ? 'quick' : 'full',
    repetitions,
    diskBytes: sizeBytes,
    allocatedBytes: allocatedTargetBytes,
    peakRss: 'GNU time -f %M (wait4 ru_maxrss of the child: its largest process, all threads)',
    versions: {
      restic: versionOf('restic', ['version']),
      borg: versionOf('borg', ['--version']),
      zstd: versionOf('zstd', ['--version']),
      nbdcopy: versionOf('nbdcopy', ['--version']),
      qemuImg: versionOf('qemu-img', ['--version']),
    },
    loadAverage1m: [] as number[],
  };
}

await requireTools();
const root = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'vcbt-bench-run-'));
const info = machine(root);
const load = info.loadAverage1m as number[];
load.push(loadavg()[0]);
const lab = await startLab({ diskSizes: [sizeBytes] });
try {
  const connection = labConnection(lab);
  const vcbt = (args: string[]) => measure(vcbtCommand([...args, ...connection.flags]), { env: connection.env });
  const vcbtOffline = (args: string[]) => measure(vcbtCommand(args));
  await vcbt(['cbt', 'enable', '--vm', vm]);

  console.error(`filling ${(allocatedTargetBytes / MiB).toFixed(0)} MiB of a ${(sizeBytes / MiB).toFixed(0)} MiB disk (text-like, random, holes)`);
  const dataRuns = await fillDisk(lab, disk, allocatedTargetBytes, 20261125);
  const datastores = await readdir(join(lab.stateDir, 'datastores'));
  const localDs = datastores.find((d) => d.includes('LocalDS_0'));
  if (!localDs) throw new Error(`no LocalDS_0 directory in ${join(lab.stateDir, 'datastores')}: ${datastores.join(', ')}`);
  const datastoreDir = join(lab.stateDir, 'datastores', localDs);
  const flatFile = join(datastoreDir, vm, 'disk1-flat.vmdk');
  const fileTransport = ['--transport', 'file', '--datastore-dir', `LocalDS_0=${datastoreDir}`];
  const nbdTransport = ['--transport', 'nbd', '--nbd-uri', lab.info.nbdUriTemplate];

  // Peers read disk.raw: a copy of the disk's bytes with a stable inode and mtime, so that
  // borg's files cache and restic's parent snapshot see "unchanged" when nothing changed.
  // A backup of one file alone never marks it unchanged in borg's files cache (borg skips
  // caching the files with the newest ctime of a run), so a small `stamp` file, written
  // after disk.raw, goes along, as other files of a VM's directory would.
  const source = join(root, 'disk.raw');
  const stamp = join(root, 'stamp');
  const sourceFiles = ['disk.raw', 'stamp'];
  const refreshSource = async (): Promise<string> => {
    await rm(source, { force: true });
    await run('cp', ['--sparse=always', flatFile, source]);
    const liveSha = (await lab.sha256(vm, diskKey)).sha256;
    if ((await fileSha256(source)) !== liveSha) throw new Error(`${source} differs from the lab disk (the lab wrote elsewhere than ${flatFile}?)`);
    // Seconds after disk.raw's last change (the hashing above), never in the same clock tick.
    await writeFile(stamp, `${new Date().toISOString()}\n`);
    return liveSha;
  };
  let liveSha = await refreshSource();
  console.error(`disk.raw: ${((await allocatedBytes(source)) / MiB).toFixed(0)} MiB allocated`);

  const borgEnv = { BORG_BASE_DIR: join(root, 'borg-base'), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' };
  const resticEnv = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: join(root, 'restic-cache') };
  const checkSha = async (path: string, what: string) => {
    if ((await fileSha256(path)) !== liveSha) throw new Error(`${what}: ${path} differs from the lab disk (sha256)`);
  };

  for (let rep = 0; rep < repetitions; rep++) {
    console.error(`repetition ${rep + 1}/${repetitions} (load ${loadavg()[0].toFixed(1)})`);
    const dir = join(root, `rep${rep}`);
    await mkdir(dir);
    const repos = {
      vcbtFile: join(dir, 'vcbt-file'),
      vcbtHttp: join(dir, 'vcbt-http'),
      borgLz4: join(dir, 'borg-lz4'),
      borgZstd: join(dir, 'borg-zstd'),
      restic: join(dir, 'restic'),
    };
    await vcbtOffline(['init', '--repo', repos.vcbtFile]);
    await vcbtOffline(['init', '--repo', repos.vcbtHttp]);
    await measure(['borg', 'init', '-e', 'none', repos.borgLz4], { env: borgEnv });
    await measure(['borg', 'init', '-e', 'none', repos.borgZstd], { env: borgEnv });
    await measure(['restic', 'init', '-q', '--repository-version', '2', '-r', repos.restic], { env: resticEnv });

    // Backup contenders by name: each runs one backup into its repository (`archive` names borg's).
    const borgCreate = (repo: string, compression: string, archive: string) => measure(['borg', 'create', '-C', compression, `${repo}::${archive}`, ...sourceFiles], { env: borgEnv, cwd: root });
    const resticBackup = () => measure(['restic', '-r', repos.restic, 'backup', '-q', ...sourceFiles], { env: resticEnv, cwd: root });
    const vcbtBackup = (repo: string, transport: string[]) => vcbt(['backup', '--vm', vm, '--repo', repo, '--json', ...transport]);

    // 1. Full backups.
    const zstdOut = join(dir, 'disk.raw.zst');
    const fulls: Array<[string, () => Promise<void>]> = [
      ['vcbt', async () => {
        const m = await vcbtBackup(repos.vcbtFile, fileTransport);
        record(paths.full, 'vcbt', m, await apparentBytes(repos.vcbtFile));
        record(paths.http, 'vcbt file', m, await apparentBytes(repos.vcbtFile));
      }],
      ['vcbt http', async () => record(paths.http, 'vcbt http', await vcbtBackup(repos.vcbtHttp, ['--transport', 'http']), await apparentBytes(repos.vcbtHttp))],
      ['borg lz4', async () => record(paths.full, 'borg lz4', await borgCreate(repos.borgLz4, 'lz4', 'full'), await apparentBytes(repos.borgLz4))],
      ['borg zstd,3', async () => record(paths.full, 'borg zstd,3', await borgCreate(repos.borgZstd, 'zstd,3', 'full'), await apparentBytes(repos.borgZstd))],
      ['restic', async () => record(paths.full, 'restic', await resticBackup(), await apparentBytes(repos.restic))],
      ['zstd -1', async () => record(paths.full, 'zstd -1', await measure(['sh', '-c', 'zstd -1 -q -f "$0" -o "$1" && sync "$1"', source, zstdOut]), await apparentBytes(zstdOut))],
    ];
    for (const [, work] of rotated(fulls, rep)) await work();
    await rm(repos.vcbtHttp, { recursive: true });
    await rm(repos.borgZstd, { recursive: true });
    await rm(zstdOut);

    // 2. The guest rewrites 2 %.
    await rewriteBlocks(lab, disk, dataRuns, incrementalPercent);
    liveSha = await refreshSource();

    // 3. Incrementals, 4. the same with nothing changed; stored = what the run added.
    const repoOf: Record<string, string> = { vcbt: repos.vcbtFile, 'borg lz4': repos.borgLz4, restic: repos.restic };
    const backupOnce = (archive: string): Record<string, () => Promise<MeasuredRun>> => ({
      vcbt: () => vcbtBackup(repos.vcbtFile, fileTransport),
      'borg lz4': () => borgCreate(repos.borgLz4, 'lz4', archive),
      restic: resticBackup,
    });
    for (const [path, archive] of [[paths.incremental, 'incremental'], [paths.fixedBackup, 'nothing-changed']] as const) {
      const contenders = backupOnce(archive);
      for (const name of rotated(Object.keys(contenders), rep)) {
        const before = await apparentBytes(repoOf[name]);
        const m = await contenders[name]();
        record(path, name, m, (await apparentBytes(repoOf[name])) - before);
      }
    }

    // 5. Restores of the newest point, each + fsync, each checked.
    const restoreDir = join(dir, 'restore');
    await mkdir(restoreDir);
    const restores: Record<string, () => Promise<{ m: MeasuredRun; file: string }>> = {
      vcbt: async () => {
        const file = join(restoreDir, 'vcbt.raw');
        return { m: await vcbtOffline(['restore', '--repo', repos.vcbtFile, '--point', 'latest', '--vm', vm, '--disk', String(diskKey), '--to', file, '--json']), file };
      },
      restic: async () => {
        const target = join(restoreDir, 'restic');
        // restic restores the files it was given by relative name directly under --target.
        const file = join(target, 'disk.raw');
        return { m: await measure(['sh', '-c', 'restic -r "$0" restore latest -q --target "$1" && sync "$2"', repos.restic, target, file], { env: resticEnv }), file };
      },
      'borg lz4': async () => {
        const target = join(restoreDir, 'borg');
        await mkdir(target);
        return { m: await measure(['sh', '-c', 'borg extract --sparse "$0::nothing-changed" && sync disk.raw', repos.borgLz4], { env: borgEnv, cwd: target }), file: join(target, 'disk.raw') };
      },
    };
    for (const name of rotated(Object.keys(restores), rep)) {
      const { m, file } = await restores[name]();
      await checkSha(file, `restore by ${name}`);
      record(paths.restore, name, m, null);
      await rm(file);
    }
    for (const repo of Object.values(repos)) await rm(repo, { recursive: true, force: true });

    // 6. Full replicas over NBD; peers read an export of a snapshot made for them (not timed).
    const replicaDir = join(dir, 'replica');
    await mkdir(replicaDir);
    const vcbtReplica = join(replicaDir, 'vcbt.raw');
    const onSnapshot = async (work: (uri: string) => Promise<MeasuredRun>): Promise<MeasuredRun> => {
      const snapshot = (await lab.govmomi(['snapshot-create', vm, 'bench'])) as { moref: string };
      try {
        return await work(lab.info.nbdUriTemplate.replace('{snapshot}', snapshot.moref).replace('{disk}', String(diskKey)));
      } finally {
        await lab.govmomi(['snapshot-remove', vm, snapshot.moref]);
      }
    };
    const replicas: Record<string, () => Promise<{ m: MeasuredRun; file: string }>> = {
      vcbt: async () => ({ m: await vcbt(['replicate', '--vm', vm, '--disk', `${diskKey}=${vcbtReplica}`, '--json', ...nbdTransport]), file: vcbtReplica }),
      nbdcopy: async () => {
        const file = await sparseFile(join(replicaDir, 'nbdcopy.raw'), sizeBytes);
        return { m: await onSnapshot((uri) => measure(['nbdcopy', '--destination-is-zero', '--flush', uri, file])), file };
      },
      'qemu-img convert': async () => {
        const file = join(replicaDir, 'qemu-img.raw');
        return { m: await onSnapshot((uri) => measure(['sh', '-c', 'qemu-img convert -f raw -O raw "$0" "$1" && sync "$1"', uri, file])), file };
      },
    };
    for (const name of rotated(Object.keys(replicas), rep)) {
      const { m, file } = await replicas[name]();
      await checkSha(file, `replica by ${name}`);
      record(paths.replicate, name, m, await allocatedBytes(file));
      if (file !== vcbtReplica) await rm(file);
    }
    const noop = await vcbt(['replicate', '--vm', vm, '--disk', `${diskKey}=${vcbtReplica}`, '--json', ...nbdTransport]);
    const noopSummary = JSON.parse(noop.stdout) as { disks: Array<{ bytesCopied: number }> };
    if (noopSummary.disks[0].bytesCopied !== 0) throw new Error(`replicate with nothing changed copied ${noopSummary.disks[0].bytesCopied} bytes`);
    await checkSha(vcbtReplica, 'replica by vcbt after a run with nothing changed');
    record(paths.fixedReplicate, 'vcbt', noop, 0);

    // 7. Startup.
    const startups: Record<string, () => Promise<MeasuredRun>> = {
      vcbt: () => vcbtOffline(['help']),
      'node -e 0': () => measure([process.execPath, '-e', '0']),
    };
    for (const name of rotated(Object.keys(startups), rep)) record(paths.startup, name, await startups[name](), null);

    await rm(dir, { recursive: true, force: true });
    load.push(loadavg()[0]);
  }
} finally {
  await lab.stop();
  await rm(root, { recursive: true, force: true });
}

// Results: medians, per-repetition ratios, peak RSS.
const runs = [...records.values()];
const find = (path: PathName, contender: string) => runs.find((r) => r.path === path && r.contender === contender);
const ratios: Record<string, Record<string, number>> = {};
const perRepRatios: Record<string, Record<string, number[]>> = {};
for (const [path, { subject, peers }] of Object.entries(pathPeers) as Array<[PathName, { subject: string; peers: string[] }]>) {
  const mine = find(path, subject);
  if (!mine) continue;
  for (const peer of peers) {
    const theirs = find(path, peer);
    if (!theirs) continue;
    const each = mine.seconds.map((s, i) => s / theirs.seconds[i]);
    (perRepRatios[path] ??= {})[peer] = each;
    (ratios[path] ??= {})[peer] = median(each);
  }
}
for (const [label, path, peers] of [['peak RSS, full backup', paths.full, ['borg lz4', 'borg zstd,3', 'restic']], ['peak RSS, restore', paths.restore, ['restic', 'borg lz4']]] as const) {
  const mine = find(path, 'vcbt');
  if (!mine) continue;
  for (const peer of peers) {
    const theirs = find(path, peer);
    if (theirs) (ratios[label] ??= {})[peer] = mine.peakRssMiB / theirs.peakRssMiB;
  }
}

const f2 = (n: number) => n.toFixed(2);
console.log(`${quick ? 'quick' : 'full'} run: ${(sizeBytes / MiB).toFixed(0)} MiB disk, ${(allocatedTargetBytes / MiB).toFixed(0)} MiB allocated, ${repetitions} repetitions, load average ${load.map((l) => l.toFixed(1)).join(' / ')}`);
console.log('');
console.log('| path | contender | median s | each repetition s | peak RSS MiB | stored MiB | vcbt / this, each | vcbt / this, median |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of runs.sort((a, b) => Object.values(paths).indexOf(a.path) - Object.values(paths).indexOf(b.path))) {
  const each = perRepRatios[r.path]?.[r.contender];
  const ratio = ratios[r.path]?.[r.contender];
  console.log(`| ${r.path} | ${r.contender} | ${f2(median(r.seconds))} | ${r.seconds.map(f2).join(', ')} | ${r.peakRssMiB.toFixed(0)} | ${r.storedBytes === null ? '-' : (r.storedBytes / MiB).toFixed(1)} | ${each ? each.map(f2).join(', ') : '-'} | ${ratio === undefined ? '-' : f2(ratio)} |`);
}
for (const label of ['peak RSS, full backup', 'peak RSS, restore']) {
  if (ratios[label]) console.log(`${label}, vcbt / peer: ${Object.entries(ratios[label]).map(([p, v]) => `${p} ${f2(v)}`).join(', ')}`);
}
await writeFile(options.out, `${JSON.stringify({ machine: info, runs, ratios }, null, 2)}\n`);
console.log(`\nwrote ${options.out}`);
