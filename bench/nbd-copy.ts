// The copy of `vcbt replicate --transport nbd` next to nbdcopy, on one frozen lab snapshot, to
// find where a request costs vcbt more and to choose in-flight depth, piece size and
// connection count from a sweep.
//
// Terms: a *variant* is vcbt's data path (bench/nbd-copy-driver.ts: the reconnecting NBD
// reader, copyAreas, a sparse target file, flush) with one setting "pieceKiB:inFlight:
// connections" (0 or an empty field = vcbt's default); *server CPU* is the user + system CPU
// time the lab's NBD side (the lab process, whose relay sits in front of nbdkit, and its
// nbdkit children) spent during one run, from /proc/PID/stat.
//
// The lab disk is filled as bench/run.ts fills it (48 % in 64 KiB .. 8 MiB runs, text-like and
// random); areas are the written runs, merged (what a full replicate gets from CBT). Each
// repetition runs every contender once, in a rotated order, into a fresh sparse file; every
// target is checked by sha256 against the lab's.
//
// Usage: node bench/nbd-copy.ts [--size-mib 1024] [--reps 3] [--variants "default,256:64:4,..."]
//                               [--nbdcopy-args "--requests=16"] [--strace]
//   --compare-tree DIR: also run DIR/bench/nbd-copy-driver.ts (another checkout: before/after).
//   --strace: also count the server's system calls (strace -c -f on its processes) per run.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLab } from '../test/lab/lab.ts';
import { union } from '../src/extents/extent.ts';
import { fileSha256, fillDisk, median, MiB, rotated } from './harness.ts';

const { values: options } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    reps: { type: 'string', default: '3' },
    variants: { type: 'string', default: 'default' },
    'nbdcopy-args': { type: 'string', default: '' },
    strace: { type: 'boolean', default: false },
    'compare-tree': { type: 'string', multiple: true, default: [] },
  },
});
const sizeBytes = Number(options['size-mib']) * MiB;
const repetitions = Number(options.reps);
const vm = 'DC0_H0_VM0';
const diskKey = 2000;
const allocatedTargetBytes = Math.round((sizeBytes * 984) / 2048 / (64 * 1024)) * 64 * 1024;

interface Sample {
  wallS: number;
  userS: number;
  sysS: number;
  peakMiB: number;
  serverCpuS: number;
  syscalls?: string;
}

const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number[]>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone
    }
  }
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...(parents.get(all[i]) ?? []));
  return all;
}

async function cpuSeconds(pids: number[]): Promise<number> {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    } catch {
      // gone
    }
  }
  return ticks / ticksPerSecond;
}

async function timedChild(command: string[], serverPids: number[]): Promise<Sample> {
  const dir = await mkdtemp(join(tmpdir(), 'vcbt-bench-nbdcopy-'));
  const rusage = join(dir, 'rusage');
  let tracer: ReturnType<typeof spawn> | null = null;
  const traceFile = join(dir, 'strace');
  if (options.strace) {
    tracer = spawn('strace', ['-c', '-f', '-o', traceFile, ...serverPids.flatMap((p) => ['-p', String(p)])], { stdio: 'ignore' });
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const serverBefore = await cpuSeconds(serverPids);
  const start = performance.now();
  let stderr = '';
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-o', rusage, '-f', '%U %S %M', ...command], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', resolve);
  });
  const wallS = (performance.now() - start) / 1000;
  const serverCpuS = (await cpuSeconds(serverPids)) - serverBefore;
  let syscalls: string | undefined;
  if (tracer) {
    tracer.kill('SIGINT');
    await new Promise((resolve) => tracer!.on('close', resolve));
    const lines = (await readFile(traceFile, 'utf8')).split('\n').filter((l) => /^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+/.test(l));
    syscalls = lines.slice(0, 6).map((l) => { const f = l.trim().split(/\s+/); return `${f.at(-1)} ${f[3]}`; }).join(', ');
  }
  const [userS, sysS, peakKiB] = (await readFile(rusage, 'utf8').catch(() => '0 0 0')).trim().split('\n').at(-1)!.split(' ').map(Number);
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  if (code !== 0) throw new Error(`${command.join(' ')} exited ${code}: ${stderr.slice(-2000)}`);
  return { wallS, userS, sysS, peakMiB: peakKiB / 1024, serverCpuS, syscalls };
}

