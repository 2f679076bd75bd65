// `vcbt restore-vm` (transport nfc) end to end against the lab, next to reference paths that
// put the same restore point's bytes into the same kind of target in the same run:
//   - the streamOptimized encoding alone: the restore point's disk read from the repository
//     and encoded to nowhere (in this process), the CPU cost the upload carries;
//   - vcbt restore-vm: checks, OVF import, the upload (the lab decodes every upload twice,
//     with its own decoder and with qemu-img convert, and installs the disk; a real ESXi does
//     not do that work), reconfigure, NVRAM; checked by sha256 against the lab disk;
//   - nbdcopy --flush from `vcbt export` of the same restore point (NBD) into the new VM's
//     disk through the lab's writable live NBD endpoint (the VM is powered off): the same
//     bytes into the same target without VDDK, OVF or compression;
//   - vcbt restore of the same disk into a fresh sparse file (the repository's read path).
//
// Usage: node bench/restore-vm.ts [sizeMiB=256] [fillPercent=50]
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Repository } from '../src/repository/repository.ts';
import { encodeStreamOptimized, type StreamStats } from '../src/vmdk/stream-optimized.ts';
import { startLab, type Lab } from '../test/lab/lab.ts';
import { labConnection, runCli } from '../test/helpers/cli-runner.ts';
import { fileSha256, fillDisk, MiB, run, sparseFile, timed } from './harness.ts';

const sizeMiB = Number(process.argv[2] ?? 256);
const fillPercent = Number(process.argv[3] ?? 50);
const sizeBytes = sizeMiB * MiB;
const vm = 'DC0_H0_VM0';
const diskKey = 2000;

async function cli(args: string[], lab: Lab, withServer = true): Promise<string> {
  const connection = labConnection(lab);
  const result = await runCli([...args, ...(withServer ? connection.flags : [])], connection.env);
  if (result.code !== 0) throw new Error(`vcbt ${args.join(' ')} exited ${result.code}: ${result.stdout} ${result.stderr}`);
  return result.stdout;
}

const mibps = (bytes: number, seconds: number) => (seconds > 0 ? (bytes / MiB / seconds).toFixed(0) : '-');

const dir = await mkdtemp(join(tmpdir(), 'vcbt-bench-restore-vm-'));
const lab = await startLab({ diskSizes: [sizeBytes] });
const load = [loadavg()[0]];
try {
  await cli(['cbt', 'enable', '--vm', vm], lab);
  await fillDisk(lab, { vm, key: diskKey, sizeBytes }, Math.round((sizeBytes * fillPercent) / 100 / (64 * 1024)) * 64 * 1024, 7);
  const liveSha = (await lab.sha256(vm, diskKey)).sha256;
  const repo = join(dir, 'repo');
  await cli(['init', '--repo', repo], lab, false);
  const point = (JSON.parse(await cli(['backup', '--vm', vm, '--repo', repo, '--json'], lab)) as { pointId: string }).pointId;

  const repository = await Repository.open(repo);
  const stats: StreamStats = { streamBytes: 0, grainsWritten: 0, grainsZero: 0 };
  const encode = await timed(async () => {
    const disk = await repository.openDisk(point, diskKey);
    try {
      for await (const piece of encodeStreamOptimized(disk, {}, stats)) void piece;
    } finally {
      await disk.close();
    }
  });
  await repository.close();

  const restoreVm = await timed(() => cli(['restore-vm', '--repo', repo, '--point', point, '--name', 'bench-restored', '--json'], lab));
  const made = JSON.parse(restoreVm.value) as { disks: Array<{ key: number; bytesWritten: number }> };
  const newKey = made.disks[0].key;
  if ((await lab.sha256('bench-restored', newKey)).sha256 !== liveSha) throw new Error('restore-vm: the new disk differs from the restore point');

  // nbdcopy from vcbt's NBD export of the point into the new VM's live disk (powered off).
  const socket = join(dir, 'export.sock');
  const exportUri = `nbd+unix:///${point}-${diskKey}?socket=${socket}`;
  const exporter = spawn(process.execPath, [join(import.meta.dirname, '..', 'bin', 'vcbt.ts'), 'export', '--repo', repo, '--point', point, '--disk', String(diskKey), '--socket', socket], { stdio: 'ignore' });
  let nbdcopy: { seconds: number };
  try {
    for (let i = 0; i < 200; i++) {
      if (await run('nbdinfo', ['--size', exportUri]).then(() => true, () => false)) break;
      await sleep(100);
    }
    const target = lab.info.nbdLiveUriTemplate.replace('{vm}', 'bench-restored').replace('{disk}', String(newKey));
    nbdcopy = await timed(() => run('nbdcopy', ['--flush', exportUri, target]));
  } finally {
    exporter.kill('SIGINT');
  }
  if ((await lab.sha256('bench-restored', newKey)).sha256 !== liveSha) throw new Error('nbdcopy: the disk differs from the restore point');

  const file = await sparseFile(join(dir, 'restored.raw'), sizeBytes);
  const restore = await timed(() => cli(['restore', '--repo', repo, '--point', point, '--disk', String(diskKey), '--to', file], lab, false));
  if ((await fileSha256(file)) !== liveSha) throw new Error('restore: the file differs from the restore point');
  load.push(loadavg()[0]);

  console.log(`disk ${sizeMiB} MiB, ${fillPercent}% allocated; load ${load.map((l) => l.toFixed(1)).join(' -> ')}`);
  console.log(`streamOptimized encode only: ${encode.seconds.toFixed(2)} s, ${mibps(sizeBytes, encode.seconds)} MiB/s of disk; stream ${(stats.streamBytes / MiB).toFixed(1)} MiB (${stats.grainsWritten} grains, ${stats.grainsZero} zero grains skipped)`);
  console.log(`vcbt restore-vm (nfc, whole run): ${restoreVm.seconds.toFixed(2)} s, ${mibps(sizeBytes, restoreVm.seconds)} MiB/s of disk; ${(made.disks[0].bytesWritten / MiB).toFixed(1)} MiB uploaded`);
  console.log(`nbdcopy --flush, vcbt export -> lab live NBD of the same disk: ${nbdcopy.seconds.toFixed(2)} s, ${mibps(sizeBytes, nbdcopy.seconds)} MiB/s`);
  console.log(`vcbt restore to a sparse file: ${restore.seconds.toFixed(2)} s, ${mibps(sizeBytes, restore.seconds)} MiB/s`);
} finally {
  await lab.stop();
  await rm(dir, { recursive: true, force: true });
}
