// `npm run bench:service`: the service's figures (issue 14, "Benchmarks"), into
// bench/service-results.json.
//
// 1. Job parallelism: one backup job over all lab VMs (`vcbt job run`, full backups into a
//    fresh repository) with limits.total = limits.perHost = 1, 2 and 4, next to the same VMs
//    backed up one by one with `vcbt backup` (one process each, in sequence). Wall time of
//    each (child processes, login and snapshots included) and peak RSS (GNU time).
// 2. The daemon's memory: `vcbt serve` idle (after start-up settles), then its peak RSS
//    (/proc/PID/status, sampled every 100 ms) while it runs the job over all VMs.
// 3. API latency: `GET /api/vms` with a few thousand simulated VMs in the catalog (each with
//    three runs' tasks, written straight into the catalog), measured from a client on the
//    same machine: median and 95th percentile of sequential requests, and the answer's size.
//
// Usage: npm run bench:service [-- --size-mib N] [--reps N] [--vms N] [--out FILE]
//   defaults: 64 MiB disks (half allocated) per VM, 1 repetition, 3000 simulated VMs.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { startLab, type Lab } from '../test/lab/lab.ts';
import { labConnection } from '../test/helpers/cli-runner.ts';
import { openSqliteCatalog } from '../src/service/catalog/sqlite.ts';
import { fillDisk, measure, median, MiB, run, vcbtCommand } from './harness.ts';

const { values: options } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '64' },
    reps: { type: 'string', default: '1' },
    vms: { type: 'string', default: '3000' },
    out: { type: 'string', default: join(import.meta.dirname, 'service-results.json') },
  },
});
const sizeBytes = Number(options['size-mib']) * MiB;
const repetitions = Number(options.reps);
const simulatedVms = Number(options.vms);

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function vcbt(lab: Lab, args: string[], connect: boolean): Promise<string> {
  const connection = labConnection(lab);
  const { stdout } = await run(process.execPath, [...vcbtCommand(args).slice(1), ...(connect ? connection.flags : [])], { env: { ...process.env, ...connection.env }, maxBuffer: 64 * MiB });
  return stdout;
}

function config(lab: Lab, dir: string, name: string, parallel: number): string {
  return `servers:
  lab: { url: "${lab.info.sdk}", user: "${lab.info.username}", passwordFile: ${join(dir, 'lab.password')}, thumbprint: "${lab.info.thumbprintSha1}" }
repositories:
  main: { path: ${join(dir, `${name}-repo`)} }
catalog: { path: ${join(dir, `${name}.sqlite`)} }
daemon: { listen: "127.0.0.1:0", stopTimeout: 60s }
jobs:
  all:
    type: backup
    server: lab
    repository: main
    vms: { include: ["*"] }
    limits: { total: ${parallel}, perHost: ${parallel}, perDatastore: ${parallel} }
    retries: { count: 0 }
    waitBusy: 0
`;
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
}

function serve(configFile: string): { pid: number; url: Promise<string>; stop(): Promise<void> } {
  const child = spawn(process.execPath, vcbtCommand(['serve', '--config', configFile]).slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const url = new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      log += d.toString();
      const match = /API listening on (http:\/\/\S+)/.exec(log);
      if (match) resolve(match[1] as string);
    });
    child.on('exit', (code) => reject(new Error(`vcbt serve exited ${code}:\n${log}`)));
  });
  return {
    pid: child.pid as number,
    url,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function get(url: string, token: string): Promise<{ status: number; bytes: number; ms: number; body: string }> {
  const start = performance.now();
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const body = await response.text();
  return { status: response.status, bytes: Buffer.byteLength(body), ms: performance.now() - start, body };
}

const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((values.length * p) / 100))] as number;
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

