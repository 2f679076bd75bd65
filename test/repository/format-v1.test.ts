// Repositories of format version 1, written once by fixtures/make-format-v1.ts and checked in
// (fixtures/format-v1.tar.gz): today's code must list, verify and restore them byte for byte,
// and keep writing restore points into them. A change to both the writer and the reader that
// alters the format fails here, however consistent the two are with each other.
// When this test fails, the format changed: bump a version (docs/format.md, "Versioning")
// and keep reading this one; never regenerate the archive.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Repository } from '../../src/repository/repository.ts';
import { runCli } from '../helpers/cli-runner.ts';
import { migrateChunkFiles } from '../../src/repository/migrate.ts';
import { listFiles, memorySource, restoreToBuffer, seededBytes, sha256, tempDir } from './helpers.ts';

const archive = path.join(import.meta.dirname, 'fixtures', 'format-v1.tar.gz');
const passphrase = 'format v1 fixture passphrase';
const generationSha256 = [
  '9e607ca0608781b5f8b436429ca7cf635af11b150cf4f56c007cecec16ad7525',
  'ee9fc2622c8a937a8d83a13c28331a9d2feee7d89f968d096c8d4556f1994c62',
];
const fixtures = [
  { name: 'plain', env: {}, points: ['20260101T100000Z-aa8899c7', '20260102T100000Z-ee5aa2e8'] },
  { name: 'encrypted', env: { VCBT_PASSPHRASE: passphrase }, points: ['20260101T100000Z-d3929c02', '20260102T100000Z-4fee570d'] },
];

function extract(t: { after(fn: () => void): void }): string {
  const dir = tempDir(t, 'vcbt-format-v1-');
  execFileSync('tar', ['-xzf', archive, '-C', dir]);
  return dir;
}

