// `vcbt replicate` and `vcbt backup` end to end against the lab (docs/lab.md), next to
// reference tools reading the same frozen snapshot in the same run:
//   - a lab snapshot create + remove alone, through the govmomi test client: the lab's
//     snapshot copies the allocated bytes of each disk (its delta is a full raw copy), which
//     a real ESXi does not do;
//   - nbdcopy --destination-is-zero --flush of the snapshot's disk from the lab's named NBD
//     endpoint to a fresh sparse file, and `cp --sparse=always` + sync of the frozen file;
//   - vcbt replicate, full, with each transport (http, nbd, file) into a fresh target,
//     checked by sha256 against the lab's own hash of the live disk (no writes in between);
//   - vcbt init + full backup (http);
//   - 2% of the disk newly written in scattered 64 KiB blocks (some land on earlier data, so
//     a little more is written in all), then an incremental replicate (http, onto the full
//     http replica, checked by sha256), a replicate with nothing changed (the fixed cost of a
//     run: login, snapshot, CBT query, state file, snapshot removal; subtracted in the "without"
//     column and ratios) and an incremental backup.
//
// Usage: node bench/replicate.ts [sizeMiB=1024] [fillPercent=25]
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, type Lab } from '../test/lab/lab.ts';
import { labConnection, runCli } from '../test/helpers/cli-runner.ts';
import { allocatedBytes, fileSha256, MiB, run, sparseFile as sparseFileOf, timed, writeRandomRuns } from './harness.ts';

const sizeMiB = Number(process.argv[2] ?? 1024);
const fillPercent = Number(process.argv[3] ?? 25);
const incrementalPercent = 2;
const sizeBytes = sizeMiB * MiB;
const vm = 'DC0_H0_VM0';
const diskKey = 2000;
const disk = { vm, key: diskKey, sizeBytes };

interface ReplicaSummary {
  disks: Array<{ mode: string; areas: number; bytesCopied: number; bytesZeroed: number }>;
  elapsedMs: number;
}
interface BackupSummary {
  disks: Array<{ mode: string; bytesRead: number; bytesStored: number }>;
  bytesRead: number;
  bytesStored: number;
  elapsedMs: number;
}
interface SnapshotResult {
  moref: string;
}
interface Row {
  step: string;
  seconds: number;
  bytes: number;
  note: string;
}

const sparseFile = (path: string) => sparseFileOf(path, sizeBytes);
const writeRuns = (lab: Lab, written: Set<number>, percent: number, minBlocks: number, maxBlocks: number) => writeRandomRuns(lab, disk, written, percent, minBlocks, maxBlocks);

