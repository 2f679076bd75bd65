// Job runs against the lab and all its VMs: a job selecting by folder with an exclusion runs
// every selected VM and only those, within its per-host and per-datastore limits (seen in the
// job's own events and in the lab's snapshot listing), enables CBT where it is off, applies
// its retention to its own VMs; a VM whose snapshot creation keeps failing fails alone after
// its retries, the others succeed and the run ends `warning` (exit 3).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, jobByName } from '../../src/service/config.ts';
import { runJob, type JobEvent, type JobRunResult } from '../../src/service/run.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { runCli } from '../helpers/cli-runner.ts';

let lab: Lab;
let dir: string;
let configFile: string;

before(async () => {
  lab = await startLab({ otherDiskBytes: 1024 * 1024, diskSizes: [2 * 1024 * 1024, 1024 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-job-'));
  const repo = join(dir, 'repo');
  assert.equal((await runCli(['init', '--repo', repo])).code, 0);
  await writeFile(join(dir, 'lab.password'), `${lab.info.password}\n`, { mode: 0o600 });
  configFile = join(dir, 'vcbt.yaml');
  await writeFile(
    configFile,
    `servers:
  lab:
    url: ${lab.info.sdk}
    user: ${lab.info.username}
    passwordFile: lab.password
    thumbprint: "${lab.info.thumbprintSha1}"
repositories:
  main: { path: repo }
catalog: { path: catalog.sqlite }
jobs:
  by-folder:
    type: backup
    server: lab
    repository: main
    vms:
      include: ["folder:DC0/vm"]
      exclude: ["DC0_C0_RP0_VM1"]
    limits: { total: 4, perHost: 1, perDatastore: 2 }
    retries: { count: 0 }
    retention: { keepLast: 1 }
    waitBusy: 0
  by-pattern:
    type: backup
    server: lab
    repository: main
    vms:
      include: ["DC0_H0_*"]
    limits: { total: 1 }
    retries: { count: 2, delay: 0.01, factor: 2 }
    waitBusy: 0
`,
  );
  const check = await runCli(['config', 'check', configFile]);
  assert.equal(check.code, 0, check.stderr);
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The most VMs at once per key, from the job's vm-start/vm-end events. */
function peaks(events: readonly JobEvent[], keysOf: (e: Extract<JobEvent, { type: 'vm-start' }>) => readonly string[]): Map<string, number> {
  const now = new Map<string, number>();
  const peak = new Map<string, number>();
  for (const e of events) {
    if (e.type !== 'vm-start' && e.type !== 'vm-end') continue;
    const delta = e.type === 'vm-start' ? 1 : -1;
    for (const key of keysOf({ ...e, type: 'vm-start' })) {
      now.set(key, (now.get(key) ?? 0) + delta);
      peak.set(key, Math.max(peak.get(key) ?? 0, now.get(key) ?? 0));
    }
  }
  return peak;
}

async function assertNoSnapshots(): Promise<void> {
  for (const vm of lab.info.vms) assert.deepEqual(await lab.snapshots(vm.name), [], `no snapshot left on ${vm.name}`);
}

test('a job selecting by folder with an exclusion runs every selected VM, only those, within its limits; retention keeps its last point per VM', async () => {
  const config = await loadConfig(configFile);
  const job = jobByName(config, 'by-folder');
  const events: JobEvent[] = [];
  // Measured through the lab: which VMs hold a vcbt snapshot at once, per host.
  const hostOf = new Map<string, string>();
  let polling = true;
  let labPeakPerHost = 0;
  const poller = (async () => {
    while (polling) {
      const holding = await Promise.all(lab.info.vms.map(async (vm) => ((await lab.snapshots(vm.name)).length > 0 ? vm.name : undefined)));
      const perHost = new Map<string, number>();
      for (const name of holding) if (name && hostOf.has(name)) perHost.set(hostOf.get(name)!, (perHost.get(hostOf.get(name)!) ?? 0) + 1);
      labPeakPerHost = Math.max(labPeakPerHost, ...perHost.values(), 0);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  let first: JobRunResult;
  try {
    first = await runJob({
      config,
      job,
      env: {},
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'vm-start' && e.host) hostOf.set(e.vm, e.host);
      },
    });
  } finally {
    polling = false;
    await poller;
  }
  assert.equal(first.result, 'success', JSON.stringify(first.vms.map((v) => [v.name, v.error])));
  assert.deepEqual(first.vms.map((v) => v.name), ['DC0_C0_RP0_VM0', 'DC0_H0_VM0', 'DC0_H0_VM1']);
  assert.deepEqual(first.excluded, [{ name: 'DC0_C0_RP0_VM1', moref: lab.info.vms.find((v) => v.name === 'DC0_C0_RP0_VM1')!.moref, reason: 'excluded by "DC0_C0_RP0_VM1"' }]);
  for (const vm of first.vms) {
    assert.equal(vm.cbtEnabledByJob, true, `${vm.name}: CBT was off in the lab and the job enabled it`);
    assert.equal(vm.mode, 'full');
    assert.match(vm.pointId ?? '', /./);
    assert.equal(vm.attempts, 1);
  }
  const started = events.filter((e) => e.type === 'vm-start').map((e) => e.vm).sort();
  assert.deepEqual(started, ['DC0_C0_RP0_VM0', 'DC0_H0_VM0', 'DC0_H0_VM1'], 'each selected VM once, no other');
  for (const [host, peak] of peaks(events, (e) => (e.host ? [e.host] : []))) assert.ok(peak <= 1, `host ${host}: ${peak} VMs at once (limit 1)`);
  for (const [ds, peak] of peaks(events, (e) => e.datastores)) assert.ok(peak <= 2, `datastore ${ds}: ${peak} VMs at once (limit 2)`);
  assert.ok(labPeakPerHost <= 1, `the lab saw ${labPeakPerHost} snapshots at once on one host`);
  await assertNoSnapshots();

  // Again through the CLI: incrementals now, and the retention (keepLast 1) removes the first points.
  const second = await runCli(['job', 'run', 'by-folder', '--config', configFile, '--json']);
  assert.equal(second.code, 0, second.stderr);
  const doc = JSON.parse(second.stdout) as JobRunResult & { type: string };
  assert.equal(doc.type, 'job-run');
  assert.deepEqual(doc.vms.map((v) => [v.name, v.result, v.mode, v.cbtEnabledByJob]), [
    ['DC0_C0_RP0_VM0', 'success', 'incremental', false],
    ['DC0_H0_VM0', 'success', 'incremental', false],
    ['DC0_H0_VM1', 'success', 'incremental', false],
  ]);
  assert.deepEqual(doc.retention?.removed.sort(), first.vms.map((v) => v.pointId).sort());
  const points = JSON.parse((await runCli(['points', '--repo', join(dir, 'repo'), '--json'])).stdout) as { points: Array<{ id: string }> };
  assert.deepEqual(points.points.map((p) => p.id).sort(), doc.vms.map((v) => v.pointId).sort());
  await assertNoSnapshots();
});

test('a VM whose snapshot keeps failing fails alone after its retries; the run ends warning, exit 3', async () => {
  // The job runs one VM at a time in name order: DC0_H0_VM0 meets all three faults.
  await lab.faults({ methods: { CreateSnapshot_Task: { fault: 'SnapshotFault', count: 3 } } });
  const run = await runCli(['job', 'run', 'by-pattern', '--config', configFile, '--json']);
  assert.equal(run.code, 3, run.stderr);
  const doc = JSON.parse(run.stdout) as JobRunResult;
  assert.equal(doc.result, 'warning');
  const [vm0, vm1] = doc.vms;
  assert.deepEqual([vm0.name, vm0.result, vm0.attempts, vm0.error?.code], ['DC0_H0_VM0', 'failed', 3, 'VSPHERE_FAULT']);
  assert.match(vm0.error?.message ?? '', /SnapshotFault/);
  assert.deepEqual([vm1.name, vm1.result, vm1.attempts, vm1.error], ['DC0_H0_VM1', 'success', 1, null]);
  assert.equal((run.stderr.match(/\[DC0_H0_VM0\] attempt \d failed \(VSPHERE_FAULT/g) ?? []).length, 2, run.stderr);
  assert.deepEqual(await lab.faultsArmed(), {});
  await assertNoSnapshots();

  // One fault: the VM succeeds on its second attempt, which the run reports as a warning.
  await lab.faults({ methods: { CreateSnapshot_Task: { fault: 'SnapshotFault', count: 1 } } });
  const retried = await runCli(['job', 'run', 'by-pattern', '--config', configFile, '--vm', 'DC0_H0_VM0', '--json']);
  assert.equal(retried.code, 3, retried.stderr);
  const again = JSON.parse(retried.stdout) as JobRunResult;
  assert.deepEqual(again.vms.map((v) => [v.name, v.result, v.attempts, v.warnings]), [['DC0_H0_VM0', 'warning', 2, ['succeeded on attempt 2']]]);
  await assertNoSnapshots();
});

test('vcbt job list: schedules, next runs and, with --vms, what each job selects now', async () => {
  const listed = await runCli(['job', 'list', '--config', configFile, '--vms', '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  const doc = JSON.parse(listed.stdout) as { type: string; jobs: Array<{ name: string; schedule: string | null; nextRun: string | null; selected: Array<{ name: string }>; excluded: Array<{ name: string; reason: string }> }> };
  assert.equal(doc.type, 'job-list');
  const byFolder = doc.jobs.find((j) => j.name === 'by-folder')!;
  assert.deepEqual(byFolder.selected.map((v) => v.name), ['DC0_C0_RP0_VM0', 'DC0_H0_VM0', 'DC0_H0_VM1']);
  assert.deepEqual(byFolder.excluded.map((v) => v.name), ['DC0_C0_RP0_VM1']);
  assert.deepEqual([byFolder.schedule, byFolder.nextRun], [null, null]);
  const text = await runCli(['job', 'list', '--config', configFile]);
  assert.match(text.stdout, /^by-folder {2}backup from lab to repository main; no schedule$/m);
});
