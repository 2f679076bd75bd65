// `vcbt serve` as a child process against the lab: a one-second cron schedule fires in real
// time (no timing assertion beyond "it fired"), runs of one job never overlap, SIGTERM in the
// middle of a stalled copy aborts the VM after daemon.stopTimeout leaving no snapshot, and the
// run and its VM are recorded interrupted; a schedule missed while the daemon was down runs
// once at start, not once per missed time; a daemon SIGKILLed mid-run leaves a snapshot that
// its restart cleans up (the next run of the VM), and the run is recorded interrupted; two
// jobs scheduled every second on one VM never copy it at once.
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
import type { RunRecord } from '../../src/service/catalog/catalog.ts';

const bin = join(import.meta.dirname, '../../bin/vcbt.ts');
const VM = 'DC0_H0_VM1';
let lab: Lab;
let dir: string;

before(async () => {
  lab = await startLab({ otherDiskBytes: 2 * 1024 * 1024, diskSizes: [1024 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-daemon-'));
  assert.equal((await runCli(['init', '--repo', join(dir, 'repo')])).code, 0);
  await writeFile(join(dir, 'lab.password'), lab.info.password, { mode: 0o600 });
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, schedule: string): Promise<string> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(
    file,
    `servers:
  lab: { url: "${lab.info.sdk}", user: "${lab.info.username}", passwordFile: lab.password, thumbprint: "${lab.info.thumbprintSha1}" }
repositories:
  main: { path: repo }
catalog: { path: ${name}.sqlite }
daemon: { listen: "127.0.0.1:0", stopTimeout: 1s }
jobs:
  ${name}:
    type: backup
    server: lab
    repository: main
    vms: { include: ["${VM}"] }
    schedule: "${schedule}"
    retries: { count: 0 }
    waitBusy: 0
`,
  );
  return file;
}

function serve(configFile: string) {
  const child = spawn(process.execPath, [bin, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exit, stderr: () => stderr };
}

async function runsOf(catalogFile: string): Promise<RunRecord[]> {
  const catalog = openSqliteCatalog(catalogFile);
  try {
    return (await catalog.runs({ limit: 1000 })).reverse();
  } finally {
    await catalog.close();
  }
}

/** Polls `probe` until it answers; fails (naming `what`) when the daemon died or after 60 s (a hang, not a timing claim). */
async function until<T>(what: string, probe: () => Promise<T | undefined>, alive: () => void, logs: () => string): Promise<T> {
  const giveUpAt = Date.now() + 60_000;
  for (;;) {
    alive();
    const value = await probe();
    if (value !== undefined) return value;
    assert.ok(Date.now() < giveUpAt, `waited in vain for: ${what}\n${logs()}`);
    await sleep(50);
  }
}

test('a one-second schedule fires; SIGTERM mid-copy aborts after the stop timeout, no snapshot left, the run recorded interrupted', async () => {
  const configFile = await writeConfig('every-second', '* * * * * *');
  const catalogFile = join(dir, 'every-second.sqlite');
  const daemon = serve(configFile);
  const alive = () => assert.equal(daemon.child.exitCode, null, `vcbt serve ended early:\n${daemon.stderr()}`);
  try {
    // It fired: a scheduled run completed.
    await until('a scheduled run succeeded', async () => (await runsOf(catalogFile)).find((r) => r.trigger === 'schedule' && r.status === 'success'), alive, daemon.stderr);

    // Every disk read now stalls, and the guest writes: the next run reads the change, and
    // holds its snapshot until it is stopped.
    await lab.faults({ httpStall: { afterBytes: 64 * 1024, count: 1000 } });
    await lab.write(VM, 2000, 0, randomBytes(512 * 1024));
    await until('a read stalled', async () => ((await lab.faultsArmed()).httpStall?.count ?? 1000) < 1000 || undefined, alive, daemon.stderr);
    await until('the snapshot is there', async () => ((await lab.snapshots(VM)).length > 0) || undefined, alive, daemon.stderr);
  } finally {
    daemon.child.kill('SIGTERM');
  }
  assert.equal(await daemon.exit, 0, daemon.stderr());
  await lab.faults({ httpStall: { afterBytes: 0, count: 0 } });
  assert.deepEqual(await lab.snapshots(VM), [], 'the aborted VM\'s snapshot was removed');
  assert.match(daemon.stderr(), /stop timeout reached: aborting/);

  const runs = await runsOf(catalogFile);
  assert.ok(runs.every((r) => r.status !== 'running'), JSON.stringify(runs));
  const last = runs.at(-1)!;
  assert.deepEqual([last.trigger, last.status, last.error?.code], ['schedule', 'interrupted', 'INTERRUPTED']);
  const catalog = openSqliteCatalog(catalogFile);
  try {
    assert.deepEqual((await catalog.tasks(last.id)).map((t) => [t.vm, t.status, t.error?.code, t.pointId]), [[VM, 'interrupted', 'INTERRUPTED', null]]);
  } finally {
    await catalog.close();
  }
  // One run of the job at a time: each run started after the one before it ended.
  for (let i = 1; i < runs.length; i++) assert.ok(runs[i]!.startedAt >= runs[i - 1]!.endedAt!, `run ${runs[i]!.id} overlaps run ${runs[i - 1]!.id}`);
  // No restore point was committed by the interrupted run.
  const points = JSON.parse((await runCli(['points', '--repo', join(dir, 'repo'), '--json'])).stdout) as { points: Array<{ id: string; createdAt: string }> };
  assert.ok(points.points.every((p) => p.createdAt <= last.startedAt), 'no point from the interrupted run');
});

test('a schedule missed while the daemon was down runs once at start', async () => {
  const configFile = await writeConfig('yearly', '0 0 1 1 *');
  const catalogFile = join(dir, 'yearly.sqlite');
  // The daemon last handled this job's schedule years ago: many New Years were missed.
  const catalog = openSqliteCatalog(catalogFile);
  await catalog.setScheduleMark('yearly', '2020-01-01T00:00:01.000Z');
  await catalog.close();
  const daemon = serve(configFile);
  const alive = () => assert.equal(daemon.child.exitCode, null, `vcbt serve ended early:\n${daemon.stderr()}`);
  try {
    await until('the missed run ended', async () => (await runsOf(catalogFile)).find((r) => r.status !== 'running'), alive, daemon.stderr);
    await sleep(300);
  } finally {
    daemon.child.kill('SIGTERM');
  }
  assert.equal(await daemon.exit, 0, daemon.stderr());
  const runs = await runsOf(catalogFile);
  assert.deepEqual(runs.map((r) => [r.trigger, r.status]), [['schedule', 'success']]);
  assert.match(daemon.stderr(), /job yearly: its schedule passed at 2021-01-01T\d\d:00:00\.000Z while the daemon was down; running it once now/);
});

test('a daemon SIGKILLed mid-run: after its restart the run is interrupted in the catalog and its snapshot is gone once the VM runs again', async () => {
  const configFile = await writeConfig('killed', '*/2 * * * * *');
  const catalogFile = join(dir, 'killed.sqlite');
  // Every disk read stalls: the first scheduled run holds its snapshot until the kill.
  await lab.write(VM, 2000, 0, randomBytes(512 * 1024));
  await lab.faults({ httpStall: { afterBytes: 64 * 1024, count: 1000 } });
  const first = serve(configFile);
  const alive = () => assert.equal(first.child.exitCode, null, `vcbt serve ended early:\n${first.stderr()}`);
  let killedRun: RunRecord;
  try {
    killedRun = await until('a run is at work', async () => (await runsOf(catalogFile)).find((r) => r.status === 'running'), alive, first.stderr);
    await until('its snapshot is there', async () => ((await lab.snapshots(VM)).length > 0) || undefined, alive, first.stderr);
  } finally {
    first.child.kill('SIGKILL');
  }
  await first.exit;
  assert.equal((await lab.snapshots(VM)).length, 1, 'the killed daemon could not remove its snapshot');
  assert.equal((await runsOf(catalogFile)).find((r) => r.id === killedRun.id)?.status, 'running');
  await lab.faults({ httpStall: { afterBytes: 0, count: 0 } });

  const second = serve(configFile);
  const alive2 = () => assert.equal(second.child.exitCode, null, `vcbt serve ended early:\n${second.stderr()}`);
  try {
    await until('the next run succeeded', async () => (await runsOf(catalogFile)).find((r) => r.id > killedRun.id && r.status === 'success'), alive2, second.stderr);
  } finally {
    second.child.kill('SIGTERM');
  }
  assert.equal(await second.exit, 0, second.stderr());
  const killed = (await runsOf(catalogFile)).find((r) => r.id === killedRun.id)!;
  assert.deepEqual([killed.status, killed.error?.code], ['interrupted', 'INTERRUPTED']);
  assert.match(killed.error?.message ?? '', new RegExp(`pid ${first.child.pid}`));
  assert.match(second.stderr(), new RegExp(`job killed: run ${killedRun.id} was interrupted \\(its process, pid ${first.child.pid}, is gone\\)`));
  const catalog = openSqliteCatalog(catalogFile);
  try {
    assert.deepEqual((await catalog.tasks(killedRun.id)).map((t) => [t.vm, t.status, t.error?.code]), [[VM, 'interrupted', 'INTERRUPTED']]);
  } finally {
    await catalog.close();
  }
  assert.deepEqual(await lab.snapshots(VM), [], 'the snapshot the killed daemon left was removed by the next run');
});

test('two jobs whose one-second schedules overlap on one VM never process it twice at once', async () => {
  const file = join(dir, 'overlap.yaml');
  const job = (name: string) => `  ${name}:
    type: backup
    server: lab
    repository: main
    vms: { include: ["${VM}"] }
    schedule: "* * * * * *"
    retries: { count: 0 }
    waitBusy: 0
`;
  await writeFile(
    file,
    `servers:
  lab: { url: "${lab.info.sdk}", user: "${lab.info.username}", passwordFile: lab.password, thumbprint: "${lab.info.thumbprintSha1}" }
repositories:
  main: { path: repo }
catalog: { path: overlap.sqlite }
daemon: { listen: "127.0.0.1:0", stopTimeout: 5s }
jobs:
${job('first')}${job('second')}`,
  );
  const catalogFile = join(dir, 'overlap.sqlite');
  await lab.write(VM, 2000, 0, randomBytes(256 * 1024));
  const daemon = serve(file);
  const alive = () => assert.equal(daemon.child.exitCode, null, `vcbt serve ended early:\n${daemon.stderr()}`);
  try {
    await until(
      'both jobs ran several times',
      async () => {
        const ended = (await runsOf(catalogFile)).filter((r) => r.status !== 'running');
        return ['first', 'second'].every((j) => ended.filter((r) => r.job === j).length >= 3) || undefined;
      },
      alive,
      daemon.stderr,
    );
  } finally {
    daemon.child.kill('SIGTERM');
  }
  assert.equal(await daemon.exit, 0, daemon.stderr());
  const catalog = openSqliteCatalog(catalogFile);
  try {
    const tasks = (await Promise.all((await catalog.runs({ limit: 1000 })).map((r) => catalog.tasks(r.id)))).flat();
    // A VM the other job holds is refused (VM_BUSY, waitBusy 0: no waiting), never copied
    // alongside it: from "snapshot taken" to "restore point committed" (the run's log lines),
    // the copies of the two jobs never overlap. (During a claim race the lab may briefly list
    // the loser's snapshot too: it removes it without reading a byte.)
    assert.ok(tasks.every((t) => t.status === 'success' || t.error?.code === 'VM_BUSY' || t.status === 'interrupted'), JSON.stringify(tasks.map((t) => [t.status, t.error])));
    const windows: Array<{ runId: number; from: string; to: string }> = [];
    for (const t of tasks.filter((x) => x.status === 'success')) {
      const lines = (await catalog.logs(t.runId)).filter((l) => l.vm === VM);
      const from = lines.find((l) => /snapshot \S+ "vcbt-backup-[^"]*" taken/.test(l.line))?.at;
      const to = lines.find((l) => / committed$/.test(l.line))?.at;
      assert.ok(from && to, JSON.stringify(lines));
      windows.push({ runId: t.runId, from, to });
    }
    windows.sort((a, b) => a.from.localeCompare(b.from));
    assert.ok(windows.length >= 2);
    for (let i = 1; i < windows.length; i++) assert.ok(windows[i]!.from >= windows[i - 1]!.to, `runs ${windows[i - 1]!.runId} and ${windows[i]!.runId} copied ${VM} at once: ${JSON.stringify(windows)}`);
  } finally {
    await catalog.close();
  }
  assert.deepEqual(await lab.snapshots(VM), []);
});
