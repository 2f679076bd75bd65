// `vcbt restore --in-place` against the lab: a two-disk VM backed up, scattered guest writes,
// then rolled back through the lab's live NBD endpoint. While the VM runs it is refused
// (VM_POWERED_ON) unless --power-off; in the restore point's CBT epoch only the areas
// QueryChangedDiskAreas lists since the point's ChangeId are written (bytes written = their
// sum) and every disk ends byte-identical to the point; the next backup is an incremental
// that restores byte-identical; after a CBT reset the whole disk is written, with the reason.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labConnection, runCli } from '../helpers/cli-runner.ts';
import { randomGuestWrites } from '../lab/guest-writes.ts';
import { startLab, type Lab } from '../lab/lab.ts';

const MiB = 1024 * 1024;
const vm = 'DC0_H0_VM0';
const diskSizes = [6 * MiB + 3 * 1024, 3 * MiB];
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let lab: Lab;
let dir: string;
let repo: string;
let connection: ReturnType<typeof labConnection>;

interface PointSummary {
  pointId: string;
  disks: { deviceKey: number; mode: 'full' | 'incremental'; changeId: string }[];
}
interface RollbackDisk {
  key: number;
  mode: 'changed-areas' | 'full';
  reasonCode: string;
  reason: string;
  areas: number;
  bytesWritten: number;
}
interface Rollback {
  type: string;
  poweredOff: boolean;
  disks: RollbackDisk[];
}

before(async () => {
  lab = await startLab({ diskSizes });
  dir = await mkdtemp(join(tmpdir(), 'vcbt-rollback-'));
  repo = join(dir, 'repo');
  connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
  const init = await runCli(['init', '--repo', repo]);
  assert.equal(init.code, 0, init.stderr);
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function power(state: 'on' | 'off'): Promise<void> {
  await lab.govmomi(['power', vm, state]); // a fault when already in that state: fine
}

/** Backs the VM up (powered on); the sha256 of each disk at that point. */
async function backup(): Promise<{ summary: PointSummary; shas: Map<number, string> }> {
  await power('on');
  const result = await runCli(['backup', '--vm', vm, '--repo', repo, '--json', ...connection.flags], connection.env);
  assert.equal(result.code, 0, result.stderr);
  const summary = JSON.parse(result.stdout) as PointSummary;
  const shas = new Map<number, string>();
  for (const d of summary.disks) shas.set(d.deviceKey, (await lab.sha256(vm, d.deviceKey)).sha256);
  return { summary, shas };
}

function rollback(pointId: string, extra: string[] = []) {
  return runCli(['restore', '--repo', repo, '--point', pointId, '--vm', vm, '--in-place', '--transport', 'nbd', '--nbd-uri', lab.info.nbdLiveUriTemplate, '--json', ...extra, ...connection.flags], connection.env);
}

/** Changed areas of the powered-off VM's live disk since a ChangeId, summed. */
async function changedBytes(key: number, since: string): Promise<number> {
  const { areas } = (await lab.govmomi(['query', vm, String(key), '-', since])) as { areas: { start: number; length: number }[] };
  return areas.reduce((sum, a) => sum + a.length, 0);
}

test('rollback writes back only the changed areas, ends byte-identical, and the next backup is a correct incremental', async () => {
  await randomGuestWrites(lab, vm, 1, { count: 6, maxWriteBytes: 200_000 });
  const first = await backup();
  await randomGuestWrites(lab, vm, 2, { count: 5, maxWriteBytes: 100_000 });

  // Powered on: refused, nothing written.
  const refused = await rollback(first.summary.pointId);
  assert.equal(refused.code, 1, refused.stderr);
  assert.equal((JSON.parse(refused.stdout) as { code: string }).code, 'VM_POWERED_ON');

  await power('off');
  const expectedBytes = new Map<number, number>();
  for (const d of first.summary.disks) expectedBytes.set(d.deviceKey, await changedBytes(d.deviceKey, d.changeId));
  await power('on');
  assert.ok([...expectedBytes.values()].every((n) => n > 0), 'the guest writes touched every disk');

  const result = await rollback(first.summary.pointId, ['--power-off']);
  assert.equal(result.code, 0, result.stderr);
  const done = JSON.parse(result.stdout) as Rollback;
  assert.equal(done.type, 'rollback');
  assert.equal(done.poweredOff, true);
  assert.deepEqual(
    done.disks.map((d) => [d.key, d.mode, d.reasonCode, d.bytesWritten]),
    first.summary.disks.map((d) => [d.deviceKey, 'changed-areas', 'CHANGES_SINCE', expectedBytes.get(d.deviceKey)]),
  );
  for (const [key, want] of first.shas) assert.equal((await lab.sha256(vm, key)).sha256, want, `disk ${key} is the restore point again`);

  // The next backup: an incremental (the rollback's writes were tracked) that restores exactly.
  await randomGuestWrites(lab, vm, 3, { count: 3, maxWriteBytes: 50_000 });
  const second = await backup();
  for (const d of second.summary.disks) {
    assert.equal(d.mode, 'incremental');
    const to = join(dir, `second-${d.deviceKey}.raw`);
    const restored = await runCli(['restore', '--repo', repo, '--point', second.summary.pointId, '--disk', String(d.deviceKey), '--to', to]);
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal(sha(await readFile(to)), second.shas.get(d.deviceKey));
  }
});

test('after a CBT reset the whole disk is written, with the reason; --disk picks disks', async () => {
  await randomGuestWrites(lab, vm, 4, { count: 4, maxWriteBytes: 100_000 });
  const point = await backup();
  await power('off');
  for (const state of ['off', 'on']) await lab.govmomi(['cbt', vm, state]); // a new epoch
  await randomGuestWrites(lab, vm, 5, { count: 4, maxWriteBytes: 100_000 });

  const result = await rollback(point.summary.pointId, ['--disk', '2000']);
  assert.equal(result.code, 0, result.stderr);
  const done = JSON.parse(result.stdout) as Rollback;
  assert.equal(done.poweredOff, false);
  assert.equal(done.disks.length, 1);
  const [disk] = done.disks;
  assert.deepEqual([disk.key, disk.mode, disk.reasonCode, disk.bytesWritten], [2000, 'full', 'CHANGEID_REFUSED', diskSizes[0]]);
  assert.match(disk.reason, /refused the restore point's ChangeId/);
  assert.equal((await lab.sha256(vm, 2000)).sha256, point.shas.get(2000));

  const text = await runCli(['restore', '--repo', repo, '--point', point.summary.pointId, '--vm', vm, '--in-place', '--transport', 'nbd', '--nbd-uri', lab.info.nbdLiveUriTemplate, '--disk', '2001', ...connection.flags], connection.env);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /disk 2001 \(Hard disk 2\): full \(CHANGEID_REFUSED: .*\), 1 areas, 3145728 bytes written/);
  assert.equal((await lab.sha256(vm, 2001)).sha256, point.shas.get(2001));
});