const dir = await mkdtemp(join(tmpdir(), 'vcbt-bench-nbd-copy-'));
const lab = await startLab({ diskSizes: [sizeBytes] });
try {
  const runs = await fillDisk(lab, { vm, key: diskKey, sizeBytes }, allocatedTargetBytes, 7);
  const areas = union(runs);
  const areasFile = join(dir, 'areas.csv');
  await writeFile(areasFile, areas.map((a) => `${a.offsetBytes},${a.lengthBytes}`).join('\n') + '\n');
  const sha = (await lab.sha256(vm, diskKey)).sha256;
  const snapshot = (await lab.govmomi(['snapshot-create', vm, 'bench'])) as { moref: string };
  const uri = lab.info.nbdUriTemplate.replace('{snapshot}', snapshot.moref).replace('{disk}', String(diskKey));
  const serverPids = await descendants(lab.info.pid);
  const target = join(dir, 'target.raw');
  const node = process.execPath;
  const driver = join(import.meta.dirname, 'nbd-copy-driver.ts');
  const contenders: Record<string, string[]> = {
    nbdcopy: ['nbdcopy', '--destination-is-zero', '--flush', ...options['nbdcopy-args'].split(' ').filter(Boolean), uri, target],
  };
  for (const variant of options.variants.split(',')) {
    const [piece = '', inFlight = '', connections = ''] = variant === 'default' ? [] : variant.split(':');
    contenders[`vcbt ${variant}`] = [node, driver, uri, target, areasFile, piece || '0', inFlight || '0', ...(connections ? [connections] : [])];
  }
  for (const tree of options['compare-tree']) {
    contenders[`vcbt ${tree}`] = [node, join(tree, 'bench', 'nbd-copy-driver.ts'), uri, target, areasFile, '0', '0'];
  }
  const samples = new Map<string, Sample[]>(Object.keys(contenders).map((name) => [name, []]));
  const loads = [loadavg()[0]];
  for (let rep = 0; rep < repetitions; rep++) {
    for (const name of rotated(Object.keys(contenders), rep)) {
      await rm(target, { force: true });
      execFileSync('truncate', ['-s', String(sizeBytes), target]);
      const sample = await timedChild(contenders[name], serverPids);
      if ((await fileSha256(target)) !== sha) throw new Error(`${name}: target sha256 differs from the lab disk`);
      samples.get(name)!.push(sample);
      console.error(`rep ${rep + 1} ${name}: ${sample.wallS.toFixed(2)} s, client cpu ${(sample.userS + sample.sysS).toFixed(2)} s, server cpu ${sample.serverCpuS.toFixed(2)} s${sample.syscalls ? `, server syscalls: ${sample.syscalls}` : ''}`);
    }
    loads.push(loadavg()[0]);
  }
  const copiedMiB = areas.reduce((sum, a) => sum + a.lengthBytes, 0) / MiB;
  console.log(`disk ${sizeBytes / MiB} MiB, ${copiedMiB.toFixed(0)} MiB in ${areas.length} areas, ${repetitions} repetitions, load average ${loads.map((l) => l.toFixed(1)).join(' / ')}`);
  console.log('');
  console.log('| contender | wall s, median | each | MiB/s | client CPU s (user+sys) | server CPU s | peak RSS MiB | wall / nbdcopy, median |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  const base = samples.get('nbdcopy')!;
  for (const [name, list] of samples) {
    const wall = median(list.map((s) => s.wallS));
    const ratios = list.map((s, i) => s.wallS / base[i].wallS);
    console.log(`| ${name} | ${wall.toFixed(2)} | ${list.map((s) => s.wallS.toFixed(2)).join(', ')} | ${(copiedMiB / wall).toFixed(0)} | ${median(list.map((s) => s.userS + s.sysS)).toFixed(2)} | ${median(list.map((s) => s.serverCpuS)).toFixed(2)} | ${median(list.map((s) => s.peakMiB)).toFixed(0)} | ${median(ratios).toFixed(2)} |`);
  }
  await lab.govmomi(['snapshot-remove', vm, snapshot.moref]);
} finally {
  await lab.stop();
  await rm(dir, { recursive: true, force: true });
}