const lab = await startLab({ diskSizes: [sizeBytes], otherDiskBytes: sizeBytes });
const dir = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'vcbt-bench-service-'));
const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, loadavg: loadavg().map((l) => round(l)) },
  disks: { sizeMiB: sizeBytes / MiB, allocatedMiB: sizeBytes / 2 / MiB },
};
try {
  await writeFile(join(dir, 'lab.password'), lab.info.password, { mode: 0o600 });
  const vms = lab.info.vms.map((v) => v.name);
  for (const [i, name] of vms.entries()) {
    await fillDisk(lab, { vm: name, key: 2000, sizeBytes }, sizeBytes / 2, 100 + i);
    await vcbt(lab, ['cbt', 'enable', '--vm', name], true);
  }
  say(`bench:service: ${vms.length} VMs (${vms.join(', ')}), one ${sizeBytes / MiB} MiB disk each, ${sizeBytes / 2 / MiB} MiB allocated; ${repetitions} repetition(s)`);

  // 1. Job parallelism against one by one.
  const times: Record<string, number[]> = { oneByOne: [], 'job-1': [], 'job-2': [], 'job-4': [] };
  const peaks: Record<string, number[]> = { oneByOne: [], 'job-1': [], 'job-2': [], 'job-4': [] };
  for (let rep = 0; rep < repetitions; rep++) {
    const order = rep % 2 === 0 ? ['oneByOne', 'job-1', 'job-2', 'job-4'] : ['job-4', 'job-2', 'job-1', 'oneByOne'];
    for (const contender of order) {
      const name = `${contender}-${rep}`;
      const repo = join(dir, `${name}-repo`);
      await vcbt(lab, ['init', '--repo', repo], false);
      if (contender === 'oneByOne') {
        let seconds = 0;
        let peak = 0;
        for (const vm of vms) {
          const m = await measure(vcbtCommand(['backup', '--vm', vm, '--repo', repo, ...labConnection(lab).flags]), { env: labConnection(lab).env });
          seconds += m.seconds;
          peak = Math.max(peak, m.peakRssMiB);
        }
        times[contender]!.push(seconds);
        peaks[contender]!.push(peak);
      } else {
        const parallel = Number(contender.split('-')[1]);
        const file = join(dir, `${name}.yaml`);
        await writeFile(file, config(lab, dir, name, parallel));
        const m = await measure(vcbtCommand(['job', 'run', 'all', '--config', file]));
        times[contender]!.push(m.seconds);
        peaks[contender]!.push(m.peakRssMiB);
      }
      say(`  ${contender.padEnd(9)} rep ${rep + 1}: ${round(times[contender]!.at(-1)!)} s, peak RSS ${round(peaks[contender]!.at(-1)!, 1)} MiB`);
    }
  }
  const totalMiB = (vms.length * sizeBytes) / 2 / MiB;
  results.jobParallelism = Object.fromEntries(
    Object.entries(times).map(([k, v]) => [k, { medianSeconds: round(median(v)), mibPerSecond: round(totalMiB / median(v)), peakRssMiB: round(Math.max(...peaks[k]!), 1), runs: v.map((x) => round(x)) }]),
  );

  // 2. The daemon's memory, idle and during a job (parallelism 4).
  const daemonConfig = join(dir, 'daemon.yaml');
  await writeFile(daemonConfig, config(lab, dir, 'daemon', 4));
  await vcbt(lab, ['init', '--repo', join(dir, 'daemon-repo')], false);
  const token = (await vcbt(lab, ['token', 'create', '--config', daemonConfig], false)).trim();
  const daemon = serve(daemonConfig);
  const base = await daemon.url;
  await sleep(3000);
  const idleBytes = await rssBytes(daemon.pid);
  const started = await fetch(`${base}/api/jobs/all/run`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  const { runId } = (await started.json()) as { runId: number };
  let peakBytes = idleBytes;
  for (;;) {
    peakBytes = Math.max(peakBytes, await rssBytes(daemon.pid));
    const { body } = await get(`${base}/api/runs/${runId}`, token);
    if ((JSON.parse(body) as { run: { status: string } }).run.status !== 'running') break;
    await sleep(100);
  }
  const afterBytes = await rssBytes(daemon.pid);
  await daemon.stop();
  results.daemonMemory = { idleRssMiB: round(idleBytes / MiB, 1), peakRssDuringJobMiB: round(peakBytes / MiB, 1), afterJobRssMiB: round(afterBytes / MiB, 1), jobParallelism: 4, vms: vms.length };
  say(`  daemon RSS: idle ${round(idleBytes / MiB, 1)} MiB, peak during the job ${round(peakBytes / MiB, 1)} MiB, after ${round(afterBytes / MiB, 1)} MiB`);

  // 3. GET /api/vms with thousands of simulated VMs in the catalog.
  const catalog = openSqliteCatalog(join(dir, 'daemon.sqlite'));
  const day = 86_400_000;
  for (let r = 0; r < 3; r++) {
    const startedAt = new Date(Date.now() - (3 - r) * day).toISOString();
    const id = await catalog.startRun({ job: 'all', jobType: 'backup', trigger: 'schedule', startedAt, host: 'bench', pid: 1 });
    for (let v = 0; v < simulatedVms; v++) {
      const taskId = await catalog.startTask(id, { vm: `sim-vm-${v}`, moref: `vm-sim-${v}`, host: `esx-${v % 32}`, startedAt });
      const failed = (v + r) % 17 === 0;
      await catalog.endTask(taskId, {
        status: failed ? 'failed' : 'success',
        endedAt: new Date(Date.parse(startedAt) + 60_000).toISOString(),
        attempts: failed ? 3 : 1,
        mode: 'incremental',
        reasonCodes: ['CBT_INCREMENTAL'],
        bytesRead: 1000 * v,
        bytesStored: 400 * v,
        pointId: failed ? null : `sim-point-${r}-${v}`,
        error: failed ? { code: 'VSPHERE_FAULT', message: 'simulated' } : null,
        warnings: [],
      });
    }
    await catalog.endRun(id, { status: 'warning', endedAt: new Date(Date.parse(startedAt) + 3_600_000).toISOString(), error: null });
  }
  await catalog.close();
  const daemon2 = serve(daemonConfig);
  const base2 = await daemon2.url;
  await sleep(2000);
  const idleLargeBytes = await rssBytes(daemon2.pid);
  const latencies: number[] = [];
  let answerBytes = 0;
  let count = 0;
  await get(`${base2}/api/vms`, token); // warm-up
  for (let i = 0; i < 30; i++) {
    const answer = await get(`${base2}/api/vms`, token);
    if (answer.status !== 200) throw new Error(`GET /api/vms answered ${answer.status}`);
    latencies.push(answer.ms);
    answerBytes = answer.bytes;
    count = (JSON.parse(answer.body) as { vms: unknown[] }).vms.length;
  }
  const metricsLatencies: number[] = [];
  for (let i = 0; i < 10; i++) metricsLatencies.push((await get(`${base2}/metrics`, token)).ms);
  await daemon2.stop();
  results.apiLatency = {
    vmsInCatalog: count,
    tasksInCatalog: 3 * simulatedVms + vms.length,
    getVms: { medianMs: round(median(latencies)), p95Ms: round(percentile(latencies, 95)), answerKiB: round(answerBytes / 1024, 1), requests: latencies.length },
    getMetrics: { medianMs: round(median(metricsLatencies)), p95Ms: round(percentile(metricsLatencies, 95)), requests: metricsLatencies.length },
    daemonIdleRssMiB: round(idleLargeBytes / MiB, 1),
  };
  say(`  GET /api/vms with ${count} VMs: median ${round(median(latencies))} ms, p95 ${round(percentile(latencies, 95))} ms, ${round(answerBytes / 1024, 1)} KiB; /metrics median ${round(median(metricsLatencies))} ms`);
  await writeFile(options.out, `${JSON.stringify(results, null, 2)}\n`);
  say(`results: ${options.out}`);
} finally {
  await lab.stop();
  await rm(dir, { recursive: true, force: true });
}
