// The catalog with real job runs against the lab: `vcbt job run` records the run, its VM's
// task (mode, reason codes, bytes, restore point) and log lines, `vcbt job status` shows them;
// a `job run` child process SIGKILLed mid-copy leaves its run `running` until the next start,
// which marks it (and its VM) `interrupted`, and the next run removes the snapshot it left.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLab, type Lab } from '../lab/lab.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { openSqliteCatalog } from '../../src/service/catalog/sqlite.ts';
import type { JobStatusDocument } from '../../src/cli/json-documents.ts';

const bin = join(import.meta.dirname, '../../bin/vcbt.ts');
const VM = 'DC0_H0_VM1';
let lab: Lab;
let dir: string;
let configFile: string;

before(async () => {
  lab = await startLab({ otherDiskBytes: 2 * 1024 * 1024, diskSizes: [1024 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-catalog-'));
  assert.equal((await runCli(['init', '--repo', join(dir, 'repo')])).code, 0);
  await writeFile(join(dir, 'lab.password'), lab.info.password, { mode: 0o600 });
  configFile = join(dir, 'vcbt.yaml');
  await writeFile(
    configFile,
    `servers:
  lab: { url: "${lab.info.sdk}", user: "${lab.info.username}", passwordFile: lab.password, thumbprint: "${lab.info.thumbprintSha1}" }
repositories:
  main: { path: repo }
catalog: { path: state/catalog.sqlite, keepHistory: 30d }
jobs:
  one:
    type: backup
    server: lab
    repository: main
    vms: { include: ["${VM}"] }
    retries: { count: 0 }
    waitBusy: 0
`,
  );
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function status(): Promise<JobStatusDocument> {
  const r = await runCli(['job', 'status', '--config', configFile, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as JobStatusDocument;
}

test('job run records the run, its task and log lines; job status shows them', async () => {
  const run = await runCli(['job', 'run', 'one', '--config', configFile, '--json']);
  assert.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as { vms: Array<{ pointId: string; bytesRead: number; bytesWritten: number }> };
  const doc = await status();
  assert.equal(doc.type, 'job-status');
  const [job] = doc.jobs;
  assert.equal(job?.name, 'one');
  assert.equal(job.runs.length, 1);
  const [r] = job.runs;
  assert.deepEqual([r?.status, r?.trigger, r?.pid === process.pid, r?.error], ['success', 'manual', true, null]);
  assert.equal(job.lastGoodAt, r?.endedAt);
  assert.deepEqual(
    job.lastRunTasks.map((t) => [t.vm, t.status, t.mode, t.reasonCodes.length, t.bytesRead, t.bytesStored, t.pointId, t.attempts]),
    [[VM, 'success', 'full', 1, result.vms[0]?.bytesRead, result.vms[0]?.bytesWritten, result.vms[0]?.pointId, 1]],
  );
  const catalog = openSqliteCatalog(join(dir, 'state', 'catalog.sqlite'));
  try {
    const lines = (await catalog.logs(r!.id)).map((l) => `${l.vm ?? '-'} ${l.line}`);
    assert.ok(lines.some((l) => l.startsWith(`- job one: 1 VMs selected (${VM})`)), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith(`${VM} `)), lines.join('\n'));
    assert.ok(!lines.some((l) => l.includes(lab.info.password)), 'no secret in the log');
  } finally {
    await catalog.close();
  }
  const text = await runCli(['job', 'status', '--config', configFile]);
  assert.match(text.stdout, new RegExp(`^ {4}success {5}${VM} {2}full, `, 'm'));
});

test('a job run SIGKILLed mid-copy is marked interrupted at the next start; the next run removes its snapshot', async () => {
  // Data to read (this test must not rely on the one before it for that), and every disk read
  // stalls after 64 KiB: the run holds its snapshot until it is killed.
  const disk = lab.info.vms.find((v) => v.name === VM)!.disks[0];
  await lab.write(VM, disk.key, 0, randomBytes(256 * 1024));
  await lab.faults({ httpStall: { afterBytes: 64 * 1024, count: 1000 } });
  const child = spawn(process.execPath, [bin, 'job', 'run', 'one', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  try {
    while ((await lab.snapshots(VM)).length === 0 || !/\] start \(attempt 1/.test(stderr)) {
      assert.equal(child.exitCode, null, `job run ended early: ${stderr}`);
      await sleep(20);
    }
    const running = await status();
    assert.equal(running.jobs[0]?.runs[0]?.status, 'running');
    assert.equal(running.jobs[0]?.runs[0]?.pid, child.pid);
  } finally {
    child.kill('SIGKILL');
  }
  assert.equal(await exited, 'SIGKILL');
  await lab.faults({ httpStall: { afterBytes: 0, count: 0 } });
  assert.equal((await lab.snapshots(VM)).length, 1, 'the killed run left its snapshot');

  const after = await status();
  const [killed] = after.jobs[0]!.runs;
  assert.deepEqual([killed?.status, killed?.pid, killed?.error?.code], ['interrupted', child.pid, 'INTERRUPTED']);
  assert.match(killed?.error?.message ?? '', new RegExp(`pid ${child.pid} `));
  assert.deepEqual(after.jobs[0]!.lastRunTasks.map((t) => [t.vm, t.status, t.error?.code]), [[VM, 'interrupted', 'INTERRUPTED']]);

  const next = await runCli(['job', 'run', 'one', '--config', configFile]);
  assert.equal(next.code, 0, next.stderr);
  assert.deepEqual(await lab.snapshots(VM), [], 'the leftover snapshot was removed by the next run');
  // Newest first: this run, then the killed one (an earlier test's runs may follow).
  assert.deepEqual((await status()).jobs[0]!.runs.map((r) => r.status).slice(0, 2), ['success', 'interrupted']);
});
