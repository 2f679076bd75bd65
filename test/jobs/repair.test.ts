// A damaged repository does not keep producing damaged backups (issue 8, section 3), with
// real backups of a lab VM through the CLI. Faults: deleted, truncated and bit-flipped chunks,
// a damaged index, a damaged and a deleted manifest. For each: `verify` names the damaged
// object with the restore points affected; the next backup (incremental, and `--full`) is a
// full where its baseline is damaged (BASELINE_DAMAGED), verifies clean and restores
// byte-identical; every point that was sound still restores exactly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IndexReader, isZeroId } from '../../src/repository/disk-index.ts';
import { Repository } from '../../src/repository/repository.ts';
import { chunkRecordIn, flipChunkByte, indexPath, manifestPath, removeChunk, withRepository } from '../repository/helpers.ts';
import { startLab, type Lab } from '../lab/lab.ts';
import { labConnection, runCli } from '../helpers/cli-runner.ts';

const vm = 'DC0_H0_VM0';
const MiB = 1024 * 1024;
let lab: Lab;
let dir: string;
let repo: string;
let connection: ReturnType<typeof labConnection>;
/** point id -> device key -> sha256 of the disk at that point. */
const expected = new Map<string, Map<number, string>>();

before(async () => {
  lab = await startLab();
  dir = await mkdtemp(join(tmpdir(), 'vcbt-repair-'));
  repo = join(dir, 'repo');
  connection = labConnection(lab);
  const enabled = await runCli(['cbt', 'enable', '--vm', vm, ...connection.flags], connection.env);
  assert.equal(enabled.code, 0, enabled.stderr);
  const init = await runCli(['init', '--repo', repo]);
  assert.equal(init.code, 0, init.stderr);
  for (const disk of disks()) await lab.write(vm, disk.key, MiB, randomBytes(3 * MiB));
});

