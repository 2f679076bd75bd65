// Object Lock on RGW: a repository made with --immutable-days writes every object of a restore
// point with COMPLIANCE retention; deleting a locked version fails even for the bucket owner's
// credential (with the governance bypass too); prune keeps a locked point and says until when.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command, ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import { runCli } from '../helpers/cli-runner.ts';
import { Repository } from '../../src/repository/repository.ts';
import { memorySource, mixedImage, restoreToBuffer, sha256, vm } from '../repository/helpers.ts';
import { startRgw, type Rgw } from './rgw.ts';

let rgw: Rgw;
before(async () => {
  rgw = await startRgw();
});
after(async () => {
  await rgw?.stop();
});

test('--immutable-days locks every object of a restore point; deletion fails; prune reports the locked point', async (t) => {
  const url = `s3://${rgw.lockedBucket}/immutable`;
  const env = rgw.env();
  const init = await runCli(['init', '--repo', url, '--chunk-size', '64K', '--immutable-days', '1', '--json'], env);
  assert.equal(init.code, 0, init.stderr);
  assert.equal(JSON.parse(init.stdout).immutableDays, 1);

  const repo = await Repository.open(url, { env, workers: 2 });
  t.after(() => repo.close());
  const images = [mixedImage(600_000), Buffer.alloc(600_000, 3)];
  const ids: string[] = [];
  for (const [i, image] of images.entries()) {
    const writer = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.UTC(2026, 0, 1 + i)) });
    await writer.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
    ids.push(await writer.commit());
  }

  const client = rgw.client();
  t.after(() => client.destroy());
  const keys = ((await client.send(new ListObjectsV2Command({ Bucket: rgw.lockedBucket, Prefix: 'immutable/' }))).Contents ?? []).map((o) => o.Key ?? '');
  const retained = keys.filter((k) => /\/(chunks|indexes|points|committed)\//.test(k));
  assert.ok(retained.some((k) => k.includes('/chunks/')) && retained.some((k) => k.includes(`/points/${ids[0]}`)) && retained.some((k) => k.includes('/indexes/')));
  const minimumMs = Date.now() + 23 * 3600_000;
  for (const key of retained) {
    const head = await client.send(new HeadObjectCommand({ Bucket: rgw.lockedBucket, Key: key }));
    assert.equal(head.ObjectLockMode, 'COMPLIANCE', key);
    assert.ok((head.ObjectLockRetainUntilDate?.getTime() ?? 0) > minimumMs, `${key} retained for a day`);
  }

  // A stolen credential (the very one vcbt uses) cannot delete a locked version.
  const manifestKey = retained.find((k) => k.includes(`/points/${ids[0]}`)) ?? '';
  const versions = await client.send(new ListObjectVersionsCommand({ Bucket: rgw.lockedBucket, Prefix: manifestKey }));
  const versionId = versions.Versions?.[0]?.VersionId;
  assert.ok(versionId);
  for (const bypass of [false, true]) {
    await assert.rejects(
      client.send(new DeleteObjectCommand({ Bucket: rgw.lockedBucket, Key: manifestKey, VersionId: versionId, ...(bypass ? { BypassGovernanceRetention: true } : {}) })),
      (error: Error & { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode === 403,
    );
  }

  const pruned = await runCli(['prune', '--repo', url, '--keep-last', '1', '--json'], env);
  assert.equal(pruned.code, 0, pruned.stderr);
  const report = JSON.parse(pruned.stdout);
  assert.deepEqual(report.remove, []);
  assert.deepEqual(report.locked.map((l: { id: string }) => l.id), [ids[0]]);
  assert.ok(Date.parse(report.locked[0].lockedUntil) > minimumMs);
  const text = await runCli(['prune', '--repo', url, '--keep-last', '1'], env);
  assert.match(text.stdout, new RegExp(`locked  ${ids[0]}  .*\\(kept: immutable until 20\\d\\d-`));
  assert.equal(sha256(await restoreToBuffer(repo, ids[0], 1)), sha256(images[0]), 'the locked point still restores');
  const verify = await runCli(['verify', '--repo', url, '--read-data'], env);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
});
