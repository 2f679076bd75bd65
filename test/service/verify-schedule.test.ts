// Verification of a job's restore points against the lab: `vcbt job verify` reads the points
// the job made and records a clean result in the catalog (job status shows it); a damaged
// chunk makes it fail naming the damaged point (exit 1); the daemon's one-second verify
// schedule fires in real time and records verifications with trigger `schedule`. Picking
// the sample (latest per VM, all, N at random) is checked without the lab.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLab, type Lab } from '../lab/lab.ts';
import { flipChunkByte, storedChunks, withRepository } from '../repository/helpers.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { openSqliteCatalog } from '../../src/service/catalog/sqlite.ts';
import { samplePoints } from '../../src/service/verify.ts';
import type { JobStatusDocument, JobVerifyDocument } from '../../src/cli/json-documents.ts';

const bin = join(import.meta.dirname, '../../bin/vcbt.ts');
let lab: Lab;
let dir: string;

before(async () => {
  lab = await startLab({ otherDiskBytes: 1024 * 1024, diskSizes: [1024 * 1024] });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-verify-'));
  await writeFile(join(dir, 'lab.password'), lab.info.password, { mode: 0o600 });
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function setup(name: string, verifyCron: string): Promise<string> {
  assert.equal((await runCli(['init', '--repo', join(dir, `${name}-repo`)])).code, 0);
  const file = join(dir, `${name}.yaml`);
  await writeFile(
    file,
    `servers:
  lab: { url: "${lab.info.sdk}", user: "${lab.info.username}", passwordFile: lab.password, thumbprint: "${lab.info.thumbprintSha1}" }
repositories:
  main: { path: ${name}-repo }
catalog: { path: ${name}.sqlite }
daemon: { listen: "127.0.0.1:0", stopTimeout: 5s }
jobs:
  nightly:
    type: backup
    server: lab
    repository: main
    vms: { include: ["DC0_H0_*"] }
    retries: { count: 0 }
    waitBusy: 0
    verify: { schedule: "${verifyCron}", points: latest, readData: true }
`,
  );
  return file;
}

test('the sample: the newest point of each VM, all of them, or N at random; pruned points are skipped', () => {
  const points = [
    { pointId: 'a1', moref: 'vm-1' },
    { pointId: 'b1', moref: 'vm-2' },
    { pointId: 'a2', moref: 'vm-1' },
    { pointId: 'b2', moref: 'vm-2' },
  ];
  const present = new Set(['a1', 'a2', 'b1']);
  assert.deepEqual(samplePoints(points, present, 'latest'), ['a2', 'b1']);
  assert.deepEqual(samplePoints(points, present, 'all'), ['a1', 'b1', 'a2']);
  assert.deepEqual(samplePoints(points, present, { random: 2 }, () => 0), ['a1', 'b1']);
  assert.deepEqual(samplePoints(points, present, { random: 9 }, () => 0), ['a1', 'b1', 'a2']);
});

test('job verify reads the job\'s newest points and records the result; a damaged chunk fails it naming the point', async () => {
  const configFile = await setup('manual', '0 6 * * 0');
  for (const vm of ['DC0_H0_VM0', 'DC0_H0_VM1']) await lab.write(vm, 2000, 0, randomBytes(256 * 1024));
  const run = await runCli(['job', 'run', 'nightly', '--config', configFile, '--json']);
  assert.equal(run.code, 0, run.stderr);
  const points = (JSON.parse(run.stdout) as { vms: Array<{ pointId: string }> }).vms.map((v) => v.pointId).sort();

  const clean = await runCli(['job', 'verify', 'nightly', '--config', configFile, '--json']);
  assert.equal(clean.code, 0, clean.stderr);
  const doc = JSON.parse(clean.stdout) as JobVerifyDocument;
  assert.deepEqual([doc.type, doc.status, doc.trigger, doc.readData, doc.pointsChecked, doc.corruptions, doc.error], ['job-verify', 'success', 'manual', true, 2, 0, null]);
  assert.ok(doc.chunksChecked > 0);
  const status = JSON.parse((await runCli(['job', 'status', '--config', configFile, '--json'])).stdout) as JobStatusDocument;
  assert.deepEqual([status.jobs[0]!.lastVerification?.id, status.jobs[0]!.lastVerification?.status], [doc.id, 'success']);

  // Damage one chunk: every point using it is named.
  await withRepository(join(dir, 'manual-repo'), async (repo) => {
    const [first] = await storedChunks(repo);
    await flipChunkByte(repo, first!, 20);
  });
  const bad = await runCli(['job', 'verify', 'nightly', '--config', configFile, '--json']);
  assert.equal(bad.code, 1, bad.stderr);
  const failed = JSON.parse(bad.stdout) as JobVerifyDocument;
  assert.equal(failed.status, 'failed');
  assert.ok(failed.corruptions >= 1);
  assert.ok(failed.damagedPoints.length >= 1 && failed.damagedPoints.every((p) => points.includes(p)), JSON.stringify(failed));
  assert.match(failed.error?.message ?? '', /damaged restore points: /);
});

test('a one-second verify schedule fires in the daemon and records verifications', async () => {
  const configFile = await setup('scheduled', '* * * * * *');
  assert.equal((await runCli(['job', 'run', 'nightly', '--config', configFile])).code, 0);
  const daemon = spawn(process.execPath, [bin, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  daemon.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exit = new Promise<number | null>((resolve) => daemon.on('exit', resolve));
  const giveUpAt = Date.now() + 60_000; // a hang, not a timing claim
  try {
    for (;;) {
      assert.equal(daemon.exitCode, null, log);
      const catalog = openSqliteCatalog(join(dir, 'scheduled.sqlite'));
      const done = (await catalog.verifications({ limit: 10 })).filter((v) => v.status !== 'running');
      await catalog.close();
      if (done.length > 0) {
        assert.deepEqual([done[0]!.trigger, done[0]!.status, done[0]!.pointsChecked], ['schedule', 'success', 2]);
        break;
      }
      assert.ok(Date.now() < giveUpAt, `no scheduled verification:\n${log}`);
      await sleep(100);
    }
  } finally {
    daemon.kill('SIGTERM');
  }
  assert.equal(await exit, 0, log);
  assert.match(log, /job nightly: verification scheduled "\* \* \* \* \* \*"/);
});
