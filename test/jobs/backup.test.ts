// Rounds of random guest writes + `vcbt backup` against the lab, paging forced to one area per
// reply: `vcbt restore` of every restore point and disk is byte-identical to the VM's disk at
// that round (the lab's sha256 right after the backup: nothing wrote in between, so the live
// disk equals the snapshot). Incrementals store far less than the full; a resized disk and a
// refused ChangeId give fulls with their reasons; error codes for bad points, disks, targets
// and passphrases; the snapshot is gone after every run, also a failing one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backup as backupJob } from '../../src/jobs/backup.ts';
import { Repository } from '../../src/repository/repository.ts';
import { indexPath } from '../repository/helpers.ts';
import { connect } from '../../src/vsphere/vsphere.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { randomGuestWrites as guestWrites } from '../lab/guest-writes.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';

const vm = 'DC0_H0_VM0';
const testScrypt = { N: 1024, r: 8, p: 1 };
let lab: Lab;
let dir: string;
let repo: string;
let connection: ReturnType<typeof labConnection>;
/** point id -> device key -> sha256 of the disk at that point. */
const expected = new Map<string, Map<number, string>>();

before(async () => {
  lab = await startLab();
  dir = await mkdtemp(join(tmpdir(), 'vcbt-backup-'));
  repo = join(dir, 'repo');
  connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
  const init = await runCli(['init', '--repo', repo]);
  assert.equal(init.code, 0, init.stderr);
  await lab.config({ maxAreasPerReply: 1 });
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const disks = () => lab.info.vms.find((v) => v.name === vm)!.disks;

function randomGuestWrites(seed: number): Promise<void> {
  return guestWrites(lab, vm, seed, { count: 5, maxWriteBytes: 150_000 });
}

interface DiskSummary {
  deviceKey: number;
  mode: 'full' | 'incremental';
  reason: string;
  basedOn: string | null;
  areaBytes: number;
  bytesRead: number;
  bytesStored: number;
  chunksReused: number;
  changeId: string;
}
interface Summary {
  cbtResetReason: string | null;
  pointId: string;
  vm: { id: string; name: string; moref: string; instanceUuid: string | null; server: string };
  snapshot: { moref: string; name: string; createTime: string };
  disks: DiskSummary[];
  bytesRead: number;
  bytesStored: number;
}

/** The newest backup of this process into the main repository (none yet when a test runs alone). */
let newestPoint: Summary | undefined;

/** A restore point to build on: the one the tests before made, or (a test run alone) a new full. */
async function ensureBaseline(): Promise<Summary> {
  if (newestPoint) return newestPoint;
  for (const disk of disks()) await lab.write(vm, disk.key, 1024 * 1024, randomBytes(2 * 1024 * 1024));
  return backup();
}

async function backup(extra: string[] = [], repoFlags: string[] = ['--repo', repo], env: NodeJS.ProcessEnv = {}): Promise<Summary> {
  const result = await runCli(['backup', '--vm', vm, ...repoFlags, '--json', ...extra, ...connection.flags], { ...connection.env, ...env });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(await lab.snapshots(vm), [], 'the backup snapshot is removed');
  const summary = JSON.parse(result.stdout) as Summary;
  if (repoFlags[1] === repo) newestPoint = summary;
  const shas = new Map<number, string>();
  for (const d of summary.disks) shas.set(d.deviceKey, (await lab.sha256(vm, d.deviceKey)).sha256);
  expected.set(summary.pointId, shas);
  return summary;
}

async function restore(pointId: string, deviceKey: number, to: string, repoFlags: string[] = ['--repo', repo], env: NodeJS.ProcessEnv = {}) {
  return runCli(['restore', ...repoFlags, '--point', pointId, '--disk', String(deviceKey), '--to', to, '--json'], env);
}

async function assertRestoresMatch(pointId: string): Promise<void> {
  for (const [key, want] of expected.get(pointId) ?? []) {
    const target = join(dir, `restore-${pointId}-${key}.raw`);
    const result = await restore(pointId, key, target);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(sha(await readFile(target)), want, `restore point ${pointId} disk ${key}`);
    await rm(target);
  }
}

test('rounds of writes and backups: every restore point restores byte-identical; incrementals store little', async () => {
  // A first state worth a full: several MiB of incompressible data on each disk.
  for (const disk of disks()) await lab.write(vm, disk.key, 1024 * 1024, randomBytes(6 * 1024 * 1024));
  await randomGuestWrites(1);
  const full = await backup();
  assert.deepEqual(full.disks.map((d) => d.mode), ['full', 'full']);
  assert.match(full.disks[0].reason, /first backup/);
  assert.equal(full.vm.name, vm);
  assert.equal(full.vm.id, lab.info.vms.find((v) => v.name === vm)!.instanceUuid);
  assert.match(full.snapshot.name, /^vcbt-backup-/);
  for (const d of full.disks) assert.ok(d.bytesStored > 6 * 1024 * 1024, `full of disk ${d.deviceKey} stores its data (${d.bytesStored})`);

  const points = [full];
  for (let round = 2; round <= 4; round++) {
    await randomGuestWrites(round * 17);
    const next = await backup();
    const previous = points[points.length - 1];
    for (const d of next.disks) {
      assert.equal(d.mode, 'incremental', d.reason);
      assert.equal(d.basedOn, previous.pointId);
      const fullDisk = full.disks.find((f) => f.deviceKey === d.deviceKey)!;
      assert.ok(d.bytesStored < fullDisk.bytesStored / 3, `incremental of disk ${d.deviceKey} stores ${d.bytesStored}, the full ${fullDisk.bytesStored}`);
      assert.ok(d.bytesRead === d.areaBytes && d.bytesRead < 2_000_000, `reads only changed areas (${d.bytesRead})`);
      assert.ok(d.chunksReused > 0, 'unchanged chunks come from the previous point');
    }
    points.push(next);
  }
  for (const p of points) await assertRestoresMatch(p.pointId);

  // A new restore target file stays sparse: zero chunks are not written.
  const sparse = join(dir, 'sparse.raw');
  const result = await restore(full.pointId, 2000, sparse);
  assert.equal(result.code, 0, result.stderr);
  const restored = JSON.parse(result.stdout) as { created: boolean; bytesZero: number };
  assert.ok(restored.created && restored.bytesZero > 8 * 1024 * 1024);
  const info = await stat(sparse);
  assert.ok(info.blocks * 512 < info.size - 8 * 1024 * 1024, `sparse: ${info.blocks * 512} bytes allocated of ${info.size}`);

  const listed = await runCli(['points', '--repo', repo, '--vm', vm, '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  const list = (JSON.parse(listed.stdout) as { points: Array<{ id: string; disks: Array<{ mode: string }> }> }).points;
  assert.deepEqual(list.map((p) => p.id), points.map((p) => p.pointId));
  assert.deepEqual(list.map((p) => p.disks[0].mode), ['full', 'incremental', 'incremental', 'incremental']);
  const text = await runCli(['points', '--repo', repo]);
  assert.match(text.stdout, new RegExp(`${full.pointId}.*${vm}`));

  // --point latest --vm: the newest point.
  const latest = join(dir, 'latest.raw');
  const byLatest = await runCli(['restore', '--repo', repo, '--point', 'latest', '--vm', vm, '--disk', '2001', '--to', latest]);
  assert.equal(byLatest.code, 0, byLatest.stderr);
  assert.equal(sha(await readFile(latest)), expected.get(points[3].pointId)?.get(2001));
});

test('a resized disk gets a full; a refused ChangeId gets a full with the reason; both restore exactly', async () => {
  await ensureBaseline();
  const [first, second] = disks();
  await lab.resize(vm, second.key, second.capacityBytes + 1024 * 1024);
  await lab.write(vm, second.key, second.capacityBytes + 5000, randomBytes(70_000));
  await randomGuestWrites(99);
  // KB 2090639: a grown disk makes vcbt reset CBT before the snapshot, so every disk is read in full.
  const resized = await backup();
  assert.match(resized.cbtResetReason ?? '', new RegExp(`disk ${second.key} is now`));
  assert.equal(resized.disks[1].mode, 'full');
  assert.match(resized.disks[1].reason, /capacity changed/);
  assert.equal(resized.disks[0].mode, 'full');
  assert.match(resized.disks[0].reason, /refused the recorded ChangeId.*CBT was reset/);
  await assertRestoresMatch(resized.pointId);

  await randomGuestWrites(123);
  await lab.faults({ queryChangedDiskAreas: { fault: 'FileFault', count: 1 } });
  const refused = await backup();
  assert.equal(refused.disks[0].deviceKey, first.key);
  assert.equal(refused.disks[0].mode, 'full');
  assert.match(refused.disks[0].reason, /refused the recorded ChangeId/);
  assert.equal(refused.disks[1].mode, 'incremental');
  // A full after a refusal re-reads everything, yet stores (almost) nothing new: dedup.
  assert.ok(refused.disks[0].bytesStored < refused.disks[0].bytesRead / 3, `dedup: ${refused.disks[0].bytesStored} stored of ${refused.disks[0].bytesRead} read`);
  await assertRestoresMatch(refused.pointId);

  const forced = await backup(['--full', '--disk', String(second.key)]);
  assert.deepEqual(forced.disks.map((d) => [d.deviceKey, d.mode]), [[second.key, 'full']]);
  assert.match(forced.disks[0].reason, /--full/);

  // The newest restore point of that disk loses its index: the next backup must not build on it.
  const repository = await Repository.open(repo);
  const manifest = await repository.readManifest(forced.pointId);
  await repository.close();
  const index = manifest.disks.find((d) => d.deviceKey === second.key)!.index;
  await rm(indexPath(repo, index.sha256));
  await lab.write(vm, second.key, 4096, randomBytes(10_000));
  const rebuilt = await backup(['--disk', String(second.key)]);
  assert.equal(rebuilt.disks[0].mode, 'full');
  assert.match(rebuilt.disks[0].reason, new RegExp(`restore point ${forced.pointId} is damaged \\(.*missing`));
  const restored = join(dir, 'rebuilt.raw');
  await restore(rebuilt.pointId, second.key, restored);
  assert.equal(sha(await readFile(restored)), (await lab.sha256(vm, second.key)).sha256);
});

test('errors: unknown point, unknown disk, target too small, wrong passphrase - each with its code', async () => {
  const base = await ensureBaseline();
  const { pointId } = base;
  const key = base.disks[0].deviceKey;

  const noPoint = await restore('20200101T000000Z-deadbeef', 2000, join(dir, 'x.raw'));
  assert.equal(noPoint.code, 1);
  assert.match(noPoint.stderr, /REPO_POINT_NOT_FOUND: no restore point 20200101T000000Z-deadbeef/);

  const noDisk = await restore(pointId, 2042, join(dir, 'x.raw'));
  assert.equal(noDisk.code, 1);
  assert.match(noDisk.stderr, /REPO_DISK_NOT_FOUND: restore point \S+ has no disk 2042/);
  await assert.rejects(stat(join(dir, 'x.raw')), 'no target is created for a bad point or disk');

  const small = join(dir, 'small.raw');
  await writeFile(small, Buffer.alloc(1024 * 1024));
  const tooSmall = await restore(pointId, key, small);
  assert.equal(tooSmall.code, 1);
  assert.match(tooSmall.stderr, /RESTORE_TARGET_SIZE: target .*small\.raw has 1048576 bytes, less than the disk's \d+/);

  const noLatest = await runCli(['restore', '--repo', repo, '--point', 'latest', '--disk', '2000', '--to', small]);
  assert.equal(noLatest.code, 1);
  assert.match(noLatest.stderr, /RESTORE_POINT_AMBIGUOUS/);

  const encrypted = join(dir, 'encrypted');
  await Repository.init(encrypted, { passphrase: 'right horse', scryptCost: testScrypt });
  const flags = ['--repo', encrypted];
  const stored = await backup(['--disk', '2000'], flags, { VCBT_PASSPHRASE: 'right horse' });
  const target = join(dir, 'encrypted-2000.raw');
  const ok = await restore(stored.pointId, 2000, target, flags, { VCBT_PASSPHRASE: 'right horse' });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(sha(await readFile(target)), expected.get(stored.pointId)?.get(2000));
  const wrong = await restore(stored.pointId, 2000, join(dir, 'y.raw'), flags, { VCBT_PASSPHRASE: 'wrong horse' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /REPO_WRONG_PASSPHRASE/);
  assert.ok(!wrong.stderr.includes('horse'), 'the passphrase is never printed');
  const none = await runCli(['points', ...flags]);
  assert.match(none.stderr, /REPO_PASSPHRASE_REQUIRED/);
});

test('a failing backup commits nothing and still removes its snapshot', async () => {
  await ensureBaseline();
  const before = (JSON.parse((await runCli(['points', '--repo', repo, '--json'])).stdout) as { points: unknown[] }).points.length;
  await randomGuestWrites(7);
  const failed = await runCli(['backup', '--vm', vm, '--repo', repo, '--transport', 'nbd', '--nbd-uri', 'nbd+unix:///?socket=/nonexistent.sock', ...connection.flags], connection.env);
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /nonexistent\.sock/);
  assert.deepEqual(await lab.snapshots(vm), []);
  const after = (JSON.parse((await runCli(['points', '--repo', repo, '--json'])).stdout) as { points: unknown[] }).points.length;
  assert.equal(after, before);

  const unknownDisk = await runCli(['backup', '--vm', vm, '--repo', repo, '--disk', '2042', ...connection.flags], connection.env);
  assert.equal(unknownDisk.code, 1);
  assert.match(unknownDisk.stderr, /DISK_NOT_FOUND: no disk with key 2042; disks: 2000/);

  // The next run after a failure is a normal incremental.
  const next = await backup();
  assert.deepEqual(next.disks.map((d) => d.mode), ['incremental', 'incremental']);
  await assertRestoresMatch(next.pointId);
});

test('Ctrl-C right after the snapshot and in the middle of a disk: nothing committed, snapshot removed', async () => {
  await ensureBaseline();
  const session = await connect({ server: lab.info.sdk, username: lab.info.username, password: lab.info.password, thumbprint: lab.info.thumbprintSha1 });
  const repository = await Repository.open(repo);
  try {
    const pointsBefore = (await repository.listPointIds()).length;
    const interrupt = async (when: 'snapshot' | 'progress') => {
      const controller = new AbortController();
      const stop = () => controller.abort(new Error('interrupted by SIGINT'));
      await assert.rejects(
        backupJob({
          session,
          vm: { name: vm },
          repository,
          transport: { transport: 'http' },
          forceFull: true,
          signal: controller.signal,
          onEvent: (line) => {
            if (when === 'snapshot' && line.startsWith('snapshot ')) stop();
          },
          onProgress: () => {
            if (when === 'progress') stop();
          },
        }),
        /cancelled|interrupted by SIGINT/,
      );
      assert.deepEqual(await lab.snapshots(vm), [], `snapshot removed after an interrupt at ${when}`);
    };
    await interrupt('snapshot');
    await interrupt('progress');
    assert.equal((await repository.listPointIds()).length, pointsBefore, 'no restore point committed');
  } finally {
    await repository.close();
    await session.logout();
  }
  // The next run reads through the nbd transport (the lab's stand-in for a proxy exporting
  // every snapshot's disks), its connection cut once: still exact.
  await randomGuestWrites(5);
  await lab.faults({ nbdCutAfterBytes: 300_000 });
  const next = await backup(['--transport', 'nbd', '--nbd-uri', lab.info.nbdUriTemplate]);
  assert.deepEqual(await lab.faultsArmed(), {}, 'the cut fired');
  assert.deepEqual(next.disks.map((d) => d.mode), ['incremental', 'incremental']);
  await assertRestoresMatch(next.pointId);
});

test('a datastore that stalls mid-read: the backup ends after --io-timeout and its retries with HTTP_STALLED; nothing committed, no snapshot', async () => {
  await ensureBaseline();
  const before = (await (await Repository.open(repo)).listPointIds()).length;
  await randomGuestWrites(4242);
  await lab.faults({ httpStall: { afterBytes: 1000, count: 1000 } });
  const started = performance.now();
  const stalled = await runCli(['backup', '--vm', vm, '--repo', repo, '--io-timeout', '0.3', ...connection.flags], connection.env);
  const elapsedMs = performance.now() - started;
  await lab.faults({ httpStall: { afterBytes: 0, count: 0 } });
  assert.equal(stalled.code, 1, stalled.stderr);
  assert.match(stalled.stderr, /(HTTP_STALLED|REPO_SOURCE_READ): .*no data for 300 ms, 6 times in a row; the server stalls/);
  assert.ok(elapsedMs < 60_000, `bounded by the deadline and its retries (${Math.round(elapsedMs)} ms)`);
  assert.deepEqual(await lab.snapshots(vm), [], 'the snapshot is removed');
  assert.equal((await (await Repository.open(repo)).listPointIds()).length, before, 'no restore point');
});
