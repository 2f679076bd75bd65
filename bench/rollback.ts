// An in-place rollback of 2 % changed blocks next to a full restore of the same disk, both
// through the lab's writable live NBD endpoint onto the powered-off VM's disk (docs/lab.md):
//   - the disk is filled (fillPercent of it, text-like and random runs), CBT enabled;
//   - per repetition: an incremental backup (not timed), 2 % of the disk rewritten by the
//     guest in single 64 KiB blocks of existing data, the VM powered off, then
//     `vcbt restore --in-place` to that backup's point (timed): only the areas CBT lists since
//     the point's ChangeId are written; the disk is checked by sha256 against the point;
//   - per repetition a rollback with nothing changed since the backup (the fixed cost: login,
//     manifest, CBT query, the NBD connection);
//   - then per repetition the same guest change and a full restore of the same point onto
//     the same live disk (`vcbt restore --disk 2000 --to nbd://…/{vm}/2000`, timed): every
//     byte is written (data as writes, zero chunks as zero writes), checked the same way.
// Both are whole CLI runs in this process (login, manifest, the work, flush); the rollback
// also queries CBT. Rollbacks run first: a full restore marks every block changed since the
// point, which would make a later rollback to it a full one.
//
// Usage: node bench/rollback.ts [sizeMiB=512] [fillPercent=50] [reps=3]
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, type Lab } from '../test/lab/lab.ts';
import { labConnection, runCli } from '../test/helpers/cli-runner.ts';
import { fillDisk, median, MiB, rewriteBlocks, timed } from './harness.ts';

const sizeMiB = Number(process.argv[2] ?? 512);
const fillPercent = Number(process.argv[3] ?? 50);
const reps = Number(process.argv[4] ?? 3);
const changedPercent = 2;
const sizeBytes = sizeMiB * MiB;
const vm = 'DC0_H0_VM0';
const key = 2000;
const disk = { vm, key, sizeBytes };

async function cli(lab: Lab, args: string[]): Promise<string> {
  const connection = labConnection(lab);
  const result = await runCli([...args, ...(args[0] === 'init' ? [] : connection.flags)], connection.env);
  if (result.code !== 0) throw new Error(`vcbt ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

async function power(lab: Lab, state: 'on' | 'off'): Promise<void> {
  await lab.govmomi(['power', vm, state]).catch(() => undefined); // already in that state
}

const mib = (bytes: number) => (bytes / MiB).toFixed(1);
const dir = await mkdtemp(join(tmpdir(), 'vcbt-bench-rollback-'));
const lab = await startLab({ diskSizes: [sizeBytes] });
const repo = join(dir, 'repo');
const load = [loadavg()[0]];
try {
  await cli(lab, ['cbt', 'enable', '--vm', vm]);
  const runs = await fillDisk(lab, disk, Math.round((sizeBytes * fillPercent) / 100 / 65536) * 65536, 7);
  await cli(lab, ['init', '--repo', repo]);
  const liveUri = lab.info.nbdLiveUriTemplate.replace('{vm}', vm).replace('{disk}', String(key));

  /** A backup of the VM as it is now: its point id and the disk's sha256. */
  async function backup(): Promise<{ pointId: string; sha: string }> {
    await power(lab, 'on');
    const summary = JSON.parse(await cli(lab, ['backup', '--vm', vm, '--repo', repo, '--json'])) as { pointId: string };
    return { pointId: summary.pointId, sha: (await lab.sha256(vm, key)).sha256 };
  }

  const rollbacks: Array<{ seconds: number; bytes: number; areas: number; mode: string }> = [];
  for (let rep = 0; rep < reps; rep++) {
    const point = await backup();
    await rewriteBlocks(lab, disk, runs, changedPercent);
    await power(lab, 'off');
    const r = await timed(async () => JSON.parse(await cli(lab, ['restore', '--repo', repo, '--point', point.pointId, '--vm', vm, '--in-place', '--transport', 'nbd', '--nbd-uri', lab.info.nbdLiveUriTemplate, '--json'])) as { disks: Array<{ mode: string; areas: number; bytesWritten: number }> });
    if ((await lab.sha256(vm, key)).sha256 !== point.sha) throw new Error('the rolled-back disk differs from the restore point');
    const d = r.value.disks[0];
    rollbacks.push({ seconds: r.seconds, bytes: d.bytesWritten, areas: d.areas, mode: d.mode });
  }
  // The fixed cost of a rollback: login, manifest, CBT query, NBD connection, nothing to write.
  const idle: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const point = await backup();
    await power(lab, 'off');
    idle.push((await timed(() => cli(lab, ['restore', '--repo', repo, '--point', point.pointId, '--vm', vm, '--in-place', '--transport', 'nbd', '--nbd-uri', lab.info.nbdLiveUriTemplate, '--json']))).seconds);
  }
  load.push(loadavg()[0]);

  const point = await backup();
  const fulls: Array<{ seconds: number; bytes: number }> = [];
  for (let rep = 0; rep < reps; rep++) {
    await rewriteBlocks(lab, disk, runs, changedPercent);
    await power(lab, 'off');
    const r = await timed(async () => JSON.parse(await cli(lab, ['restore', '--repo', repo, '--point', point.pointId, '--disk', String(key), '--to', liveUri, '--json'])) as { bytesWritten: number; bytesZero: number });
    if ((await lab.sha256(vm, key)).sha256 !== point.sha) throw new Error('the fully restored disk differs from the restore point');
    fulls.push({ seconds: r.seconds, bytes: r.value.bytesWritten + r.value.bytesZero });
  }
  load.push(loadavg()[0]);

  console.log(`disk ${sizeMiB} MiB, ${fillPercent} % filled, ${changedPercent} % rewritten per repetition, ${reps} repetitions; load average ${load.map((l) => l.toFixed(1)).join(' / ')}`);
  console.log('');
  console.log('| path | median s | each s | MiB written (data + zero writes) | note |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(`| vcbt restore --in-place (rollback) | ${median(rollbacks.map((r) => r.seconds)).toFixed(2)} | ${rollbacks.map((r) => r.seconds.toFixed(2)).join(', ')} | ${rollbacks.map((r) => mib(r.bytes)).join(', ')} | ${rollbacks.map((r) => `${r.mode}, ${r.areas} areas`).join('; ')} |`);
  console.log(`| vcbt restore --in-place, nothing changed (fixed cost) | ${median(idle).toFixed(2)} | ${idle.map((x) => x.toFixed(2)).join(', ')} | 0 | login, manifest, CBT query, NBD connection |`);
  console.log(`| vcbt restore --to the live disk (full) | ${median(fulls.map((r) => r.seconds)).toFixed(2)} | ${fulls.map((r) => r.seconds.toFixed(2)).join(', ')} | ${fulls.map((r) => mib(r.bytes)).join(', ')} | every byte |`);
  console.log('');
  console.log(`full restore time / rollback time, medians: ${(median(fulls.map((r) => r.seconds)) / median(rollbacks.map((r) => r.seconds))).toFixed(1)}x`);
} finally {
  await lab.stop();
  await rm(dir, { recursive: true, force: true });
}
