// A repository on Ceph RGW (test/s3/rgw.ts): init, full and incremental backups, byte-identical
// restores, verify --read-data and prune through the CLI with the endpoint and credentials in
// the environment only; verified TLS; and the named errors a wrong setup gets before any work.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
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

async function keysUnder(bucket: string, prefix: string): Promise<string[]> {
  const client = rgw.client();
  try {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (listed.Contents ?? []).map((o) => o.Key ?? '').sort();
  } finally {
    client.destroy();
  }
}

test('backup, incremental, restore, verify and prune on s3://bucket/prefix over verified TLS', async (t) => {
  const url = `s3://${rgw.plainBucket}/repos/one`;
  const env = rgw.env({ tls: true });
  const init = await runCli(['init', '--repo', url, '--chunk-size', '64K', '--json'], env);
  assert.equal(init.code, 0, init.stderr);
  assert.equal(JSON.parse(init.stdout).immutableDays, 0);
  assert.ok((await keysUnder(rgw.plainBucket, 'repos/one/')).includes('repos/one/config.json'));
  assert.equal((await runCli(['init', '--repo', url], env)).code, 1, 'init refuses an existing repository');

  const repo = await Repository.open(url, { env, workers: 2 });
  t.after(() => repo.close());
  const image = mixedImage(3 * 1024 * 1024 + 12_288);
  const full = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.UTC(2026, 0, 1)) });
  await full.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: image.length, changeId: null, reader: memorySource(image) });
  const fullId = await full.commit();

  const changed = Buffer.from(image);
  changed.fill(7, 100_000, 180_000);
  const incremental = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.UTC(2026, 0, 2)) });
  const reads: Array<{ offsetBytes: number; lengthBytes: number }> = [];
  await incremental.writeDisk({
    deviceKey: 1,
    label: 'a',
    capacityBytes: changed.length,
    changeId: null,
    reader: memorySource(changed, reads),
    previous: { pointId: fullId, deviceKey: 1 },
    changedAreas: [{ offsetBytes: 65_536, lengthBytes: 131_072 }],
  });
  const incrementalId = await incremental.commit();
  assert.equal(reads.reduce((sum, r) => sum + r.lengthBytes, 0), 131_072, 'the incremental read only the changed area');

  assert.equal(sha256(await restoreToBuffer(repo, fullId, 1)), sha256(image));
  assert.equal(sha256(await restoreToBuffer(repo, incrementalId, 1)), sha256(changed));

  const points = await runCli(['points', '--repo', url, '--json'], env);
  assert.equal(points.code, 0, points.stderr);
  assert.deepEqual(JSON.parse(points.stdout).points.map((p: { id: string }) => p.id), [fullId, incrementalId]);

  const verify = await runCli(['verify', '--repo', url, '--read-data'], env);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /^ok: 2 restore points, 2 indexes, \d+ chunks read/m);

  const pruned = await runCli(['prune', '--repo', url, '--keep-last', '1', '--json'], env);
  assert.equal(pruned.code, 0, pruned.stderr);
  const report = JSON.parse(pruned.stdout);
  assert.deepEqual(report.remove.map((p: { id: string }) => p.id), [fullId]);
  assert.ok(report.gc.chunksDeleted >= 1, 'the chunks only the full held are gone');
  assert.ok(!(await keysUnder(rgw.plainBucket, 'repos/one/points/')).some((k) => k.includes(fullId)));
  assert.equal(sha256(await restoreToBuffer(repo, incrementalId, 1)), sha256(changed), 'the kept point still restores');
  const again = await runCli(['verify', '--repo', url, '--read-data'], env);
  assert.equal(again.code, 0, again.stdout + again.stderr);
});

test('a wrong setup is named before any work: credentials, bucket, TLS trust, URL', async () => {
  const url = `s3://${rgw.plainBucket}/repos/errors`;
  const badKey = await runCli(['init', '--repo', url, '--json'], { ...rgw.env(), AWS_SECRET_ACCESS_KEY: 'not-the-secret' });
  assert.equal(badKey.code, 1);
  assert.equal(JSON.parse(badKey.stdout).code, 'S3_CREDENTIALS', badKey.stderr);
  assert.doesNotMatch(badKey.stderr, /not-the-secret/, 'the secret is never printed');

  const noBucket = await runCli(['points', '--repo', 's3://no-such-bucket/x', '--json'], rgw.env());
  assert.equal(noBucket.code, 1);
  assert.equal(JSON.parse(noBucket.stdout).code, 'S3_BUCKET_MISSING', noBucket.stderr);

  const untrusted = await runCli(['init', '--repo', url, '--json'], { ...rgw.env({ tls: true }), VCBT_S3_CA_FILE: '', AWS_CA_BUNDLE: '' });
  assert.equal(untrusted.code, 1);
  assert.equal(JSON.parse(untrusted.stdout).code, 'S3_TLS', untrusted.stderr);

  const noRepo = await runCli(['points', '--repo', url, '--json'], rgw.env());
  assert.equal(JSON.parse(noRepo.stdout).code, 'REPO_NOT_FOUND', noRepo.stderr);

  const badUrl = await runCli(['points', '--repo', 's3://UPPER/x', '--json'], rgw.env());
  assert.equal(JSON.parse(badUrl.stdout).code, 'REPO_INVALID_ARGUMENT', badUrl.stderr);

  const noLock = await runCli(['init', '--repo', url, '--immutable-days', '3', '--json'], rgw.env());
  assert.equal(JSON.parse(noLock.stdout).code, 'REPO_NO_OBJECT_LOCK', noLock.stderr);
  assert.deepEqual(await keysUnder(rgw.plainBucket, 'repos/errors/'), [], 'nothing written by the refused inits');
});