async function cli(args: string[], lab: Lab): Promise<string> {
  const connection = labConnection(lab);
  const needsServer = !['init'].includes(args[0]);
  const result = await runCli([...args, ...(needsServer ? connection.flags : [])], connection.env);
  if (result.code !== 0) throw new Error(`vcbt ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

const mibps = (bytes: number, seconds: number) => (seconds > 0 ? (bytes / MiB / seconds).toFixed(0) : '-');
const mib = (bytes: number) => (bytes / MiB).toFixed(1);

const dir = await mkdtemp(join(tmpdir(), 'vcbt-bench-replicate-'));
const lab = await startLab({ diskSizes: [sizeBytes] });
const rows: Row[] = [];
const load = [loadavg()[0]];
try {
  await cli(['cbt', 'enable', '--vm', vm], lab);
  const written = new Set<number>();
  const fill = await timed(() => writeRuns(lab, written, fillPercent, 1, 64));
  console.error(`filled ${mib(fill.value.newBytes)} MiB in ${fill.seconds.toFixed(1)} s`);
  const liveSha = (await lab.sha256(vm, diskKey)).sha256;

  // The fixed cost: a lab snapshot copies the allocated bytes; removal consolidates.
  const snapCost = await timed(async () => {
    const s = (await lab.govmomi(['snapshot-create', vm, 'bench-cost'])) as SnapshotResult;
    await lab.govmomi(['snapshot-remove', vm, s.moref]);
  });
  rows.push({ step: 'lab snapshot create + remove (govmomi client: 2 process starts, 2 logins)', seconds: snapCost.seconds, bytes: 0, note: '' });

  // References on one snapshot of their own (its create/remove not timed).
  const snapshot = (await lab.govmomi(['snapshot-create', vm, 'bench'])) as SnapshotResult;
  const uri = lab.info.nbdUriTemplate.replace('{snapshot}', snapshot.moref).replace('{disk}', String(diskKey));
  const nbdTarget = await sparseFile(join(dir, 'nbdcopy.raw'));
  const nbdcopy = await timed(() => run('nbdcopy', ['--destination-is-zero', '--flush', uri, nbdTarget]));
  if ((await fileSha256(nbdTarget)) !== liveSha) throw new Error('nbdcopy target sha256 differs from the lab disk');
  const nbdcopyBytes = await allocatedBytes(nbdTarget);
  rows.push({ step: 'nbdcopy --destination-is-zero --flush (lab NBD)', seconds: nbdcopy.seconds, bytes: nbdcopyBytes, note: 'bytes = allocated in target' });
  await rm(nbdTarget);
  const frozen = join(lab.stateDir, 'nbd', 'snapshots', `${snapshot.moref}_${diskKey}`);
  const cpTarget = join(dir, 'cp.raw');
  const cp = await timed(async () => {
    await run('cp', ['--sparse=always', frozen, cpTarget]);
    await run('sync', [cpTarget]);
  });
  rows.push({ step: 'cp --sparse=always + sync (frozen file)', seconds: cp.seconds, bytes: await allocatedBytes(cpTarget), note: 'bytes = allocated in target' });
  await rm(cpTarget);
  await lab.govmomi(['snapshot-remove', vm, snapshot.moref]);
  load.push(loadavg()[0]);

  // Full replicas, one per transport.
  const datastores = await readdir(join(lab.stateDir, 'datastores'));
  const localDs = datastores.find((d) => d.includes('LocalDS_0'));
  if (!localDs) throw new Error(`no LocalDS_0 directory in ${join(lab.stateDir, 'datastores')}: ${datastores.join(', ')}`);
  const transports: Array<[string, string[]]> = [
    ['http', ['--transport', 'http']],
    ['nbd', ['--transport', 'nbd', '--nbd-uri', lab.info.nbdUriTemplate]],
    ['file', ['--transport', 'file', '--datastore-dir', `LocalDS_0=${join(lab.stateDir, 'datastores', localDs)}`]],
  ];
  const httpReplica = join(dir, 'replica-http.raw');
    for (const [name, flags] of transports) {
    const target = join(dir, `replica-${name}.raw`);
    const r = await timed(async () => JSON.parse(await cli(['replicate', '--vm', vm, '--to', target, '--json', ...flags], lab)) as ReplicaSummary);
    if ((await fileSha256(target)) !== liveSha) throw new Error(`replica (${name}) sha256 differs from the lab disk`);
    const d = r.value.disks[0];
    rows.push({ step: `vcbt replicate full, ${name}`, seconds: r.seconds, bytes: d.bytesCopied, note: `${d.mode}, ${d.areas} areas` });
    if (target !== httpReplica) await rm(target, { force: true });
  }
  load.push(loadavg()[0]);

  // Backup: a fresh repository, full.
  const repo = join(dir, 'repo');
  await cli(['init', '--repo', repo], lab);
  const fullBackup = await timed(async () => JSON.parse(await cli(['backup', '--vm', vm, '--repo', repo, '--json'], lab)) as BackupSummary);
  rows.push({ step: 'vcbt backup full, http', seconds: fullBackup.seconds, bytes: fullBackup.value.bytesRead, note: `stored ${mib(fullBackup.value.bytesStored)} MiB, repo ${mib(await allocatedBytes(repo))} MiB` });

  // Incremental round: ~2% more in scattered 64 KiB blocks.
  const more = await writeRuns(lab, written, incrementalPercent, 1, 1);
  const liveSha2 = (await lab.sha256(vm, diskKey)).sha256;
  const incReplica = await timed(async () => JSON.parse(await cli(['replicate', '--vm', vm, '--to', httpReplica, '--json'], lab)) as ReplicaSummary);
  if ((await fileSha256(httpReplica)) !== liveSha2) throw new Error('incremental replica sha256 differs from the lab disk');
  const ir = incReplica.value.disks[0];
  rows.push({ step: 'vcbt replicate incremental, http', seconds: incReplica.seconds, bytes: ir.bytesCopied, note: `${ir.mode}, ${ir.areas} areas, ${mib(more.writtenBytes)} MiB written` });
  // The fixed cost of a run: login, snapshot, CBT query, state file, snapshot removal.
  const noop = await timed(async () => JSON.parse(await cli(['replicate', '--vm', vm, '--to', httpReplica, '--json'], lab)) as ReplicaSummary);
  rows.push({ step: 'vcbt replicate, nothing changed, http', seconds: noop.seconds, bytes: noop.value.disks[0].bytesCopied, note: `${noop.value.disks[0].mode}, ${noop.value.disks[0].areas} areas` });
  const incBackup = await timed(async () => JSON.parse(await cli(['backup', '--vm', vm, '--repo', repo, '--json'], lab)) as BackupSummary);
  rows.push({ step: 'vcbt backup incremental, http', seconds: incBackup.seconds, bytes: incBackup.value.bytesRead, note: `${incBackup.value.disks[0].mode}, stored ${mib(incBackup.value.bytesStored)} MiB, repo ${mib(await allocatedBytes(repo))} MiB` });
  load.push(loadavg()[0]);

  // The fixed cost of a vcbt run, measured: everything a replicate does except moving data.
  const fixed = noop.seconds;
  console.log(`disk ${sizeMiB} MiB, ${fillPercent}% filled (${mib(fill.value.newBytes)} MiB allocated), load average ${load.map((l) => l.toFixed(1)).join(' / ')}`);
  console.log('');
  console.log('| step | seconds | MiB | MiB/s | MiB/s without the fixed cost of a run | note |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const vcbt = r.step.startsWith('vcbt');
    // Meaningless when the fixed cost is most of the time (small disks, tiny incrementals).
    const net = vcbt && r.seconds - fixed > 0.2 * r.seconds ? mibps(r.bytes, r.seconds - fixed) : '-';
    console.log(`| ${r.step} | ${r.seconds.toFixed(2)} | ${r.bytes ? mib(r.bytes) : '-'} | ${r.bytes ? mibps(r.bytes, r.seconds) : '-'} | ${net} | ${r.note} |`);
  }
  console.log('');
  console.log('vcbt full replicate speed / nbdcopy speed (same bytes; whole run / without the fixed cost of a run, measured by the replicate with nothing changed):');
  for (const r of rows.filter((x) => x.step.startsWith('vcbt replicate full'))) {
    console.log(`  ${r.step}: ${(nbdcopy.seconds / r.seconds).toFixed(2)}x / ${(nbdcopy.seconds / (r.seconds - fixed)).toFixed(2)}x`);
  }
} finally {
  await lab.stop();
  await rm(dir, { recursive: true, force: true });
}
