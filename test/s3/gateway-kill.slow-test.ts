// The object store dies mid-backup: radosgw is SIGKILLed while chunks are being uploaded. The
// backup fails with S3_UNAVAILABLE once its retries are spent, nothing is committed, the earlier
// restore point is intact, and after the gateway is back the next backup succeeds (reusing the
// chunks that made it before the cut) and restores byte for byte.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { runCli } from '../helpers/cli-runner.ts';
import { Repository } from '../../src/repository/repository.ts';
import { memorySource, restoreToBuffer, sha256, vm } from '../repository/helpers.ts';
import { startRgw, type Rgw } from './rgw.ts';

let rgw: Rgw;
before(async () => {
  rgw = await startRgw();
});
after(async () => {
  await rgw?.stop();
});

async function chunkCount(prefix: string): Promise<number> {
  const client = rgw.client();
  try {
    let count = 0;
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: rgw.plainBucket, Prefix: `${prefix}/chunks/`, ContinuationToken: token }));
      count += page.KeyCount ?? 0;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return count;
  } finally {
    client.destroy();
  }
}

test('radosgw killed mid-backup: earlier points intact, nothing committed, the next backup succeeds', async (t) => {
  const prefix = 'cut';
  const url = `s3://${rgw.plainBucket}/${prefix}`;
  // Few retries, short timeouts: the cut is reported in seconds.
  const env = { ...rgw.env(), VCBT_S3_RETRIES: '2', VCBT_S3_TIMEOUT_MS: '5000' };
  assert.equal((await runCli(['init', '--repo', url, '--chunk-size', '64K'], env)).code, 0);
  const repo = await Repository.open(url, { env, workers: 2 });
  t.after(() => repo.close());

  const first = randomBytes(1024 * 1024);
  const writer = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.UTC(2026, 0, 1)) });
  await writer.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: first.length, changeId: null, reader: memorySource(first) });
  const firstId = await writer.commit();
  const before = await chunkCount(prefix);

  const big = randomBytes(24 * 1024 * 1024);
  const cut = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.UTC(2026, 0, 2)) });
  const backup = cut.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: big.length, changeId: null, reader: memorySource(big) });
  backup.catch(() => undefined);
  while ((await chunkCount(prefix)) < before + 40) await new Promise((r) => setTimeout(r, 20));
  await rgw.killGateway();
  await assert.rejects(backup, (error: Error & { code?: string }) => {
    assert.equal(error.code, 'S3_UNAVAILABLE', error.message);
    return true;
  });
  await cut.abort().catch(() => undefined);

  await rgw.startGateway();
  assert.deepEqual(await repo.listPointIds(), [firstId], 'nothing was committed by the cut backup');
  const uploadedBeforeCut = (await chunkCount(prefix)) - before;
  assert.ok(uploadedBeforeCut >= 40 && uploadedBeforeCut < big.length / 65_536);
  assert.equal(sha256(await restoreToBuffer(repo, firstId, 1)), sha256(first), 'the earlier point is intact');

  const again = await repo.beginRestorePoint({ vm, createdAt: new Date(Date.UTC(2026, 0, 3)) });
  const record = await again.writeDisk({ deviceKey: 1, label: 'a', capacityBytes: big.length, changeId: null, reader: memorySource(big) });
  const againId = await again.commit();
  assert.ok(record.stats.chunksReused >= uploadedBeforeCut, 'chunks stored before the cut are not sent again');
  assert.equal(record.stats.chunksNew + record.stats.chunksReused, big.length / 65_536);
  assert.equal(sha256(await restoreToBuffer(repo, againId, 1)), sha256(big));
  const verify = await runCli(['verify', '--repo', url, '--read-data'], env);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
});