for (const fixture of fixtures) {
  test(`format v1 (${fixture.name}): points lists both restore points, verify --read-data is clean, restore gives the exact bytes`, async (t) => {
    const dir = extract(t);
    const repo = path.join(dir, fixture.name);

    const points = await runCli(['points', '--repo', repo, '--json'], fixture.env);
    assert.equal(points.code, 0, points.stderr);
    const listed = (JSON.parse(points.stdout) as { points: Array<{ id: string; createdAt: string; vm: { name: string; id: string }; disks: Array<{ deviceKey: number; capacityBytes: number; mode: string; basedOn: string | null; changeId: string }> }> }).points;
    assert.deepEqual(listed.map((p) => p.id), fixture.points);
    assert.deepEqual(listed.map((p) => p.createdAt), ['2026-01-01T10:00:00.000Z', '2026-01-02T10:00:00.000Z']);
    assert.deepEqual(listed.map((p) => [p.vm.id, p.vm.name]), [['fixture-vm-uuid', 'fixture-vm'], ['fixture-vm-uuid', 'fixture-vm']]);
    assert.deepEqual(
      listed.map((p) => p.disks.map((d) => [d.deviceKey, d.capacityBytes, d.mode, d.basedOn, d.changeId])),
      [[[2000, 307_200, 'full', null, '52 aa/1']], [[2000, 307_200, 'incremental', fixture.points[0], '52 aa/2']]],
    );

    const verify = await runCli(['verify', '--repo', repo, '--read-data'], fixture.env);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /^ok: 2 restore points, 2 indexes, \d+ chunks read/m);

    for (const [generation, pointId] of fixture.points.entries()) {
      const target = path.join(dir, `restored-${generation}.raw`);
      const restored = await runCli(['restore', '--repo', repo, '--point', pointId, '--disk', '2000', '--to', target, '--json'], fixture.env);
      assert.equal(restored.code, 0, restored.stderr);
      assert.equal(sha256(fs.readFileSync(target)), generationSha256[generation], `restore point ${pointId}`);
    }
    const latest = path.join(dir, 'latest.raw');
    assert.equal((await runCli(['restore', '--repo', repo, '--point', 'latest', '--vm', 'fixture-vm', '--disk', '2000', '--to', latest], fixture.env)).code, 0);
    assert.equal(sha256(fs.readFileSync(latest)), generationSha256[1]);
  });

  test(`format v1 (${fixture.name}): today's writer adds an incremental on the old points; old and new verify and restore`, async (t) => {
    const repoPath = path.join(extract(t), fixture.name);
    const repo = await Repository.open(repoPath, { passphrase: fixture.env.VCBT_PASSPHRASE, workers: 1 });
    try {
      const base = await restoreToBuffer(repo, fixture.points[1], 2000);
      assert.equal(sha256(base), generationSha256[1]);
      const change = { offsetBytes: 70_000, lengthBytes: 5000 };
      const image = Buffer.from(base);
      seededBytes(7, change.lengthBytes).copy(image, change.offsetBytes);
      const writer = await repo.beginRestorePoint({ vm: { id: 'fixture-vm-uuid', name: 'fixture-vm' } });
      await writer.writeDisk({ deviceKey: 2000, label: 'Hard disk 1', capacityBytes: image.length, changeId: '52 aa/3', reader: memorySource(image), previous: { pointId: fixture.points[1], deviceKey: 2000 }, changedAreas: [change] });
      const third = await writer.commit();
      assert.equal(sha256(await restoreToBuffer(repo, third, 2000)), sha256(image));
      assert.equal(sha256(await restoreToBuffer(repo, fixture.points[0], 2000)), generationSha256[0]);
    } finally {
      await repo.close();
    }
    const verify = await runCli(['verify', '--repo', repoPath, '--read-data'], fixture.env);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /^ok: 3 restore points, 3 indexes/m);
    // The first v2 write made it a version-2 repository: new chunks in a pack, old ones still files.
    assert.equal(JSON.parse(fs.readFileSync(path.join(repoPath, 'config.json'), 'utf8')).version, 2);
    assert.equal(listFiles(repoPath, 'packs').length, 1);
    assert.ok(listFiles(repoPath, 'chunks').length > 0);
  });

  test(`format v1 (${fixture.name}): migrating moves every chunk file into packs; every point restores and verifies the same`, async (t) => {
    const repoPath = path.join(extract(t), fixture.name);
    const chunkFiles = listFiles(repoPath, 'chunks').length;
    const repo = await Repository.open(repoPath, { passphrase: fixture.env.VCBT_PASSPHRASE, workers: 1 });
    try {
      const report = await migrateChunkFiles(repo);
      assert.deepEqual([report.chunkFilesPacked, report.chunkFilesDamaged, report.packsWritten], [chunkFiles, [], 1]);
      assert.equal(listFiles(repoPath, 'chunks').length, 0, 'no chunk file is left');
      assert.equal(JSON.parse(fs.readFileSync(path.join(repoPath, 'config.json'), 'utf8')).version, 2);
      for (const [generation, pointId] of fixture.points.entries()) assert.equal(sha256(await restoreToBuffer(repo, pointId, 2000)), generationSha256[generation]);
    } finally {
      await repo.close();
    }
    const again = await runCli(['migrate', '--repo', repoPath], fixture.env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^packed 0 chunk files \(0 bytes\) into 0 packs/m, 'a second run has nothing to do');
    const verify = await runCli(['verify', '--repo', repoPath, '--read-data'], fixture.env);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /^ok: 2 restore points, 2 indexes/m);
  });
}

test('format v1 (encrypted): a wrong passphrase is REPO_WRONG_PASSPHRASE and nothing is listed', async (t) => {
  const repo = path.join(extract(t), 'encrypted');
  const wrong = await runCli(['points', '--repo', repo], { VCBT_PASSPHRASE: 'not it' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /REPO_WRONG_PASSPHRASE/);
  assert.equal(wrong.stdout, '');
});

test('format v1 (encrypted, made before key files): "encryption": null in config.json is REPO_ENCRYPTION_MISMATCH with or without a passphrase', async (t) => {
  const repo = path.join(extract(t), 'encrypted');
  const configFile = path.join(repo, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(configFile, 'utf8')), encryption: null }));
  for (const env of [{ VCBT_PASSPHRASE: passphrase }, {}]) {
    const points = await runCli(['points', '--repo', repo], env);
    assert.equal(points.code, 1);
    assert.match(points.stderr, /REPO_ENCRYPTION_MISMATCH: .*(a passphrase was given|its restore point 20260102T100000Z-4fee570d is encrypted)/);
  }
});