after(async () => {
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** An offset at `fraction` of a disk's capacity, 4 KiB aligned, leaving room for a write. */
const at = (key: number, fraction: number) => Math.floor((disks().find((d) => d.key === key)!.capacityBytes * fraction) / 4096) * 4096;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const disks = () => lab.info.vms.find((v) => v.name === vm)!.disks;

interface DiskSummary {
  deviceKey: number;
  mode: 'full' | 'incremental';
  reasonCode: string;
  reason: string;
  chunksRewritten: number;
  chunksNew: number;
}
interface Summary {
  pointId: string;
  disks: DiskSummary[];
}
interface VerifyJson {
  corruptions: Array<{ object: string; name: string; code: string; affectedPoints: string[]; quarantinedTo: string | null }>;
  points: Array<{ pointId: string; status: string; manifestLost: boolean; lostDisks: Array<{ deviceKey: number; lostRanges: Array<{ offsetBytes: number; lengthBytes: number }> }> }>;
}

async function backup(extra: string[] = []): Promise<Summary> {
  const result = await runCli(['backup', '--vm', vm, '--repo', repo, '--json', ...extra, ...connection.flags], connection.env);
  assert.equal(result.code, 0, result.stderr);
  const summary = JSON.parse(result.stdout) as Summary;
  const shas = new Map<number, string>();
  for (const d of summary.disks) shas.set(d.deviceKey, (await lab.sha256(vm, d.deviceKey)).sha256);
  expected.set(summary.pointId, shas);
  return summary;
}

async function verify(...flags: string[]): Promise<{ code: number; report: VerifyJson }> {
  const result = await runCli(['verify', '--repo', repo, '--json', ...flags]);
  return { code: result.code, report: JSON.parse(result.stdout) as VerifyJson };
}

async function assertRestores(pointId: string, keys: number[] = [...(expected.get(pointId)?.keys() ?? [])]): Promise<void> {
  for (const key of keys) {
    const target = join(dir, `restore-${pointId}-${key}.raw`);
    const result = await runCli(['restore', '--repo', repo, '--point', pointId, '--disk', String(key), '--to', target, '--json']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(sha(await readFile(target)), expected.get(pointId)?.get(key), `restore point ${pointId} disk ${key}`);
    await rm(target);
  }
}

/** Non-zero chunk ids of a point's disk, by slot. */
async function chunksOf(pointId: string, deviceKey: number): Promise<Array<{ slot: number; id: string }>> {
  const repository = await Repository.open(repo, { workers: 1 });
  try {
    const disk = (await repository.readManifest(pointId)).disks.find((d) => d.deviceKey === deviceKey)!;
    const index = await IndexReader.open(repository.storage, disk.index, undefined);
    const found: Array<{ slot: number; id: string }> = [];
    let slot = 0;
    for await (const id of index.entries()) {
      if (!isZeroId(id)) found.push({ slot, id: Buffer.from(id).toString('hex') });
      slot++;
    }
    return found;
  } finally {
    await repository.close();
  }
}

async function indexOf(pointId: string, deviceKey: number): Promise<string> {
  const repository = await Repository.open(repo, { workers: 1 });
  try {
    return (await repository.readManifest(pointId)).disks.find((d) => d.deviceKey === deviceKey)!.index.sha256;
  } finally {
    await repository.close();
  }
}

function flipByte(file: string, at: number): void {
  const bytes = fs.readFileSync(file);
  bytes[at] ^= 0x40;
  fs.writeFileSync(file, bytes);
}

const corruptionsOf = (report: VerifyJson) => report.corruptions.map((c) => [c.object, c.name, c.code, c.affectedPoints]).sort();

let points: string[] = [];

test('deleted, truncated and bit-flipped chunks: verify names them with their points; the next incremental is a full (BASELINE_DAMAGED) that rewrites them; all verify clean and restore exactly', { timeout: 120_000 }, async () => {
  const p1 = (await backup()).pointId;
  const [a, b] = disks().map((d) => d.key);
  await lab.write(vm, a, at(a, 0.5), randomBytes(300_000));
  const p2 = (await backup()).pointId;
  points = [p1, p2];
  // Three chunks of disk A that both points hold (disk A's data from before the write).
  const shared = (await chunksOf(p2, a)).filter((c) => c.slot * 256 * 1024 < 4 * MiB);
  assert.ok(shared.length >= 3, `disk ${a} has data chunks`);
  const [deleted, truncated, flipped] = shared.map((c) => c.id);
  const damagedPacks = [(await chunkRecordIn(repo, truncated)).file, (await chunkRecordIn(repo, flipped)).file];
  await withRepository(repo, async (r) => {
    await removeChunk(r, deleted);
    await flipChunkByte(r, truncated, 12); // its header's payloadBytes: the record looks truncated
    await flipChunkByte(r, flipped, 200);
  });

  const found = await verify('--read-data');
  assert.equal(found.code, 1);
  // Points are named in id order; two backups within one second may get ids out of creation order.
  const both = [p1, p2].sort();
  assert.deepEqual(corruptionsOf(found.report), [
    ['chunk', deleted, 'REPO_MISSING', both],
    ['chunk', flipped, 'REPO_CORRUPT', both],
    ['chunk', truncated, 'REPO_CORRUPT', both],
  ].sort());
  assert.ok(damagedPacks.every((file) => !fs.existsSync(file)), 'the packs of damaged chunks are moved aside (their sound chunks copied first)');
  assert.deepEqual(found.report.points.map((p) => [p.pointId, p.status, p.lostDisks.map((d) => d.deviceKey)]).sort(), both.map((id) => [id, 'damaged', [a]]));
  const listed = JSON.parse((await runCli(['points', '--repo', repo, '--json'])).stdout) as { points: Array<{ id: string; damaged: boolean }> };
  assert.deepEqual(listed.points.map((p) => [p.id, p.damaged]).sort(), both.map((id) => [id, true]));

  // No change on the disk since p2: the full reads every chunk again and rewrites the three.
  const p3 = await backup();
  const diskA = p3.disks.find((d) => d.deviceKey === a)!;
  assert.deepEqual([diskA.mode, diskA.reasonCode], ['full', 'BASELINE_DAMAGED']);
  assert.match(diskA.reason, new RegExp(`restore point ${p2} is marked damaged by vcbt verify`));
  assert.equal(diskA.chunksNew, 3, 'exactly the three damaged chunks are written again');
  assert.deepEqual(p3.disks.find((d) => d.deviceKey === b)!.mode, 'incremental', 'the sound disk stays incremental');
  points.push(p3.pointId);

  const clean = await verify('--read-data');
  assert.equal(clean.code, 0, JSON.stringify(clean.report.corruptions));
  assert.ok(clean.report.points.every((p) => p.status === 'clean'));
  for (const p of points) await assertRestores(p);
});

test('a bit-flipped chunk nobody verified yet: backup --full rewrites it instead of reusing it by name', { timeout: 120_000 }, async () => {
  if (points.length === 0) points = [(await backup()).pointId];
  const newest = points.at(-1)!;
  const [a] = disks().map((d) => d.key);
  const victim = (await chunksOf(newest, a)).find((c) => c.slot * 256 * 1024 < 4 * MiB)!.id;
  await withRepository(repo, (r) => flipChunkByte(r, victim, 300));
  const full = await backup(['--full']);
  const diskA = full.disks.find((d) => d.deviceKey === a)!;
  assert.deepEqual([diskA.mode, diskA.reasonCode, diskA.chunksRewritten], ['full', 'FORCED', 1]);
  points.push(full.pointId);
  const clean = await verify('--read-data');
  assert.equal(clean.code, 0, JSON.stringify(clean.report.corruptions));
  for (const p of points) await assertRestores(p);
});

test('a damaged index, a damaged and a deleted manifest: named by verify, listed damaged, latest refuses them; the next backups build only on sound points and restore exactly; --repair ends clean or unrecoverable', { timeout: 180_000 }, async () => {
  if (points.length === 0) points = [(await backup()).pointId];
  const [a, b] = disks().map((d) => d.key);

  // A damaged index: its disk of that point is lost; the next backup of the disk is a full.
  await lab.write(vm, a, at(a, 0.6), randomBytes(200_000));
  await lab.write(vm, b, at(b, 0.3), randomBytes(200_000));
  const p4 = (await backup()).pointId;
  const index4 = await indexOf(p4, a);
  flipByte(indexPath(repo, index4), 100);
  const found = await verify();
  assert.equal(found.code, 1);
  assert.deepEqual(corruptionsOf(found.report), [['index', index4, 'REPO_CORRUPT', [p4]]]);
  const capacityA = disks().find((d) => d.key === a)!.capacityBytes;
  assert.deepEqual(found.report.points.find((p) => p.pointId === p4)?.lostDisks, [{ deviceKey: a, capacityBytes: capacityA, lostRanges: [{ offsetBytes: 0, lengthBytes: capacityA }] }]);
  await lab.write(vm, a, at(a, 0.8), randomBytes(100_000));
  const p5 = await backup();
  assert.deepEqual(p5.disks.map((d) => [d.deviceKey, d.mode, d.reasonCode]), [[a, 'full', 'BASELINE_DAMAGED'], [b, 'incremental', 'CHANGES_SINCE']]);
  assert.equal((await verify('--read-data', '--point', p5.pointId)).code, 0);
  await assertRestores(p5.pointId);
  await assertRestores(p4, [b]); // the sound disk of the damaged point is not lost

  // A damaged newest manifest: listed damaged, latest fails naming it (or skips it when told).
  const m5 = manifestPath(repo, p5.pointId);
  fs.writeFileSync(m5, fs.readFileSync(m5, 'utf8').replace('"label":"', '"label":"X'));
  const listed = JSON.parse((await runCli(['points', '--repo', repo, '--vm', vm, '--json'])).stdout) as { points: Array<{ id: string; damaged: boolean; manifestProblem: { code: string } | null }> };
  // Found by id: points made within one second list in id order, and a damaged manifest has no createdAt.
  const listedP5 = listed.points.find((p) => p.id === p5.pointId);
  assert.deepEqual(listedP5, { ...listedP5, id: p5.pointId, damaged: true, manifestProblem: { ...listedP5?.manifestProblem, code: 'REPO_CORRUPT' } });
  const latestTarget = join(dir, 'latest.raw');
  const refused = await runCli(['restore', '--repo', repo, '--point', 'latest', '--vm', vm, '--disk', String(b), '--to', latestTarget]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, new RegExp(`RESTORE_POINT_DAMAGED: .*${p5.pointId}`));
  assert.ok(!fs.existsSync(latestTarget));
  const skipped = await runCli(['restore', '--repo', repo, '--point', 'latest', '--vm', vm, '--disk', String(b), '--to', latestTarget, '--skip-damaged', '--json']);
  assert.equal(skipped.code, 0, skipped.stderr);
  assert.match(skipped.stderr, new RegExp(`skipping damaged restore point ${p5.pointId}`));
  assert.equal(JSON.parse(skipped.stdout).pointId, p4, 'disk B of p4 is sound');
  await rm(latestTarget);

  // The next backup builds on p4 (the newest readable point): disk A of p4 is damaged -> full.
  await lab.write(vm, b, at(b, 0.5), randomBytes(100_000));
  const p6 = await backup();
  assert.deepEqual(p6.disks.map((d) => [d.deviceKey, d.mode, d.reasonCode]), [[a, 'full', 'BASELINE_DAMAGED'], [b, 'incremental', 'CHANGES_SINCE']]);
  assert.match(p6.disks[0].reason, new RegExp(`restore point ${p4} is marked damaged`));
  await assertRestores(p6.pointId);

  // A deleted manifest of a committed point: verify names it; the next backup builds on p4 again.
  fs.rmSync(manifestPath(repo, p6.pointId));
  const missing = await verify();
  assert.deepEqual(corruptionsOf(missing.report).filter((c) => c[0] === 'manifest'), [
    ['manifest', p5.pointId, 'REPO_CORRUPT', [p5.pointId]],
    ['manifest', p6.pointId, 'REPO_MISSING', [p6.pointId]],
  ]);
  const points7 = JSON.parse((await runCli(['points', '--repo', repo, '--json'])).stdout) as { points: Array<{ id: string; damaged: boolean; vm: unknown }> };
  assert.deepEqual(points7.points.find((p) => p.id === p6.pointId), { ...points7.points.find((p) => p.id === p6.pointId), damaged: true, vm: null });
  await lab.write(vm, b, at(b, 0.7), randomBytes(50_000));
  const p7 = await backup();
  assert.deepEqual(p7.disks.map((d) => [d.deviceKey, d.mode]), [[a, 'full'], [b, 'incremental']]);
  assert.equal((await verify('--read-data', '--point', p7.pointId)).code, 0);
  await assertRestores(p7.pointId);

  // --repair: every point is clean or unrecoverable with the exact ranges; every sound one restores.
  const repaired = await verify('--repair');
  assert.equal(repaired.code, 1);
  const status = new Map(repaired.report.points.map((p) => [p.pointId, p]));
  assert.ok(repaired.report.points.every((p) => p.status === 'clean' || p.status === 'unrecoverable'));
  assert.deepEqual([status.get(p4)?.status, status.get(p4)?.lostDisks.map((d) => d.deviceKey)], ['unrecoverable', [a]]);
  assert.deepEqual([status.get(p5.pointId)?.status, status.get(p5.pointId)?.manifestLost], ['unrecoverable', true]);
  assert.deepEqual([status.get(p6.pointId)?.status, status.get(p6.pointId)?.manifestLost], ['unrecoverable', true]);
  for (const p of [...points, p7.pointId]) {
    assert.equal(status.get(p)?.status, 'clean', p);
    await assertRestores(p);
  }
});
